// wsx proxy: parse options → proxy_options → validate (every problem at once) → run.
#include <charconv>
#include <limits>
#include <tuple>

#include <fmt/format.h>

#include "client_options.hpp"
#include "commands.hpp"
#include "proxy_app.hpp"
#include "server_options.hpp"
#include "units.hpp"

namespace wsx::cli {

namespace {
struct proxy_args {
    std::string listen = "ws://127.0.0.1:8080";
    std::vector<std::string> to;
    std::string balance = "round-robin", sticky;
    std::string health_interval = "2s", health_timeout = "2s", connect_timeout = "5s";
    std::string path_prefix;
    std::vector<std::string> forward_headers;
    bool strip_auth = false;
    std::string cacert, cert, key, key_passphrase_file, sni;
    bool insecure = false;
    std::string tap, tap_format = "text";
    std::string fault_delay, fault_drop, fault_close_after, fault_jitter;
    int fault_close_code = 1011;
    bool fault_stall_pongs = false;
    listener_args listener;
};

/// "1%", "0.5%" or a fraction "0.01".
std::optional<double> parse_fraction(const std::string& s) {
    try {
        std::size_t n = 0;
        double v = std::stod(s, &n);
        if (n < s.size() && s.substr(n) == "%") v /= 100;
        else if (n != s.size()) return std::nullopt;
        if (v < 0 || v > 1) return std::nullopt;
        return v;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}
}  // namespace

runner setup_proxy(CLI::App& app) {
    auto a = std::make_shared<proxy_args>();
    const char* f = "Forwarding";
    app.add_option("--listen", a->listen,
                   "Where clients connect: ws://HOST:PORT, wss://HOST:PORT (TLS termination, with --tls-cert/--tls-key or "
                   "--tls-self-signed), unix:PATH (WebSocket on a unix socket: ws+unix://PATH:/) or tcp://HOST:PORT "
                   "(each TCP connection carried over its own WebSocket)")
        ->group(f)->type_name("ADDR")->capture_default_str();
    app.add_option("--to", a->to,
                   "An upstream: ws://, wss://, ws+unix://PATH[:/RESOURCE] or tcp://HOST:PORT (repeatable: balanced over all)")
        ->group(f)->type_name("URL")->required();
    app.add_option("--path-prefix", a->path_prefix, "Strip this prefix from the client's path before forwarding")
        ->group(f)->type_name("PATH");
    app.add_option("--forward-header", a->forward_headers,
                   "Also pass this request header on (repeatable; Origin, Cookie, Authorization and User-Agent always are)")
        ->group(f)->type_name("NAME");
    app.add_flag("--strip-auth", a->strip_auth, "Do not pass Authorization or ?token=/?access_token= to the upstream")->group(f);
    app.add_option("--connect-timeout", a->connect_timeout, "Time allowed to connect to an upstream before trying the next")
        ->group(f)->type_name("DURATION")->capture_default_str();

    const char* b = "Balancing and health";
    app.add_option("--balance", a->balance, "How new connections are spread: round-robin, least-conn or random")
        ->group(b)->type_name("MODE")->check(CLI::IsMember({"round-robin", "least-conn", "random"}))->capture_default_str();
    app.add_option("--sticky", a->sticky,
                   "Keep clients on one backend by ip, header:NAME, cookie:NAME or query:NAME (consistent-hash ring)")
        ->group(b)->type_name("KEY");
    app.add_option("--health-interval", a->health_interval,
                   "Check every backend this often (TCP connect or WebSocket upgrade: 101, 401, 403 or 404 count as up, "
                   "5xx or a web server's 200 as down); 0: only mark backends down on failed connects and retry them "
                   "after 10s")
        ->group(b)->type_name("DURATION")->capture_default_str();
    app.add_option("--health-timeout", a->health_timeout, "A health check slower than this fails")
        ->group(b)->type_name("DURATION")->capture_default_str();

    const char* u = "Upstream TLS";
    app.add_option("--cacert", a->cacert, "Trust this CA bundle (PEM) for wss:// upstreams")->group(u)->type_name("FILE");
    app.add_option("--cert", a->cert, "Client certificate (PEM) for wss:// upstreams")->group(u)->type_name("FILE");
    app.add_option("--key", a->key, "Client certificate key (PEM); asks for the passphrase of an encrypted key on the terminal")
        ->group(u)->type_name("FILE");
    app.add_option("--key-passphrase-file", a->key_passphrase_file, "Read the passphrase of an encrypted --key from the first line of FILE")
        ->group(u)->type_name("FILE");
    app.add_flag("-k,--insecure", a->insecure, "Do not verify upstream certificates")->group(u);
    app.add_option("--sni", a->sni, "Server name to send and verify instead of the upstream host")->group(u)->type_name("NAME");

    const char* o = "Observe and break";
    app.add_option("--tap", a->tap, "Write every message both ways to FILE (- for stdout)")->group(o)->type_name("FILE");
    app.add_option("--tap-format", a->tap_format, "Tap lines: text, hex or ndjson (JSON events as connect --jsonl writes them: man wsx, EVENT FORMAT)")
        ->group(o)->type_name("FORMAT")->check(CLI::IsMember({"text", "hex", "ndjson"}))->capture_default_str();
    app.add_option("--fault-delay", a->fault_delay, "Delay every message by this long (both ways, order kept)")
        ->group(o)->type_name("DURATION");
    app.add_option("--fault-jitter", a->fault_jitter, "Add a random 0..DURATION to each delay")->group(o)->type_name("DURATION");
    app.add_option("--fault-drop", a->fault_drop, "Silently drop this share of messages (both ways), e.g. 1%")
        ->group(o)->type_name("PERCENT");
    app.add_option("--fault-close-after", a->fault_close_after,
                   "Close each client after N messages (both ways) or after a duration (e.g. 5s)")
        ->group(o)->type_name("N|DURATION");
    app.add_option("--fault-close-code", a->fault_close_code, "Close code for --fault-close-after: 1000-1003, 1007-1014 or 3000-4999")
        ->group(o)->type_name("CODE")->capture_default_str();
    app.add_flag("--fault-stall-pongs", a->fault_stall_pongs, "Never answer the clients' pings (nor pass them on)")->group(o);

    add_listener_options(app, a->listener);
    // A front door drains first (see below): the timeout bounds the drain, not the closing handshakes.
    app.get_option("--drain-timeout")
        ->description("On SIGINT/SIGTERM: how long open connections (and tcp:// tunnels) may go on before the rest "
                      "are closed with 1001, which they then have up to 2s to answer (a second signal exits at once)");
    app.get_option("--max-message-size")
        ->description("Largest message accepted from a client or an upstream; larger ones close with 1009 (on a "
                      "tcp:// listener: from the upstream, ending the tunnel)");
    app.get_option("--handshake-timeout")
        ->description("Time allowed for a client's TLS handshake and upgrade request (not with a tcp:// listener: "
                      "the upstream's upgrade is bounded by --connect-timeout)");

    app.footer(
        "Examples:\n"
        "  wsx proxy --listen ws://127.0.0.1:8080 --to ws://10.0.0.1:9000 --to ws://10.0.0.2:9000\n"
        "  wsx proxy --listen wss://0.0.0.0:443 --tls-cert c.pem --tls-key k.pem --to ws://127.0.0.1:9000\n"
        "  wsx proxy --listen ws://127.0.0.1:5901 --to tcp://127.0.0.1:5900      # websockify\n"
        "  wsx proxy --listen tcp://127.0.0.1:2222 --to wss://gw.example/ssh     # tunnel entrance\n"
        "  wsx proxy --to ws://a:9000 --to ws://b:9000 --balance least-conn --sticky cookie:sid --metrics\n"
        "  wsx proxy --to ws://127.0.0.1:9000 --tap - --tap-format ndjson --fault-delay 50ms --fault-drop 1%\n"
        "  wsx proxy --listen unix:/run/wsx/front.sock --to ws+unix:///run/app.sock:/\n"
        "\nPrints 'listening on ws://HOST:PORT' (or ws+unix://PATH:/, tcp://) on stderr once ready. The\n"
        "upstream is connected before the client's upgrade is answered: its subprotocol choice is the\n"
        "client's. A backend's 5xx sends the client to the next one; its 4xx goes back to the client\n"
        "with its WWW-Authenticate and Retry-After fields (a client can answer a challenge through it);\n"
        "when every backend is busy the client gets HTTP 503 (Retry-After: 1), when none answers 502.\n"
        "X-Forwarded-For and X-Forwarded-Proto are added (a unix socket client has no address:\n"
        "X-Forwarded-For is passed on as it came, and --sticky ip puts all such clients on one backend).\n"
        "GET /metrics (--metrics) adds per-backend state, connections, bytes and failures.");

    // Its default is shown in the help, so only the count tells whether it was given.
    const CLI::Option* handshake_timeout = app.get_option("--handshake-timeout");

    return [a, handshake_timeout]() -> int {
        problems p;
        proxy_options po;
        auto& so = po.serve;
        std::string listen = a->listen;
        // unix:PATH, and the ws+unix:// spelling that parse_listen_address answers with a hint.
        const bool unix_form = listen.starts_with("unix:") || listen.find("+unix://") != std::string::npos;
        if (unix_form) {
            // parsed below as it is
        } else if (listen.starts_with("tcp://")) {
            po.tcp_listener = true;
            listen = listen.substr(6);
        } else if (listen.starts_with("wss://")) {
            if (a->listener.tls_cert.empty() && !a->listener.tls_self_signed)
                p.add("--listen wss://: give --tls-cert and --tls-key, or --tls-self-signed");
            listen = listen.substr(6);
        } else if (listen.starts_with("ws://")) {
            listen = listen.substr(5);
            if (!a->listener.tls_cert.empty() || a->listener.tls_self_signed)
                p.add("--listen ws:// with a TLS certificate: use wss:// to terminate TLS");
        }
        if (!unix_form && !listen.empty() && listen.back() == '/') listen.pop_back();
        std::string err;
        if (!unix_form && listen.find("://") != std::string::npos)
            p.add(fmt::format("--listen '{}': use ws://, wss:// or tcp:// followed by HOST:PORT, or unix:PATH", a->listen));
        else if (auto la = parse_listen_address(listen, &err)) so.server.listen = *la;
        else p.add("--listen: " + err);

        for (const auto& t : a->to) {
            std::string e;
            if (auto up = parse_upstream(t, &e)) po.upstreams.push_back(*up);
            else p.add("--to " + e);
        }
        if (po.tcp_listener)
            for (const auto& up : po.upstreams)
                if (up.tcp) p.add(fmt::format("--to {}: a tcp:// listener needs ws:// or wss:// upstreams", up.name));
        po.balance = *parse_balance_mode(a->balance);
        if (!a->sticky.empty()) {
            po.sticky = parse_sticky(a->sticky);
            if (!po.sticky) p.add(fmt::format("--sticky '{}': use ip, header:NAME, cookie:NAME or query:NAME", a->sticky));
            else if (po.tcp_listener && po.sticky->from != sticky_source::kind::ip)
                p.add("--sticky: a tcp:// listener has only the client's ip to go by");
        }
        po.health_interval = duration_arg(p, "--health-interval", a->health_interval);
        po.health_timeout = duration_arg(p, "--health-timeout", a->health_timeout);
        po.connect_timeout = duration_arg(p, "--connect-timeout", a->connect_timeout);
        // A zero timeout would fail every connect (and every check) at once.
        for (auto [name, value, parsed] : {std::tuple{"--health-timeout", &a->health_timeout, po.health_timeout},
                                           std::tuple{"--connect-timeout", &a->connect_timeout, po.connect_timeout}})
            if (parsed.count() == 0 && parse_duration(*value))
                p.add(fmt::format("{} must be more than 0 (e.g. {} 2s)", name, name));
        po.path_prefix = a->path_prefix;
        po.forward_headers = a->forward_headers;
        po.strip_auth = a->strip_auth;
        po.upstream_tls = {.cacert = a->cacert, .cert = a->cert, .key = a->key, .insecure = a->insecure, .sni = a->sni};
        // Checked now, before listening, not at the first client's connect (a 502 for everyone).
        check_client_tls(p, po.upstream_tls, !po.upstream_tls.key.empty(), a->key_passphrase_file);
        po.tap_path = a->tap;
        po.tap = *parse_tap_format(a->tap_format);

        auto& fo = po.fault;
        fo.delay = duration_arg(p, "--fault-delay", a->fault_delay);
        fo.jitter = duration_arg(p, "--fault-jitter", a->fault_jitter);
        if (!a->fault_drop.empty()) {
            if (auto d = parse_fraction(a->fault_drop)) fo.drop = *d;
            else p.add(fmt::format("--fault-drop '{}': not a share (use e.g. 1% or 0.01)", a->fault_drop));
        }
        if (!a->fault_close_after.empty()) {
            const auto& s = a->fault_close_after;
            if (s.find_first_not_of("0123456789") == std::string::npos) {
                const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), fo.close_after_messages);
                if (ec != std::errc{})
                    p.add(fmt::format("--fault-close-after '{}': too many messages (at most {})", s,
                                      std::numeric_limits<std::uint64_t>::max()));
                else if (fo.close_after_messages == 0)
                    p.add("--fault-close-after '0': would close nothing; give 1 or more messages or a duration, or leave it out");
            } else {
                fo.close_after_time = duration_arg(p, "--fault-close-after", s);
                if (fo.close_after_time.count() == 0 && parse_duration(s))
                    p.add(fmt::format("--fault-close-after '{}': would close nothing; give a duration above 0, or leave it out", s));
            }
        }
        // Only codes a Close frame may carry: 1004, 1005, 1006 and 1015 are reserved, 1016-2999
        // unassigned (RFC 6455 7.4).
        if (const int c = a->fault_close_code; !((c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)))
            p.add(fmt::format("--fault-close-code {}: not a code a Close frame may carry; use 1000-1003, 1007-1014 or 3000-4999",
                              c));
        fo.close_code = static_cast<std::uint16_t>(a->fault_close_code);
        fo.stall_pongs = a->fault_stall_pongs;
        if (po.tcp_listener && fo.any()) p.add("--fault-* options apply to WebSocket clients: use a ws:// or wss:// listener");
        else if (fo.any())
            for (const auto& up : po.upstreams)
                if (up.tcp) p.add(fmt::format("--fault-* options apply between WebSocket peers: {} is a tcp:// upstream", up.name));

