// wsx serve: parse options → serve_options → validate (every problem at once) → run.
#include <unistd.h>

#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "auth.hpp"
#include "commands.hpp"
#include "exec.hpp"
#include "rate_limit.hpp"
#include "serve_app.hpp"

namespace wsx::cli {

namespace {
struct serve_args {
    std::string address = "127.0.0.1:8080";
    bool echo = false, stdio = false, oneshot = false;
    std::vector<std::string> exec, passenv;
    bool binary = false, pass_stderr = false;
    std::string kill_grace = "5s";
    std::size_t max_forks = 0;
    std::string static_dir, path;
    std::string tls_cert, tls_key, client_ca;
    bool tls_self_signed = false;
    std::string max_message_size = "64MiB", send_queue_limit = "16MiB", overflow = "close";
    bool compress = false;
    std::string ping_interval, ping_timeout, idle_timeout, handshake_timeout = "10s", drain_timeout = "5s";
    std::size_t max_connections = 0, threads = 0;
    bool announce_json = false, metrics = false, quiet = false;
    std::string log_format = "text";
    std::string token, jwt_secret, jwt_public_key, basic_auth, jwt_leeway = "30s";
    std::vector<std::string> jwt_algs, origins;
    std::string rate_limit, rate_limit_policy = "close", connect_rate_limit;
};
}  // namespace

runner setup_serve(CLI::App& app) {
    auto a = std::make_shared<serve_args>();
    app.add_option("address", a->address, "Where to listen: PORT, HOST:PORT or [V6]:PORT (port 0 picks a free one)")
        ->type_name("ADDR")->capture_default_str();

    const char* m = "Modes";
    app.add_flag("--echo", a->echo, "Send every message back to its sender, same opcode (the default)")->group(m);
    app.add_option("--exec", a->exec,
                   "Run CMD for each connection (websocketd-style): client lines to its stdin, its stdout lines to the "
                   "client, exit status as close code; with arguments starting with '-', give one quoted string, "
                   "split like a shell would: --exec 'sh -c \"cat -n\"'")
        ->group(m)->type_name("CMD [ARGS...]")->expected(1, -1);
    app.add_flag("--binary", a->binary, "With --exec: raw output chunks as binary messages, messages written raw")->group(m);
    app.add_flag("--pass-stderr", a->pass_stderr, "With --exec: child stderr lines go to the client instead of the log")
        ->group(m);
    app.add_option("--kill-grace", a->kill_grace, "With --exec: time between SIGTERM and SIGKILL once the client has left")
        ->group(m)->type_name("DUR")->capture_default_str();
    app.add_option("--passenv", a->passenv, "With --exec: also pass these server variables (comma-separated; PATH always is)")
        ->group(m)->type_name("NAMES")->delimiter(',');
    app.add_option("--max-forks", a->max_forks, "With --exec: at most N children at once; further upgrades get HTTP 503")
        ->group(m)->type_name("N");
    app.add_flag("--stdio", a->stdio,
                 "Server stdin lines go to every client, client messages to stdout; stdin EOF closes clients and exits")
        ->group(m);
    app.add_flag("--oneshot", a->oneshot, "Serve a single client, then exit (others get HTTP 503 meanwhile)")->group(m);
    app.add_option("--static", a->static_dir, "Serve files from DIR to plain HTTP GET on the same port")
        ->group(m)->type_name("DIR");
    app.add_option("--path", a->path, "Upgrade only at this path (e.g. /ws); other paths get HTTP 404")
        ->group(m)->type_name("PATH");

    const char* l = "Protocol and limits";
    app.add_option("--max-message-size", a->max_message_size, "Largest message accepted; larger ones close with 1009")
        ->group(l)->type_name("SIZE")->capture_default_str();
    app.add_flag("--compress", a->compress, "Accept permessage-deflate compression")->group(l);
    app.add_option("--ping-interval", a->ping_interval, "Ping every client this often")->group(l)->type_name("DUR");
    app.add_option("--ping-timeout", a->ping_timeout,
                   "Drop a client whose pong is this late (default: the ping interval)")
        ->group(l)->type_name("DUR");
    app.add_option("--idle-timeout", a->idle_timeout, "Close connections silent this long with 1001")
        ->group(l)->type_name("DUR");
    app.add_option("--max-connections", a->max_connections, "At most N connections at once; further upgrades get HTTP 503")
        ->group(l)->type_name("N");
    app.add_option("--send-queue-limit", a->send_queue_limit, "Bytes queued for a slow client before --overflow applies")
        ->group(l)->type_name("SIZE")->capture_default_str();
    app.add_option("--overflow", a->overflow, "When a client's send queue is full: close (1008) or drop messages")
        ->group(l)->type_name("POLICY")->check(CLI::IsMember({"close", "drop"}))->capture_default_str();
    app.add_option("--handshake-timeout", a->handshake_timeout,
                   "Time allowed for the TLS handshake and the upgrade request")
        ->group(l)->type_name("DUR")->capture_default_str();
    app.add_option("--threads", a->threads, "Worker threads, connections spread over them (default: one per core)")
        ->group(l)->type_name("N");

    const char* t = "TLS";
    app.add_option("--tls-cert", a->tls_cert, "Certificate chain (PEM): serve wss://")->group(t)->type_name("FILE");
    app.add_option("--tls-key", a->tls_key, "Private key (PEM) for --tls-cert")->group(t)->type_name("FILE");
    app.add_flag("--tls-self-signed", a->tls_self_signed,
                 "Serve wss:// with a certificate generated at start-up (its SHA-256 fingerprint is printed)")
        ->group(t);
    app.add_option("--client-ca", a->client_ca, "Require client certificates signed by this CA (mutual TLS)")
        ->group(t)->type_name("FILE");

    const char* sec = "Security";
    app.add_option("--token", a->token, "Require this bearer token (Authorization: Bearer, or ?token=); else HTTP 401")
        ->group(sec)->type_name("SECRET");
    app.add_option("--jwt-secret", a->jwt_secret, "Require a JWT signed with this HMAC secret (HS256); its 'sub' is WSX_SUB for --exec")
        ->group(sec)->type_name("SECRET");
    app.add_option("--jwt-public-key", a->jwt_public_key,
                   "Require a JWT signed by this public key or certificate (PEM: RS256/384/512, ES256/384/512)")
        ->group(sec)->type_name("FILE");
    app.add_option("--jwt-alg", a->jwt_algs, "Accept only these JWT algorithms (repeatable; default from the secret/key)")
        ->group(sec)->type_name("ALG");
    app.add_option("--jwt-leeway", a->jwt_leeway, "Clock skew allowed on the JWT exp and nbf claims")
        ->group(sec)->type_name("DUR")->capture_default_str();
    app.add_option("--basic-auth", a->basic_auth, "Require HTTP Basic credentials")->group(sec)->type_name("USER:PASS");
    app.add_option("--origin", a->origins,
                   "Allow only this Origin (repeatable; 'https://*.example.com' for subdomains, '*' for any); else HTTP 403")
        ->group(sec)->type_name("ORIGIN");
    app.add_option("--rate-limit", a->rate_limit,
                   "Messages a client may send, e.g. 100/s or 100/s,burst=20; beyond it: --rate-limit-policy")
        ->group(sec)->type_name("RATE");
    app.add_option("--rate-limit-policy", a->rate_limit_policy,
                   "Over --rate-limit: close (1008 'rate limit exceeded') or drop the message (counted)")
        ->group(sec)->type_name("POLICY")->check(CLI::IsMember({"close", "drop"}))->capture_default_str();
    app.add_option("--connect-rate-limit", a->connect_rate_limit,
                   "Connection attempts per client IP (IPv6: per /64), e.g. 10/s,burst=20; beyond it: HTTP 429")
        ->group(sec)->type_name("RATE");

    const char* o = "Operations";
    app.add_flag("--announce-json", a->announce_json,
                 "Announce the listening address as one JSON line on stderr (url, port, pid, fingerprint)")
        ->group(o);
    app.add_flag("--metrics", a->metrics, "Answer GET /metrics with Prometheus text (connections, messages, closes, rejections)")
        ->group(o);
    app.add_option("--log-format", a->log_format, "Access log format: text or json (one line per closed connection)")
        ->group(o)->type_name("FORMAT")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "No access log (the listening line and errors are still printed)")->group(o);
    app.add_option("--drain-timeout", a->drain_timeout,
                   "On SIGINT/SIGTERM: how long to wait for clients to answer Close 1001 (a second signal exits at once)")
        ->group(o)->type_name("DUR")->capture_default_str();

