#include "server_upgrade.hpp"

namespace wsx {

net::awaitable<void> server::serve_tcp(tcp::socket socket, peer_info peer) {
    beast::flat_buffer buffer;
    websocket::stream<tcp_layer> ws(beast::tcp_stream(std::move(socket)));
    co_await serve_http(ws, buffer, peer);
}

}  // namespace wsx
