#pragma once
/// Client connect: resolve, TCP (or a unix socket), proxy, TLS, then the WebSocket upgrade.
#include <unistd.h>

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "endpoint.hpp"
#include "exit_code.hpp"
#include "permessage_deflate.hpp"
#include "proxy.hpp"
#include "session.hpp"
#include "tls.hpp"

namespace wsx {

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
};

/// An upgrade refusal that keeps the answer's header fields a client needs to try again:
/// every WWW-Authenticate challenge and Retry-After, in the order they came. A proxy passes
/// them back with the status, so its clients can answer the challenge through it.
class upgrade_refused : public upgrade_rejected {
public:
    upgrade_refused(int status, std::string message, std::vector<std::pair<std::string, std::string>> fields)
        : upgrade_rejected(status, std::move(message)), fields_(std::move(fields)) {}
    /// (name, value) pairs, names as the server spelled them.
    const std::vector<std::pair<std::string, std::string>>& fields() const noexcept { return fields_; }

private:
    std::vector<std::pair<std::string, std::string>> fields_;
};

/// Where the time of a connect went (curl -w style).
struct connect_timings {
    std::chrono::nanoseconds dns{0}, tcp{0}, proxy{0}, tls{0}, upgrade{0}, total{0};
};

struct connect_result {
    std::shared_ptr<ws_session> session;
    connect_timings timings;
    std::string subprotocol;   ///< the server's choice, empty if none
    std::string remote;        ///< peer address as host:port
    http::request<http::empty_body> request;     ///< what was sent (for -v)
    http::response<http::string_body> response;  ///< what came back (for -v)
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

/// Connects and upgrades. Throws wsx::failure with the exit code of the step that failed
/// (resolve, connect, tls, upgrade, timeout) and a one-line message naming the cause.
/// `verbose`, when set, receives the request and response headers as they happen.
net::awaitable<connect_result> async_connect(const client_options& o, std::ostream* verbose = nullptr);

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
