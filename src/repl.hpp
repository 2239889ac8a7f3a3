#pragma once
/// The interactive console of `wsx connect` on a terminal: GNU readline in callback mode
/// driven by the event loop, so incoming messages print above the line being typed.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "net.hpp"

namespace wsx {

/// What the console asks the connection to do.
class repl_controller {
public:
    virtual ~repl_controller() = default;
    virtual void send_text(std::string text) = 0;
    virtual void send_binary(std::string bytes) = 0;
    virtual void send_ping(std::string payload) = 0;
    virtual void close_connection(int code, std::string reason) = 0;
    /// A multi-line summary for /stats.
    virtual std::string stats_text() = 0;
    /// /quit or Ctrl-D: close normally and exit.
    virtual void quit() = 0;
};

struct repl_options {
    std::string history_file;   ///< empty: $XDG_STATE_HOME/wsx/history or ~/.local/state/wsx/history
    bool colour = true;         ///< ANSI colours (off with --no-color or NO_COLOR)
    bool timestamps = false;    ///< -t: prefix lines with the local time
    std::string prompt = "> ";
};

class repl {
public:
    repl(net::any_io_executor ex, repl_controller& ctl, repl_options opts);
    ~repl();
    repl(const repl&) = delete;
    repl& operator=(const repl&) = delete;

    /// Installs the readline handler and starts watching the terminal.
    void start();
    /// Removes the handler, restores the terminal and saves history. Idempotent.
    void stop();

    /// An incoming message: JSON pretty-printed, binary as a hex dump, remote text escaped.
    void print_incoming(std::string_view payload, bool binary);
    /// A notice (connected, pong RTT, close, reconnecting...) in the info colour.
    void print_info(std::string_view line);
    /// An error notice in the error colour.
    void print_error(std::string_view line);

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace wsx
