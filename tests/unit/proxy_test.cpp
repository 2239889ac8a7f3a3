#include "proxy.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <map>

using namespace wsx;
using namespace std::chrono_literals;

namespace {

proxy_config parse_ok(std::string_view url) {
    std::string error;
    auto p = parse_proxy_url(url, &error);
    INFO(url << ": " << error);
    REQUIRE(p);
    CHECK(error.empty());
    return *p;
}

std::string parse_error(std::string_view url) {
    std::string error;
    auto p = parse_proxy_url(url, &error);
    INFO(url);
    CHECK_FALSE(p);
    return error;
}

/// A fake environment for proxy_from_environment.
struct fake_env {
    std::map<std::string, std::string> vars;
    std::function<const char*(const char*)> fn() const {
        return [this](const char* name) -> const char* {
            auto it = vars.find(name);
            return it == vars.end() ? nullptr : it->second.c_str();
        };
    }
};

/// Raw bytes from integers (variadic, since GCC 12 cannot keep an initializer_list in a coroutine).
template <class... Ints>
std::string bytes(Ints... b) {
    return std::string{static_cast<char>(b)...};
}

/// One client coroutine against one fake proxy coroutine on 127.0.0.1:0 in one io_context.
/// Each side's outcome is recorded; the test body checks them after the run, so a failed
/// expectation never leaves a coroutine hanging.
struct harness {
    net::io_context ioc;
    tcp::acceptor acceptor{ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), 0}};
    bool server_done = false, client_done = false;
    std::exception_ptr server_error, client_error;

    template <class Server, class Client>
    void run(Server server, Client client, std::chrono::milliseconds client_deadline = 5s) {
        net::co_spawn(
            ioc,
            [&]() -> net::awaitable<void> {
                auto socket = co_await acceptor.async_accept(net::use_awaitable);
                co_await server(socket);
            },
            [&](std::exception_ptr e) {
                server_error = e;
                server_done = true;
            });
        net::co_spawn(
            ioc,
            [&]() -> net::awaitable<void> {
                beast::tcp_stream stream(ioc);
                stream.expires_after(client_deadline);
                co_await stream.async_connect(acceptor.local_endpoint(), net::use_awaitable);
                co_await client(stream);
            },
            [&](std::exception_ptr e) {
                client_error = e;
                client_done = true;
            });
        ioc.run_for(5s);
        REQUIRE(server_done);
        REQUIRE(client_done);
    }

    /// The wsx::failure the client ended with.
    failure client_failure() const {
        REQUIRE(client_error);
        try {
            std::rethrow_exception(client_error);
        } catch (const failure& f) {
            return f;
        } catch (const std::exception& e) {
            FAIL("expected wsx::failure, got: " << e.what());
        }
        throw std::logic_error("unreachable");
    }
};

net::awaitable<std::string> read_exactly(tcp::socket& s, std::size_t n) {
    std::string out(n, '\0');
    co_await net::async_read(s, net::buffer(out), net::use_awaitable);
    co_return out;
}

net::awaitable<std::string> read_http_head(tcp::socket& s) {
    std::string out;
    co_await net::async_read_until(s, net::dynamic_buffer(out), "\r\n\r\n", net::use_awaitable);
    co_return out;
}

net::awaitable<void> write(tcp::socket& s, std::string data) {
    co_await net::async_write(s, net::buffer(data), net::use_awaitable);
}

net::awaitable<std::string> read_exactly(beast::tcp_stream& s, std::size_t n) {
    std::string out(n, '\0');
    co_await net::async_read(s, net::buffer(out), net::use_awaitable);
    co_return out;
}

net::awaitable<void> write(beast::tcp_stream& s, std::string data) {
    co_await net::async_write(s, net::buffer(data), net::use_awaitable);
}

const std::string user_agent = "User-Agent: wsx/" WSX_VERSION "\r\n";

}  // namespace

