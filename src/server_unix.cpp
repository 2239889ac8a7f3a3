#include "server_upgrade.hpp"

namespace wsx {

net::awaitable<void> server::serve_unix(net::local::stream_protocol::socket socket, peer_info peer) {
    beast::flat_buffer buffer;
    websocket::stream<unix_layer> ws(unix_stream(std::move(socket)));
    co_await serve_http(ws, buffer, peer);
}

}  // namespace wsx
