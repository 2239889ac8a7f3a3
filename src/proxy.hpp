#pragma once
/// Outbound proxies for the client: proxy URLs, the curl-compatible environment
/// variables, and the HTTP CONNECT and SOCKS5 handshakes that open a tunnel.
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "exit_code.hpp"
#include "net.hpp"

namespace wsx {

/// A proxy the client tunnels its TCP connection through.
struct proxy_config {
    /// http: HTTP CONNECT (the proxy resolves the target name).
    /// socks5: SOCKS5, the client resolves the target name and sends an address.
    /// socks5h: SOCKS5, the target name is sent to the proxy, which resolves it.
    enum class kind { http, socks5, socks5h };

    kind type = kind::http;
    std::string host;         ///< proxy host name or IP literal, without brackets
    std::uint16_t port = 0;
    std::string username;     ///< percent-decoded; empty means no credentials are sent
    std::string password;     ///< percent-decoded
};

/// Default ports when a proxy URL has none: 8080 for http://, 1080 for socks5(h)://.
inline constexpr std::uint16_t default_http_proxy_port = 8080;
inline constexpr std::uint16_t default_socks_proxy_port = 1080;

/// Parses `http://[user:pass@]host[:port][/]`, `socks5://...` or `socks5h://...`.
/// The scheme is case-insensitive; a URL without a scheme is taken as http:// (as curl does,
/// since environment variables often hold a bare `host:port`). IPv6 hosts go in brackets.
/// Credentials are percent-decoded. On failure returns nullopt and, when `error` is not null,
/// stores a one-line reason such as "https proxies are not supported; use http:// or socks5://".
std::optional<proxy_config> parse_proxy_url(std::string_view url, std::string* error);

/// Formats a proxy for messages: `socks5h://user@host:port` (the password is never shown).
std::string to_string(const proxy_config& p);

/// True when the proxy is given the target's name (http, socks5h); false for socks5,
/// where the caller resolves the target first and passes an IP address to socks5_handshake.
bool proxy_resolves_names(const proxy_config& p) noexcept;

/// True when `host:port` is excluded from proxying by a NO_PROXY-style list:
/// comma- or space-separated entries; "*" matches everything; a name matches itself and every
/// subdomain ("example.com" and ".example.com" both match "a.example.com", "*.example.com" too);
/// IP literals match the same address, and `addr/bits` matches a CIDR block; an entry may carry
/// `:port` (IPv6 as `[addr]:port`) to match only that port. Matching is case-insensitive.
/// Like curl, localhost is not special: it is bypassed only if listed.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port);

/// Picks the proxy for a target the way curl does. wss:// targets use https_proxy, then
/// HTTPS_PROXY; ws:// targets use http_proxy, then HTTP_PROXY; both then fall back to all_proxy,
/// ALL_PROXY. Empty values count as unset. no_proxy (else NO_PROXY) can exclude the target.
/// `getenv_fn` is the lookup (std::getenv in production) so tests need no real environment.
/// Returns nullopt with `*error` cleared when no proxy applies; nullopt with `*error` set
/// ("HTTPS_PROXY: ...") when the chosen variable holds an invalid proxy URL.
std::optional<proxy_config> proxy_from_environment(
    bool secure_target, std::string_view target_host, std::uint16_t target_port,
    const std::function<const char*(const char*)>& getenv_fn, std::string* error);

/// Asks an HTTP proxy, over the already-connected `stream`, for a tunnel to host:port
/// (`CONNECT host:port HTTP/1.1`, with Proxy-Authorization: Basic when `p` has credentials).
/// When this returns, `stream` is the tunnel and no byte of the target's has been consumed.
/// A non-2xx answer, a malformed answer or bytes after a 2xx header throw
/// wsx::failure(exit_code::connect, ...), e.g. "proxy refused CONNECT to example.com:443:
/// 407 Proxy Authentication Required". Transport errors (including the stream's own deadline,
/// set by the caller with expires_after) propagate as boost::system::system_error.
net::awaitable<void> http_connect_handshake(beast::tcp_stream& stream, const proxy_config& p,
                                            std::string_view host, std::uint16_t port);

/// The verdict on a proxy's answer to `CONNECT target` once its header is read, `extra` bytes
/// having come after it: returns when the tunnel is open, else throws
/// wsx::failure(exit_code::connect, ...) as http_connect_handshake does.
void check_connect_answer(const http::response_header<>& res, std::size_t extra, const proxy_config& p,
                          std::string_view target);

/// Opens a SOCKS5 tunnel to host:port over the already-connected `stream` (RFC 1928, with
/// RFC 1929 username/password when `p` has credentials; no-auth is always offered).
/// An IP literal `host` (brackets allowed) is sent as an IPv4/IPv6 address; any other host is
/// sent as a domain name for the proxy to resolve (so for socks5, as opposed to socks5h, the
/// caller should resolve first and pass the address). Reads exactly the proxy's reply and
/// nothing of the tunnel. Refusals throw wsx::failure(exit_code::connect, ...) with a readable
/// reason ("connection refused by destination", "authentication failed", ...); transport
/// errors propagate as boost::system::system_error.
net::awaitable<void> socks5_handshake(beast::tcp_stream& stream, const proxy_config& p,
                                      std::string_view host, std::uint16_t port);

// The SOCKS5 replies as socks5_handshake reads them: each throws wsx::failure(exit_code::connect,
// ...) for a refusal, else says what comes next.
/// The method-selection reply (VER METHOD): true to authenticate with username and password
/// (RFC 1929), false to go on without.
bool socks5_use_password(std::array<std::uint8_t, 2> choice, const proxy_config& p);
/// The username/password status reply (VER STATUS).
void check_socks5_auth(std::array<std::uint8_t, 2> status, const proxy_config& p);
/// The first five bytes of the reply to CONNECT `target` (VER REP RSV ATYP and the first byte of
/// BND.ADDR, the domain's length for ATYP 3): how many bytes of the reply are left to read.
std::size_t socks5_reply_rest(std::array<std::uint8_t, 5> head, const proxy_config& p, std::string_view target);

}  // namespace wsx