TEST_CASE("proxy URLs are parsed", "[proxy]") {
    SECTION("http with default port") {
        auto p = parse_ok("http://proxy.example.com");
        CHECK(p.type == proxy_config::kind::http);
        CHECK(p.host == "proxy.example.com");
        CHECK(p.port == 8080);
        CHECK(p.username.empty());
        CHECK(p.password.empty());
    }
    SECTION("socks default port is 1080") {
        CHECK(parse_ok("socks5://127.0.0.1").port == 1080);
        CHECK(parse_ok("socks5h://localhost").port == 1080);
        CHECK(parse_ok("socks5h://localhost").type == proxy_config::kind::socks5h);
        CHECK(parse_ok("SOCKS5://localhost:9050").type == proxy_config::kind::socks5);
    }
    SECTION("explicit port and trailing slash") {
        auto p = parse_ok("http://Proxy.Local:3128/");
        CHECK(p.host == "proxy.local");
        CHECK(p.port == 3128);
    }
    SECTION("no scheme means http") {
        auto p = parse_ok("10.0.0.1:3128");
        CHECK(p.type == proxy_config::kind::http);
        CHECK(p.host == "10.0.0.1");
        CHECK(p.port == 3128);
    }
    SECTION("IPv6 literal") {
        auto p = parse_ok("socks5://[::1]:1081");
        CHECK(p.host == "::1");
        CHECK(p.port == 1081);
        CHECK(parse_ok("http://[2001:db8::2]").port == 8080);
    }
    SECTION("percent-decoded credentials") {
        auto p = parse_ok("socks5h://us%40er:p%3Ass%2Fw0rd@localhost:1080");
        CHECK(p.username == "us@er");
        CHECK(p.password == "p:ss/w0rd");
        auto q = parse_ok("http://user@proxy:8000");
        CHECK(q.username == "user");
        CHECK(q.password.empty());
        auto r = parse_ok("http://user:p@ss@proxy:8000");
        CHECK(r.username == "user");
        CHECK(r.password == "p@ss");
    }
    SECTION("formatting hides the password") {
        CHECK(to_string(parse_ok("socks5h://user:secret@[::1]:1080")) == "socks5h://user@[::1]:1080");
        CHECK(to_string(parse_ok("proxy:3128")) == "http://proxy:3128");
    }
    SECTION("who resolves names") {
        CHECK(proxy_resolves_names(parse_ok("http://p")));
        CHECK(proxy_resolves_names(parse_ok("socks5h://p")));
        CHECK_FALSE(proxy_resolves_names(parse_ok("socks5://p")));
    }
}

TEST_CASE("invalid proxy URLs are explained", "[proxy]") {
    CHECK(parse_error("https://proxy:443") ==
          "https proxies are not supported; use http:// or socks5://");
    CHECK(parse_error("socks4://proxy:1080") ==
          "socks4 proxies are not supported; use socks5:// or socks5h://");
    CHECK(parse_error("ftp://proxy") ==
          "unsupported proxy scheme 'ftp'; use http://, socks5:// or socks5h://");
    CHECK(parse_error("") == "empty proxy URL");
    CHECK(parse_error("http://:8080") == "missing proxy host in 'http://:8080'");
    CHECK(parse_error("http://user:pass@") == "missing proxy host in 'http://user:pass@'");
    CHECK(parse_error("http://proxy:0") == "invalid proxy port '0' (expected 1-65535)");
    CHECK(parse_error("http://proxy:65536") == "invalid proxy port '65536' (expected 1-65535)");
    CHECK(parse_error("http://proxy:") == "invalid proxy port '' (expected 1-65535)");
    CHECK(parse_error("http://proxy:80x") == "invalid proxy port '80x' (expected 1-65535)");
    CHECK(parse_error("http://proxy/path") == "a proxy URL has no path, query or fragment: '/path'");
    CHECK(parse_error("socks5://::1:1080") ==
          "IPv6 proxy addresses must be in brackets, e.g. socks5://[::1]:1080");
    CHECK(parse_error("socks5://[::1") == "missing ']' after the IPv6 proxy address");
    CHECK(parse_error("socks5://[nothex]:1") == "invalid IPv6 proxy address 'nothex'");
    CHECK(parse_error("http://pro xy:1") == "invalid proxy host 'pro xy'");
    CHECK(parse_error("http://us%4ger:x@proxy") == "invalid percent-encoding in proxy credentials");
    CHECK(parse_error("http://user:x%2@proxy") == "invalid percent-encoding in proxy credentials");
    CHECK(parse_error("socks5://" + std::string(256, 'u') + ":p@proxy") ==
          "SOCKS5 usernames and passwords are limited to 255 bytes");
    // A null error pointer is allowed.
    CHECK_FALSE(parse_proxy_url("https://x", nullptr));
}

