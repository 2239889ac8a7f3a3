#pragma once
/// `wsx serve`: a listener plus a per-connection handler (echo, a child process, or the
/// server's own stdio), optional static files and metrics on the same port, limits,
/// an access log and graceful shutdown.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server.hpp"
#include "tls.hpp"

namespace wsx {

enum class serve_mode { echo, exec, stdio };
enum class log_format { text, json };
/// What happens to an upgrade beyond --max-connections.
enum class max_connections_policy {
    refuse,        ///< HTTP 503 with Retry-After
    evict_oldest,  ///< close the connection idle longest (1013) and take the new one
};

/// Implemented by a service's handler that holds messages back (the relay's batches): when the
/// server closes the connection itself (shutdown, eviction, an expired token), it calls
/// flush_held() on the session's executor first, so that what is held leaves before the Close.
class holds_messages {
public:
    virtual ~holds_messages() = default;
    virtual void flush_held() = 0;
};

/// A service hosted on the serve machinery (the relay, the proxy's WebSocket listeners): the
/// listener, TLS, path/auth/limit filters, per-connection rate limit, metrics, access log and
/// graceful shutdown are shared; the service decides what each connection does.
class service {
public:
    virtual ~service() = default;
    /// Once, on the main thread, before listening; `main` is the context for timers and shared
    /// state (connections run on worker contexts, one thread each).
    virtual void start(net::io_context& main) { (void)main; }
    /// After the path, auth and limit checks: refuse (return a response) or accept; may set the
    /// subprotocol and add to peer.vars / peer.holds. Called on connection threads, concurrently.
    virtual std::optional<http_response> check_upgrade(const http_request&, peer_info&, std::string& /*subprotocol*/) {
        return std::nullopt;
    }
    /// A check that runs after check_upgrade and may wait (e.g. to connect an upstream first, so
    /// that its answer decides the client's); empty: none. What it makes for the handler goes in
    /// peer.attachment.
    virtual async_upgrade_filter async_check_upgrade() { return {}; }
    /// The events handler of an upgraded session, on the session's executor. Incoming messages are
    /// counted and rate-limited (--rate-limit) before they reach it; `id` is the access log's
    /// connection id.
    virtual std::shared_ptr<channel_events> make_handler(std::shared_ptr<ws_session> s, const http_request& req,
                                                         const peer_info& peer, std::uint64_t id) = 0;
    /// A plain HTTP request that /metrics and --static did not take; nullopt: the default answer.
    virtual std::optional<http_response> answer_http(const http_request&, const peer_info&) { return std::nullopt; }
    /// The access log's `backend` for a connection (e.g. the upstream a proxy joined it to), from
    /// what the checks left in `peer`; empty: none. Called on connection threads, concurrently.
    virtual std::string access_backend(const peer_info&) { return {}; }
    /// Appended to GET /metrics (Prometheus text).
    virtual void render_metrics(std::string& out) { (void)out; }
    /// SIGINT/SIGTERM arrived: the listener stopped; clients are being closed with 1001.
    virtual void begin_shutdown() {}
    /// Everything is ending (on the main thread): cancel timers and connections that would keep
    /// `main` running.
    virtual void stop() {}
};

/// `--exec`: one child per connection, websocketd-style.
struct exec_options {
    std::vector<std::string> argv;          ///< program (searched in PATH) and arguments
    bool binary = false;                     ///< raw chunks as binary messages instead of lines
    bool pass_stderr = false;                ///< child stderr lines go to the client, not the log
    /// After the client's Close: how long the child may run on after its EOF (to write its last
    /// lines) before it is stopped; short, so that the Close is answered promptly.
    std::chrono::nanoseconds close_grace = std::chrono::milliseconds(250);
    std::chrono::nanoseconds kill_grace = std::chrono::seconds(5);  ///< SIGTERM → SIGKILL delay
    std::vector<std::string> passenv;        ///< server variables the child also gets (PATH always)
    std::size_t max_forks = 0;               ///< 0: no limit; beyond it upgrades get 503
};

struct serve_options {
    server_options server;
    tls_server_options tls;
    bool use_tls = false;
    serve_mode mode = serve_mode::echo;
    exec_options exec;
    bool oneshot = false;                    ///< exit after the first client leaves
    std::string static_dir;                  ///< serve files from here on plain GET; empty: no
    std::string path;                        ///< only upgrade at this path; empty: any
    bool announce_json = false;              ///< announce the address as a JSON line
    std::size_t threads = 0;                 ///< 0: one per core
    std::size_t max_connections = 0;         ///< 0: no limit; beyond it `max_policy` applies
    /// evict_oldest: the connection with no data message either way for the longest time is
    /// closed with 1013 to make room (data sent to a client is noticed within about 100 ms,
    /// data from it at once); a connection still in its handshake is never chosen.
    max_connections_policy max_policy = max_connections_policy::refuse;
    bool metrics = false;                    ///< GET /metrics in Prometheus text format
    log_format log = log_format::text;
    bool quiet = false;                      ///< no access log
    std::chrono::nanoseconds drain_timeout = std::chrono::seconds(5);
    /// On SIGINT/SIGTERM, stop accepting but let connections end on their own for up to
    /// drain_timeout; only then close the rest with 1001 (false: close them all at once).
    bool drain_first = false;
    /// More checks before each upgrade (authentication, rate limits), run after the path check.
    std::vector<upgrade_filter> filters;
    /// Messages per second a client may send (token bucket: rate, burst); rate 0: no limit.
    double rate_limit = 0, rate_burst = 0;
    /// Beyond the rate: close with 1008 "rate limit exceeded" (false) or drop the message (true).
    bool rate_limit_drop = false;
    /// Set: the service decides what connections do (`mode` is ignored).
    std::shared_ptr<wsx::service> service;
    /// The command name in log lines ("serve", "relay", ...).
    std::string name = "serve";
};

/// The subprotocol to answer with: the first of `ours` (in our order of preference) that the
/// request offers in its Sec-WebSocket-Protocol fields (comma-separated, compared exactly);
/// nullopt when it offers none of them.
std::optional<std::string> choose_subprotocol(const http_request& req, const std::vector<std::string>& ours);

/// Runs until SIGINT/SIGTERM (or stdin EOF / the only client leaving in the stdio modes);
/// returns the exit code.
int run_serve(serve_options o);

/// One access log line: a connection (or a TCP tunnel) that ended. "in" is what the client
/// sent, "out" what it was sent.
struct access_entry {
    std::string peer{};               ///< HOST:PORT, or the unix socket path
    std::optional<std::string> path{};  ///< the request target; none for a TCP tunnel
    std::string backend{};            ///< the upstream it was joined to; empty: none
    std::chrono::nanoseconds duration{0};
    std::uint64_t messages_in = 0, bytes_in = 0, messages_out = 0, bytes_out = 0;
    close_info close{};               ///< how its WebSocket ended
    std::uint64_t dropped_messages = 0, rate_limited = 0;
};

/// The access log line for `e` (no newline): text (`TIME PEER "PATH" DURATION in=M/BB out=M/BB
/// code=C` and optional key=value fields; `-` for no path), or one JSON object.
/// The path is logged through redact_target(), so that credentials never reach the log.
std::string format_access_entry(log_format format, const access_entry& e);

/// Any other log line (no newline): `text` as it is, or with json one object
/// {"ts", "type", "message": text} ("ts" and "type" as in the event format).
std::string format_log_event(log_format format, std::string_view event, const std::string& text);

/// `target` with the values of the credential query parameters (`token`, `access_token`; names
/// compared after percent-decoding, ignoring case) replaced by `REDACTED`; the rest unchanged.
std::string redact_target(std::string_view target);

/// The close code that describes how a connection ended: the code received in a closing
/// handshake; else the one we sent; else the one RFC 6455 prescribes for the error
/// (1009 too big, 1007 bad UTF-8, 1002 protocol error); else 1006.
int effective_close_code(const close_info& info);

/// The CGI/1.1-style environment websocketd gives its children (REMOTE_ADDR, REMOTE_PORT,
/// SERVER_NAME, SERVER_PORT, PATH_INFO, QUERY_STRING, HTTP_* ...), plus WSX_* extras
/// (one per entry of peer.vars, upper-cased, but the server's own `serve.*`), PATH and the
/// variables named in `passenv`.
std::vector<std::string> cgi_environment(const http_request& req, const peer_info& peer, const std::string& script_name,
                                         const std::vector<std::string>& passenv, std::uint64_t connection_id);

}  // namespace wsx