    app.footer(
        "Examples:\n"
        "  wsx serve                                  # echo on ws://127.0.0.1:8080\n"
        "  wsx serve 127.0.0.1:0                      # any free port, printed on stderr\n"
        "  wsx serve 0.0.0.0:8443 --tls-cert c.pem --tls-key k.pem\n"
        "  wsx serve 8080 --exec ./count.sh 10        # one process per connection\n"
        "  wsx serve 8080 --exec 'sh -c \"tr a-z A-Z\"'\n"
        "  wsx serve 8080 --stdio                     # chat with clients from the terminal\n"
        "  wsx serve 8080 --static ./public --path /ws --metrics\n"
        "  wsx serve 8080 --token s3cret --rate-limit 100/s,burst=200\n"
        "\nPrints 'listening on ws://HOST:PORT' on stderr once ready. Put ADDR before --exec: the\n"
        "words after --exec are the command (quote it whole when an argument starts with '-').\n"
        "The child of --exec gets REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, SCRIPT_NAME,\n"
        "PATH_INFO, QUERY_STRING, REQUEST_URI, HTTPS, HTTP_* (request headers), WSX_CONNECTION_ID,\n"
        "WSX_SCHEME, WSX_SUB (JWT subject or basic user) and PATH; its exit status becomes the\n"
        "close code (0: 1000, else 1011 'exit N' or 'signal N').");