TEST_CASE("NO_PROXY matching", "[proxy]") {
    CHECK(no_proxy_matches("*", "anything.example", 80));
    CHECK(no_proxy_matches("example.com", "example.com", 80));
    CHECK(no_proxy_matches("example.com", "a.example.com", 80));
    CHECK(no_proxy_matches(".example.com", "a.b.example.com", 80));
    CHECK(no_proxy_matches(".example.com", "example.com", 80));
    CHECK(no_proxy_matches("*.example.com", "a.example.com", 80));
    CHECK(no_proxy_matches("EXAMPLE.com", "Example.COM.", 80));
    CHECK_FALSE(no_proxy_matches("example.com", "badexample.com", 80));
    CHECK_FALSE(no_proxy_matches("a.example.com", "example.com", 80));
    CHECK_FALSE(no_proxy_matches("", "example.com", 80));
    CHECK_FALSE(no_proxy_matches("*.", "example.com", 80));
    CHECK_FALSE(no_proxy_matches("localhost", "127.0.0.1", 80));  // no special case for loopback
    CHECK_FALSE(no_proxy_matches("example.org", "localhost", 80));

    SECTION("lists") {
        const char* list = " foo.test , example.com,\t10.0.0.0/8 [::1]:9000";
        CHECK(no_proxy_matches(list, "www.example.com", 443));
        CHECK(no_proxy_matches(list, "foo.test", 1));
        CHECK(no_proxy_matches(list, "10.2.3.4", 80));
        CHECK(no_proxy_matches(list, "[::1]", 9000));
        CHECK_FALSE(no_proxy_matches(list, "::1", 9001));
        CHECK_FALSE(no_proxy_matches(list, "bar.test", 80));
        CHECK_FALSE(no_proxy_matches(list, "11.0.0.1", 80));
    }
    SECTION("IP literals match as addresses, not as suffixes") {
        CHECK(no_proxy_matches("127.0.0.1", "127.0.0.1", 80));
        CHECK(no_proxy_matches("::1", "[::1]", 80));
        CHECK(no_proxy_matches("0:0::1", "::1", 80));
        CHECK_FALSE(no_proxy_matches("0.0.1", "127.0.0.1", 80));
        CHECK(no_proxy_matches("192.168.0.0/16", "192.168.44.5", 80));
        CHECK_FALSE(no_proxy_matches("192.168.0.0/16", "192.169.0.1", 80));
        CHECK(no_proxy_matches("192.168.1.128/25", "192.168.1.200", 80));
        CHECK_FALSE(no_proxy_matches("192.168.1.128/25", "192.168.1.100", 80));
        CHECK(no_proxy_matches("fd00::/8", "fd12::1", 80));
        CHECK_FALSE(no_proxy_matches("fd00::/8", "fe12::1", 80));
        CHECK_FALSE(no_proxy_matches("10.0.0.0/8", "fd12::1", 80));
    }
    SECTION("ports") {
        CHECK(no_proxy_matches("example.com:8080", "a.example.com", 8080));
        CHECK_FALSE(no_proxy_matches("example.com:8080", "a.example.com", 8081));
        CHECK(no_proxy_matches("127.0.0.1:9000", "127.0.0.1", 9000));
        CHECK_FALSE(no_proxy_matches("127.0.0.1:9000", "127.0.0.1", 80));
    }
}

