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
          "upgrade rejected by ws://example.com/: HTTP 302 Found (it redirects to wss://example.com/\\x1b[2J: follow it with -L)");
    CHECK(r.location() == "wss://example.com/\x1b[2J");
}

namespace {
endpoint url_of(std::string_view text) {
    std::string err;
    auto u = parse_ws_url(text, &err);
    REQUIRE(u);
    return *u;
}
std::string target_of(std::string_view from, std::string_view location) {
    std::string err;
    auto to = redirect_target(url_of(from), location, &err);
    if (!to) return "error: " + err;
    return to->to_string();
}
}  // namespace

TEST_CASE("only 301, 302, 303, 307 and 308 are followed", "[client]") {
    for (int s : {301, 302, 303, 307, 308}) CHECK(is_followed_redirect(s));
    for (int s : {300, 304, 305, 306, 200, 101, 401}) CHECK_FALSE(is_followed_redirect(s));
}

TEST_CASE("a Location is resolved against the URL that redirected", "[client]") {
    CHECK(target_of("ws://a.test:8080/x/y?q=1", "/ws") == "ws://a.test:8080/ws");
    CHECK(target_of("ws://a.test:8080/x/y?q=1", "z?k=v#frag") == "ws://a.test:8080/x/z?k=v");
    CHECK(target_of("ws://a.test:8080/x/y", "../up") == "ws://a.test:8080/up");
    CHECK(target_of("ws://a.test:8080/x/y", "../../../up/../z") == "ws://a.test:8080/z");
    CHECK(target_of("ws://a.test:8080/x/y", "/..") == "ws://a.test:8080/");
    CHECK(target_of("ws://a.test:8080/x/y", "ws://b.test/../../p?q") == "ws://b.test/p?q");
    CHECK(target_of("ws://a.test:8080/x", "//b.test:9000/p") == "ws://b.test:9000/p");
    CHECK(target_of("wss://a.test/x", "//b.test/p") == "wss://b.test/p");
    CHECK(target_of("ws://a.test/x", "?only=query") == "ws://a.test/x?only=query");
    CHECK(target_of("ws://a.test/", "wss://b.test:8443/s") == "wss://b.test:8443/s");
}

TEST_CASE("a Location's host that starts like an IPv4 address stays whole", "[client]") {
    // Found by fuzzing: resolving ws://127.1.1.12ps:7/.. took 127.1.1.12 for the host (port 80),
    // and "127.1.1.12ps:7.." gave port 7 and a path "..".
    CHECK(target_of("ws://a.test/", "ws://10.0.0.1.nip.io:7/p") == "ws://10.0.0.1.nip.io:7/p");
    CHECK(target_of("ws://10.0.0.1.nip.io:7/x/", "y") == "ws://10.0.0.1.nip.io:7/x/y");
    CHECK(target_of("ws://a.test/", "ws://127.1.1.12ps:7/..") == "ws://127.1.1.12ps:7/");
    CHECK(target_of("ws://a.test/", "ws://127.1.1.12ps:7..").rfind("error: the Location 'ws://127.1.1.12ps:7..' is not a URL", 0) == 0);
}

TEST_CASE("a relative Location from a unix socket cannot climb above the root", "[client]") {
    const auto from = url_of("ws+unix:///tmp/s.sock:/a/b");
    std::string err;
    for (const char* loc : {"../../x", "/../x", "../../../x?y=1"}) {
        INFO(loc);
        auto to = redirect_target(from, loc, &err);
        REQUIRE(to);
        CHECK(to->unix_path == "/tmp/s.sock");
        CHECK(to->target.rfind("/x", 0) == 0);
    }
}

TEST_CASE("http and https in a Location become ws and wss", "[client]") {
    CHECK(target_of("ws://a.test/", "http://b.test/p") == "ws://b.test/p");
    CHECK(target_of("ws://a.test/", "HTTPS://b.test/p") == "wss://b.test/p");
    CHECK(target_of("wss://a.test/", "http://b.test:81/") == "ws://b.test:81/");
    CHECK(url_of("ws://a.test/").port == 80);
    std::string err;
    auto to = redirect_target(url_of("ws://a.test/"), "https://b.test/", &err);
    REQUIRE(to);
    CHECK(to->tls);
    CHECK(to->port == 443);
}

