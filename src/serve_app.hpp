#pragma once
/// `wsx serve`: a listener plus a per-connection handler (echo for now).
#include <string>

#include "server.hpp"
#include "tls.hpp"

namespace wsx {

struct serve_options {
    server_options server;
    tls_server_options tls;
    bool use_tls = false;
    bool quiet = false;
};

/// Runs until SIGINT/SIGTERM; returns the exit code.
int run_serve(serve_options o);

}  // namespace wsx
