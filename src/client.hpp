#pragma once
/// Client connect: resolve, TCP (or a unix socket), proxy, TLS, then the WebSocket upgrade.
#include <unistd.h>

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "endpoint.hpp"
#include "exit_code.hpp"
#include "permessage_deflate.hpp"
#include "proxy.hpp"
#include "session.hpp"
#include "tls.hpp"

namespace wsx {

/// Whether and how far redirects of the upgrade request are followed (-L, as curl does).
struct redirect_options {
    bool follow = false;          ///< follow a 301/302/303/307/308 with a Location
    unsigned max = 5;             ///< at most this many redirects
    bool allow_insecure = false;  ///< follow a redirect from wss:// to ws://
};

struct client_options {
    endpoint url;
    std::vector<std::pair<std::string, std::string>> headers;  ///< extra request headers
    std::vector<std::string> subprotocols;
    std::string origin;
    std::string host_override;       ///< Host header instead of the URL's
    std::vector<std::string> cookies;
    std::string basic_auth;          ///< user:pass (the URL's credentials when empty)
    std::string token;               ///< bearer token
    std::string token_query;         ///< send the token as ?NAME=TOKEN instead of a header
    std::optional<proxy_config> proxy;
    tls_client_options tls;
    deflate_options deflate;
    std::chrono::nanoseconds connect_timeout = std::chrono::seconds(10);
    session_options session;
    std::string user_agent = "wsx/" WSX_VERSION;
    redirect_options redirects;
};

/// An upgrade refusal that keeps the answer's header fields a client needs to try again:
/// every WWW-Authenticate challenge and Retry-After, in the order they came. A proxy passes
/// them back with the status, so its clients can answer the challenge through it.
class upgrade_refused : public upgrade_rejected {
public:
    upgrade_refused(int status, std::string message, std::vector<std::pair<std::string, std::string>> fields,
                    std::string location = {})
        : upgrade_rejected(status, std::move(message)), fields_(std::move(fields)), location_(std::move(location)) {}
    /// (name, value) pairs, names as the server spelled them.
    const std::vector<std::pair<std::string, std::string>>& fields() const noexcept { return fields_; }
    /// The Location of a redirect (3xx) as the server sent it; empty for other answers.
    const std::string& location() const noexcept { return location_; }

private:
    std::vector<std::pair<std::string, std::string>> fields_;
    std::string location_;
};

/// Where the time of a connect went (curl -w style).
struct connect_timings {
    std::chrono::nanoseconds dns{0}, tcp{0}, proxy{0}, tls{0}, upgrade{0}, total{0};
};

/// One redirect followed on the way to the server that upgraded.
struct redirect_hop {
    int status = 0;  ///< 301, 302, 303, 307 or 308
    endpoint from, to;
    std::chrono::nanoseconds time{0};  ///< what the hop that answered with the redirect took
};

/// What a connect settled, besides the connection itself.
struct connect_info {
    connect_timings timings;   ///< of the last hop, except `total`, which counts every hop
    endpoint url;              ///< the URL that upgraded (the given one unless redirected)
    std::vector<redirect_hop> redirects;  ///< the redirects followed, in order
    std::string subprotocol;   ///< the server's choice, empty if none
    std::string remote;        ///< peer address as host:port
    http::request<http::empty_body> request;     ///< what was sent (for -v)
    http::response<http::string_body> response;  ///< what came back (for -v)
};

struct connect_result : connect_info {
    std::shared_ptr<ws_session> session;
};

/// A connect that failed: wsx::failure's exit code and one-line message, plus a short reason
/// for tallies ("refused", "timeout", "tls", "proxy", "bad accept", ...), as bench counts them.
/// A refused upgrade (another HTTP status) is an upgrade_refused instead.
class open_failure : public failure {
public:
    open_failure(std::string reason, exit_code code, std::string message)
        : failure(code, std::move(message)), reason_(std::move(reason)) {}
    const std::string& reason() const noexcept { return reason_; }

private:
    std::string reason_;
};

using tls_stream = beast::ssl_stream<beast::tcp_stream>;
/// The stream of an open client connection: TCP, TLS over TCP, or a unix socket.
using client_stream = std::variant<beast::tcp_stream, tls_stream, unix_stream>;

/// What a caller that opens many connections (bench) settles once for all of them.
struct open_hints {
    /// The addresses of the first hop (the server, or the proxy), resolved already.
    const tcp::resolver::results_type* first_hop = nullptr;
    /// The TLS context for wss:// (made from the options when not given).
    std::shared_ptr<ssl::context> tls;
};

/// An upgraded connection before a session runs on it.
struct opened_connection {
    std::optional<client_stream> stream;
    std::shared_ptr<ssl::context> tls_context;  ///< what a TLS stream's context lives in
    std::string leftover;                       ///< bytes that came behind the 101 (a server may greet at once)
    std::string extensions;                     ///< the server's Sec-WebSocket-Extensions, all fields joined
    std::optional<pmd::agreement> deflate;      ///< permessage-deflate in force, if the server accepted the offer
    connect_info info;
};

/// Registers a connected socket with the event loop afresh. The reactor keeps watching a socket
/// for writability once a write or the connect had to wait, and every ACK that frees send
/// space then wakes the loop for nothing; a fresh registration watches reads only (a write
/// that has to wait adds writability again). Nothing may be pending on the socket.
template <class Socket>
void drop_write_interest(Socket& s) {
    error_code ec;
    const auto protocol = s.local_endpoint(ec).protocol();
    if (ec) return;
    const auto fd = s.release(ec);
    if (ec) return;
    s.assign(protocol, fd, ec);
    if (ec) ::close(fd);
}

/// The one client open path: resolve, TCP (or a unix socket), proxy, TLS, then the upgrade.
/// Returns the open stream (no write interest registered, no deadline left on it), the bytes
/// that came behind the answer and what the upgrade settled. Throws open_failure (or
/// upgrade_refused for another HTTP status) with the exit code of the step that failed
/// (resolve, connect, tls, upgrade, timeout) and a one-line message naming the cause.
/// `verbose`, when set, receives the request and response headers as they happen.
/// With o.redirects.follow, a redirect (is_followed_redirect()) with a Location is followed on a
/// new connection, with redirected_options(); more than o.redirects.max of them, a loop, a
/// Location that is no usable URL or one that leaves TLS without o.redirects.allow_insecure
/// throw open_failure "redirect" (exit 6). `hints.first_hop` serves the first hop (every hop
/// through a proxy). The info names the URL that upgraded and the redirects followed.
net::awaitable<opened_connection> async_open(const client_options& o, const open_hints& hints = {},
                                             std::ostream* verbose = nullptr);

/// Whether an answer with `status` to the upgrade is a redirect -L follows (301, 302, 303, 307, 308).
bool is_followed_redirect(int status);
/// Where a redirect from `from` with `location` leads: the reference resolved against `from`
/// (RFC 3986 section 5), http:// taken as ws:// and https:// as wss://, the fragment dropped.
/// A relative reference from a unix socket stays on that socket. On failure returns nullopt
/// and sets *error to a one-line explanation.
std::optional<endpoint> redirect_target(const endpoint& from, std::string_view location, std::string* error);
/// The options for a redirected request to `to`, given the options of the original request.
/// The credentials (--auth, --token, the URL's user:pass, --cookie, and -H Authorization or
/// Cookie) and --host and --sni go only to the original host and port; elsewhere they are left
/// out (user:pass written in the Location itself is used).
client_options redirected_options(const client_options& original, const endpoint& to);
/// async_open() following redirects as o.redirects says, then closes the connection with
/// 1000: the options the redirects lead to (redirects no longer followed), for a caller that
/// opens many connections to the same place (bench). `verbose` as for async_open().
net::awaitable<client_options> async_settle_redirects(const client_options& o, const open_hints& hints = {},
                                                      std::ostream* verbose = nullptr);

/// async_open(), then a session on the stream.
net::awaitable<connect_result> async_connect(const client_options& o, std::ostream* verbose = nullptr);

/// Resolves host:port by `deadline` (an IP literal without a lookup). Throws open_failure:
/// "resolve" (exit 3) or "timeout" (exit 8; the message names `name`, the time `budget` and
/// the option that sets it, `raise`).
net::awaitable<tcp::resolver::results_type> resolve(const std::string& host, std::uint16_t port,
                                                    steady_clock::time_point deadline, std::string_view name,
                                                    std::string_view raise, std::chrono::nanoseconds budget);

/// What async_connect_tcp() settled.
struct tcp_connected {
    tcp::endpoint peer;
    std::chrono::nanoseconds dns{0};  ///< time spent resolving (0 for an IP literal or addresses given)
};
/// Resolves `host` (an IP literal needs no lookup; `resolved` is used instead when given) and
/// connects `stream` by `deadline`, with TCP_NODELAY. Throws open_failure: "resolve" (exit 3),
/// the connect error (exit 4), "timeout" (exit 8; the message names `name` and the option that
/// sets the deadline, `raise`). `proxy`: `host` is a proxy.
net::awaitable<tcp_connected> async_connect_tcp(beast::tcp_stream& stream, const std::string& host, std::uint16_t port,
                                                steady_clock::time_point deadline, std::string_view name,
                                                std::string_view raise = "--connect-timeout", bool proxy = false,
                                                const tcp::resolver::results_type* resolved = nullptr);

/// The request target of the upgrade: the URL's path and query, plus the token as a query
/// parameter when --token-query asks for it.
std::string upgrade_target(const client_options& o, const endpoint& url);
/// A fresh Sec-WebSocket-Key (16 random bytes, base64).
std::string make_sec_websocket_key();
/// The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 4.2.2).
std::string sec_websocket_accept(std::string_view key);
/// What a client checks in the server's answer to its upgrade request sent with `key` (RFC 6455
/// 4.1: status 101, HTTP/1.1, `Connection: upgrade`, `Upgrade: websocket`, the right
/// Sec-WebSocket-Accept), as Beast's error codes; extensions and subprotocol are the caller's.
error_code check_upgrade_answer(const http::response<http::string_body>& res, const std::string& key);
/// The refusal a client reports for an answer to its upgrade that is not a 101: the status, the
/// reason phrase and the first line of the body, where a redirect points (it is not followed),
/// and the fields a retry needs (WWW-Authenticate, Retry-After).
upgrade_refused upgrade_refusal(const http::response<http::string_body>& res, const endpoint& url);
/// The whole upgrade request for `url`: the fields RFC 6455 requires, the permessage-deflate
/// offer when the options enable it, then decorate_upgrade_request().
http::request<http::empty_body> upgrade_request(const client_options& o, const endpoint& url, const std::string& key);
/// Sets the upgrade request's fields from the options: User-Agent, subprotocols, Origin,
/// cookies, basic or bearer authorization, and the extra headers (last, so they win).
void decorate_upgrade_request(http::fields& req, const client_options& o, const endpoint& url);

}  // namespace wsx
