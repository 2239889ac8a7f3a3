// permessage-deflate for self-framed messages: the offer, reading the server's answer, and
// whole-message compression, checked against the examples of RFC 7692 section 7.2.3.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/zlib/inflate_stream.hpp>

#include "permessage_deflate.hpp"

using namespace wsx;

namespace {
std::string bytes(std::initializer_list<int> b) {
    std::string s;
    for (int c : b) s.push_back(static_cast<char>(c));
    return s;
}
deflate_options on(int bits = 15, bool nct = false) { return {.enabled = true, .window_bits = bits, .no_context_takeover = nct}; }
}  // namespace

TEST_CASE("the client offer lets the server pick the window", "[pmd]") {
    CHECK(pmd::client_offer(on()) == "permessage-deflate; client_max_window_bits");
    CHECK(pmd::client_offer(on(10, true)) ==
          "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10; server_no_context_takeover; "
          "client_no_context_takeover");
}

TEST_CASE("server answers: accepted, declined, invalid", "[pmd]") {
    auto a = pmd::parse_answer("", on());
    CHECK(a.status == pmd::answer_status::declined);
    CHECK(pmd::parse_answer("  ", on()).status == pmd::answer_status::declined);

    a = pmd::parse_answer("permessage-deflate", on());
    REQUIRE(a.status == pmd::answer_status::accepted);
    CHECK(a.params.client_max_window_bits == 15);
    CHECK_FALSE(a.params.client_no_context_takeover);
    CHECK_FALSE(a.params.server_no_context_takeover);

    // What python websockets answers by default.
    a = pmd::parse_answer("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", on());
    REQUIRE(a.status == pmd::answer_status::accepted);
    CHECK(a.params.client_max_window_bits == 12);
    CHECK(a.params.server_max_window_bits == 12);

    a = pmd::parse_answer("Permessage-Deflate;Server_No_Context_Takeover; client_no_context_takeover; "
                          "client_max_window_bits=\"11\"",
                          on());
    REQUIRE(a.status == pmd::answer_status::accepted);
    CHECK(a.params.server_no_context_takeover);
    CHECK(a.params.client_no_context_takeover);
    CHECK(a.params.client_max_window_bits == 11);

    // Never more window than offered, and our own no-context-takeover holds whatever the answer.
    a = pmd::parse_answer("permessage-deflate; client_max_window_bits=14", on(10, true));
    REQUIRE(a.status == pmd::answer_status::accepted);
    CHECK(a.params.client_max_window_bits == 10);
    CHECK(a.params.client_no_context_takeover);

    for (const char* bad : {"x-webkit-deflate-frame", "permessage-deflate, permessage-deflate",
                            "permessage-deflate; client_max_window_bits", "permessage-deflate; client_max_window_bits=16",
                            "permessage-deflate; client_max_window_bits=7", "permessage-deflate; server_max_window_bits=7",
                            "permessage-deflate; server_max_window_bits=x", "permessage-deflate; level=9",
                            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                            "permessage-deflate; client_no_context_takeover=1",
                            "permessage-deflate; server_no_context_takeover=\"\"",
                            "permessage-deflate; client_max_window_bits=\"\"", ";;;"}) {
        INFO(bad);
        auto r = pmd::parse_answer(bad, on());
        CHECK(r.status == pmd::answer_status::invalid);
        CHECK_FALSE(r.error.empty());
    }
}

