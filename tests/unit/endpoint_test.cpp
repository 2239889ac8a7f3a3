#include <catch2/catch.hpp>

#include "client.hpp"
#include "endpoint.hpp"

using namespace wsx;

TEST_CASE("parse_listen_address takes ports, hosts and IPv6 literals", "[endpoint]") {
    std::string err;
    auto a = parse_listen_address("9000", &err);
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 9000);
    CHECK(a->unix_path.empty());
    a = parse_listen_address("0.0.0.0:0", &err);
    REQUIRE(a);
    CHECK((a->host == "0.0.0.0" && a->port == 0));
    a = parse_listen_address("[::1]:8443", &err);
    REQUIRE(a);
    CHECK((a->host == "::1" && a->port == 8443));
    a = parse_listen_address("ws://localhost:81/", &err);
    REQUIRE(a);
    CHECK((a->host == "localhost" && a->port == 81));
    CHECK_FALSE(parse_listen_address("::1:80", &err));
    CHECK_FALSE(parse_listen_address("host:99999", &err));
}

TEST_CASE("parse_listen_address takes unix:PATH in the form clients name it", "[endpoint]") {
    std::string err;
    auto a = parse_listen_address("unix:/tmp/wsx.sock", &err);
    REQUIRE(a);
    CHECK(a->unix_path == "/tmp/wsx.sock");
    CHECK(a->unix_mode == -1);
    // The same path in a client URL parses back to it.
    auto url = parse_ws_url("ws+unix://" + a->unix_path + ":/", &err);
    REQUIRE(url);
    CHECK(url->unix_path == a->unix_path);
    CHECK(url->target == "/");

    a = parse_listen_address("UNIX:relative/w.sock", &err);
    REQUIRE(a);
    CHECK(a->unix_path == "relative/w.sock");

    CHECK_FALSE(parse_listen_address("unix:", &err));
    CHECK_THAT(err, Catch::Contains("unix:/tmp/wsx.sock"));
    CHECK_FALSE(parse_listen_address("unix:/tmp/a:b.sock", &err));
    CHECK_THAT(err, Catch::Contains("cannot contain ':'"));
    CHECK_FALSE(parse_listen_address(std::string("unix:/tmp/a\0b", 13), &err));
    CHECK_THAT(err, Catch::Contains("NUL"));

    const std::string longest = "/" + std::string(max_unix_path - 1, 'x');
    CHECK(parse_listen_address("unix:" + longest, &err));
    CHECK_FALSE(parse_listen_address("unix:" + longest + "x", &err));
    CHECK_THAT(err, Catch::Contains("108 bytes, the system allows 107"));
}

TEST_CASE("parse_listen_address answers a ws+unix:// listen address with the spelling it takes", "[endpoint]") {
    std::string err;
    CHECK_FALSE(parse_listen_address("ws+unix:///run/a.sock:/chat", &err));
    CHECK(err ==
          "invalid listen address 'ws+unix:///run/a.sock:/chat': listen on a unix socket with unix:/run/a.sock "
          "(clients then connect to ws+unix:///run/a.sock:/)");
    CHECK_FALSE(parse_listen_address("wss+unix://", &err));
    CHECK_THAT(err, Catch::Contains("unix:/path/to.sock"));
}

