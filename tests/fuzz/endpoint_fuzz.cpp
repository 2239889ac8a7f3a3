// Addresses (endpoint.cpp, and the proxy URLs of proxy.cpp): each input is tried as a WebSocket
// URL, a listen address, a proxy URL and an upstream, and "LIST\nHOST" as a NO_PROXY list.
// What a URL yields goes into request lines and header fields (the Host header, CONNECT
// host:port, the request target): it must not be able to break out of them. A parsed URL
// written back with to_string() reads back the same.
// fuzz-options: -max_len=512
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "endpoint.hpp"
#include "fuzz_support.hpp"
#include "proxy.hpp"
#include "proxy_app.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("endpoint_fuzz", what);
}

/// A request-target as it goes on the request line: visible ASCII, no '#'.
bool request_target_ok(std::string_view t) {
    if (t.empty() || t.front() != '/') return false;
    for (unsigned char c : t)
        if (c <= 0x20 || c >= 0x7f || c == '#') return false;
    return true;
}

/// A host as it goes into Host and CONNECT: an IPv6 literal (written in brackets) or a name or
/// IPv4 address made of RFC 3986 reg-name characters, without percent-escapes.
bool host_ok(std::string_view h) {
    if (h.empty()) return false;
    if (h.find(':') != std::string_view::npos) {
        error_code ec;
        net::ip::make_address_v6(std::string(h), ec);
        return !ec;
    }
    for (unsigned char c : h)
        if (!(std::isalnum(c) || std::string_view("-._~!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos))
            return false;
    return true;
}

void ws_url(std::string_view text) {
    std::string error;
    const auto ep = parse_ws_url(text, &error);
    if (!ep) {
        check(!error.empty(), "a URL refused without a reason");
        return;
    }
    check(request_target_ok(ep->target), fmt::format("'{}' gives the request target '{}'", text, ep->target));
    if (ep->is_unix()) {
        check(ep->host.empty(), "a unix socket URL with a host");
    } else {
        check(host_ok(ep->host), fmt::format("'{}' gives the host '{}'", text, ep->host));
        check(ep->port != 0, "port 0 taken");
    }
    // Written back without credentials, it reads back the same.
    std::string again_error;
    const auto again = parse_ws_url(ep->to_string(), &again_error);
    check(again.has_value(), fmt::format("'{}' is written back as '{}', which does not parse: {}", text, ep->to_string(), again_error));
    check(again->tls == ep->tls && again->host == ep->host && again->port == ep->port && again->unix_path == ep->unix_path &&
              again->target == ep->target,
          fmt::format("'{}' is written back as '{}', which reads differently", text, ep->to_string()));
}

void listen_addr(std::string_view text) {
    std::string error;
    const auto a = parse_listen_address(text, &error);
    if (!a) {
        check(!error.empty(), "a listen address refused without a reason");
        return;
    }
    if (!a->unix_path.empty()) {
        check(a->unix_path.size() <= max_unix_path && a->unix_path.find_first_of(std::string_view(":\0", 2)) == std::string::npos,
              "an unusable socket path taken");
    }
}

void proxy_url(std::string_view text) {
    std::string error;
    const auto p = parse_proxy_url(text, &error);
    if (!p) {
        check(!error.empty(), "a proxy URL refused without a reason");
        return;
    }
    check(error.empty(), "a proxy URL taken with an error");
    check(p->port != 0, "proxy port 0 taken");
    check(host_ok(p->host), fmt::format("'{}' gives the proxy host '{}'", text, p->host));
    if (p->type != proxy_config::kind::http) check(p->username.size() <= 255 && p->password.size() <= 255, "SOCKS5 credentials too long");
}

void upstream(std::string_view text) {
    std::string error;
    const auto u = parse_upstream(text, &error);
    if (!u) {
        check(!error.empty(), "an upstream refused without a reason");
        return;
    }
    if (u->tcp) check(u->port != 0, "a tcp upstream on port 0");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    ws_url(text);
    listen_addr(text);
    proxy_url(text);
    upstream(text);
    if (const auto nl = text.find('\n'); nl != std::string_view::npos) {
        const auto host = text.substr(nl + 1);
        no_proxy_matches(text.substr(0, nl), host, 443);
        check(no_proxy_matches("*", host, 443), "'*' does not match everything");
    }
    return 0;
}
