#pragma once
/// How every listener ends on SIGINT/SIGTERM (serve, relay, and the proxy's ws://, wss://,
/// unix: and tcp:// listeners), so that they all drain, close and exit alike.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "net.hpp"

namespace wsx {

/// The first signal stops the listener, prints a notice (unless quiet) and begins the shutdown:
/// either every connection is closed at once (1001) and gets `drain_timeout` to finish its
/// closing handshake, or (`drain_first`) connections may end on their own for up to
/// `drain_timeout`, after which the rest are closed and get a short grace. The run ends as soon
/// as nothing is left (`hooks::idle`). A second signal ends it at once with exit code 130.
/// Lives on the listener's main context: every member is called there.
class shutdown_control {
public:
    struct settings {
        bool drain_first = false;
        std::chrono::nanoseconds drain_timeout = std::chrono::seconds(5);
        bool quiet = false;  ///< no notice when the shutdown begins
    };
    struct hooks {
        std::function<void()> stop_accepting;  ///< once, as the shutdown begins
        /// Close every open connection (connections that open later are the caller's to close).
        std::function<void(std::uint16_t code, const std::string& reason)> close_all;
        std::function<bool()> idle;             ///< nothing is left to wait for
        std::function<void()> finish;           ///< once, at the end: stop the main context
        std::function<void(const std::string&)> log;  ///< writes one line on stderr
    };

    shutdown_control(net::io_context& main, settings s, hooks h);

    /// Starts waiting for SIGINT/SIGTERM.
    void watch_signals();
    /// Begins the shutdown (once; later calls do nothing).
    void begin(std::uint16_t code = 1001, std::string reason = "server shutting down");
    /// Finishes when shutting down and idle; call whenever a connection ends.
    void maybe_finish();
    /// Ends the run now (once).
    void finish();

    /// Set by begin() and finish(); safe to read from any thread.
    bool shutting_down() const noexcept { return shutting_down_; }
    bool finished() const noexcept { return finished_; }
    /// 0, or 130 after a second signal.
    int exit_code() const noexcept { return exit_code_; }

private:
    void on_signal(int sig);

    settings s_;
    hooks h_;
    net::signal_set signals_;
    net::steady_timer timer_;
    std::atomic<bool> shutting_down_{false};
    bool finished_ = false;
    int exit_code_ = 0;
    int signals_seen_ = 0;
};

}  // namespace wsx
