#include "shutdown.hpp"

#include <csignal>

#include <fmt/format.h>

#include "units.hpp"

namespace wsx {

namespace {
/// After a drain, how long the connections closed with 1001 have to answer.
constexpr std::chrono::seconds close_grace{2};
}  // namespace

shutdown_control::shutdown_control(net::io_context& main, settings s, hooks h)
    : s_(s), h_(std::move(h)), signals_(main, SIGINT, SIGTERM), timer_(main) {}

void shutdown_control::watch_signals() {
    signals_.async_wait([this](error_code ec, int sig) {
        if (!ec) on_signal(sig);
    });
}

void shutdown_control::on_signal(int sig) {
    if (++signals_seen_ > 1) {
        // A second signal: no more patience.
        h_.log("wsx: interrupted again: exiting now");
        exit_code_ = 130;
        return finish();
    }
    // The listener is closed before the notice is printed: whoever reads the notice may rely on
    // new connections being refused.
    begin();
    if (!s_.quiet)
        h_.log(fmt::format("wsx: {}: {} (up to {}{})", sig == SIGINT ? "interrupted" : "terminated",
                           s_.drain_first ? "draining connections" : "closing connections", format_duration(s_.drain_timeout),
                           s_.drain_first ? fmt::format(", then closing them with 1001 and up to {} for the answers",
                                                       format_duration(close_grace))
                                         : std::string()));
    watch_signals();
}

void shutdown_control::begin(std::uint16_t code, std::string reason) {
    if (shutting_down_) return;
    // Set before anything else: a connection that ends concurrently on another thread either
    // sees the flag (and asks for maybe_finish) or is already gone when idle() looks.
    shutting_down_ = true;
    h_.stop_accepting();
    if (s_.drain_first) {
        // Connections may finish on their own; those still open at the deadline are closed,
        // and their closing handshakes get a short grace.
        timer_.expires_after(s_.drain_timeout);
        timer_.async_wait([this, code, reason](error_code ec) {
            if (ec) return;
            h_.close_all(code, reason);
            timer_.expires_after(close_grace);
            timer_.async_wait([this](error_code ec) {
                if (!ec) finish();
            });
        });
    } else {
        h_.close_all(code, reason);
        timer_.expires_after(s_.drain_timeout);
        timer_.async_wait([this](error_code ec) {
            if (!ec) finish();
        });
    }
    maybe_finish();
}

void shutdown_control::maybe_finish() {
    if (finished_ || !shutting_down_ || !h_.idle()) return;
    finish();
}

void shutdown_control::finish() {
    if (finished_) return;
    finished_ = true;
    shutting_down_ = true;
    timer_.cancel();
    h_.finish();
}

}  // namespace wsx
