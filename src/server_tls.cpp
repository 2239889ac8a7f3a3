#include "server_upgrade.hpp"

namespace wsx {

net::awaitable<void> server::serve_tls(tcp::socket socket, peer_info peer) {
    beast::flat_buffer buffer;
    websocket::stream<tls_layer> ws(beast::tcp_stream(std::move(socket)), *opts_.tls);
    beast::get_lowest_layer(ws).expires_after(opts_.handshake_timeout);
    error_code ec;
    co_await ws.next_layer().next_layer().async_handshake(ssl::stream_base::server,
                                                          net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    co_await serve_http(ws, buffer, peer);
}

}  // namespace wsx
