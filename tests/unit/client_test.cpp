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

TEST_CASE("a redirect says where it points", "[client]") {
    http::response<http::string_body> res{http::status::found, 11};
    res.set(http::field::location, "wss://example.com/\x1b[2J");
    const auto r = upgrade_refusal(res, example());
    CHECK(std::string(r.what()) ==
          "upgrade rejected by ws://example.com/: HTTP 302 Found (it redirects to wss://example.com/\\x1b[2J: connect to that URL instead)");
}
