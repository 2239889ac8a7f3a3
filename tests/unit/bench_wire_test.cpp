// The bench hot path's framing and message stamps.
#include <catch2/catch.hpp>

#include <string>

#include "bench.hpp"

using namespace wsx;

TEST_CASE("message stamps round-trip in text and binary form", "[bench]") {
    for (bool binary : {false, true}) {
        std::string buf(message_stamp::size(binary), '\0');
        message_stamp::write(buf.data(), binary, 0x0001'0000'0000'002aULL, 123'456'789'012ULL);
        std::uint64_t seq = 0, t = 0;
        REQUIRE(message_stamp::read(buf, binary, seq, t));
        CHECK(seq == 0x0001'0000'0000'002aULL);
        CHECK(t == 123'456'789'012ULL);
        CHECK_FALSE(message_stamp::read(std::string_view(buf).substr(1), binary, seq, t));
    }
    std::string text(32, '\0');
    message_stamp::write(text.data(), false, 1, 2);
    CHECK(text == "00000000000000010000000000000002");
    text[3] = 'x';
    std::uint64_t seq = 0, t = 0;
    CHECK_FALSE(message_stamp::read(text, false, seq, t));
}

namespace {
// Reads back a client frame the way a server would: parse() unmasks masked frames.
bench_frame::frame parse_all(std::string& wire, std::size_t& used) {
    bench_frame::frame f;
    REQUIRE(bench_frame::parse(wire.data(), wire.size(), 1u << 30, f, used) == bench_frame::parse_status::ok);
    return f;
}
}  // namespace

TEST_CASE("masked frames of every length encoding parse back", "[bench]") {
    for (std::size_t len : {0u, 1u, 125u, 126u, 65535u, 65536u, 100000u}) {
        std::string payload(len, 'x');
        for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<char>('a' + i % 26);
        std::string wire;
        bench_frame::append(wire, 2, payload, 0xdeadbeef);
        CHECK((static_cast<unsigned char>(wire[1]) & 0x80) != 0);  // clients mask
        std::size_t used = 0;
        auto f = parse_all(wire, used);
        CHECK(used == wire.size());
        CHECK(f.opcode == 2);
        CHECK(f.fin);
        CHECK(f.payload == payload);
    }
}

TEST_CASE("stamped frames carry stamp and body", "[bench]") {
    std::string wire;
    bench_frame::append_stamped(wire, false, 7, 99, "hello", 0x01020304);
    bench_frame::append_stamped(wire, true, 8, 100, "", 0x0a0b0c0d);
    std::size_t used = 0;
    auto f = parse_all(wire, used);
    CHECK(f.opcode == 1);
    CHECK(f.payload.size() == 32 + 5);
    CHECK(f.payload.substr(32) == "hello");
    std::uint64_t seq = 0, t = 0;
    REQUIRE(message_stamp::read(f.payload, false, seq, t));
    CHECK(seq == 7);
    CHECK(t == 99);
    std::string rest = wire.substr(used);
    auto g = parse_all(rest, used);
    CHECK(g.opcode == 2);
    REQUIRE(message_stamp::read(g.payload, true, seq, t));
    CHECK(seq == 8);
    CHECK(t == 100);
}

TEST_CASE("frame parser asks for more bytes and rejects bad frames", "[bench]") {
    std::string wire;
    bench_frame::append(wire, 1, std::string(300, 'z'), 42);
    bench_frame::frame f;
    std::size_t used = 0;
    for (std::size_t cut : {0u, 1u, 3u, 7u, 299u}) {
        std::string part = wire.substr(0, cut);
        CHECK(bench_frame::parse(part.data(), part.size(), 1u << 20, f, used) == bench_frame::parse_status::need_more);
    }
    CHECK(bench_frame::parse(wire.data(), wire.size(), 100, f, used) == bench_frame::parse_status::error);  // over the limit

    std::string rsv("\xc1\x00", 2);  // RSV1 without an extension
    CHECK(bench_frame::parse(rsv.data(), rsv.size(), 100, f, used) == bench_frame::parse_status::error);
    std::string long_ping = "\x89\x7e\x00\x80" + std::string(128, 'p');  // control frame over 125 bytes
    CHECK(bench_frame::parse(long_ping.data(), long_ping.size(), 1000, f, used) == bench_frame::parse_status::error);
    std::string bad_op = std::string("\x83\x00", 2);
    CHECK(bench_frame::parse(bad_op.data(), bad_op.size(), 100, f, used) == bench_frame::parse_status::error);

    std::string server = std::string("\x81\x02hi\x88\x02\x03\xe8", 8);  // unmasked text then Close 1000
    REQUIRE(bench_frame::parse(server.data(), server.size(), 100, f, used) == bench_frame::parse_status::ok);
    CHECK(f.payload == "hi");
    CHECK(used == 4);
    REQUIRE(bench_frame::parse(server.data() + 4, 4, 100, f, used) == bench_frame::parse_status::ok);
    CHECK(f.opcode == 8);
    CHECK(f.payload == std::string("\x03\xe8", 2));
}

TEST_CASE("RSV1 marks compressed messages only when permessage-deflate is on", "[bench]") {
    std::string wire;
    bench_frame::append(wire, 2, "zz", 7, true);
    CHECK((static_cast<unsigned char>(wire[0]) & 0x40) != 0);
    bench_frame::frame f;
    std::size_t used = 0;
    CHECK(bench_frame::parse(wire.data(), wire.size(), 100, f, used) == bench_frame::parse_status::error);
    REQUIRE(bench_frame::parse(wire.data(), wire.size(), 100, f, used, true) == bench_frame::parse_status::ok);
    CHECK(f.rsv1);
    CHECK(f.payload == "zz");

    std::string plain("\x81\x01x", 3);
    REQUIRE(bench_frame::parse(plain.data(), plain.size(), 100, f, used, true) == bench_frame::parse_status::ok);
    CHECK_FALSE(f.rsv1);
    std::string rsv2("\xa1\x01x", 3);  // RSV2 is no extension's
    CHECK(bench_frame::parse(rsv2.data(), rsv2.size(), 100, f, used, true) == bench_frame::parse_status::error);
    std::string ping("\xc9\x00", 2);  // control frames are never compressed
    CHECK(bench_frame::parse(ping.data(), ping.size(), 100, f, used, true) == bench_frame::parse_status::error);
}

TEST_CASE("scenario names", "[bench]") {
    CHECK(parse_scenario("fanout") == bench_scenario::fanout);
    CHECK(scenario_name(bench_scenario::connect) == "connect");
    CHECK_FALSE(parse_scenario("nope"));
}
