#pragma once
// The options every listening command shares (serve, relay, proxy): limits, TLS, security and
// operations, so that they are spelt, documented and validated the same way everywhere.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "serve_app.hpp"

namespace wsx::cli {

struct listener_args {
    std::string path;
    std::string tls_cert, tls_key, tls_key_passphrase_file, client_ca;
    bool tls_self_signed = false;
    std::string max_message_size = "64MiB", send_queue_limit = "16MiB", overflow = "close";
    bool compress = false;
    std::string ping_interval, ping_timeout, idle_timeout, handshake_timeout = "10s", drain_timeout = "5s";
    std::string max_connections, threads;  // checked in apply_listener_options
    std::string max_connections_policy = "refuse";
    bool announce_json = false, metrics = false, quiet = false;
    std::string log_format = "text";
    std::string token, jwt_secret, jwt_public_key, basic_auth, jwt_leeway = "30s";
    std::string token_file, jwt_secret_file, basic_auth_file;  ///< the same secrets, kept off the command line
    std::string auth_failure = "status";  ///< --auth-failure: status (HTTP 401/403) or close (1008 after the upgrade)
    std::vector<std::string> jwt_algs, origins;
    std::string rate_limit, rate_limit_policy = "close", connect_rate_limit;
    std::string unix_mode;
    std::vector<std::string> headers;  ///< --header: fields added to the 101 answer
    /// Secret options given an empty value (e.g. --token "$UNSET"): refused, never "no auth".
    std::vector<std::string> empty_secrets;
};

/// Adds the shared listener options (groups "Protocol and limits", "TLS", "Security",
/// "Operations") to a subcommand.
void add_listener_options(CLI::App& app, listener_args& a);

/// Fills `o` from the shared options (everything but the address and the mode), recording
/// every problem in `p`. Call it once o.server.listen is set: some options depend on whether
/// it is a unix socket. An accepted JWT's subject lands in peer.vars["sub"], its claims
/// (JSON text) in peer.vars["claims"], and its `exp` plus the leeway (Unix milliseconds) in
/// peer.vars["auth.expires_ms"]; with --auth-failure close a refused client is let in with
/// peer.vars["auth.refused"] (the reason) and ["auth.refused_status"] (401 or 403) set. With no authentication option on the command line,
/// WSX_SERVER_TOKEN, WSX_JWT_SECRET and WSX_BASIC_AUTH give the secrets.
void apply_listener_options(problems& p, const listener_args& a, serve_options& o);

}  // namespace wsx::cli
