// wsx serve: parse options → serve_options → validate → run.
#include <fmt/format.h>

#include "commands.hpp"
#include "serve_app.hpp"

namespace wsx::cli {

namespace {
struct serve_args {
    std::string address = "127.0.0.1:8080";
    std::string tls_cert, tls_key;
    bool tls_self_signed = false;
    std::string max_message_size = "64MiB";
    bool compress = false;
};
}  // namespace

runner setup_serve(CLI::App& app) {
    auto a = std::make_shared<serve_args>();
    app.add_option("address", a->address, "Where to listen: PORT, HOST:PORT or [V6]:PORT (port 0 picks a free one)")
        ->type_name("ADDR")->capture_default_str();
    const char* t = "TLS";
    app.add_option("--tls-cert", a->tls_cert, "Certificate chain (PEM): serve wss://")->group(t)->type_name("FILE");
    app.add_option("--tls-key", a->tls_key, "Private key (PEM) for --tls-cert")->group(t)->type_name("FILE");
    app.add_flag("--tls-self-signed", a->tls_self_signed, "Serve wss:// with a certificate generated at start-up")->group(t);
    const char* l = "Protocol";
    app.add_option("--max-message-size", a->max_message_size, "Largest message accepted; larger ones close with 1009")
        ->group(l)->type_name("SIZE")->capture_default_str();
    app.add_flag("--compress", a->compress, "Accept permessage-deflate compression")->group(l);
    app.footer(
        "Examples:\n"
        "  wsx serve                                  # echo on ws://127.0.0.1:8080\n"
        "  wsx serve 127.0.0.1:0                      # any free port, printed on stderr\n"
        "  wsx serve 0.0.0.0:8443 --tls-cert c.pem --tls-key k.pem\n"
        "\nPrints 'listening on ws://HOST:PORT' on stderr once ready.");

    return [a]() -> int {
        problems p;
        serve_options o;
        std::string err;
        if (auto la = parse_listen_address(a->address, &err)) o.server.listen = *la;
        else p.add(err);
        if (!o.server.listen.unix_path.empty()) p.add("serve: unix socket listeners are not supported yet; use HOST:PORT");
        o.use_tls = a->tls_self_signed || !a->tls_cert.empty() || !a->tls_key.empty();
        o.tls = {.cert = a->tls_cert, .key = a->tls_key, .client_ca = {}, .self_signed = a->tls_self_signed};
        if (a->tls_self_signed && (!a->tls_cert.empty() || !a->tls_key.empty()))
            p.add("--tls-self-signed cannot be combined with --tls-cert/--tls-key");
        if (o.use_tls && !a->tls_self_signed) {
            try {
                make_server_tls(o.tls);
            } catch (const failure& f) {
                p.add(f.what());
            }
        }
        o.server.session.max_message_size = size_arg(p, "--max-message-size", a->max_message_size);
        o.server.session.overflow = overflow_policy::close;
        o.server.deflate.enabled = a->compress;
        if (p.report("serve")) return static_cast<int>(exit_code::usage);
        return run_serve(std::move(o));
    };
}

}  // namespace wsx::cli
