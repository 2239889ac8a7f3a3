#pragma once
/// The listener: accepts TCP (optionally TLS) or unix socket connections, reads the HTTP
/// request, upgrades to WebSocket and hands each session to a handler. Plain HTTP requests go
/// to an optional http handler.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "client.hpp"
#include "endpoint.hpp"
#include "session.hpp"

namespace wsx {

using http_request = http::request<http::string_body>;
using http_response = http::response<http::string_body>;
/// A response streamed from a file (static files): never held in memory whole.
using file_response = http::response<http::file_body>;
/// What an http handler answers: a response in memory, or one streamed from a file.
using http_answer = std::variant<http_response, file_response>;

/// Information about a connection being upgraded.
struct peer_info {
    /// Remote IP; for a unix socket peer (which has no address of its own) `unix:PATH` with the
    /// listener's socket path, so that every unix client counts as one peer (rate limits,
    /// sticky ip) and logs say where it came in.
    std::string address;
    std::uint16_t port = 0;        ///< 0 for unix socket peers
    bool tls = false;
    bool is_unix = false;          ///< accepted on a unix socket
    std::uint16_t local_port = 0;  ///< the listener's port (0 on a unix socket)
    std::size_t worker = 0;        ///< index of the io_context the connection runs on
    /// Things an upgrade filter wants kept while the connection lasts (e.g. a connection
    /// slot): released just before the handler hears of the close; at once when the upgrade fails.
    std::vector<std::shared_ptr<const void>> holds;
    /// Facts a filter learnt about the client (e.g. "sub" from a token), for the handler.
    std::map<std::string, std::string> vars;
    /// Something an asynchronous upgrade filter made for the handler (e.g. a connection it
    /// opened); kept through to the session factory, dropped when the upgrade fails.
    std::shared_ptr<void> attachment;
};

struct server_options {
    listen_address listen;
    std::shared_ptr<ssl::context> tls;   ///< null: plain ws://
    session_options session;
    deflate_options deflate;
    std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
    std::size_t max_request_bytes = 16 * 1024;
    /// Told of each request the listener refuses itself, before any filter runs: an invalid
    /// upgrade ("invalid_upgrade"), a request that does not parse ("malformed_request") or one
    /// over max_request_bytes ("request_too_large"). Called on the connection's thread.
    std::function<void(const char* reason)> on_refused;
    /// Fields added to every 101 answer (--header), in order; one named Server replaces wsx's.
    std::vector<std::pair<std::string, std::string>> response_headers;
};

/// Decides what to do with an upgrade request before it is accepted: return a response to
/// refuse (401, 403, 404, 503...) or nullopt to accept. `subprotocol` may be set to the choice;
/// `peer.holds` and `peer.vars` may be added to. Filters run in the order they were added;
/// called on the connection's thread, possibly on several threads at once.
using upgrade_filter = std::function<std::optional<http_response>(const http_request&, peer_info&, std::string& subprotocol)>;
/// An upgrade check that may wait (e.g. to connect somewhere and learn its subprotocol choice
/// before answering the client); runs on the connection's executor after the other filters.
using async_upgrade_filter =
    std::function<net::awaitable<std::optional<http_response>>(const http_request&, peer_info&, std::string& subprotocol)>;
/// Gives a new session its handler. Called on the session's executor; the handler receives events.
using session_handler_factory = std::function<std::shared_ptr<channel_events>(std::shared_ptr<ws_session>, const http_request&, const peer_info&)>;
/// Answers plain HTTP requests (no upgrade). The default answers 426 Upgrade Required.
/// --handshake-timeout bounds reading the request; writing a file response is bounded only by
/// progress (no write may stall that long), however long the whole download takes.
using http_handler = std::function<http_answer(const http_request&, const peer_info&)>;

/// Why a TCP listener could not be set up, with what to do about it: `ec` from bind or listen.
std::string listen_problem(const error_code& ec);

class server {
public:
    /// One listener on `ioc`; every connection runs there.
    server(net::io_context& ioc, server_options opts, session_handler_factory factory);
    /// Accepted connections are spread round-robin over `workers` (one thread each), and stay
    /// on the one they were given. The acceptor runs on the first worker, so that with one
    /// worker no connection is handed from one thread to another; `acceptor_ioc` is not used
    /// for connections.
    server(net::io_context& acceptor_ioc, std::vector<net::io_context*> workers, server_options opts,
           session_handler_factory factory);
    /// Adds a check run before each upgrade (after those added earlier).
    void add_upgrade_filter(upgrade_filter f) { filters_.push_back(std::move(f)); }
    void set_upgrade_filter(upgrade_filter f) { filters_.assign(1, std::move(f)); }
    /// Sets the check that runs last and may wait.
    void set_async_upgrade_filter(async_upgrade_filter f) { async_filter_ = std::move(f); }
    void set_http_handler(http_handler h) { http_ = std::move(h); }

