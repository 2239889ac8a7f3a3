#pragma once
// The options every connecting command shares (connect, bench): the upgrade request, the proxy
// and TLS verification, spelt, documented and validated the same way everywhere.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "client.hpp"
#include "commands.hpp"

namespace wsx::cli {

struct client_args {
    std::vector<std::string> headers, subprotocols, cookies;
    std::string origin, host, auth, token, token_query, proxy;
    std::string cacert, cert, key, sni;
    bool insecure = false;
};

/// Adds -H/--header, --subprotocol, --origin, --host, --cookie, --auth, --token, --token-query
/// and --proxy to the "Handshake" group.
void add_handshake_options(CLI::App& app, client_args& a);
/// Adds --cacert, --cert, --key, -k/--insecure and --sni to the "TLS" group.
void add_client_tls_options(CLI::App& app, client_args& a);

/// Fills the handshake, proxy and TLS parts of `o` (whose url must already be set), recording
/// every problem in `p`; unreadable certificate files are reported now, before any connection.
void apply_client_options(problems& p, const client_args& a, client_options& o);

}  // namespace wsx::cli