TEST_CASE("proxy chosen from the environment", "[proxy]") {
    fake_env env;
    std::string error = "stale";

    SECTION("nothing set") {
        CHECK_FALSE(proxy_from_environment(false, "example.com", 80, env.fn(), &error));
        CHECK(error.empty());
    }
    SECTION("ws uses http_proxy, lower case first") {
        env.vars = {{"http_proxy", "http://lower:1"}, {"HTTP_PROXY", "http://upper:2"},
                    {"https_proxy", "http://secure:3"}};
        auto p = proxy_from_environment(false, "example.com", 80, env.fn(), &error);
        REQUIRE(p);
        CHECK(p->host == "lower");
        env.vars.erase("http_proxy");
        CHECK(proxy_from_environment(false, "example.com", 80, env.fn(), &error)->host == "upper");
    }
    SECTION("wss uses https_proxy, then HTTPS_PROXY") {
        env.vars = {{"http_proxy", "http://plain:1"}, {"HTTPS_PROXY", "socks5h://secure:3"}};
        auto p = proxy_from_environment(true, "example.com", 443, env.fn(), &error);
        REQUIRE(p);
        CHECK(p->host == "secure");
        CHECK(p->type == proxy_config::kind::socks5h);
        env.vars["https_proxy"] = "lower-secure:4";
        CHECK(proxy_from_environment(true, "example.com", 443, env.fn(), &error)->host ==
              "lower-secure");
    }
    SECTION("ALL_PROXY is the fallback, and empty values count as unset") {
        env.vars = {{"https_proxy", ""}, {"ALL_PROXY", "socks5://all:1080"}};
        auto p = proxy_from_environment(true, "example.com", 443, env.fn(), &error);
        REQUIRE(p);
        CHECK(p->host == "all");
        env.vars["all_proxy"] = "socks5://lower-all:1080";
        CHECK(proxy_from_environment(false, "example.com", 80, env.fn(), &error)->host ==
              "lower-all");
    }
    SECTION("NO_PROXY excludes targets") {
        env.vars = {{"ALL_PROXY", "http://p:1"}, {"NO_PROXY", "internal.test,127.0.0.1"}};
        CHECK_FALSE(proxy_from_environment(false, "svc.internal.test", 80, env.fn(), &error));
        CHECK(error.empty());
        CHECK_FALSE(proxy_from_environment(true, "127.0.0.1", 443, env.fn(), &error));
        CHECK(proxy_from_environment(false, "example.com", 80, env.fn(), &error));
        CHECK(proxy_from_environment(false, "localhost", 80, env.fn(), &error));
        env.vars["no_proxy"] = "*";  // lower case wins
        CHECK_FALSE(proxy_from_environment(false, "example.com", 80, env.fn(), &error));
    }
    SECTION("an invalid value names the variable") {
        env.vars = {{"HTTPS_PROXY", "https://p:443"}};
        CHECK_FALSE(proxy_from_environment(true, "example.com", 443, env.fn(), &error));
        CHECK(error == "HTTPS_PROXY: https proxies are not supported; use http:// or socks5://");
    }
}

TEST_CASE("a proxy's answer to CONNECT is judged and its words escaped", "[proxy]") {
    auto p = parse_ok("http://proxy.example:3128");
    auto answer = [](unsigned status, std::string reason) {
        http::response_header<> res;
        res.result(status);
        res.reason(reason);
        return res;
    };
    CHECK_NOTHROW(check_connect_answer(answer(200, "Connection established"), 0, p, "example.com:443"));
    CHECK_THROWS_WITH(check_connect_answer(answer(200, "OK"), 3, p, "example.com:443"),
                      "proxy http://proxy.example:3128 sent 3 unexpected bytes after accepting CONNECT to example.com:443");
    // Found by fuzzing: the reason phrase reached the terminal as it came, C1 controls and
    // bidirectional overrides included.
    CHECK_THROWS_WITH(check_connect_answer(answer(403, "Denied \xc2\x9b" "31m \xe2\x80\xae"), 0, p, "example.com:443"),
                      "proxy refused CONNECT to example.com:443: 403 Denied \\u009b31m \\u202e");
}

