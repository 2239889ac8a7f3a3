#include <catch2/catch.hpp>

#include "client.hpp"

using namespace wsx;

namespace {
endpoint example() {
    endpoint url;
    url.host = "example.com";
    url.port = 80;
    return url;
}
}  // namespace

TEST_CASE("a refused upgrade names the status, the reason and the first line of the body", "[client]") {
    http::response<http::string_body> res{http::status::unauthorized, 11};
    res.set(http::field::www_authenticate, "Bearer realm=\"wsx\"");
    res.set(http::field::retry_after, "1");
    res.set(http::field::server, "x");
    res.body() = "missing token\nsecond line";
    const auto r = upgrade_refusal(res, example());
    CHECK(r.status() == 401);
    CHECK(std::string(r.what()) == "upgrade rejected by ws://example.com/: HTTP 401 Unauthorized: missing token");
    REQUIRE(r.fields().size() == 2);
    CHECK(r.fields()[0].first == "WWW-Authenticate");
    CHECK(r.fields()[1].first == "Retry-After");
}

TEST_CASE("a refused upgrade shows the server's reason phrase escaped", "[client]") {
    // Found by fuzzing: the reason phrase went to the terminal as the server wrote it (Beast lets
    // through bytes above 0x7f: C1 controls, bidirectional overrides, invalid UTF-8).
    http::response<http::string_body> res{http::status::service_unavailable, 11};
    res.reason("Busy \xe2\x80\xae \xc2\x9b" "2J \xff");
    const auto r = upgrade_refusal(res, example());
    CHECK(std::string(r.what()) == "upgrade rejected by ws://example.com/: HTTP 503 Busy \\u202e \\u009b2J \\xff");
}

TEST_CASE("a redirect says where it points", "[client]") {
    http::response<http::string_body> res{http::status::found, 11};
    res.set(http::field::location, "wss://example.com/\x1b[2J");
    const auto r = upgrade_refusal(res, example());
    CHECK(std::string(r.what()) ==
          "upgrade rejected by ws://example.com/: HTTP 302 Found (it redirects to wss://example.com/\\x1b[2J: connect to that URL instead)");
}