TEST_CASE("a Location that is no usable URL is refused with a reason", "[client]") {
    CHECK(target_of("ws://a.test/", "ftp://b.test/") ==
          "error: the Location 'ftp://b.test/' is not a ws://, wss://, http:// or https:// URL");
    CHECK(target_of("ws://a.test/", "http://[bad/").rfind("error: the Location 'http://[bad/' is not a URL", 0) == 0);
    CHECK(target_of("ws://a.test/", "\x1b[2J").rfind("error: the Location '\\x1b[2J' is not a URL", 0) == 0);
}

TEST_CASE("a relative Location from a unix socket stays on the socket", "[client]") {
    const auto from = url_of("ws+unix:///tmp/s.sock:/a/b");
    std::string err;
    auto to = redirect_target(from, "c?x=1", &err);
    REQUIRE(to);
    CHECK(to->unix_path == "/tmp/s.sock");
    CHECK(to->target == "/a/c?x=1");
    auto away = redirect_target(from, "ws://h.test:1/", &err);
    REQUIRE(away);
    CHECK_FALSE(away->is_unix());
    CHECK(away->to_string() == "ws://h.test:1/");
}

TEST_CASE("credentials go only to the original host and port", "[client]") {
    client_options o;
    o.url = url_of("ws://user:pw@a.test:8080/x");
    o.basic_auth = "u:p";
    o.token = "t";
    o.token_query = "access";
    o.cookies = {"k=v"};
    o.host_override = "front.test";
    o.tls.sni = "front.test";
    o.headers = {{"authorization", "X"}, {"COOKIE", "c=1"}, {"X-Trace", "1"}};

    const auto same = redirected_options(o, url_of("ws://A.test:8080/y"));
    CHECK(same.url.target == "/y");
    CHECK(same.url.username == "user");
    CHECK(same.url.password == "pw");
    CHECK(same.basic_auth == "u:p");
    CHECK(same.token == "t");
    CHECK(same.cookies.size() == 1);
    CHECK(same.headers.size() == 3);

    for (auto to : {"ws://b.test:8080/y", "ws://a.test:8081/y"}) {
        const auto other = redirected_options(o, url_of(to));
        CHECK(other.url.username.empty());
        CHECK(other.url.password.empty());
        CHECK(other.basic_auth.empty());
        CHECK(other.token.empty());
        CHECK(other.token_query.empty());
        CHECK(other.cookies.empty());
        CHECK(other.host_override.empty());
        CHECK(other.tls.sni.empty());
        REQUIRE(other.headers.size() == 1);
        CHECK(other.headers[0].first == "X-Trace");
        const auto req = upgrade_request(other, other.url, "key");
        CHECK(req.find(http::field::authorization) == req.end());
        CHECK(req.find(http::field::cookie) == req.end());
        CHECK(req.target() == "/y");
    }
    // user:pass in the Location itself is the new host's own.
    const auto own = redirected_options(o, url_of("ws://them:theirs@b.test/"));
    CHECK(own.url.username == "them");
    CHECK(own.basic_auth.empty());
}

TEST_CASE("credentials of a wss:// URL never follow a redirect to ws://, even on the same host and port", "[client]") {
    client_options o;
    o.url = url_of("wss://user:pw@a.test:8443/x");
    o.basic_auth = "u:p";
    o.token = "t";
    o.cookies = {"k=v"};
    o.headers = {{"Authorization", "X"}, {"X-Trace", "1"}};

    const auto clear = redirected_options(o, url_of("ws://a.test:8443/y"));
    CHECK(clear.url.username.empty());
    CHECK(clear.basic_auth.empty());
    CHECK(clear.token.empty());
    CHECK(clear.cookies.empty());
    REQUIRE(clear.headers.size() == 1);
    CHECK(clear.headers[0].first == "X-Trace");
    const auto req = upgrade_request(clear, clear.url, "key");
    CHECK(req.find(http::field::authorization) == req.end());

    const auto kept = redirected_options(o, url_of("wss://a.test:8443/y"));
    CHECK(kept.token == "t");
    CHECK(kept.basic_auth == "u:p");
    CHECK(kept.headers.size() == 2);
}