TEST_CASE("HTTP CONNECT handshake", "[proxy]") {
    harness h;
    std::string request, tunnel_from_client, tunnel_from_proxy;

    SECTION("success with credentials; the tunnel carries bytes both ways") {
        auto p = parse_ok("http://user:p%40ss@127.0.0.1:1");
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                request = co_await read_http_head(s);
                co_await write(s, "HTTP/1.1 200 Connection established\r\n\r\n");
                tunnel_from_client = co_await read_exactly(s, 4);
                co_await write(s, "pong");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, p, "example.com", 443);
                co_await write(s, "ping");
                tunnel_from_proxy = co_await read_exactly(s, 4);
            });
        CHECK_FALSE(h.server_error);
        CHECK_FALSE(h.client_error);
        CHECK(request == "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n" +
                             user_agent + "Proxy-Authorization: Basic dXNlcjpwQHNz\r\n\r\n");
        CHECK(tunnel_from_client == "ping");
        CHECK(tunnel_from_proxy == "pong");
    }
    SECTION("HTTP/1.0 answer and IPv6 target") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                request = co_await read_http_head(s);
                co_await write(s, "HTTP/1.0 200 OK\r\nVia: test\r\n\r\n");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "::1", 9000);
            });
        CHECK_FALSE(h.client_error);
        CHECK(request == "CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n" + user_agent + "\r\n");
    }
    SECTION("407 is a connect failure with status and reason") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                request = co_await read_http_head(s);
                co_await write(s,
                               "HTTP/1.1 407 Proxy Authentication Required\r\n"
                               "Proxy-Authenticate: Basic realm=\"test\"\r\n"
                               "Content-Length: 10\r\n\r\n0123456789");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "example.com", 80);
            });
        CHECK(request.find("Proxy-Authorization") == std::string::npos);
        auto f = h.client_failure();
        CHECK(f.code() == exit_code::connect);
        CHECK_THAT(f.what(), Catch::StartsWith("proxy refused CONNECT to example.com:80: "
                                               "407 Proxy Authentication Required"));
    }
    SECTION("an empty reason phrase falls back to the standard one") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_http_head(s);
                co_await write(s, "HTTP/1.1 403 \r\n\r\n");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "10.1.1.1", 80);
            });
        CHECK(std::string(h.client_failure().what()) ==
              "proxy refused CONNECT to 10.1.1.1:80: 403 Forbidden");
    }
    SECTION("bytes after a 2xx header are an error") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_http_head(s);
                co_await write(s, "HTTP/1.1 200 Connection established\r\n\r\nearly");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "example.com", 80);
            });
        auto f = h.client_failure();
        CHECK(f.code() == exit_code::connect);
        CHECK_THAT(f.what(), Catch::Contains("sent 5 unexpected bytes after accepting CONNECT"));
    }
    SECTION("a peer that is not an HTTP proxy") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_http_head(s);
                co_await write(s, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "example.com", 80);
            });
        auto f = h.client_failure();
        CHECK(f.code() == exit_code::connect);
        CHECK_THAT(f.what(), Catch::StartsWith("invalid answer from proxy http://127.0.0.1:1"));
    }
    SECTION("a proxy that hangs up") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_http_head(s);
                s.close();
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "example.com", 80);
            });
        CHECK_THAT(h.client_failure().what(),
                   Catch::Contains("closed the connection before answering CONNECT"));
    }
    SECTION("a silent proxy runs into the caller's deadline") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_http_head(s);
                // Wait for the client to give up; the timeout closes its socket.
                std::string rest;
                error_code ec;
                co_await net::async_read(s, net::dynamic_buffer(rest),
                                         net::redirect_error(net::use_awaitable, ec));
                tunnel_from_client = ec == net::error::eof ? "eof" : ec.message();
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await http_connect_handshake(s, parse_ok("http://127.0.0.1:1"), "example.com", 80);
            },
            200ms);
        REQUIRE(h.client_error);
        try {
            std::rethrow_exception(h.client_error);
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == beast::error::timeout);
        }
        CHECK(tunnel_from_client == "eof");
    }
}

