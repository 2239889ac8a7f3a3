// The bench hot path's framing and message stamps.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "bench.hpp"
#include "frame_reader.hpp"

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

TEST_CASE("stamped frames carry stamp and body, and read back as a server reads them", "[bench]") {
    std::string wire;
    bench_frame::append_stamped(wire, false, 7, 99, "hello", 0x01020304);
    bench_frame::append_stamped(wire, true, 8, 100, "", 0x0a0b0c0d);
    bench_frame::append_stamped(wire, true, 9, 101, std::string(70000, 'b'), 0x0a0b0c0e);
    frame_reader r(1 << 20, true);  // client frames are masked
    std::vector<std::pair<bool, std::string>> got;
    for (std::size_t used = 0; used < wire.size();) {
        frame_event ev;
        used += r.next(wire.data() + used, wire.size() - used, ev);
        REQUIRE(ev.kind == frame_event::message);
        got.emplace_back(ev.binary, std::string(ev.data()));
    }
    REQUIRE(got.size() == 3);
    std::uint64_t seq = 0, t = 0;
    CHECK_FALSE(got[0].first);
    CHECK(got[0].second.size() == 32 + 5);
    CHECK(got[0].second.substr(32) == "hello");
    REQUIRE(message_stamp::read(got[0].second, false, seq, t));
    CHECK((seq == 7 && t == 99));
    CHECK(got[1].first);
    REQUIRE(message_stamp::read(got[1].second, true, seq, t));
    CHECK((seq == 8 && t == 100));
    REQUIRE(message_stamp::read(got[2].second, true, seq, t));
    CHECK((seq == 9 && t == 101));
    CHECK(got[2].second.substr(16) == std::string(70000, 'b'));
}

TEST_CASE("scenario names", "[bench]") {
    CHECK(parse_scenario("fanout") == bench_scenario::fanout);
    CHECK(scenario_name(bench_scenario::connect) == "connect");
    CHECK_FALSE(parse_scenario("nope"));
}
