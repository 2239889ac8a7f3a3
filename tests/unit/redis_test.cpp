#include <catch2/catch.hpp>

#include <random>

#include "redis.hpp"

using namespace wsx;

TEST_CASE("rediss:// URLs and passwords from elsewhere", "[redis]") {
    std::string err;
    auto t = parse_redis_url("rediss://redis.example:6380/2", err);
    REQUIRE(t);
    CHECK(t->tls);
    CHECK(t->host == "redis.example");
    CHECK(t->port == 6380);
    CHECK(t->db == 2);
    auto plain = parse_redis_url("redis://127.0.0.1", err);
    REQUIRE(plain);
    CHECK_FALSE(plain->tls);
    CHECK_FALSE(parse_redis_url("https://x", err));
    CHECK(err.find("rediss://") != std::string::npos);

    // No password in the URL: the one given is used.
    use_redis_password(*plain, "pw");
    CHECK(plain->password == "pw");
    CHECK(plain->user.empty());
    // A password in the URL is kept.
    auto own = parse_redis_url("redis://:mine@h", err);
    REQUIRE(own);
    use_redis_password(*own, "other");
    CHECK(own->password == "mine");
    // redis://NAME@host is a password alone, unless the password comes from elsewhere.
    auto name = parse_redis_url("redis://alice@h", err);
    REQUIRE(name);
    CHECK(name->name_only);
    CHECK(name->password == "alice");
    CHECK(name->user.empty());
    use_redis_password(*name, "pw");
    CHECK(name->user == "alice");
    CHECK(name->password == "pw");
}

TEST_CASE("commands are encoded as RESP arrays of bulk strings", "[redis]") {
    CHECK(redis_encode({"PING"}) == "*1\r\n$4\r\nPING\r\n");
    const std::string binary("a\0\r\nb", 5);
    CHECK(redis_encode({"SET", "k", binary}) == std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\0\r\nb\r\n", 31));
}

namespace {
// Every kind of reply, in one stream.
const std::string stream = "+OK\r\n-ERR no\r\n:42\r\n$5\r\nhe\r\no\r\n$-1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n"
                           "*2\r\n*1\r\n:1\r\n+x\r\n";

std::vector<redis_value> read_in_pieces(const std::vector<std::size_t>& cuts) {
    redis_reply_reader r;
    std::vector<redis_value> out;
    std::size_t at = 0;
    auto drain = [&] {
        redis_value v;
        for (;;) {
            const auto res = r.next(v);
            REQUIRE(res != redis_reply_reader::result::error);
            if (res == redis_reply_reader::result::more) break;
            out.push_back(v);
        }
    };
    for (auto cut : cuts) {
        r.feed(std::string_view(stream).substr(at, cut - at));
        at = cut;
        drain();
    }
    r.feed(std::string_view(stream).substr(at));
    drain();
    return out;
}

void check_replies(const std::vector<redis_value>& v) {
    REQUIRE(v.size() == 7);
    CHECK((v[0].type == redis_value::kind::status && v[0].str == "OK"));
    CHECK((v[1].is_error() && v[1].str == "ERR no"));
    CHECK((v[2].type == redis_value::kind::integer && v[2].integer == 42));
    CHECK((v[3].type == redis_value::kind::string && v[3].str == "he\r\no"));
    CHECK(v[4].type == redis_value::kind::nil);
    REQUIRE(v[5].elements.size() == 3);
    CHECK(v[5].elements[0].str == "message");
    CHECK(v[5].elements[1].str == "ch");
    CHECK((v[5].elements[2].type == redis_value::kind::string && v[5].elements[2].str.empty()));
    REQUIRE(v[6].elements.size() == 2);
    CHECK(v[6].elements[0].elements.at(0).integer == 1);
    CHECK(v[6].elements[1].str == "x");
}
}  // namespace

TEST_CASE("replies are the same however the stream is cut", "[redis]") {
    check_replies(read_in_pieces({}));
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
    check_replies(read_in_pieces(every));
    std::mt19937 rng(7);
    for (int round = 0; round < 50; ++round) {
        std::vector<std::size_t> cuts;
        for (std::size_t i = 1; i < stream.size(); ++i)
            if (rng() % 4 == 0) cuts.push_back(i);
        check_replies(read_in_pieces(cuts));
    }
}

TEST_CASE("a stream that is not RESP is an error, and stays one", "[redis]") {
    redis_reply_reader r;
    r.feed("?what\r\n");
    redis_value v;
    CHECK(r.next(v) == redis_reply_reader::result::error);
    CHECK_FALSE(r.error().empty());
    r.feed("+OK\r\n");
    CHECK(r.next(v) == redis_reply_reader::result::error);
}