TEST_CASE("SOCKS5 handshake", "[proxy]") {
    harness h;
    std::string greeting, auth, request, after;

    SECTION("socks5h without credentials sends the name; the reply is read exactly") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                greeting = co_await read_exactly(s, 3);
                co_await write(s, bytes(5, 0));
                request = co_await read_exactly(s, 4 + 1 + 11 + 2);
                // Reply and the first tunnel bytes in one segment.
                co_await write(s, bytes(5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90) + "hello");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5h://127.0.0.1:1"), "example.com", 443);
                after = co_await read_exactly(s, 5);
            });
        CHECK_FALSE(h.server_error);
        CHECK_FALSE(h.client_error);
        CHECK(greeting == bytes(5, 1, 0));
        CHECK(request == bytes(5, 1, 0, 3, 11) + "example.com" + bytes(1, 0xbb));
        CHECK(after == "hello");
    }
    SECTION("username/password, IPv4 target, domain in the reply") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                greeting = co_await read_exactly(s, 4);
                co_await write(s, bytes(5, 2));
                auth = co_await read_exactly(s, 3 + 4 + 6);
                co_await write(s, bytes(1, 0));
                request = co_await read_exactly(s, 10);
                co_await write(s, bytes(5, 0, 0, 3, 11) + "proxy.local" + bytes(0x12, 0x34) + "hi");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5://user:secret@127.0.0.1:1"),
                                          "127.0.0.1", 9000);
                after = co_await read_exactly(s, 2);
            });
        CHECK_FALSE(h.client_error);
        CHECK(greeting == bytes(5, 2, 0, 2));
        CHECK(auth == bytes(1, 4) + "user" + bytes(6) + "secret");
        CHECK(request == bytes(5, 1, 0, 1, 127, 0, 0, 1, 0x23, 0x28));
        CHECK(after == "hi");
    }
    SECTION("credentials offered but no-auth chosen; IPv6 target and reply") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                greeting = co_await read_exactly(s, 4);
                co_await write(s, bytes(5, 0));
                request = co_await read_exactly(s, 4 + 16 + 2);
                std::string reply = bytes(5, 0, 0, 4) + std::string(15, '\0') + bytes(1, 0, 80);
                co_await write(s, reply + "!");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5h://u:p@127.0.0.1:1"), "[::1]", 80);
                after = co_await read_exactly(s, 1);
            });
        CHECK_FALSE(h.client_error);
        CHECK(greeting == bytes(5, 2, 0, 2));
        CHECK(request == bytes(5, 1, 0, 4) + std::string(15, '\0') + bytes(1, 0, 80));
        CHECK(after == "!");
    }
    SECTION("authentication failure") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_exactly(s, 4);
                co_await write(s, bytes(5, 2));
                co_await read_exactly(s, 3 + 4 + 5);
                co_await write(s, bytes(1, 1));
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5://user:wrong@127.0.0.1:1"),
                                          "example.com", 80);
            });
        auto f = h.client_failure();
        CHECK(f.code() == exit_code::connect);
        CHECK(std::string(f.what()) ==
              "SOCKS5 proxy socks5://user@127.0.0.1:1: authentication failed for user 'user'");
    }
    SECTION("the proxy wants credentials we do not have") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_exactly(s, 3);
                co_await write(s, bytes(5, 0xff));
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5://127.0.0.1:1"), "example.com", 80);
            });
        CHECK_THAT(h.client_failure().what(), Catch::Contains("requires authentication"));
    }
    SECTION("reply code 5 is explained") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_exactly(s, 3);
                co_await write(s, bytes(5, 0));
                co_await read_exactly(s, 10);
                co_await write(s, bytes(5, 5, 0, 1, 0, 0, 0, 0, 0, 0));
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5://127.0.0.1:1"), "127.0.0.1", 9);
            });
        auto f = h.client_failure();
        CHECK(f.code() == exit_code::connect);
        CHECK(std::string(f.what()) == "SOCKS5 proxy socks5://127.0.0.1:1 could not connect to "
                                       "127.0.0.1:9: connection refused by destination");
    }
    SECTION("reply code 2 and 4") {
        int code = GENERATE(2, 4);
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_exactly(s, 3);
                co_await write(s, bytes(5, 0));
                co_await read_exactly(s, 4 + 1 + 7 + 2);
                co_await write(s, bytes(5, code, 0, 1, 0, 0, 0, 0, 0, 0));
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5h://127.0.0.1:1"), "foo.bar", 9);
            });
        CHECK_THAT(h.client_failure().what(),
                   Catch::EndsWith(code == 2 ? "connection not allowed by ruleset"
                                             : "host unreachable"));
    }
    SECTION("a peer that is not a SOCKS5 proxy") {
        h.run(
            [&](tcp::socket& s) -> net::awaitable<void> {
                co_await read_exactly(s, 3);
                co_await write(s, "HTTP/1.1 400 Bad Request\r\n\r\n");
            },
            [&](beast::tcp_stream& s) -> net::awaitable<void> {
                co_await socks5_handshake(s, parse_ok("socks5://127.0.0.1:1"), "example.com", 80);
            });
        CHECK_THAT(h.client_failure().what(), Catch::Contains("did not answer as a SOCKS5 proxy"));
    }
}