TEST_CASE("extension lists are read element by element", "[pmd]") {
    using params = std::vector<std::pair<std::string, std::optional<std::string>>>;
    auto l = pmd::parse_extensions("a; foo; bar=2, b");
    REQUIRE(l);
    REQUIRE(l->size() == 2);
    CHECK((*l)[0].name == "a");
    CHECK((*l)[0].params == params{{"foo", std::nullopt}, {"bar", "2"}});
    CHECK((*l)[1].name == "b");  // a parameter list belongs to its own element only
    CHECK((*l)[1].params.empty());
    l = pmd::parse_extensions("permessage-deflate;foo, x");
    REQUIRE(l);
    REQUIRE(l->size() == 2);
    CHECK((*l)[0].params == params{{"foo", std::nullopt}});
    // A quoted empty value is a value: not the same as none.
    l = pmd::parse_extensions("a; b=\"\"; c");
    REQUIRE(l);
    CHECK((*l)[0].params == params{{"b", ""}, {"c", std::nullopt}});
    l = pmd::parse_extensions(" , permessage-deflate ; client_max_window_bits = \"10\" ,, y;q=\"a\\\"b\"");
    REQUIRE(l);
    REQUIRE(l->size() == 2);
    CHECK((*l)[0].params == params{{"client_max_window_bits", "10"}});
    CHECK((*l)[1].params == params{{"q", "a\"b"}});
    CHECK(pmd::parse_extensions("")->empty());
    CHECK_FALSE(pmd::parse_extensions("a b"));
    CHECK_FALSE(pmd::parse_extensions("a; =1"));
    CHECK_FALSE(pmd::parse_extensions("a; b=\"open"));
    CHECK_FALSE(pmd::parse_extensions("a;; b"));
    CHECK_FALSE(pmd::parse_extensions("a; b=c d"));
}

TEST_CASE("the server chooses the first offer it can accept", "[pmd]") {
    using sv = std::vector<std::string_view>;
    // Compression off, or nothing offered: no extension.
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate"}, deflate_options{}));
    CHECK_FALSE(pmd::choose_offer(sv{}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"x-webkit-deflate-frame"}, on()));
    auto plain = pmd::choose_offer(sv{"permessage-deflate"}, on());
    REQUIRE(plain);
    CHECK(plain->response == "permessage-deflate");
    CHECK(plain->params.server_max_window_bits == 15);
    // A smaller window of ours: the client is told only when it said it can take one.
    auto small = pmd::choose_offer(sv{"permessage-deflate; client_max_window_bits"}, on(10));
    REQUIRE(small);
    CHECK(small->response == "permessage-deflate; client_max_window_bits=10");
    CHECK(small->params.server_max_window_bits == 10);
    CHECK(pmd::choose_offer(sv{"permessage-deflate"}, on(10))->response == "permessage-deflate");
    // The client limits our window; a value it must have; 8 we cannot compress with.
    auto limited = pmd::choose_offer(sv{"permessage-deflate; server_max_window_bits=11"}, on());
    REQUIRE(limited);
    CHECK(limited->response == "permessage-deflate; server_max_window_bits=11");
    CHECK(limited->params.server_max_window_bits == 11);
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; server_max_window_bits"}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; server_max_window_bits=8"}, on()));
    // Unknown, repeated or out-of-range parameters decline that offer; the next one is taken,
    // in any field.
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; foo"}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; server_no_context_takeover=\"\""}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; client_max_window_bits=\"\""}, on()));
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; client_max_window_bits=16"}, on()));
    auto second = pmd::choose_offer(sv{"permessage-deflate; foo, permessage-deflate; server_no_context_takeover"}, on());
    REQUIRE(second);
    CHECK(second->response == "permessage-deflate; server_no_context_takeover");
    CHECK(second->params.server_no_context_takeover);
    auto other_field = pmd::choose_offer(sv{"x-webkit-deflate-frame", "PerMessage-Deflate"}, on());
    REQUIRE(other_field);
    CHECK(other_field->response == "permessage-deflate");
    // The client's own no-context-takeover is acknowledged and kept; a window the client names
    // for itself is its own business (ours to inflate with 15 anyway), answered only if smaller.
    auto client_nct = pmd::choose_offer(sv{"permessage-deflate; client_no_context_takeover"}, on());
    REQUIRE(client_nct);
    CHECK(client_nct->params.client_no_context_takeover);
    CHECK_FALSE(client_nct->params.server_no_context_takeover);
    CHECK(client_nct->response == "permessage-deflate; client_no_context_takeover");
    auto client_bits = pmd::choose_offer(sv{"permessage-deflate; client_max_window_bits=12"}, on());
    REQUIRE(client_bits);
    CHECK(client_bits->params.client_max_window_bits == 12);
    // A flag with a value is not the flag.
    CHECK_FALSE(pmd::choose_offer(sv{"permessage-deflate; server_no_context_takeover=1"}, on()));
    // No context takeover asked by us applies both ways.
    auto nct = pmd::choose_offer(sv{"permessage-deflate"}, on(15, true));
    REQUIRE(nct);
    CHECK(nct->response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
}

