#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "event_json.hpp"

using namespace std::string_literals;
using wsx::ws_event;

namespace {
const std::string ts = "2024-11-27T12:59:05.123456Z";
}

TEST_CASE("rfc3339_utc: UTC, microseconds, zero-padded", "[event_json]") {
    using namespace std::chrono;
    // In a local zone with a half-hour offset, so that local time cannot pass for UTC.
    const char* old_tz = std::getenv("TZ");
    const std::optional<std::string> saved = old_tz ? std::optional<std::string>(old_tz) : std::nullopt;
    setenv("TZ", "America/St_Johns", 1);
    tzset();
    struct restore_tz {
        const std::optional<std::string>& saved;
        ~restore_tz() {
            if (saved) setenv("TZ", saved->c_str(), 1);
            else unsetenv("TZ");
            tzset();
        }
    } restore{saved};
    CHECK(wsx::rfc3339_utc(system_clock::time_point{}) == "1970-01-01T00:00:00.000000Z");
    const auto t = system_clock::time_point{seconds{1732712345} + microseconds{123456}};
    CHECK(wsx::rfc3339_utc(t) == "2024-11-27T12:59:05.123456Z");
    CHECK(wsx::rfc3339_utc(system_clock::time_point{seconds{1732712345} + microseconds{7}}) ==
          "2024-11-27T12:59:05.000007Z");
    // Before 1970 the fraction still counts forward from the second.
    CHECK(wsx::rfc3339_utc(system_clock::time_point{microseconds{-1}}) == "1969-12-31T23:59:59.999999Z");
}

TEST_CASE("to_event_json: messages", "[event_json]") {
    ws_event e{.type = "text", .dir = "in", .conn = {}, .data = "hello", .code = {}, .reason = {}, .ts = ts};
    CHECK(wsx::to_event_json(e) ==
          R"({"ts":"2024-11-27T12:59:05.123456Z","dir":"in","type":"text","len":5,"encoding":"utf8","data":"hello"})"
          "\n");

    const std::string bytes = "\x00\xff"s;
    e = {.type = "binary", .dir = "out", .conn = 3, .data = bytes, .code = {}, .reason = {}, .ts = ts};
    CHECK(wsx::to_event_json(e) ==
          R"({"ts":"2024-11-27T12:59:05.123456Z","conn":3,"dir":"out","type":"binary","len":2,"encoding":"base64","data":"AP8="})"
          "\n");

    e.data = "abc";  // binary is base64 even when the bytes happen to be text
    CHECK(wsx::to_event_json(e).find(R"("len":3,"encoding":"base64","data":"YWJj"})") != std::string::npos);

    e.type = "text";  // a text payload that is not UTF-8 cannot be a JSON string
    e.data = "a\xff";
    CHECK(wsx::to_event_json(e).find(R"("type":"text","len":2,"encoding":"base64","data":"Yf8="})") != std::string::npos);

    e.data = "";  // an empty message still has its data
    e.dir = {};
    e.conn.reset();
    CHECK(wsx::to_event_json(e) ==
          R"({"ts":"2024-11-27T12:59:05.123456Z","type":"text","len":0,"encoding":"utf8","data":""})"
          "\n");

    e.data = "line\n\"q\"\x1b";
    CHECK(wsx::to_event_json(e).find(R"("encoding":"utf8","data":"line\n\"q\"\u001b"})") != std::string::npos);
}

TEST_CASE("to_event_json: control frames and other events", "[event_json]") {
    ws_event ping{.type = "ping", .dir = "out", .conn = {}, .data = "p1", .code = {}, .reason = {}, .ts = ts};
    CHECK(wsx::to_event_json(ping) ==
          R"({"ts":"2024-11-27T12:59:05.123456Z","dir":"out","type":"ping","len":2,"encoding":"utf8","data":"p1"})"
          "\n");
    const std::string high = "\x80"s;
    ping.type = "pong";
    ping.data = high;
    CHECK(wsx::to_event_json(ping).find(R"("type":"pong","len":1,"encoding":"base64","data":"gA=="})") !=
          std::string::npos);

    ws_event close{.type = "close", .dir = "in", .conn = {}, .data = {}, .code = 4000, .reason = "bye", .ts = ts};
    CHECK(wsx::to_event_json(close) ==
          R"({"ts":"2024-11-27T12:59:05.123456Z","dir":"in","type":"close","code":4000,"reason":"bye"})"
          "\n");
    close.code.reset();  // a Close without a code
    close.reason = {};
    CHECK(wsx::to_event_json(close) == R"({"ts":"2024-11-27T12:59:05.123456Z","dir":"in","type":"close","reason":""})"
                                       "\n");

    ws_event open{.type = "open", .dir = "in", .conn = {}, .data = {}, .code = {}, .reason = {}, .ts = ts};
    CHECK(wsx::to_event_json(open) == R"({"ts":"2024-11-27T12:59:05.123456Z","dir":"in","type":"open"})"
                                      "\n");
}

TEST_CASE("to_event_json: always one line of valid JSON that gives the payload back", "[event_json]") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    for (const char* type : {"text", "binary", "ping"}) {
        const ws_event e{.type = type, .dir = "up", .conn = 1, .data = all, .code = {}, .reason = {}, .ts = ts};
        const auto line = wsx::to_event_json(e);
        REQUIRE(line.back() == '\n');
        CHECK(line.find('\n') == line.size() - 1);
        const auto j = nlohmann::json::parse(line);
        CHECK(j["encoding"] == "base64");
        CHECK(j["len"] == 256);
        CHECK(wsx::base64_decode(j["data"].get<std::string>()).value_or("") == all);
    }
}

TEST_CASE("to_event_json: a close reason that is not UTF-8 still makes valid JSON", "[event_json]") {
    const ws_event e{.type = "close", .dir = "in", .conn = {}, .data = {}, .code = 4001, .reason = "bad \xff reason",
                     .ts = ts};
    const auto j = nlohmann::json::parse(wsx::to_event_json(e));
    CHECK(j["code"] == 4001);
    CHECK(j["reason"] == "bad \xef\xbf\xbd reason");
    CHECK(j["ts"] == ts);
}
