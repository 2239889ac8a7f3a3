#include "exec.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace wsx {

namespace {
struct fd_closer {
    int* fds;
    int n;
    bool armed = true;
    ~fd_closer() {
        if (!armed) return;
        for (int i = 0; i < n; ++i)
            if (fds[i] >= 0) ::close(fds[i]);
    }
};
}  // namespace

std::optional<spawned_child> spawn_child(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                                         bool capture_stderr, std::string* error) {
    if (argv.empty()) {
        *error = "no command";
        return std::nullopt;
    }
    // O_CLOEXEC on every end: a child spawned by another thread at the same moment must not
    // inherit them (it would hold a pipe open and hide EOF). dup2 clears it for 0, 1, 2.
    int fds[6] = {-1, -1, -1, -1, -1, -1};
    fd_closer closer{fds, 6};
    if (::pipe2(fds, O_CLOEXEC) != 0 || ::pipe2(fds + 2, O_CLOEXEC) != 0 ||
        (capture_stderr && ::pipe2(fds + 4, O_CLOEXEC) != 0)) {
        *error = fmt::format("pipe: {}", std::strerror(errno));
        return std::nullopt;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    posix_spawn_file_actions_adddup2(&fa, fds[3], 1);
    if (capture_stderr) posix_spawn_file_actions_adddup2(&fa, fds[5], 2);
    // Sockets of other clients and the listener are not marked close-on-exec: close them all.
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);  // we ignore SIGPIPE; the child must not
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);  // its own group: terminal ^C reaches us, we end it
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

    std::vector<char*> cargv, cenv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    for (const auto& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
    cenv.push_back(nullptr);

    pid_t pid = -1;
    int rc = posix_spawnp(&pid, cargv[0], &fa, &attr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        *error = fmt::format("cannot run '{}': {}", argv[0], std::strerror(rc));
        return std::nullopt;
    }
    ::close(fds[0]);
    ::close(fds[3]);
    if (fds[5] >= 0) ::close(fds[5]);
    closer.armed = false;
    return spawned_child{pid, fds[1], fds[2], fds[4]};
}

exit_close close_for_status(int status) {
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 0) return {1000, {}};
        return {1011, fmt::format("exit {}", code)};
    }
    if (WIFSIGNALED(status)) return {1011, fmt::format("signal {}", WTERMSIG(status))};
    return {1011, "ended"};
}

std::optional<std::string> find_program(std::string_view name) {
    auto executable = [](const std::string& p) {
        struct stat st {};
        return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
    };
    if (name.empty()) return std::nullopt;
    if (name.find('/') != std::string_view::npos) {
        std::string p(name);
        if (executable(p)) return p;
        return std::nullopt;
    }
    const char* path = std::getenv("PATH");
    std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        auto colon = dirs.find(':');
        std::string dir(dirs.substr(0, colon));
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + std::string(name);
        if (executable(candidate)) return candidate;
        if (colon == std::string_view::npos) break;
        dirs.remove_prefix(colon + 1);
    }
    return std::nullopt;
}

std::optional<std::vector<std::string>> split_command_line(std::string_view text) {
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) words.push_back(std::move(word));
            word.clear();
            in_word = false;
            continue;
        }
        in_word = true;
        if (c == '\\') {
            if (i + 1 < text.size()) word += text[++i];
        } else if (c == '\'') {
            auto end = text.find('\'', i + 1);
            if (end == std::string_view::npos) return std::nullopt;
            word.append(text.substr(i + 1, end - i - 1));
            i = end;
        } else if (c == '"') {
            ++i;
            for (;; ++i) {
                if (i >= text.size()) return std::nullopt;
                char d = text[i];
                if (d == '"') break;
                if (d == '\\' && i + 1 < text.size() && std::string_view("\\\"$`").find(text[i + 1]) != std::string_view::npos)
                    d = text[++i];
                word += d;
            }
        } else {
            word += c;
        }
    }
    if (in_word) words.push_back(std::move(word));
    return words;
}

child_reaper::child_reaper(net::io_context& ioc) : sigchld_(ioc, SIGCHLD) { arm(); }

child_reaper::~child_reaper() {
    error_code ec;
    sigchld_.cancel(ec);
}

void child_reaper::arm() {
    sigchld_.async_wait([this](error_code ec, int) {
        if (ec) return;
        reap();
        arm();
    });
}

void child_reaper::reap() {
    // Signals coalesce: one SIGCHLD may stand for many exits, so reap until none is left.
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        std::function<void(int)> cb;
        {
            std::lock_guard lock(mutex_);
            auto it = watched_.find(pid);
            if (it == watched_.end()) {
                exited_[pid] = status;
                continue;
            }
            cb = std::move(it->second);
            watched_.erase(it);
        }
        if (cb) cb(status);
    }
}

void child_reaper::watch(pid_t pid, std::function<void(int)> on_exit) {
    std::unique_lock lock(mutex_);
    auto it = exited_.find(pid);
    if (it != exited_.end()) {
        int status = it->second;
        exited_.erase(it);
        lock.unlock();
        // Deliver from the reaper's context like every other exit.
        net::post(sigchld_.get_executor(), [cb = std::move(on_exit), status] { cb(status); });
        return;
    }
    watched_[pid] = std::move(on_exit);
    lock.unlock();
    // A SIGCHLD may have been handled before this child was spawned; reap on the next turn anyway.
    net::post(sigchld_.get_executor(), [this] { reap(); });
}

std::size_t child_reaper::running() const {
    std::lock_guard lock(mutex_);
    return watched_.size();
}

void child_reaper::kill_all() {
    std::map<pid_t, std::function<void(int)>> left;
    {
        std::lock_guard lock(mutex_);
        left.swap(watched_);
    }
    for (const auto& [pid, cb] : left) ::kill(-pid, SIGKILL);
    for (const auto& [pid, cb] : left) {
        int status = 0;
        // SIGKILL cannot be caught, so this returns promptly; bound it all the same.
        for (int i = 0; i < 200; ++i) {
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid || (r < 0 && errno == ECHILD)) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
}

}  // namespace wsx
