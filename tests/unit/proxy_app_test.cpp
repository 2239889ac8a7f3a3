#include <catch2/catch.hpp>

#include "proxy_app.hpp"
#include "tap.hpp"

using wsx::format_tap_line;
using wsx::rewrite_target;
using wsx::tap_direction;
using wsx::tap_format;

TEST_CASE("rewrite_target strips the prefix and prepends the upstream path", "[proxy_app]") {
    CHECK(rewrite_target("/chat?x=1", "", "/") == "/chat?x=1");
    CHECK(rewrite_target("/api/chat?x=1", "/api", "/") == "/chat?x=1");
    CHECK(rewrite_target("/api/chat", "/api/", "/") == "/chat");
    CHECK(rewrite_target("/api", "/api", "/") == "/");
    CHECK(rewrite_target("/apix/chat", "/api", "/") == "/apix/chat");  // not at a segment boundary
    CHECK(rewrite_target("/chat?a=b", "", "/v2") == "/v2/chat?a=b");
    CHECK(rewrite_target("/", "", "/v2/") == "/v2");
    CHECK(rewrite_target("/api/x", "/api", "/base") == "/base/x");
}

TEST_CASE("rewrite_target keeps the upstream URL's query and the client's", "[proxy_app]") {
    CHECK(rewrite_target("/x?c=2", "", "/a?b=1") == "/a/x?b=1&c=2");
    CHECK(rewrite_target("/x", "", "/a?b=1") == "/a/x?b=1");
    CHECK(rewrite_target("/?c=2", "", "/?b=1") == "/?b=1&c=2");
    CHECK(rewrite_target("/", "", "/?b=1") == "/?b=1");
    CHECK(rewrite_target("/api/x?c=2", "/api", "/v2?key=k") == "/v2/x?key=k&c=2");
    CHECK(rewrite_target("/x?", "", "/a") == "/a/x");
}

TEST_CASE("upstream URLs: ws, wss and tcp", "[proxy_app]") {
    std::string err;
    auto t = wsx::parse_upstream("tcp://127.0.0.1:5900", &err);
    REQUIRE(t);
    CHECK(t->tcp);
    CHECK(t->port == 5900);
    auto w = wsx::parse_upstream("wss://example.com/ws", &err);
    REQUIRE(w);
    CHECK_FALSE(w->tcp);
    CHECK(w->url.tls);
    CHECK(w->url.target == "/ws");
    auto u = wsx::parse_upstream("ws+unix:///run/app.sock:/ws", &err);
    REQUIRE(u);
    CHECK_FALSE(u->tcp);
    CHECK(u->url.unix_path == "/run/app.sock");
    CHECK(u->url.target == "/ws");
    CHECK_FALSE(wsx::parse_upstream("wss+unix:///run/app.sock", &err));
    CHECK_FALSE(wsx::parse_upstream("http://x:1", &err));
    CHECK_FALSE(wsx::parse_upstream("tcp://nohost", &err));
}

TEST_CASE("tap lines in text, hex and ndjson", "[proxy_app]") {
    const std::string ts = "2026-01-02T03:04:05.000006Z";
    CHECK(format_tap_line(tap_format::text, ts, 7, tap_direction::to_upstream, "text", "a\nb\\") ==
          ts + " #7 > text a\\nb\\\\\n");
    CHECK(format_tap_line(tap_format::text, ts, 7, tap_direction::to_client, "binary", std::string("\x00\xff", 2)) ==
          ts + " #7 < binary \\x00\\xff\n");
    CHECK(format_tap_line(tap_format::hex, ts, 1, tap_direction::to_client, "text", "AB") == ts + " #1 < text 4142\n");
    // ndjson is the event format of connect --jsonl, with the connection's number and up/down.
    CHECK(format_tap_line(tap_format::ndjson, ts, 2, tap_direction::to_upstream, "text", "hi") ==
          R"({"ts":")" + ts + R"(","conn":2,"dir":"up","type":"text","len":2,"encoding":"utf8","data":"hi"})" "\n");
    // Text that is not UTF-8 is base64 rather than invalid JSON.
    CHECK(format_tap_line(tap_format::ndjson, ts, 2, tap_direction::to_client, "text", "\xff") ==
          R"({"ts":")" + ts + R"(","conn":2,"dir":"down","type":"text","len":1,"encoding":"base64","data":"/w=="})" "\n");
    CHECK(format_tap_line(tap_format::ndjson, ts, 2, tap_direction::to_client, "binary", "ab") ==
          R"({"ts":")" + ts + R"(","conn":2,"dir":"down","type":"binary","len":2,"encoding":"base64","data":"YWI="})" "\n");
}

TEST_CASE("tap close records: text shows the code, hex the frame payload, ndjson code and reason", "[proxy_app]") {
    const std::string ts = "2026-01-02T03:04:05.000006Z";
    using wsx::format_tap_close;
    CHECK(format_tap_close(tap_format::text, ts, 3, tap_direction::to_upstream, 4001, "r") == ts + " #3 > close 4001 r\n");
    CHECK(format_tap_close(tap_format::hex, ts, 3, tap_direction::to_upstream, 4001, "r") == ts + " #3 > close 0fa172\n");
    CHECK(format_tap_close(tap_format::ndjson, ts, 3, tap_direction::to_client, 1000, "") ==
          R"({"ts":")" + ts + R"(","conn":3,"dir":"down","type":"close","code":1000,"reason":""})" "\n");
    CHECK(format_tap_close(tap_format::ndjson, ts, 3, tap_direction::to_upstream, 4001, "r") ==
          R"({"ts":")" + ts + R"(","conn":3,"dir":"up","type":"close","code":4001,"reason":"r"})" "\n");
    // A Close without a code has an empty payload.
    CHECK(format_tap_close(tap_format::text, ts, 3, tap_direction::to_client, 1005, "") == ts + " #3 < close \n");
    CHECK(format_tap_close(tap_format::hex, ts, 3, tap_direction::to_client, 1005, "") == ts + " #3 < close \n");
    CHECK(format_tap_close(tap_format::ndjson, ts, 3, tap_direction::to_client, 1005, "") ==
          R"({"ts":")" + ts + R"(","conn":3,"dir":"down","type":"close","reason":""})" "\n");
}

