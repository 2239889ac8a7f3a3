#pragma once
/// `wsx proxy`: a WebSocket front door. ws:// and wss:// listeners run on serve's machinery
/// (TLS, auth, limits, metrics, access log, shutdown) with a service that connects each client
/// to an upstream chosen by the balancer before answering its upgrade; a tcp:// listener carries
/// each TCP connection over its own WebSocket connection.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "balancer.hpp"
#include "bridge.hpp"
#include "serve_app.hpp"
#include "tap.hpp"
#include "tls.hpp"

namespace wsx {

/// One upstream: ws://, wss://, ws+unix://PATH:/RESOURCE or tcp://HOST:PORT.
struct upstream_target {
    std::string name;   ///< as given (metrics, ring identity)
    bool tcp = false;
    endpoint url;       ///< for ws/wss
    std::string host;   ///< for tcp
    std::uint16_t port = 0;
};

/// Parses an upstream URL; nullopt and *error when malformed.
std::optional<upstream_target> parse_upstream(std::string_view text, std::string* error);

struct proxy_options {
    serve_options serve;                 ///< the ws/wss listener (address, TLS, policy, metrics, log)
    bool tcp_listener = false;           ///< listen for plain TCP instead (tunnel entrance)
    std::vector<upstream_target> upstreams;
    balance_mode balance = balance_mode::round_robin;
    std::optional<sticky_source> sticky;
    std::chrono::nanoseconds health_interval = std::chrono::seconds(2);  ///< 0: passive marking only
    std::chrono::nanoseconds health_timeout = std::chrono::seconds(2);
    /// Without active checks, a backend marked down is tried again after this long.
    std::chrono::nanoseconds down_cool_down = std::chrono::seconds(10);
    std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
    std::string path_prefix;             ///< stripped from the client's path before forwarding
    std::vector<std::string> forward_headers;  ///< request headers passed on to ws upstreams
    bool strip_auth = false;             ///< do not pass Authorization or ?token= on
    tls_client_options upstream_tls;     ///< verification for wss:// upstreams
    std::string tap_path;                ///< empty: no tap; "-": stdout
    tap_format tap = tap_format::text;
    fault_options fault;
};

/// Runs until SIGINT/SIGTERM; returns the exit code.
int run_proxy(proxy_options o);

/// The upstream request target for a client's: `prefix` stripped from the path (when it starts
/// with it), the upstream URL's own path in front (unless "/"), and the upstream URL's query
/// followed by the client's (`/a?b=1` and `/x?c=2` give `/a/x?b=1&c=2`).
std::string rewrite_target(std::string_view client_target, std::string_view prefix, std::string_view upstream_path);

}  // namespace wsx