TEST_CASE("every offer wsx's client makes is accepted, and the answer read back as agreed", "[pmd]") {
    for (int client_bits : {9, 12, 15})
        for (bool client_nct : {false, true})
            for (int server_bits : {9, 12, 15})
                for (bool server_nct : {false, true}) {
                    const auto offer = pmd::client_offer(on(client_bits, client_nct));
                    const auto chosen = pmd::choose_offer({offer}, on(server_bits, server_nct));
                    INFO(offer << " / server window " << server_bits << (server_nct ? ", no context takeover" : ""));
                    REQUIRE(chosen);
                    const auto read = pmd::parse_answer(chosen->response, on(client_bits, client_nct));
                    REQUIRE(read.status == pmd::answer_status::accepted);
                    CHECK(chosen->params.server_max_window_bits == std::min(client_bits, server_bits));
                    CHECK(read.params.client_max_window_bits == std::min(client_bits, server_bits));
                    CHECK(read.params.server_no_context_takeover == chosen->params.server_no_context_takeover);
                    CHECK(read.params.client_no_context_takeover == (client_nct || server_nct));
                    // Both sides' codecs then carry messages across, in order.
                    pmd::codec client(read.params, true), server(chosen->params, false);
                    for (std::string msg : {"hello hello hello", "", "hello again"}) {
                        std::string z, back;
                        client.out->compress(msg, z);
                        REQUIRE(server.in->decompress(z, back, 1 << 20));
                        CHECK(back == msg);
                        z.clear();
                        server.out->compress(msg, z);
                        REQUIRE(client.in->decompress(z, back, 1 << 20));
                        CHECK(back == msg);
                    }
                }
}

TEST_CASE("a server may ask the client for a 256-byte window", "[pmd]") {
    // The client's offer names client_max_window_bits without a value: any window from 8 to 15
    // may come back (RFC 7692 7.1.2.2), and 8 is taken.
    const auto a = pmd::parse_answer("permessage-deflate; client_max_window_bits=8", deflate_options{.enabled = true});
    REQUIRE(a.status == pmd::answer_status::accepted);
    CHECK(a.params.client_max_window_bits == 8);
    // What the client then sends refers back to nothing: 200 random letters repeated, which a
    // deflater with a 512-byte window shrinks to little more than the first 200, stay at about
    // 4.7 bits a letter (Huffman coding alone).
    std::string block, text;
    std::mt19937 rng(7);
    for (int i = 0; i < 200; ++i) block += static_cast<char>('a' + rng() % 26);
    for (int i = 0; i < 30; ++i) text += block;
    auto inflates_with_256_bytes = [&](const std::string& z) {
        boost::beast::zlib::inflate_stream zi;
        zi.reset(8);
        std::string in = z + std::string("\x00\x00\xff\xff", 4), out(text.size() + 64, '\0');
        boost::beast::zlib::z_params zs;
        zs.next_in = in.data();
        zs.avail_in = in.size();
        zs.next_out = out.data();
        zs.avail_out = out.size();
        boost::beast::error_code ec;
        zi.write(zs, boost::beast::zlib::Flush::sync, ec);
        out.resize(zs.total_out);
        return !ec && out == text;
    };
    pmd::codec client(a.params, true);
    std::string z;
    client.out->compress(text, z);
    CHECK(z.size() > text.size() / 2);
    CHECK(z.size() < text.size());
    pmd::deflater wider(9, false);
    std::string z9;
    wider.compress(text, z9);
    CHECK(z9.size() < text.size() / 4);
    CHECK(inflates_with_256_bytes(z));
    // ...and the server, inflating with any window, reads it, message after message.
    pmd::codec server(a.params, false);
    for (int i = 0; i < 3; ++i) {
        z.clear();
        client.out->compress(text, z);
        std::string back;
        REQUIRE(server.in->decompress(z, back, 1 << 20));
        CHECK(back == text);
    }
}

