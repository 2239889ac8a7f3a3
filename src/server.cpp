#include "server.hpp"

#include <fmt/format.h>

#include "exit_code.hpp"

namespace wsx {

http_response make_response(http::status status, std::string body, unsigned version) {
    http_response res{status, version};
    res.set(http::field::server, "wsx/" WSX_VERSION);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    if (!body.empty() && body.back() != '\n') body += '\n';
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
}

server::server(net::io_context& ioc, server_options opts, session_handler_factory factory)
    : server(ioc, {&ioc}, std::move(opts), std::move(factory)) {}

server::server(net::io_context& acceptor_ioc, std::vector<net::io_context*> workers, server_options opts,
               session_handler_factory factory)
    : ioc_(acceptor_ioc), workers_(std::move(workers)), opts_(std::move(opts)), factory_(std::move(factory)),
      acceptor_(acceptor_ioc) {
    if (workers_.empty()) workers_.push_back(&ioc_);
}

void server::listen() {
    error_code ec;
    auto addr = net::ip::make_address(opts_.listen.host == "localhost" ? "127.0.0.1" : opts_.listen.host, ec);
    if (ec)
        throw failure(exit_code::usage, fmt::format("cannot listen on '{}': not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)",
                                                    opts_.listen.host));
    tcp::endpoint ep(addr, opts_.listen.port);
    auto fail = [&](std::string_view step) {
        throw failure(exit_code::failure, fmt::format("cannot listen on {}: {} ({})", format_host_port(opts_.listen.host, opts_.listen.port),
                                                      ec.message(), step));
    };
    acceptor_.open(ep.protocol(), ec);
    if (ec) fail("socket");
    acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    acceptor_.bind(ep, ec);
    if (ec) fail("bind");
    acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) fail("listen");
}

tcp::endpoint server::local_endpoint() const {
    error_code ec;
    return acceptor_.local_endpoint(ec);
}

std::string server::url() const {
    auto ep = local_endpoint();
    return fmt::format("{}://{}", opts_.tls ? "wss" : "ws", format_host_port(ep.address().to_string(), ep.port()));
}

void server::start() { do_accept(); }

void server::stop() {
    error_code ec;
    acceptor_.close(ec);
}

void server::do_accept() {
    const std::size_t worker = next_worker_;
    next_worker_ = (next_worker_ + 1) % workers_.size();
    auto& target = *workers_[worker];
    acceptor_.async_accept(target, [this, worker, &target](error_code ec, tcp::socket socket) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
        if (!ec) {
            net::co_spawn(target, handle(std::move(socket), worker), net::detached);
            do_accept();
        } else {
            // Out of descriptors (EMFILE) and the like: retry shortly instead of spinning.
            auto t = std::make_shared<net::steady_timer>(ioc_, std::chrono::milliseconds(50));
            t->async_wait([this, t](error_code) {
                if (acceptor_.is_open()) do_accept();
            });
        }
    });
}

