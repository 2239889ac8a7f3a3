#include "serve_app.hpp"

#include <iostream>

#include <fmt/format.h>

namespace wsx {
namespace {

/// Sends every message back to its sender with the same opcode.
class echo_handler final : public channel_events {
public:
    explicit echo_handler(std::weak_ptr<ws_session> s) : session_(std::move(s)) {}
    void on_message(std::string&& payload, bool binary) override {
        if (auto s = session_.lock()) s->send(std::move(payload), binary);
    }
    void on_close(const close_info&) override {}

private:
    std::weak_ptr<ws_session> session_;
};

}  // namespace

int run_serve(serve_options o) {
    net::io_context ioc(1);
    std::string fingerprint;
    if (o.use_tls) o.server.tls = make_server_tls(o.tls, &fingerprint);
    server srv(ioc, o.server, [](std::shared_ptr<ws_session> s, const http_request&, const peer_info&) {
        return std::make_shared<echo_handler>(s);
    });
    srv.listen();
    srv.start();
    if (!fingerprint.empty()) std::cerr << "self-signed certificate SHA-256 fingerprint " << fingerprint << '\n';
    std::cerr << "listening on " << srv.url() << std::endl;

    net::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](error_code ec, int) {
        if (ec) return;
        srv.stop();
        ioc.stop();
    });
    ioc.run();
    return 0;
}

}  // namespace wsx
