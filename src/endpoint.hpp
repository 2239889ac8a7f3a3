#pragma once
/// Parsing and formatting of the addresses wsx talks to and listens on.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsx {

/// A WebSocket URL: ws://, wss://, ws+unix:// or wss+unix://.
struct endpoint {
    bool tls = false;
    std::string host;          ///< without IPv6 brackets; empty for unix sockets
    std::uint16_t port = 0;
    std::string unix_path;     ///< socket path for ws+unix
    std::string target = "/";  ///< path and query sent in the request line
    std::string username;      ///< from user:pass@ (percent-decoded)
    std::string password;

    bool is_unix() const noexcept { return !unix_path.empty(); }
    /// Value for the Host header: host, bracketed when IPv6, with the port unless default.
    std::string host_header() const;
    /// Canonical URL without credentials (for messages and logs).
    std::string to_string() const;
};

/// Parses a WebSocket URL. A bare `host:port[/path]` is taken as ws://.
/// On failure returns nullopt and sets *error to a one-line explanation with a fix.
std::optional<endpoint> parse_ws_url(std::string_view text, std::string* error);

/// A local address to listen on.
struct listen_address {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    std::string unix_path;  ///< listen on a unix socket instead (unix:/path)
    int unix_mode = -1;     ///< permission bits for the socket file; -1: as the umask makes them
};

/// The longest unix socket path bind() takes (sun_path holds it and a NUL).
inline constexpr std::size_t max_unix_path = 107;

/// Parses `PORT`, `HOST:PORT`, `[V6]:PORT`, `HOST` (default port), `ws://HOST:PORT`, or `unix:PATH`
/// (a unix socket; PATH may be relative, must not contain ':' so that clients can name it in
/// `ws+unix://PATH:/resource`, and is at most max_unix_path bytes).
std::optional<listen_address> parse_listen_address(std::string_view text, std::string* error,
                                                   std::uint16_t default_port = 8080);

/// Formats host and port as `host:port` or `[v6]:port`.
std::string format_host_port(std::string_view host, std::uint16_t port);

}  // namespace wsx