template <class Layer>
net::awaitable<void> server::serve_http(websocket::stream<Layer>& ws, beast::flat_buffer& buffer, const peer_info& peer) {
    auto& lowest = beast::get_lowest_layer(ws);
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(opts_.max_request_bytes));
        parser.body_limit(opts_.max_request_bytes);
        lowest.expires_after(opts_.handshake_timeout);
        error_code ec;
        co_await http::async_read(ws.next_layer(), buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (ec == http::error::header_limit || ec == http::error::body_limit) {
                auto res = make_response(http::status::request_header_fields_too_large, "request too large");
                res.keep_alive(false);
                co_await http::async_write(ws.next_layer().next_layer(), res, net::redirect_error(net::use_awaitable, ec));
            }
            co_return;  // timeout, garbage or the client left: nothing more to say
        }
        http_request req = parser.release();
        if (!websocket::is_upgrade(req)) {
            http_response res = http_ ? http_(req, peer)
                                      : make_response(http::status::upgrade_required, "this is a WebSocket endpoint: connect with ws://");
            if (res.result() == http::status::upgrade_required) res.set(http::field::upgrade, "websocket");
            res.version(req.version());
            res.keep_alive(req.keep_alive() && res.keep_alive());
            co_await http::async_write(ws.next_layer().next_layer(), res, net::redirect_error(net::use_awaitable, ec));
            if (ec || !res.keep_alive()) co_return;
            continue;
        }
        std::string subprotocol;
        peer_info upgraded = peer;
        for (const auto& filter : filters_) {
            if (auto refusal = filter(req, upgraded, subprotocol)) {
                upgraded.holds.clear();  // release any slot taken by an earlier filter now
                refusal->version(req.version());
                refusal->keep_alive(false);
                co_await http::async_write(ws.next_layer().next_layer(), *refusal, net::redirect_error(net::use_awaitable, ec));
                co_return;
            }
        }
        if (async_filter_) {
            std::optional<http_response> refusal;
            try {
                refusal = co_await async_filter_(req, upgraded, subprotocol);
            } catch (const std::exception& e) {
                refusal = make_response(http::status::internal_server_error, e.what());
            }
            if (refusal) {
                upgraded.holds.clear();
                upgraded.attachment.reset();
                refusal->version(req.version());
                refusal->keep_alive(false);
                co_await http::async_write(ws.next_layer().next_layer(), *refusal, net::redirect_error(net::use_awaitable, ec));
                co_return;
            }
        }
        lowest.expires_never();
        websocket::stream_base::timeout to{};
        to.handshake_timeout = opts_.handshake_timeout;
        to.idle_timeout = websocket::stream_base::none();
        to.keep_alive_pings = false;
        ws.set_option(to);
        apply_deflate(ws, opts_.deflate, true);
        ws.auto_fragment(false);
        ws.set_option(websocket::stream_base::decorator([subprotocol](websocket::response_type& res) {
            res.set(http::field::server, "wsx/" WSX_VERSION);
            if (!subprotocol.empty()) res.set(http::field::sec_websocket_protocol, subprotocol);
        }));
        co_await ws.async_accept(req, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        session_options so = opts_.session;
        so.direct_writes = !opts_.deflate.enabled;
        // Without extensions, frames are parsed by the session itself and Beast's stream state
        // is let go; bytes the client sent behind its upgrade request go along.
        auto s = so.direct_writes ? std::make_shared<session<Layer>>(std::move(ws.next_layer().next_layer()),
                                                                    beast::buffers_to_string(buffer.data()), so)
                                  : std::make_shared<session<Layer>>(std::move(ws), beast::role_type::server, so);
        if (opts_.tls) s->hold(opts_.tls);
        for (auto& h : upgraded.holds) s->hold_until_close(std::move(h));
        upgraded.holds.clear();
        auto handler = factory_(s, req, upgraded);
        if (handler) s->start(std::move(handler));
        co_return;
    }
}

net::awaitable<void> server::handle(tcp::socket socket, std::size_t worker) {
    error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    peer_info peer;
    auto rep = socket.remote_endpoint(ec);
    peer.address = rep.address().to_string();
    peer.port = rep.port();
    peer.local_port = socket.local_endpoint(ec).port();
    peer.worker = worker;
    beast::flat_buffer buffer;
    if (opts_.tls) {
        peer.tls = true;
        websocket::stream<tls_layer> ws(beast::tcp_stream(std::move(socket)), *opts_.tls);
        auto& lowest = beast::get_lowest_layer(ws);
        lowest.expires_after(opts_.handshake_timeout);
        co_await ws.next_layer().next_layer().async_handshake(ssl::stream_base::server,
                                                              net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        co_await serve_http(ws, buffer, peer);
    } else {
        websocket::stream<tcp_layer> ws(beast::tcp_stream(std::move(socket)));
        co_await serve_http(ws, buffer, peer);
    }
}

}  // namespace wsx
