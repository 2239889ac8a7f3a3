#pragma once
/// Child processes for `serve --exec`: spawning with pipes and a CGI-style environment,
/// and reaping every child the moment it exits (no zombies).
#include <sys/types.h>

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net.hpp"

namespace wsx {

/// A started child: its pid (also its process group) and our ends of its stdio pipes.
struct spawned_child {
    pid_t pid = -1;
    int stdin_fd = -1;   ///< write end
    int stdout_fd = -1;  ///< read end
    int stderr_fd = -1;  ///< read end; -1 when stderr was not captured
};

/// Starts argv[0] (searched in PATH) with exactly `env`, its stdin/stdout (and stderr when
/// `capture_stderr`) connected to fresh pipes, default signal dispositions, an empty signal
/// mask, in a process group of its own, and no other descriptor of ours open.
/// Returns nullopt and sets *error when it cannot be started.
std::optional<spawned_child> spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                         bool capture_stderr, std::string* error);

/// How a child ended, as a WebSocket close: 0 → 1000; exit N → 1011 "exit N";
/// killed by signal N → 1011 "signal N".
struct exit_close {
    std::uint16_t code;
    std::string reason;
};
exit_close close_for_status(int wait_status);

/// Finds `name` the way execvp would (names with a '/' are taken as they are).
/// Returns the path, or nullopt when nothing executable is found.
std::optional<std::string> find_program(std::string_view name);

/// Splits a command line the way a POSIX shell splits words: blanks separate words,
/// single quotes keep everything literally, double quotes keep everything but \\ \" \$ \`,
/// a backslash outside quotes escapes the next character. No expansion of any kind.
/// Returns nullopt for an unterminated quote.
std::optional<std::vector<std::string>> split_command_line(std::string_view text);

/// Reaps children: one per process, owns the SIGCHLD handler. watch() callbacks run on the
/// io_context given to start(); they receive the raw wait status.
class child_reaper {
public:
    explicit child_reaper(net::io_context& ioc);
    ~child_reaper();
    /// Calls `on_exit(status)` once the child has been reaped (at once if it already was).
    void watch(pid_t pid, std::function<void(int)> on_exit);
    /// Children started and not yet reaped.
    std::size_t running() const;
    /// Kills every remaining child (SIGKILL to its group) and reaps them (bounded wait).
    void kill_all();

private:
    void arm();
    void reap();

    net::signal_set sigchld_;
    mutable std::mutex mutex_;
    std::map<pid_t, std::function<void(int)>> watched_;
    std::map<pid_t, int> exited_;  // reaped before anyone watched them
};

}  // namespace wsx