    /// Binds and listens; throws wsx::failure(failure) when the address cannot be used.
    /// A unix socket path that holds a stale socket (nobody answers a connect) is replaced;
    /// a live socket, or a file that is not a socket, is refused and left alone.
    void listen();
    /// Closes the listener without waiting for anything; removes the socket file of a unix
    /// listener (when it is still the one bound here). The first worker context must exist and
    /// must not be running elsewhere (its thread joined, or the caller is the one running it).
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;
    bool is_unix() const noexcept { return !opts_.listen.unix_path.empty(); }
    /// The bound address (real port when 0 was asked); unspecified for a unix listener.
    tcp::endpoint local_endpoint() const;
    /// `ws://HOST:PORT`, `wss://HOST:PORT`, or for a unix listener `ws+unix://PATH:/` (what
    /// `wsx connect` takes).
    std::string url() const;
    void start();
    /// Stops accepting; a unix listener's socket file is removed here. May be called from any
    /// thread: the listener is closed on the first worker's thread (at once when the caller
    /// runs it), and a connection accepted in between is dropped.
    void stop();

private:
    void do_accept();
    void listen_unix();
    void remove_unix_socket();
    net::awaitable<void> handle(tcp::socket socket, tcp::endpoint remote, std::size_t worker);
    net::awaitable<void> handle_unix(net::local::stream_protocol::socket socket, std::size_t worker);
    // One per transport layer, each in its own unit (server_tcp.cpp, server_tls.cpp,
    // server_unix.cpp): the HTTP exchange and the upgrade (server_upgrade.hpp) on that layer.
    net::awaitable<void> serve_tcp(tcp::socket socket, peer_info peer);
    net::awaitable<void> serve_tls(tcp::socket socket, peer_info peer);
    net::awaitable<void> serve_unix(net::local::stream_protocol::socket socket, peer_info peer);
    template <class Layer>
    net::awaitable<void> refuse(websocket::stream<Layer>& ws, http_response res, unsigned version);
    template <class Layer>
    net::awaitable<void> serve_http(websocket::stream<Layer>& ws, beast::flat_buffer& buffer, const peer_info& peer);

    net::io_context& ioc_;
    std::vector<net::io_context*> workers_;
    server_options opts_;
    session_handler_factory factory_;
    std::vector<upgrade_filter> filters_;
    async_upgrade_filter async_filter_;
    http_handler http_;
    std::size_t next_worker_ = 0;
    // On the first worker's context (shared so that a close posted there may outlive us).
    std::shared_ptr<tcp::acceptor> acceptor_;
    std::shared_ptr<net::local::stream_protocol::acceptor> unix_acceptor_;
    tcp::endpoint remote_;  // the peer of the accept in progress
    std::atomic<bool> stopped_{false};
    std::uint16_t local_port_ = 0;
    // The socket file bound here (device and inode): removed at stop() only while it is still
    // that file, never one another process put there since.
    bool unix_bound_ = false;
    std::uint64_t unix_dev_ = 0, unix_ino_ = 0;
};

/// Sets `parser` up to read a request as the listener does: at most `max_bytes` of header and
/// as many of body (a request beyond either is answered 431).
void limit_request_parser(http::request_parser<http::string_body>& parser, std::size_t max_bytes);


/// An HTTP response with a one-line plain-text body.
http_response make_response(http::status status, std::string body, unsigned version = 11);

/// Whether `key` is what RFC 6455 4.1 asks of a Sec-WebSocket-Key: the base64 encoding of
/// exactly 16 bytes (standard alphabet, "==" padding, pad bits zero as RFC 4648 3.5 allows
/// a decoder to require: every encoder writes them so).
bool valid_websocket_key(std::string_view key);

/// The refusal every listener gives an upgrade request before any filter sees it, or nullopt
/// when the request may go on: 400 when a field that may appear only once (Host,
/// Authorization, Origin, Sec-WebSocket-Key, Sec-WebSocket-Version) appears more than once,
/// or Host or Sec-WebSocket-Key is missing or Sec-WebSocket-Key is invalid (RFC 6455 4.2.1);
/// 426 with `Sec-WebSocket-Version: 13` for another version. The body names the problem.
std::optional<http_response> invalid_upgrade_response(const http_request& req);

/// The 400 for a request the HTTP parser gave up on with `ec` (a NUL byte in a header, a bad
/// request line...), naming the problem; nullopt when `ec` says nothing against the request
/// (the client left or was too slow).
std::optional<http_response> malformed_request_response(const error_code& ec);

}  // namespace wsx