        if (po.tcp_listener) {
            // A tcp:// listener has no HTTP request and no WebSocket client: these options have
            // nothing to act on there, and silently ignoring a --token would be worse than refusing it.
            const auto& l = a->listener;
            std::vector<std::string> ws_only;
            auto given = [&](bool set, const char* name) {
                if (set) ws_only.emplace_back(name);
            };
            given(!l.path.empty(), "--path");
            given(!a->path_prefix.empty(), "--path-prefix");
            given(!a->forward_headers.empty(), "--forward-header");
            given(a->strip_auth, "--strip-auth");
            given(l.compress, "--compress");
            given(!l.ping_interval.empty(), "--ping-interval");
            given(!l.ping_timeout.empty(), "--ping-timeout");
            given(!l.idle_timeout.empty(), "--idle-timeout");
            // The client's TLS handshake and upgrade request: a TCP client has neither (the
            // upstream's upgrade is bounded by --connect-timeout).
            given(handshake_timeout->count() > 0, "--handshake-timeout");
            given(!l.tls_cert.empty(), "--tls-cert");
            given(!l.tls_key.empty(), "--tls-key");
            given(l.tls_self_signed, "--tls-self-signed");
            given(!l.client_ca.empty(), "--client-ca");
            given(!l.token.empty(), "--token");
            given(!l.jwt_secret.empty(), "--jwt-secret");
            given(!l.jwt_public_key.empty(), "--jwt-public-key");
            given(!l.jwt_algs.empty(), "--jwt-alg");
            given(!l.basic_auth.empty(), "--basic-auth");
            given(!l.token_file.empty(), "--token-file");
            given(!l.jwt_secret_file.empty(), "--jwt-secret-file");
            given(!l.basic_auth_file.empty(), "--basic-auth-file");
            given(!l.origins.empty(), "--origin");
            given(!l.rate_limit.empty(), "--rate-limit");
            given(!l.connect_rate_limit.empty(), "--connect-rate-limit");
            given(l.metrics, "--metrics");
            given(!l.headers.empty(), "--header");
            for (const auto& name : ws_only)
                p.add(fmt::format("{}: a tcp:// listener carries raw TCP, with no HTTP request or WebSocket client for "
                                  "it to act on; use a ws:// or wss:// listener, or leave it out",
                                  name));
        }
        apply_listener_options(p, a->listener, so);
        // Checked on the value (01 is 1; a value that is no number has its own complaint).
        if (po.tcp_listener && so.threads > 1)
            p.add("--threads: a tcp:// listener runs its tunnels on one thread; leave it out or use a ws:// listener");
        so.drain_first = true;  // a front door lets connections finish before closing them
        if (p.report("proxy")) return static_cast<int>(exit_code::usage);
        return run_proxy(std::move(po));
    };
}

}  // namespace wsx::cli