TEST_CASE("inflating the RFC 7692 examples", "[pmd]") {
    pmd::inflater in(false);
    std::string out;
    // 7.2.3.1: "Hello", compressed.
    REQUIRE(in.decompress(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), out, 1000));
    CHECK(out == "Hello");
    // 7.2.3.2: the same again, using the context of the first message.
    REQUIRE(in.decompress(bytes({0xf2, 0x00, 0x11, 0x00, 0x00}), out, 1000));
    CHECK(out == "Hello");
    // 7.2.3.3: a stored (uncompressed) block.
    pmd::inflater fresh(false);
    REQUIRE(fresh.decompress(bytes({0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}), out, 1000));
    CHECK(out == "Hello");
    // 7.2.3.4: a final block (BFINAL set) ends the sender's stream; the next message starts afresh.
    pmd::inflater fin(false);
    REQUIRE(fin.decompress(bytes({0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}), out, 1000));
    CHECK(out == "Hello");
    REQUIRE(fin.decompress(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), out, 1000));
    CHECK(out == "Hello");
}

TEST_CASE("a compressed message must be whole deflate blocks", "[pmd]") {
    std::string out;
    // 7.2.3.6: an empty message is 0x00 (an empty stored block's header), not nothing.
    pmd::inflater in(false);
    REQUIRE(in.decompress(bytes({0x00}), out, 1000));
    CHECK(out.empty());
    // No payload at all: with the tail added it is an unfinished stored-block header. Taken as
    // an empty message it would leave the inflater inside that header (the next message then
    // fails, or inflates to garbage); it is refused, and the inflater starts afresh.
    pmd::inflater empty(false);
    CHECK_FALSE(empty.decompress("", out, 1000));
    REQUIRE(empty.decompress(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), out, 1000));
    CHECK(out == "Hello");
    // A message cut inside a block (the "Hello" of 7.2.3.1 without its last byte).
    pmd::inflater cut(false);
    CHECK_FALSE(cut.decompress(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07}), out, 1000));
    REQUIRE(cut.decompress(bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}), out, 1000));
    CHECK(out == "Hello");
}

TEST_CASE("deflating matches the RFC example and round-trips", "[pmd]") {
    std::string z;
    pmd::deflater first(15, false);
    first.compress("Hello", z);
    CHECK(z == bytes({0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}));

    std::mt19937 rng(3);
    for (int bits : {9, 12, 15}) {
        for (bool reset : {false, true}) {
            INFO("window " << bits << (reset ? ", no context takeover" : ""));
            pmd::deflater d(bits, reset);
            pmd::inflater i(reset);
            std::string block(5000, '\0');
            for (auto& c : block) c = static_cast<char>('a' + rng() % 26);
            for (std::string msg : {std::string(), std::string("x"), block + block, std::string(300000, 'q'), block}) {
                z.clear();
                d.compress(msg, z);
                std::string back;
                REQUIRE(i.decompress(z, back, 1u << 20));
                CHECK(back == msg);
            }
        }
    }
}

TEST_CASE("an empty message keeps the receiver in step", "[pmd]") {
    // Found by fuzzing: an empty message right after another one (context kept) compressed to
    // nothing, and the 00 00 ff ff every receiver appends then began a stored block that garbled
    // the next message.
    for (bool reset : {false, true}) {
        INFO((reset ? "no context takeover" : "context takeover"));
        pmd::deflater d(15, reset);
        pmd::inflater i(false);
        for (std::string msg : {"hello hello", "", "", "hello"}) {
            std::string z;
            d.compress(msg, z);
            if (msg.empty()) CHECK(z == bytes({0x00}));  // RFC 7692 section 7.2.3.6
            std::string back;
            REQUIRE(i.decompress(z, back, msg.size()));
            CHECK(back == msg);
        }
    }
}

TEST_CASE("inflating refuses garbage and messages over the limit", "[pmd]") {
    std::string z;
    pmd::deflater d(15, false);
    d.compress(std::string(100000, 'a'), z);
    CHECK(z.size() < 1000);
    pmd::inflater i(false);
    std::string out;
    CHECK_FALSE(i.decompress(z, out, 50000));
    pmd::inflater j(false);
    CHECK_FALSE(j.decompress(bytes({0xff, 0xff, 0xff, 0xff, 0x00}), out, 1000));
}
