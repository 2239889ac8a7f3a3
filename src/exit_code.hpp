#pragma once
/// The exit-code table shared by every subcommand (documented in README and wsx(1)).
#include <stdexcept>
#include <string>
#include <string_view>

namespace wsx {

enum class exit_code : int {
    ok = 0,
    failure = 1,           ///< other runtime failure
    usage = 2,             ///< bad option or argument
    resolve = 3,           ///< name resolution failed
    connect = 4,           ///< TCP connection failed (refused, unreachable, proxy refused)
    tls = 5,               ///< TLS handshake or certificate verification failed
    upgrade = 6,           ///< HTTP upgrade rejected
    abnormal_close = 7,    ///< 1006, or a close code other than 1000/1001
    timeout = 8,           ///< connect, idle, expect or overall deadline
    expectation = 9,       ///< --expect or a bench threshold not met
    interrupted = 130,     ///< SIGINT
};

/// Short name of an exit code, as printed in docs and JSON ("resolve", "tls", ...).
std::string_view exit_code_name(exit_code c) noexcept;

/// An error that ends the program with a given exit code and one-line message.
/// Thrown only from synchronous setup code; async code reports through results.
class failure : public std::runtime_error {
public:
    failure(exit_code code, std::string message)
        : std::runtime_error(std::move(message)), code_(code) {}
    exit_code code() const noexcept { return code_; }

private:
    exit_code code_;
};

/// The server answered a WebSocket upgrade with another HTTP status (exit_code::upgrade).
class upgrade_rejected : public failure {
public:
    upgrade_rejected(int status, std::string message) : failure(exit_code::upgrade, std::move(message)), status_(status) {}
    int status() const noexcept { return status_; }

private:
    int status_;
};

}  // namespace wsx
