#include <catch2/catch.hpp>

#include <random>

#include "redis.hpp"
#include "redis_cluster.hpp"

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

TEST_CASE("a redis:// URL's host and port are read whole", "[redis]") {
    // Boost.URL alone reads "6379x" as port 6379 and "x" as the path (the database), and the
    // IPv4 address at the start of "10.0.0.1.nip.io" as the host.
    std::string err;
    auto u = parse_redis_url("redis://10.0.0.1.nip.io:6380/2", err);
    REQUIRE(u);
    CHECK((u->host == "10.0.0.1.nip.io" && u->port == 6380 && u->db == 2));
    for (const char* bad : {"redis://127.0.0.1:6379x", "redis://127.0.0.1:6379x/1", "rediss://h:1.2"}) {
        INFO(bad);
        CHECK_FALSE(parse_redis_url(bad, err));
        CHECK(err.find("the host and port end at the first '/'") == 0);
    }
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

TEST_CASE("redis+sentinel:// URLs list the sentinels and name the master", "[redis]") {
    std::string err;
    auto u = parse_redis_url("redis+sentinel://127.0.0.1:26379,sentinel-2:26380,[::1]:26381,s4/mymaster/3", err);
    REQUIRE(u);
    CHECK(u->sentinel());
    CHECK_FALSE(u->tls);
    REQUIRE(u->sentinels.size() == 4);
    CHECK(u->sentinels[0].host == "127.0.0.1");
    CHECK(u->sentinels[0].port == 26379);
    CHECK(u->sentinels[1].host == "sentinel-2");
    CHECK(u->sentinels[1].port == 26380);
    CHECK(u->sentinels[2].host == "::1");
    CHECK(u->sentinels[2].port == 26381);
    CHECK(u->sentinels[3].host == "s4");
    CHECK(u->sentinels[3].port == 26379);  // the sentinel's default port
    CHECK(u->master_name == "mymaster");
    CHECK(u->db == 3);
    CHECK(u->host == "127.0.0.1");  // the first sentinel's
    CHECK(u->port == 26379);
    CHECK(format_sentinels(*u) == "127.0.0.1:26379,sentinel-2:26380,[::1]:26381,s4:26379");

    auto t = parse_redis_url("rediss+sentinel://alice:p%40ss@h:1/m%20x", err);
    REQUIRE(t);
    CHECK(t->tls);
    CHECK(t->user == "alice");
    CHECK(t->password == "p@ss");
    CHECK(t->master_name == "m x");
    CHECK(t->db == 0);
    // A name alone is the password, as in redis://; a password from elsewhere makes it the user.
    auto n = parse_redis_url("redis+sentinel://secret@h:1/m/", err);
    REQUIRE(n);
    CHECK(n->name_only);
    CHECK(n->password == "secret");
    use_redis_password(*n, "pw");
    CHECK(n->user == "secret");
    CHECK(n->password == "pw");

    // redis:// is still the plain form.
    auto plain = parse_redis_url("redis://127.0.0.1:6379", err);
    REQUIRE(plain);
    CHECK_FALSE(plain->sentinel());
    CHECK(plain->master_name.empty());
}

TEST_CASE("a bad redis+sentinel:// URL is refused in one line saying what is wrong", "[redis]") {
    const std::pair<const char*, const char*> bad[] = {
        {"redis+sentinel://127.0.0.1:26379", "missing master name"},
        {"redis+sentinel://127.0.0.1:26379/", "missing master name"},
        {"redis+sentinel://127.0.0.1:26379//2", "missing master name"},
        {"redis+sentinel:///mymaster", "the host list is empty"},
        {"redis+sentinel://user:pw@/mymaster", "the host list is empty"},
        {"redis+sentinel://a:1,,b:2/mymaster", "empty entry in the sentinel list"},
        {"redis+sentinel://a:1,/mymaster", "empty entry in the sentinel list"},
        {"redis+sentinel://:26379/mymaster", "no host in sentinel address ':26379'"},
        {"redis+sentinel://a:0/mymaster", "bad port '0'"},
        {"redis+sentinel://a:99999/mymaster", "bad port '99999'"},
        {"redis+sentinel://a:x/mymaster", "bad port 'x'"},
        {"redis+sentinel://a:/mymaster", "bad port ''"},
        {"redis+sentinel://[::1/mymaster", "bad sentinel address"},
        {"redis+sentinel://a:1/mymaster/x", "bad database number 'x'"},
        {"redis+sentinel://a:1/mymaster/-1", "bad database number '-1'"},
        {"redis+sentinel://a:1/my%zzmaster", "bad %-escape in the master name"},
        {"redis+sentinel://a:1/mymaster?x=1", "no query or fragment"},
        {"redis+sentinel://a\nb:1/mymaster", "bad sentinel host 'a\\nb'"},
        {"redis+sentinel://::1:26379/mymaster", "bad sentinel host '::1'"},
        {"redis+sentinel://h\xc3\xa9:1/mymaster", "bad sentinel host"},
        {"redis+sentinel://a:1/my%0Amaster", "bad master name 'my\\nmaster'"},
    };
    for (const auto& [url, what] : bad) {
        INFO(url);
        std::string err;
        CHECK_FALSE(parse_redis_url(url, err));
        CHECK(err.find(what) != std::string::npos);
        CHECK(err.find("redis+sentinel://[user:pass@]host:port[,host:port...]/MASTERNAME[/db]") != std::string::npos);
        CHECK(err.find('\n') == std::string::npos);
    }
    std::string err;
    CHECK_FALSE(parse_redis_url("sentinel://a:1/m", err));
    CHECK(err.find("redis+sentinel://") != std::string::npos);
}

TEST_CASE("redis+cluster:// URLs list the seed nodes", "[redis]") {
    std::string err;
    auto u = parse_redis_url("redis+cluster://127.0.0.1:7000,node-2:7001,[::1]:7002,n4", err);
    REQUIRE(u);
    CHECK(u->cluster());
    CHECK_FALSE(u->sentinel());
    CHECK_FALSE(u->tls);
    REQUIRE(u->cluster_nodes.size() == 4);
    CHECK(u->cluster_nodes[1].host == "node-2");
    CHECK(u->cluster_nodes[1].port == 7001);
    CHECK(u->cluster_nodes[2].host == "::1");
    CHECK(u->cluster_nodes[3].port == 6379);  // Redis's default port
    CHECK(u->host == "127.0.0.1");
    CHECK(u->port == 7000);
    CHECK(u->db == 0);
    CHECK(format_sentinels(*u) == "127.0.0.1:7000,node-2:7001,[::1]:7002,n4:6379");

    auto t = parse_redis_url("rediss+cluster://alice:p%40ss@h:1/", err);
    REQUIRE(t);
    CHECK(t->tls);
    CHECK(t->cluster());
    CHECK(t->user == "alice");
    CHECK(t->password == "p@ss");
    auto n = parse_redis_url("REDIS+CLUSTER://secret@h:1/0", err);
    REQUIRE(n);
    CHECK(n->name_only);
    CHECK(n->password == "secret");
    use_redis_password(*n, "pw");
    CHECK(n->user == "secret");
    CHECK(n->password == "pw");
    CHECK_FALSE(parse_redis_url("redis://h:1", err)->cluster());
}

TEST_CASE("a bad redis+cluster:// URL is refused in one line saying what is wrong", "[redis]") {
    const std::pair<const char*, const char*> bad[] = {
        {"redis+cluster://", "the host list is empty"},
        {"redis+cluster:///", "the host list is empty"},
        {"redis+cluster://a:1,,b:2", "empty entry in the cluster node list"},
        {"redis+cluster://:7000", "no host in cluster node address ':7000'"},
        {"redis+cluster://a:0", "bad port '0'"},
        {"redis+cluster://a:x", "bad port 'x'"},
        {"redis+cluster://[::1", "bad cluster node address"},
        {"redis+cluster://a\nb:1", "bad cluster node host"},
        {"redis+cluster://a:1/3", "a Redis Cluster has database 0 only"},
        {"redis+cluster://a:1/x", "bad database number 'x'"},
        {"redis+cluster://a:1/?x=1", "no query or fragment"},
    };
    for (const auto& [url, what] : bad) {
        INFO(url);
        std::string err;
        CHECK_FALSE(parse_redis_url(url, err));
        CHECK(err.find(what) != std::string::npos);
        CHECK(err.find("redis+cluster://[user:pass@]host:port[,host:port...]") != std::string::npos);
        CHECK(err.find('\n') == std::string::npos);
    }
    std::string err;
    CHECK_FALSE(parse_redis_url("cluster://a:1", err));
    CHECK(err.find("redis+cluster://") != std::string::npos);
}

TEST_CASE("a key's cluster slot is CRC16 of its hash tag, as CLUSTER KEYSLOT gives it", "[redis]") {
    // Values from redis-cli CLUSTER KEYSLOT (Redis 7.0).
    CHECK(redis_key_slot("123456789") == 12739);
    CHECK(redis_key_slot("foo") == 12182);
    CHECK(redis_key_slot("") == 0);
    CHECK(redis_key_slot("{user1000}.following") == 3443);
    CHECK(redis_key_slot("{user1000}.followers") == 3443);
    CHECK(redis_key_slot("a{}b") == 13694);       // an empty tag: the whole key
    CHECK(redis_key_slot("{}") == 15257);
    CHECK(redis_key_slot("x{y}z{w}") == 12222);   // the first tag only
    CHECK(redis_key_slot("abc{") == 3048);        // no closing brace: the whole key
    CHECK(redis_key_slot("a}b{c}") == 7365);
    CHECK(redis_key_slot("wsx:relay:msg:{news}") == 5161);
    CHECK(redis_key_slot("wsx:relay:id:{news}") == redis_key_slot("wsx:relay:hist:{news}"));
}

TEST_CASE("a CLUSTER SLOTS reply gives the slot ranges and their masters", "[redis]") {
    const auto integer = [](long long i) {
        redis_value v;
        v.type = redis_value::kind::integer;
        v.integer = i;
        return v;
    };
    const auto string = [](std::string s) {
        redis_value v;
        v.type = redis_value::kind::string;
        v.str = std::move(s);
        return v;
    };
    const auto array = [](std::vector<redis_value> e) {
        redis_value v;
        v.type = redis_value::kind::array;
        v.elements = std::move(e);
        return v;
    };
    const auto reply = array({array({integer(0), integer(5460), array({string("127.0.0.1"), integer(7000), string("id1")}),
                                     array({string("127.0.0.1"), integer(7003), string("id4")})}),
                              array({integer(5461), integer(16383), array({string("10.0.0.2"), integer(7001), string("id2")})})});
    std::string err;
    auto r = parse_cluster_slots(reply, err);
    REQUIRE(r);
    REQUIRE(r->size() == 2);
    CHECK((*r)[0].first == 0);
    CHECK((*r)[0].last == 5460);
    CHECK((*r)[0].master.host == "127.0.0.1");
    CHECK((*r)[0].master.port == 7000);
    CHECK((*r)[1].master.host == "10.0.0.2");

    redis_value e;
    e.type = redis_value::kind::error;
    e.str = "ERR This instance has cluster support disabled";
    CHECK_FALSE(parse_cluster_slots(e, err));
    CHECK(err.find("cluster support disabled") != std::string::npos);
    CHECK_FALSE(parse_cluster_slots(array({array({integer(5), integer(2), array({string("h"), integer(1)})})}), err));
    CHECK_FALSE(parse_cluster_slots(array({array({integer(0), integer(16384), array({string("h"), integer(1)})})}), err));
    CHECK_FALSE(parse_cluster_slots(array({array({integer(0), integer(1), array({string("h\nx"), integer(1)})})}), err));
    CHECK_FALSE(parse_cluster_slots(string("x"), err));

    // Not a layout to follow: a node that serves no slot (not joined yet, or reset), a slot
    // given twice, more masters than a cluster has.
    CHECK_FALSE(parse_cluster_slots(array({}), err));
    CHECK(err.find("no slot is served") != std::string::npos);
    CHECK_FALSE(parse_cluster_slots(array({array({integer(0), integer(10), array({string("a"), integer(1)})}),
                                           array({integer(10), integer(20), array({string("b"), integer(2)})})}),
                                    err));
    CHECK(err.find("slot 10 is given twice") != std::string::npos);
    redis_value many = array({});
    for (int i = 0; i < 1001; ++i)
        many.elements.push_back(array({integer(i), integer(i), array({string("h"), integer(1000 + i)})}));
    CHECK_FALSE(parse_cluster_slots(many, err));
    CHECK(err.find("more than 1000 masters") != std::string::npos);
    many.elements.pop_back();
    CHECK(parse_cluster_slots(many, err));
}

namespace {
// Feeds `chunks` one after the other; the replies read, then how the stream ended.
std::pair<std::vector<redis_value>, redis_reply_reader::result> read_chunks(redis_reply_reader& r,
                                                                            const std::vector<std::string>& chunks) {
    std::vector<redis_value> out;
    for (const auto& c : chunks) {
        r.feed(c);
        for (;;) {
            redis_value v;
            const auto res = r.next(v);
            if (res != redis_reply_reader::result::reply) {
                if (res == redis_reply_reader::result::error) return {out, res};
                break;
            }
            out.push_back(std::move(v));
        }
    }
    return {out, redis_reply_reader::result::more};
}
}  // namespace

TEST_CASE("a reply declaring a huge array or bulk string is refused before it is allocated", "[redis]") {
    SECTION("a count past the bound, whole or cut anywhere, after a good reply") {
        const std::string s = "+OK\r\n*9999999999\r\n";
        for (std::size_t cut = 0; cut <= s.size(); ++cut) {
            INFO(cut);
            redis_reply_reader r;
            auto [v, res] = read_chunks(r, {s.substr(0, cut), s.substr(cut)});
            REQUIRE(v.size() == 1);
            CHECK(v[0].str == "OK");
            CHECK(res == redis_reply_reader::result::error);
            CHECK(r.error().find("more than 1048576 elements") != std::string::npos);
            // It stays refused.
            r.feed("+OK\r\n");
            redis_value again;
            CHECK(r.next(again) == redis_reply_reader::result::error);
        }
    }
    SECTION("one byte at a time") {
        const std::string s = "*1\r\n$5\r\nhello\r\n$999999999999\r\n";
        redis_reply_reader r;
        std::vector<std::string> bytes;
        for (char c : s) bytes.emplace_back(1, c);
        auto [v, res] = read_chunks(r, bytes);
        REQUIRE(v.size() == 1);
        CHECK(v[0].elements.at(0).str == "hello");
        CHECK(res == redis_reply_reader::result::error);
        CHECK(r.error().find("bulk string") != std::string::npos);
    }
    SECTION("nested arrays count together, maps count twice") {
        redis_reply_reader r;
        // 2 + 2 * 600000 elements in one reply: each header is within the bound, all together are not.
        auto [v, res] = read_chunks(r, {"*2\r\n*600000\r\n" + std::string(600000 * 4, 'x')});
        CHECK(v.empty());
        // The first 600000 elements are garbage to hiredis: it refuses the stream first.
        CHECK(res == redis_reply_reader::result::error);
        redis_reply_reader r2;
        std::string elements;
        for (int i = 0; i < 600000; ++i) elements += ":1\r\n";
        auto [v2, res2] = read_chunks(r2, {"*2\r\n*600000\r\n" + elements + "*600000\r\n"});
        CHECK(v2.empty());
        CHECK(res2 == redis_reply_reader::result::error);
        CHECK(r2.error().find("more than 1048576 elements") != std::string::npos);
        // RESP3 maps: hiredis 0.14 refuses the type; were it to read them, 2 elements per entry.
        redis_reply_reader r3;
        auto [v3, res3] = read_chunks(r3, {"%600000\r\n"});
        CHECK(res3 == redis_reply_reader::result::error);
    }
    SECTION("the bound is per reply: replies just within it, one after the other, are read") {
        std::string big = "*1048576\r\n";
        for (int i = 0; i < 1048576; ++i) big += ":7\r\n";
        redis_reply_reader r;
        auto [v, res] = read_chunks(r, {big, big.substr(0, 100), big.substr(100)});
        REQUIRE(v.size() == 2);
        CHECK(v[0].elements.size() == 1048576);
        CHECK(v[1].elements.back().integer == 7);
        CHECK(res == redis_reply_reader::result::more);
    }
    SECTION("bulk payloads that look like headers are payload") {
        redis_reply_reader r;
        auto [v, res] = read_chunks(r, {"$13\r\n*9999999999\r\n\r\n", "+after\r\n", "$-1\r\n*-1\r\n*0\r\n:5\r\n"});
        REQUIRE(v.size() == 6);
        CHECK(v[0].str == "*9999999999\r\n");
        CHECK(v[1].str == "after");
        CHECK(v[2].type == redis_value::kind::nil);
        CHECK(v[3].type == redis_value::kind::nil);
        CHECK((v[4].type == redis_value::kind::array && v[4].elements.empty()));
        CHECK(v[5].integer == 5);
        CHECK(res == redis_reply_reader::result::more);
    }
}
