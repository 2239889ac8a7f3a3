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
    std::string auth_file, token_file;  ///< the secrets of --auth/--token, kept off the command line
    std::string cacert, cert, key, key_passphrase_file, sni;
    bool insecure = false;
    bool compress = false, compress_no_context_takeover = false;
    int compress_window_bits = 15;
    std::string fragment;  ///< --fragment SIZE
    bool location = false, allow_insecure_redirect = false;
    int max_redirs = -1;  ///< -1: not given (redirect_options' default)
};

/// Adds -H/--header, --subprotocol, --origin, --host, --cookie, --auth, --auth-file, --token,
/// --token-file, --token-query and --proxy to the "Handshake" group.
void add_handshake_options(CLI::App& app, client_args& a);
/// Adds --compress, --compress-window-bits and --compress-no-context-takeover to the "Handshake" group.
/// `help` describes --compress (what happens when the server declines differs by command).
void add_compress_options(CLI::App& app, client_args& a, const char* help = "Offer permessage-deflate compression");
/// Adds --fragment to `group`.
void add_fragment_option(CLI::App& app, client_args& a, const char* group);
/// Adds -L/--location, --max-redirs and --allow-insecure-redirect to the "Handshake" group.
/// `help` describes -L (bench follows the redirects once, before the load).
void add_redirect_options(CLI::App& app, client_args& a, const char* help);
/// Adds --cacert, --cert, --key, --key-passphrase-file, -k/--insecure and --sni to the "TLS" group.
void add_client_tls_options(CLI::App& app, client_args& a);

/// Fills the handshake, compression, proxy and TLS parts of `o` (whose url must already be set), recording
/// every problem in `p`; unreadable certificate and secret files are reported now, before any connection.
/// With no credentials on the command line, WSX_TOKEN or WSX_AUTH (not both) gives them.
void apply_client_options(problems& p, const client_args& a, client_options& o);
/// Names every unreadable --cacert/--cert/--key at once, then checks their contents when a CA or
/// certificate is given or TLS is `used`, before anything connects. `key_passphrase_file` is
/// --key-passphrase-file (see key_passphrase.hpp): an encrypted key's passphrase is had first.
void check_client_tls(problems& p, const tls_client_options& tls, bool used, const std::string& key_passphrase_file = {});

}  // namespace wsx::cli
