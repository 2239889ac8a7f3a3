// The options every connecting command shares; see client_options.hpp.
#include "client_options.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string_view>

#include "key_passphrase.hpp"
#include "proxy.hpp"
#include "tls.hpp"

namespace wsx::cli {

void add_handshake_options(CLI::App& app, client_args& a) {
    const char* h = "Handshake";
    app.add_option("-H,--header", a.headers, "Extra request header 'Name: value' (repeatable)")->group(h)->type_name("HEADER");
    app.add_option("--subprotocol", a.subprotocols, "Offer a subprotocol (repeatable)")->group(h)->type_name("NAME");
    app.add_option("--origin", a.origin, "Origin header")->group(h)->type_name("URL");
    app.add_option("--host", a.host, "Host header instead of the URL's host")->group(h)->type_name("NAME");
    app.add_option("--cookie", a.cookies, "Cookie 'name=value' (repeatable)")->group(h)->type_name("COOKIE");
    app.add_option("--auth", a.auth, "Basic authentication (also user:pass@ in the URL; WSX_AUTH)")->group(h)->type_name("USER:PASS");
    app.add_option("--auth-file", a.auth_file, "Read USER:PASS for --auth from FILE (one line), out of sight of ps")
        ->group(h)->type_name("FILE");
    app.add_option("--token", a.token, "Bearer token (Authorization header; WSX_TOKEN)")->group(h)->type_name("TOKEN");
    app.add_option("--token-file", a.token_file, "Read the --token from FILE (one line), out of sight of ps")
        ->group(h)->type_name("FILE");
    app.add_option("--token-query", a.token_query, "Send --token as the query parameter NAME instead of a header")
        ->group(h)->type_name("NAME");
    app.add_option("--proxy", a.proxy,
                   "Proxy: http://host:port (CONNECT) or socks5[h]://[user:pass@]host:port; default from "
                   "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY and NO_PROXY")
        ->group(h)->type_name("URL");
}

void add_compress_options(CLI::App& app, client_args& a, const char* help) {
    const char* h = "Handshake";
    app.add_flag("--compress", a.compress, help)->group(h);
    app.add_option("--compress-window-bits", a.compress_window_bits, "Deflate window bits")
        ->group(h)->check(CLI::Range(9, 15))->type_name("N")->capture_default_str();
    app.add_flag("--compress-no-context-takeover", a.compress_no_context_takeover, "Ask for no context takeover")->group(h);
}

void add_fragment_option(CLI::App& app, client_args& a, const char* group) {
    app.add_option("--fragment", a.fragment,
                   "Send each message as frames of at most SIZE payload bytes (the compressed payload with --compress), "
                   "to test a server's reassembly; 0: one frame")
        ->group(group)->type_name("SIZE");
}

void add_redirect_options(CLI::App& app, client_args& a, const char* help) {
    const char* h = "Handshake";
    app.add_flag("-L,--location", a.location, help)->group(h);
    app.add_option("--max-redirs", a.max_redirs, "With -L, follow at most N redirects")
        ->group(h)->check(CLI::Range(0, 1000))->type_name("N")->default_str("5");
    app.add_flag("--allow-insecure-redirect", a.allow_insecure_redirect,
                 "With -L, follow a redirect from wss:// to ws:// (refused otherwise)")->group(h);
}

void add_client_tls_options(CLI::App& app, client_args& a) {
    const char* t = "TLS";
    app.add_option("--cacert", a.cacert, "Trust this CA bundle (PEM) instead of the system store")->group(t)->type_name("FILE");
    app.add_option("--cert", a.cert, "Client certificate (PEM)")->group(t)->type_name("FILE");
    app.add_option("--key", a.key, "Client certificate key (PEM); asks for the passphrase of an encrypted key on the terminal")
        ->group(t)->type_name("FILE");
    app.add_option("--key-passphrase-file", a.key_passphrase_file, "Read the passphrase of an encrypted --key from the first line of FILE")
        ->group(t)->type_name("FILE");
    app.add_flag("-k,--insecure", a.insecure, "Do not verify the server certificate")->group(t);
    app.add_option("--sni", a.sni, "Server name to send and verify instead of the URL host")->group(t)->type_name("NAME");
}

void apply_client_options(problems& p, const client_args& a, client_options& o) {
    for (const auto& hv : a.headers)
        if (auto h = header_arg(p, hv)) o.headers.push_back(std::move(*h));
    o.subprotocols = a.subprotocols;
    o.origin = a.origin;
    o.host_override = a.host;
    o.cookies = a.cookies;
    std::string auth = secret_arg(p, "--auth", a.auth, "--auth-file", a.auth_file);
    std::string token = secret_arg(p, "--token", a.token, "--token-file", a.token_file);
    std::string auth_name = a.auth_file.empty() ? "--auth" : "--auth-file";
    std::string token_name = a.token_file.empty() ? "--token" : "--token-file";
    const bool header_auth =
        std::any_of(o.headers.begin(), o.headers.end(), [](const auto& h) { return beast::iequals(h.first, "Authorization"); });
    // The environment's credentials stand in only for none on the command line, which always wins.
    if (a.auth.empty() && a.auth_file.empty() && a.token.empty() && a.token_file.empty() && o.url.username.empty() &&
        !header_auth) {
        const auto env_token = env_secret("WSX_TOKEN"), env_auth = env_secret("WSX_AUTH");
        if (!env_token.empty() && !env_auth.empty()) {
            p.add("WSX_TOKEN and WSX_AUTH cannot be combined: each sets the Authorization header; unset one");
        } else if (!env_token.empty()) {
            token = env_token;
            token_name = "WSX_TOKEN";
        } else if (!env_auth.empty()) {
            auth = env_auth;
            auth_name = "WSX_AUTH";
        }
    }
    if (!auth.empty() && auth.find(':') == std::string::npos) p.add(auth_name + ": expected USER:PASS");
    o.basic_auth = auth;
    o.token = token;
    o.token_query = a.token_query;
    if (!a.token_query.empty() && token.empty() && a.token_file.empty())
        p.add("--token-query needs a token: give --token, --token-file or WSX_TOKEN");
    // Each of these sets the Authorization header; given together, one would silently win.
    std::vector<std::string> authorization;
    if (!a.auth.empty() || !a.auth_file.empty()) authorization.emplace_back(auth_name);
    if (!o.url.username.empty()) authorization.emplace_back("user:pass@ in the URL");
    if ((!a.token.empty() || !a.token_file.empty()) && a.token_query.empty()) authorization.emplace_back(token_name);
    if (header_auth) authorization.emplace_back("--header Authorization");
    if (authorization.size() > 1) {
        std::string list;
        for (std::size_t i = 0; i < authorization.size(); ++i)
            list += (i == 0 ? "" : i + 1 == authorization.size() ? " and " : ", ") + authorization[i];
        p.add(fmt::format("{} cannot be combined: each sets the Authorization header{}", list,
                          token.empty() && a.token_file.empty() ? "" : " (--token-query NAME sends the token in the URL instead)"));
    }
    o.deflate = {.enabled = a.compress, .window_bits = a.compress_window_bits,
                 .no_context_takeover = a.compress_no_context_takeover};
    if (!a.compress && (a.compress_window_bits != 15 || a.compress_no_context_takeover))
        p.add("--compress-window-bits and --compress-no-context-takeover need --compress");
    o.session.fragment_size = size_arg(p, "--fragment", a.fragment);
    std::string err;
    if (!a.proxy.empty()) {
        if (auto px = parse_proxy_url(a.proxy, &err)) o.proxy = *px;
        else p.add("--proxy: " + err);
    } else if (!o.url.is_unix() && !o.url.host.empty()) {
        auto px = proxy_from_environment(o.url.tls, o.url.host, o.url.port, [](const char* n) { return std::getenv(n); }, &err);
        if (px) o.proxy = *px;
        else if (!err.empty()) p.add(err);
    }
    o.redirects = {.follow = a.location,
                   .max = a.max_redirs < 0 ? redirect_options{}.max : static_cast<unsigned>(a.max_redirs),
                   .allow_insecure = a.allow_insecure_redirect};
    if (!a.location && (a.max_redirs >= 0 || a.allow_insecure_redirect))
        p.add("--max-redirs and --allow-insecure-redirect need -L/--location");
    o.tls = {.cacert = a.cacert, .cert = a.cert, .key = a.key, .insecure = a.insecure, .sni = a.sni};
    check_client_tls(p, o.tls, o.url.tls, a.key_passphrase_file);
}

void check_client_tls(problems& p, const tls_client_options& tls, bool used, const std::string& key_passphrase_file) {
    bool readable = true;
    for (auto [option, path] : {std::pair{"--cacert", &tls.cacert}, {"--cert", &tls.cert}, {"--key", &tls.key}})
        if (!path->empty()) readable = readable_file(p, option, *path) && readable;
    const bool key_ready = prepare_key_passphrase(p, "--key", tls.key, key_passphrase_file);
    if ((used || !tls.cacert.empty() || !tls.cert.empty()) && readable && key_ready) {
        try {
            make_client_tls(tls);
        } catch (const failure& f) {
            p.add(f.what());
        }
    }
}

}  // namespace wsx::cli
