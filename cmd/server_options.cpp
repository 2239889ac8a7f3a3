// The options every listening command shares; see server_options.hpp.
#include "server_options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <fstream>
#include <sstream>

#include "auth.hpp"
#include "key_passphrase.hpp"
#include "rate_limit.hpp"
#include "tls.hpp"
#include "units.hpp"

namespace wsx::cli {

void add_listener_options(CLI::App& app, listener_args& args) {
    auto* a = &args;
    app.add_option("--path", a->path, "Upgrade only at this path (e.g. /ws); other paths get HTTP 404")
        ->group("Protocol and limits")->type_name("PATH");
    const char* l = "Protocol and limits";
    app.add_option("--max-message-size", a->max_message_size, "Largest message accepted; larger ones close with 1009")
        ->group(l)->type_name("SIZE")->capture_default_str();
    app.add_flag("--compress", a->compress, "Accept permessage-deflate compression")->group(l);
    app.add_option("--ping-interval", a->ping_interval, "Ping every client this often")->group(l)->type_name("DURATION");
    app.add_option("--ping-timeout", a->ping_timeout,
                   "Drop a client whose pong is this late (default: the ping interval)")
        ->group(l)->type_name("DURATION");
    app.add_option("--idle-timeout", a->idle_timeout, "Close with 1001 connections that pass no message either way for this long (pings and pongs do not count)")
        ->group(l)->type_name("DURATION");
    app.add_option("--max-connections", a->max_connections,
                   "At most N connections at once; beyond it --max-connections-policy applies")
        ->group(l)->type_name("N");
    app.add_option("--max-connections-policy", a->max_connections_policy,
                   "An upgrade beyond --max-connections: refuse (HTTP 503 with Retry-After: 1) or evict-oldest (close the "
                   "connection that went longest without a data message either way with 1013 'evicted: connection "
                   "limit', and accept the new one; a proxy's tcp:// tunnels are still refused)")
        ->group(l)->type_name("POLICY")->check(CLI::IsMember({"refuse", "evict-oldest"}))->capture_default_str();
    app.add_option("--send-queue-limit", a->send_queue_limit, "Bytes queued for a slow client before --overflow applies")
        ->group(l)->type_name("SIZE")->capture_default_str();
    app.add_option("--overflow", a->overflow, "When a client's send queue is full: close (1008) or drop messages")
        ->group(l)->type_name("POLICY")->check(CLI::IsMember({"close", "drop"}))->capture_default_str();
    app.add_option("--handshake-timeout", a->handshake_timeout,
                   "Time allowed for the TLS handshake and the upgrade request")
        ->group(l)->type_name("DURATION")->capture_default_str();
    app.add_option("--header", a->headers,
                   "Add this field to every upgrade's 101 answer: 'Name: value' (repeatable; Server replaces wsx's)")
        ->group(l)->type_name("HEADER");
    app.add_option("--threads", a->threads, "Worker threads (1 to 1024), connections spread over them (default: one per core)")
        ->group(l)->type_name("N");

    const char* t = "TLS";
    app.add_option("--tls-cert", a->tls_cert, "Certificate chain (PEM): serve wss://")->group(t)->type_name("FILE");
    app.add_option("--tls-key", a->tls_key,
                   "Private key (PEM) for --tls-cert; asks for the passphrase of an encrypted key on the terminal")
        ->group(t)->type_name("FILE");
    app.add_option("--tls-key-passphrase-file", a->tls_key_passphrase_file,
                   "Read the passphrase of an encrypted --tls-key from the first line of FILE")
        ->group(t)->type_name("FILE");
    app.add_flag("--tls-self-signed", a->tls_self_signed,
                 "Serve wss:// with a certificate generated at start-up (its SHA-256 fingerprint is printed)")
        ->group(t);
    app.add_option("--client-ca", a->client_ca, "Require client certificates signed by this CA (mutual TLS)")
        ->group(t)->type_name("FILE");

    const char* sec = "Security";
    // An empty value would leave the server open: remember it so that it is refused.
    auto refuse_empty = [a](const char* name) {
        return [a, name](const std::string& v) {
            if (v.empty()) a->empty_secrets.emplace_back(name);
        };
    };
    app.add_option("--token", a->token, "Require this bearer token (Authorization: Bearer, or ?token=); else HTTP 401 "
                   "(WSX_SERVER_TOKEN)")
        ->group(sec)->type_name("SECRET")->each(refuse_empty("--token"));
    app.add_option("--token-file", a->token_file, "Read the --token from FILE (one line), out of sight of ps")
        ->group(sec)->type_name("FILE");
    app.add_option("--jwt-secret", a->jwt_secret, "Require a JWT signed with this HMAC secret (HS256; WSX_JWT_SECRET)")
        ->group(sec)->type_name("SECRET")->each(refuse_empty("--jwt-secret"));
    app.add_option("--jwt-secret-file", a->jwt_secret_file, "Read the --jwt-secret from FILE (one line), out of sight of ps")
        ->group(sec)->type_name("FILE");
    app.add_option("--jwt-public-key", a->jwt_public_key,
                   "Require a JWT signed by this public key or certificate (PEM: RS256/384/512, ES256/384/512)")
        ->group(sec)->type_name("FILE")->each(refuse_empty("--jwt-public-key"));
    app.add_option("--jwt-alg", a->jwt_algs, "Accept only these JWT algorithms (repeatable; default from the secret/key)")
        ->group(sec)->type_name("ALG");
    app.add_option("--jwt-leeway", a->jwt_leeway, "Clock skew allowed on the JWT exp and nbf claims; once exp plus this has passed, an open "
                   "connection is closed with 1008 'token expired'")
        ->group(sec)->type_name("DURATION")->capture_default_str();
    app.add_option("--basic-auth", a->basic_auth, "Require HTTP Basic credentials (WSX_BASIC_AUTH)")
        ->group(sec)->type_name("USER:PASS")->each(refuse_empty("--basic-auth"));
    app.add_option("--basic-auth-file", a->basic_auth_file, "Read USER:PASS for --basic-auth from FILE (one line), out of sight of ps")
        ->group(sec)->type_name("FILE");
    app.add_option("--origin", a->origins,
                   "Allow only this Origin (repeatable; 'https://*.example.com' for one label in front: a.example.com, "
                   "not a.b.example.com; '*' for any); else HTTP 403")
        ->group(sec)->type_name("ORIGIN");
    app.add_option("--auth-failure", a->auth_failure,
                   "How a client that --token/--jwt-*/--basic-auth/--origin refuses learns it: status (HTTP 401 or "
                   "403) or close (the upgrade is accepted, then Close 1008 with the reason, which a browser can read)")
        ->group(sec)->type_name("MODE")->check(CLI::IsMember({"status", "close"}))->capture_default_str();
    app.add_option("--rate-limit", a->rate_limit,
                   "Messages a client may send, e.g. 100/s or 100/s,burst=20; beyond it: --rate-limit-policy")
        ->group(sec)->type_name("RATE");
    app.add_option("--rate-limit-policy", a->rate_limit_policy,
                   "Over --rate-limit: close (1008 'rate limit exceeded') or drop the message (counted)")
        ->group(sec)->type_name("POLICY")->check(CLI::IsMember({"close", "drop"}))->capture_default_str();
    app.add_option("--connect-rate-limit", a->connect_rate_limit,
                   "Connection attempts per client IP (IPv6: per /64; all unix socket clients count as one), "
                   "e.g. 10/s,burst=20; beyond it: HTTP 429")
        ->group(sec)->type_name("RATE");
    app.add_option("--unix-mode", a->unix_mode,
                   "Permissions of the socket file of a unix:PATH listener, in octal (e.g. 660: owner and group may "
                   "connect); default: from the umask")
        ->group(sec)->type_name("MODE");

    const char* o = "Operations";
    app.add_flag("--announce-json", a->announce_json,
                 "Announce the listening address as one JSON line on stderr (url, port, pid, fingerprint)")
        ->group(o);
    app.add_flag("--metrics", a->metrics, "Answer GET /metrics with Prometheus text (connections, messages, closes, rejections)")
        ->group(o);
    app.add_option("--log-format", a->log_format, "Log format on stderr: text or json (an access line per closed connection; with json, other log "
                   "lines are JSON objects too)")
        ->group(o)->type_name("FORMAT")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
    app.add_flag("-q,--quiet", a->quiet, "No access log (the listening line and errors are still printed)")->group(o);
    app.add_option("--drain-timeout", a->drain_timeout,
                   "On SIGINT/SIGTERM: how long to wait for clients to answer Close 1001 (a second signal exits at once)")
        ->group(o)->type_name("DURATION")->capture_default_str();

}

void apply_listener_options(problems& p, const listener_args& args, serve_options& o) {
    const auto* a = &args;
    o.path = a->path;
    if (!o.path.empty() && o.path[0] != '/') p.add(fmt::format("--path '{}': must start with '/'", o.path));

    o.use_tls = a->tls_self_signed || !a->tls_cert.empty() || !a->tls_key.empty();
    const bool on_unix = !o.server.listen.unix_path.empty();
    if (on_unix && o.use_tls)
        p.add("TLS on a unix socket listener is not supported: drop --tls-cert/--tls-key/--tls-self-signed "
              "(the socket file's permissions, see --unix-mode, decide who may connect)");
    if (!a->unix_mode.empty()) {
        const auto& m = a->unix_mode;
        unsigned v = 0;
        const bool octal = m.size() <= 4 && m.find_first_not_of("01234567") == std::string::npos;
        if (octal) v = static_cast<unsigned>(std::stoul(m, nullptr, 8));
        if (!octal || v > 0777)
            p.add(fmt::format("--unix-mode '{}': give octal permission bits, e.g. 660 or 0600", m));
        else if (!on_unix)
            p.add("--unix-mode applies to unix socket listeners: listen on unix:PATH");
        else
            o.server.listen.unix_mode = static_cast<int>(v);
    }
    o.tls = {.cert = a->tls_cert, .key = a->tls_key, .client_ca = a->client_ca, .self_signed = a->tls_self_signed};
    if (a->tls_self_signed && (!a->tls_cert.empty() || !a->tls_key.empty()))
        p.add("--tls-self-signed cannot be combined with --tls-cert/--tls-key");
    if (!a->client_ca.empty() && !o.use_tls) p.add("--client-ca needs TLS: add --tls-cert/--tls-key or --tls-self-signed");
    // Every unreadable file is named at once; the contents are checked when all can be read.
    bool readable = true;
    for (auto [option, path] : {std::pair{"--tls-cert", &a->tls_cert}, {"--tls-key", &a->tls_key}, {"--client-ca", &a->client_ca}})
        if (!path->empty()) readable = readable_file(p, option, *path) && readable;
    const bool key_ready = prepare_key_passphrase(p, "--tls-key", a->tls_key, a->tls_key_passphrase_file);
    if (o.use_tls && !a->tls_self_signed && readable && key_ready) {
        try {
            make_server_tls(o.tls);
        } catch (const failure& f) {
            p.add(f.what());
        }
    }
    auto& s = o.server.session;
    s.max_message_size = size_arg(p, "--max-message-size", a->max_message_size);
    if (s.max_message_size == 0 && parse_size(a->max_message_size))
        p.add("--max-message-size 0: every message would be refused; give at least 1 byte, e.g. 64KiB");
    s.send_queue_limit = size_arg(p, "--send-queue-limit", a->send_queue_limit);
    s.overflow = a->overflow == "drop" ? overflow_policy::drop : overflow_policy::close;
    s.ping_interval = duration_arg(p, "--ping-interval", a->ping_interval);
    s.ping_timeout = a->ping_timeout.empty() ? s.ping_interval : duration_arg(p, "--ping-timeout", a->ping_timeout);
    if (!a->ping_timeout.empty() && a->ping_interval.empty()) p.add("--ping-timeout needs --ping-interval");
    s.idle_timeout = duration_arg(p, "--idle-timeout", a->idle_timeout);
    o.server.handshake_timeout = duration_arg(p, "--handshake-timeout", a->handshake_timeout);
    if (o.server.handshake_timeout.count() <= 0) p.add("--handshake-timeout must be more than 0");
    o.server.deflate.enabled = a->compress;
    o.max_connections = count_arg(p, "--max-connections", a->max_connections, 1, 10'000'000, "no limit");
    if (a->max_connections_policy == "evict-oldest") {
        o.max_policy = max_connections_policy::evict_oldest;
        if (a->max_connections.empty())
            p.add("--max-connections-policy evict-oldest needs a limit: add --max-connections N");
    }
    o.threads = count_arg(p, "--threads", a->threads, 1, 1024, "one per core");
    o.announce_json = a->announce_json;
    o.metrics = a->metrics;
    o.log = a->log_format == "json" ? log_format::json : log_format::text;
    o.quiet = a->quiet;
    o.drain_timeout = duration_arg(p, "--drain-timeout", a->drain_timeout);
    for (const auto& hv : a->headers) {
        auto h = header_arg(p, hv);
        if (!h) continue;
        // Fields the handshake itself writes (or forbids in a 101): a second copy would break it.
        static constexpr std::string_view own[] = {"Upgrade", "Connection", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                                                   "Sec-WebSocket-Extensions", "Sec-WebSocket-Version", "Sec-WebSocket-Key",
                                                   "Content-Length", "Transfer-Encoding"};
        const auto it = std::find_if(std::begin(own), std::end(own), [&](std::string_view n) { return beast::iequals(n, h->first); });
        if (it == std::end(own)) {
            o.server.response_headers.push_back(std::move(*h));
            continue;
        }
        const bool protocol = *it == "Sec-WebSocket-Protocol";
        p.add(fmt::format("--header '{}': {} is written by the WebSocket handshake itself; leave it out{}", hv, *it,
                          protocol ? " (wsx serve chooses one with --subprotocol)" : ""));
    }

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
    for (const auto& name : a->empty_secrets)
        p.add(fmt::format("{} is empty, which would accept every client: give a non-empty value (is the variable "
                          "it came from set?) or leave the option out",
                          name));
    std::string token = secret_arg(p, "--token", a->token, "--token-file", a->token_file);
    std::string jwt_secret = secret_arg(p, "--jwt-secret", a->jwt_secret, "--jwt-secret-file", a->jwt_secret_file);
    std::string basic_auth = secret_arg(p, "--basic-auth", a->basic_auth, "--basic-auth-file", a->basic_auth_file);
    std::string basic_name = a->basic_auth_file.empty() ? "--basic-auth" : "--basic-auth-file";
    // The environment's secrets stand in only for a command line without any authentication
    // option (one given there is the whole policy); unset or empty variables are not used.
    const bool auth_given = !a->token.empty() || !a->token_file.empty() || !a->jwt_secret.empty() || !a->jwt_secret_file.empty() ||
                            !a->jwt_public_key.empty() || !a->basic_auth.empty() || !a->basic_auth_file.empty() ||
                            !a->empty_secrets.empty();
    if (!auth_given) {
        token = env_secret("WSX_SERVER_TOKEN");
        jwt_secret = env_secret("WSX_JWT_SECRET");
        basic_auth = env_secret("WSX_BASIC_AUTH");
        basic_name = "WSX_BASIC_AUTH";
    }
    auth_options ao;
    ao.token = token;
    ao.jwt_secret = jwt_secret;
    ao.jwt_algorithms = a->jwt_algs;
    ao.jwt_leeway = std::chrono::duration_cast<std::chrono::seconds>(duration_arg(p, "--jwt-leeway", a->jwt_leeway));
    ao.origins = a->origins;
    if (!a->jwt_public_key.empty()) {
        std::ifstream in(a->jwt_public_key);
        std::ostringstream text;
        text << in.rdbuf();
        if (!in) p.add(fmt::format("--jwt-public-key '{}': cannot read the file ({})", a->jwt_public_key, std::strerror(errno)));
        else ao.jwt_public_key_pem = text.str();
    }
    if (!basic_auth.empty()) {
        auto colon = basic_auth.find(':');
        // Only an inline value is repeated: one from a file or the environment stays unprinted.
        if (colon == std::string::npos)
            p.add(basic_name == "--basic-auth" ? fmt::format("--basic-auth '{}': use USER:PASS", basic_auth)
                                               : basic_name + ": use USER:PASS");
        else if (colon + 1 == basic_auth.size())
            p.add(basic_name + ": the password is empty, which anyone could send: give USER:PASS with a non-empty PASS");
        else {
            ao.basic_user = basic_auth.substr(0, colon);
            ao.basic_pass = basic_auth.substr(colon + 1);
        }
    }
    try {
        auto auth = authenticator::from_options(ao);
        const bool close_on_failure = a->auth_failure == "close";
        const auto leeway_ms = std::chrono::duration_cast<std::chrono::milliseconds>(ao.jwt_leeway).count();
        if (auth.enabled())
            o.filters.push_back([auth, close_on_failure, leeway_ms](const http_request& req, peer_info& peer,
                                                                    std::string&) -> std::optional<http_response> {
                auto r = auth.check(req);
                // A token whose exp is already past (a negative one, which the JWT library would
                // read as a huge unsigned number, included) is refused as expired.
                double expires_ms = -1;
                if (r.ok && !r.claims.is_null())
                    if (const auto exp = r.claims.find("exp"); exp != r.claims.end() && exp->is_number()) {
                        expires_ms = exp->get<double>() * 1000.0 + static_cast<double>(leeway_ms);
                        const auto now_ms = std::chrono::duration<double, std::milli>(
                                                std::chrono::system_clock::now().time_since_epoch()).count();
                        if (!(expires_ms > now_ms)) {
                            r.ok = false;
                            r.status = http::status::unauthorized;
                            r.body = "token expired";
                            r.challenges = {"Bearer realm=\"wsx\", error=\"invalid_token\", error_description=\"token expired\""};
                        }
                    }
                if (!r.ok) {
                    // A browser's WebSocket API hides the status of a refused upgrade (the page
                    // sees 1006): let the client in, to be closed at once with 1008 and the reason.
                    if (close_on_failure &&
                        (r.status == http::status::unauthorized || r.status == http::status::forbidden)) {
                        peer.vars["auth.refused"] = r.body;
                        peer.vars["auth.refused_status"] = std::to_string(static_cast<unsigned>(r.status));
                        return std::nullopt;
                    }
                    return to_response(r);
                }
                if (!r.subject.empty()) peer.vars["sub"] = r.subject;
                if (!r.claims.is_null()) {
                    peer.vars["claims"] = r.claims.dump();
                    // The connection ends when its token does (closed with 1008 "token expired");
                    // one past the year 287,000 never does.
                    if (expires_ms > 0 && expires_ms < 9.0e15)
                        peer.vars["auth.expires_ms"] = std::to_string(static_cast<long long>(expires_ms));
                }
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
}

}  // namespace wsx::cli
