#pragma once
/// The listener: accepts TCP (optionally TLS), reads the HTTP request, upgrades to WebSocket
/// and hands each session to a handler. Plain HTTP requests go to an optional http handler.
#include <functional>
#include <memory>
#include <string>

#include "client.hpp"
#include "endpoint.hpp"
#include "session.hpp"

namespace wsx {

using http_request = http::request<http::string_body>;
using http_response = http::response<http::string_body>;

/// Information about a connection being upgraded.
struct peer_info {
    std::string address;   ///< remote IP
    std::uint16_t port = 0;
    bool tls = false;
};

struct server_options {
    listen_address listen;
    std::shared_ptr<ssl::context> tls;   ///< null: plain ws://
    session_options session;
    deflate_options deflate;
    std::chrono::nanoseconds handshake_timeout = std::chrono::seconds(10);
    std::size_t max_request_bytes = 16 * 1024;
};

/// Decides what to do with an upgrade request before it is accepted: return a response to
/// refuse (401, 403, 404, 503...) or nullopt to accept. `subprotocol` may be set to the choice.
using upgrade_filter = std::function<std::optional<http_response>(const http_request&, const peer_info&, std::string& subprotocol)>;
/// Gives a new session its handler. Called on the session's executor; the handler receives events.
using session_handler_factory = std::function<std::shared_ptr<channel_events>(std::shared_ptr<ws_session>, const http_request&, const peer_info&)>;
/// Answers plain HTTP requests (no upgrade). The default answers 426 Upgrade Required.
using http_handler = std::function<http_response(const http_request&, const peer_info&)>;

class server {
public:
    server(net::io_context& ioc, server_options opts, session_handler_factory factory);
    void set_upgrade_filter(upgrade_filter f) { filter_ = std::move(f); }
    void set_http_handler(http_handler h) { http_ = std::move(h); }

    /// Binds and listens; throws wsx::failure(failure) when the address cannot be used.
    void listen();
    /// The bound address (real port when 0 was asked).
    tcp::endpoint local_endpoint() const;
    /// `ws://HOST:PORT` or `wss://HOST:PORT`.
    std::string url() const;
    void start();
    void stop();

private:
    void do_accept();
    net::awaitable<void> handle(tcp::socket socket);
    template <class Layer>
    net::awaitable<void> serve_http(websocket::stream<Layer>& ws, beast::flat_buffer& buffer, const peer_info& peer);

    net::io_context& ioc_;
    server_options opts_;
    session_handler_factory factory_;
    upgrade_filter filter_;
    http_handler http_;
    tcp::acceptor acceptor_;
};

/// An HTTP response with a one-line plain-text body.
http_response make_response(http::status status, std::string body, unsigned version = 11);

}  // namespace wsx