TEST_CASE("Sec-WebSocket-Accept is computed as RFC 6455 prescribes", "[client]") {
    // The worked example of RFC 6455 section 1.3.
    CHECK(sec_websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // Keys that are not 24 characters still hash whole (a server may see any key).
    CHECK(sec_websocket_accept("") == "Kfh9QIsMVZcl6xEPYxPHzW8SZ8w=");
    CHECK(sec_websocket_accept("x") != sec_websocket_accept("y"));
    const std::string key = make_sec_websocket_key();
    CHECK(key.size() == 24);
    CHECK(sec_websocket_accept(key).size() == 28);
}

TEST_CASE("a URL's host and resource cannot break out of the request", "[endpoint]") {
    // Found by fuzzing: %XX escapes in the host were decoded into characters the Host header and
    // a proxy's CONNECT line cannot hold, and the resource of a ws+unix:// URL went into the
    // request line as written, blanks and controls included.
    std::string err;
    CHECK_FALSE(parse_ws_url("ws://0%40u./", &err));
    CHECK_THAT(err, Catch::Contains("the host '0@u.' holds characters no host name can"));
    CHECK_FALSE(parse_ws_url("ws://evil%0d%0aX-Injected:%20y/", &err));
    CHECK_FALSE(parse_ws_url("ws://a%2Fb/", &err));
    auto ep = parse_ws_url("ws://ex%61mple.com/", &err);
    REQUIRE(ep);
    CHECK(ep->host == "example.com");
    CHECK_FALSE(parse_ws_url("ws+unix:///tmp/wsx.sock:/path\x1fq", &err));
    CHECK_THAT(err, Catch::Contains("is not a valid path"));
    CHECK_FALSE(parse_ws_url("ws+unix:///tmp/wsx.sock:/a b HTTP/1.1", &err));
    ep = parse_ws_url("ws+unix:///tmp/wsx.sock:/a%20b?x=1", &err);
    REQUIRE(ep);
    CHECK(ep->target == "/a%20b?x=1");
}

TEST_CASE("a host name that starts like an IPv4 address is a name", "[endpoint]") {
    // Found by fuzzing: the URL parser took "10.0.0.1" for the host of ws://10.0.0.1.nip.io/ and
    // ".nip.io/" for the path, so the connection went to 10.0.0.1 with a wrong Host and target.
    std::string err;
    auto ep = parse_ws_url("ws://10.0.0.1.nip.io:8080/x?y", &err);
    REQUIRE(ep);
    CHECK(ep->host == "10.0.0.1.nip.io");
    CHECK(ep->port == 8080);
    CHECK(ep->target == "/x?y");
    ep = parse_ws_url("user@1.2.3.4x", &err);
    REQUIRE(ep);
    CHECK(ep->host == "1.2.3.4x");
    CHECK(ep->target == "/");
    ep = parse_ws_url("ws://1.2.3.4:81/a", &err);
    REQUIRE(ep);
    CHECK((ep->host == "1.2.3.4" && ep->port == 81 && ep->target == "/a"));
}

TEST_CASE("a port is digits up to the end of the authority", "[endpoint]") {
    // Boost.URL reads "7x/" after "host:" as port 7 and path "x/": the connection went to port
    // 7. The authority runs to the first '/', '?' or '#'; anything else in it is refused.
    std::string err;
    for (const char* url : {"ws://127.0.0.1:7x/", "ws://localhost:1..", "ws://10.0.0.1.nip.io:1x", "ws://[::1]x/",
                            "127.0.0.1:80a"}) {
        INFO(url);
        CHECK_FALSE(parse_ws_url(url, &err));
        CHECK(err.find("the host and port end at the first '/', '?' or '#'") != std::string::npos);
    }
    for (const char* url : {"ws://127.0.0.1:7?x", "ws://127.0.0.1:7#x", "ws://127.0.0.1:7", "ws://h:7/"}) {
        INFO(url);
        auto ep = parse_ws_url(url, &err);
        REQUIRE(ep);
        CHECK(ep->port == 7);
    }
}

TEST_CASE("an IPv6 literal is a host", "[endpoint]") {
    // The check that a host holds only host-name characters must not refuse the address of a
    // bracketed IPv6 literal.
    std::string err;
    auto ep = parse_ws_url("ws://[::1]:8080/x", &err);
    REQUIRE(ep);
    CHECK((ep->host == "::1" && ep->port == 8080 && ep->target == "/x"));
    ep = parse_ws_url("wss://[2001:db8::7]/", &err);
    REQUIRE(ep);
    CHECK((ep->host == "2001:db8::7" && ep->port == 443 && ep->tls));
}