    return [a]() -> int {
        problems p;
        serve_options o;
        std::string err;
        if (auto la = parse_listen_address(a->address, &err)) o.server.listen = *la;
        else p.add(err);
        if (!o.server.listen.unix_path.empty()) p.add("serve: unix socket listeners are not supported yet; use HOST:PORT");

        int modes = (a->echo ? 1 : 0) + (!a->exec.empty() ? 1 : 0) + (a->stdio ? 1 : 0);
        if (modes > 1) p.add("--echo, --exec and --stdio are alternatives: choose one");
        if (!a->exec.empty()) {
            o.mode = serve_mode::exec;
            if (a->exec.size() == 1 && a->exec[0].find_first_of(" \t'\"") != std::string::npos) {
                if (auto words = split_command_line(a->exec[0]); words && !words->empty()) o.exec.argv = *words;
                else p.add(fmt::format("--exec '{}': unbalanced quotes", a->exec[0]));
            } else {
                o.exec.argv = a->exec;
            }
            if (!o.exec.argv.empty() && !find_program(o.exec.argv[0]))
                p.add(fmt::format("--exec: '{}' is not an executable file{}", o.exec.argv[0],
                                  o.exec.argv[0].find('/') == std::string::npos ? " in PATH" : ""));
        } else if (a->stdio) {
            o.mode = serve_mode::stdio;
        }
        if (o.mode != serve_mode::exec) {
            if (a->binary) p.add("--binary only applies to --exec");
            if (a->pass_stderr) p.add("--pass-stderr only applies to --exec");
            if (a->max_forks) p.add("--max-forks only applies to --exec");
            if (!a->passenv.empty()) p.add("--passenv only applies to --exec");
        }
        o.exec.binary = a->binary;
        o.exec.pass_stderr = a->pass_stderr;
        o.exec.kill_grace = duration_arg(p, "--kill-grace", a->kill_grace);
        o.exec.passenv = a->passenv;
        o.exec.max_forks = a->max_forks;
        o.oneshot = a->oneshot;
        o.static_dir = a->static_dir;
        if (!a->static_dir.empty() && ::access(a->static_dir.c_str(), R_OK | X_OK) != 0)
            p.add(fmt::format("--static '{}': not a readable directory", a->static_dir));
        o.path = a->path;
        if (!o.path.empty() && o.path[0] != '/') p.add(fmt::format("--path '{}': must start with '/'", o.path));

        o.use_tls = a->tls_self_signed || !a->tls_cert.empty() || !a->tls_key.empty();
        o.tls = {.cert = a->tls_cert, .key = a->tls_key, .client_ca = a->client_ca, .self_signed = a->tls_self_signed};
        if (a->tls_self_signed && (!a->tls_cert.empty() || !a->tls_key.empty()))
            p.add("--tls-self-signed cannot be combined with --tls-cert/--tls-key");
        if (!a->client_ca.empty() && !o.use_tls) p.add("--client-ca needs TLS: add --tls-cert/--tls-key or --tls-self-signed");
        if (o.use_tls && !a->tls_self_signed) {
            try {
                make_server_tls(o.tls);
            } catch (const failure& f) {
                p.add(f.what());
            }
        }
        auto& s = o.server.session;
        s.max_message_size = size_arg(p, "--max-message-size", a->max_message_size);
        s.send_queue_limit = size_arg(p, "--send-queue-limit", a->send_queue_limit);
        s.overflow = a->overflow == "drop" ? overflow_policy::drop : overflow_policy::close;
        s.ping_interval = duration_arg(p, "--ping-interval", a->ping_interval);
        s.ping_timeout = a->ping_timeout.empty() ? s.ping_interval : duration_arg(p, "--ping-timeout", a->ping_timeout);
        if (!a->ping_timeout.empty() && a->ping_interval.empty()) p.add("--ping-timeout needs --ping-interval");
        s.idle_timeout = duration_arg(p, "--idle-timeout", a->idle_timeout);
        o.server.handshake_timeout = duration_arg(p, "--handshake-timeout", a->handshake_timeout);
        if (o.server.handshake_timeout.count() <= 0) p.add("--handshake-timeout must be more than 0");
        o.server.deflate.enabled = a->compress;
        o.max_connections = a->max_connections;
        o.threads = a->threads;
        o.announce_json = a->announce_json;
        o.metrics = a->metrics;
        o.log = a->log_format == "json" ? log_format::json : log_format::text;
        o.quiet = a->quiet;
        o.drain_timeout = duration_arg(p, "--drain-timeout", a->drain_timeout);

        if (!a->connect_rate_limit.empty()) {
            std::string why;
            if (auto r = parse_rate_limit(a->connect_rate_limit, &why)) {
                auto limiter = std::make_shared<ip_rate_limiter>(r->first, r->second);
                o.filters.push_back([limiter](const http_request&, peer_info& peer, std::string&) -> std::optional<http_response> {
                    if (limiter->allow(peer.address, ip_rate_limiter::clock::now())) return std::nullopt;
                    auto res = make_response(http::status::too_many_requests, "too many connection attempts: slow down");
                    res.set(http::field::retry_after, "1");
                    return res;
                });
            } else {
                p.add(fmt::format("--connect-rate-limit '{}': {}", a->connect_rate_limit, why));
            }
        }
        auth_options ao;
        ao.token = a->token;
        ao.jwt_secret = a->jwt_secret;
        ao.jwt_algorithms = a->jwt_algs;
        ao.jwt_leeway = std::chrono::duration_cast<std::chrono::seconds>(duration_arg(p, "--jwt-leeway", a->jwt_leeway));
        ao.origins = a->origins;
        if (!a->jwt_public_key.empty()) {
            std::ifstream in(a->jwt_public_key);
            std::ostringstream text;
            text << in.rdbuf();
            if (!in) p.add(fmt::format("--jwt-public-key '{}': cannot read the file", a->jwt_public_key));
            else ao.jwt_public_key_pem = text.str();
        }
        if (!a->basic_auth.empty()) {
            auto colon = a->basic_auth.find(':');
            if (colon == std::string::npos) p.add(fmt::format("--basic-auth '{}': use USER:PASS", a->basic_auth));
            else {
                ao.basic_user = a->basic_auth.substr(0, colon);
                ao.basic_pass = a->basic_auth.substr(colon + 1);
            }
        }
        try {
            auto auth = authenticator::from_options(ao);
            if (auth.enabled())
                o.filters.push_back([auth](const http_request& req, peer_info& peer, std::string&) -> std::optional<http_response> {
                    auto r = auth.check(req);
                    if (!r.ok) return to_response(r);
                    if (!r.subject.empty()) peer.vars["sub"] = r.subject;
                    return std::nullopt;
                });
        } catch (const failure& f) {
            p.add(f.what());
        }
        if (!a->rate_limit.empty()) {
            std::string why;
            if (auto r = parse_rate_limit(a->rate_limit, &why)) {
                o.rate_limit = r->first;
                o.rate_burst = r->second;
            } else {
                p.add(fmt::format("--rate-limit '{}': {}", a->rate_limit, why));
            }
        }
        o.rate_limit_drop = a->rate_limit_policy == "drop";
        if (p.report("serve")) return static_cast<int>(exit_code::usage);
        return run_serve(std::move(o));
    };
}

}  // namespace wsx::cli
