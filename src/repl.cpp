#include "repl.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <variant>

// readline.h uses FILE without including <stdio.h> itself.
#include <readline/history.h>
#include <readline/readline.h>

#include "codec.hpp"
#include "repl_command.hpp"

namespace wsx {

// ---------------------------------------------------------------------------
// Pure helpers (repl_command.hpp)

namespace {

constexpr repl_command_info command_table[] = {
    {"/ping", "[data]", "send a ping; the pong reports the round trip time"},
    {"/close", "[code [reason]]", "close the connection (default 1000)"},
    {"/binary", "HEX", "send bytes given in hex as a binary message"},
    {"/file", "PATH", "send a file as a binary message (64 MiB at most)"},
    {"/stats", "", "show message and byte counts"},
    {"/quit", "", "close normally and exit (also Ctrl-D)"},
    {"/help", "", "list these commands"},
};

/// Control frames carry at most 125 bytes (RFC 6455 section 5.5).
constexpr std::size_t max_control_payload = 125;

bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

repl_command make_command(repl_command::kind what, std::string argument = {}) {
    repl_command cmd;
    cmd.what = what;
    cmd.argument = std::move(argument);
    return cmd;
}

repl_command invalid(std::string message) {
    return make_command(repl_command::kind::invalid, std::move(message));
}

repl_command parse_close(std::string_view args) {
    repl_command cmd = make_command(repl_command::kind::close);
    if (args.empty()) return cmd;
    std::size_t end = 0;
    while (end < args.size() && !is_blank(args[end])) ++end;
    const std::string_view code_text = args.substr(0, end);
    int code = 0;
    const auto [ptr, ec] = std::from_chars(code_text.data(), code_text.data() + code_text.size(), code);
    if (ec != std::errc{} || ptr != code_text.data() + code_text.size()) {
        return invalid("/close: '" + escape_for_terminal(code_text) +
                       "' is not a close code (usage: /close [code [reason]])");
    }
    if (!is_sendable_close_code(code)) {
        return invalid("/close: " + std::to_string(code) +
                       " may not be sent; use 1000-1003, 1007-1013 or 3000-4999");
    }
    const std::string_view reason = trim(args.substr(end));
    // The close payload is the 2-byte code plus the reason, within 125 bytes.
    if (reason.size() > max_control_payload - 2) {
        return invalid("/close: the reason is " + std::to_string(reason.size()) +
                       " bytes; at most 123 fit in a close frame");
    }
    if (!is_valid_utf8(reason)) return invalid("/close: the reason is not valid UTF-8");
    cmd.close_code = code;
    cmd.close_reason = std::string(reason);
    return cmd;
}

repl_command parse_slash_command(std::string_view line) {
    std::size_t end = 0;
    while (end < line.size() && !is_blank(line[end])) ++end;
    const std::string_view name = line.substr(0, end);
    const std::string_view args = trim(line.substr(end));
    using kind = repl_command::kind;

    const auto no_arguments = [&](kind k) {
        if (!args.empty()) return invalid(std::string(name) + " takes no arguments");
        return make_command(k);
    };

    if (name == "/ping") {
        if (args.size() > max_control_payload) {
            return invalid("/ping: the payload is " + std::to_string(args.size()) +
                           " bytes; a ping carries at most 125");
        }
        return make_command(kind::ping, std::string(args));
    }
    if (name == "/close") return parse_close(args);
    if (name == "/binary") {
        if (args.empty()) return invalid("usage: /binary HEX (for example /binary 48 65 6c 6c 6f)");
        auto bytes = from_hex(args);
        if (!bytes) {
            return invalid("/binary: not hex: '" + escape_for_terminal(args) +
                           "' (two digits per byte, blanks allowed between them)");
        }
        return make_command(kind::binary, std::move(*bytes));
    }
    if (name == "/file") {
        if (args.empty()) return invalid("usage: /file PATH");
        return make_command(kind::file, std::string(args));
    }
    if (name == "/stats") return no_arguments(kind::stats);
    if (name == "/quit") return no_arguments(kind::quit);
    if (name == "/help") return no_arguments(kind::help);
    return invalid("unknown command " + escape_for_terminal(name) +
                   " (/help lists them; // at the start sends text beginning with /)");
}

}  // namespace

std::span<const repl_command_info> repl_commands() noexcept { return command_table; }

bool is_sendable_close_code(int code) noexcept {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1013) ||
           (code >= 3000 && code <= 4999);
}

repl_command parse_repl_line(std::string_view line) {
    if (line.empty()) return {};
    if (line.front() == '/' && !(line.size() >= 2 && line[1] == '/')) {
        return parse_slash_command(line);
    }
    if (line.front() == '/') line.remove_prefix(1);
    // A text frame must be UTF-8 or the peer closes with 1007.
    if (!is_valid_utf8(line)) {
        return invalid("the line is not valid UTF-8, so it cannot be a text message; "
                       "use /binary HEX to send raw bytes");
    }
    return make_command(repl_command::kind::text, std::string(line));
}

std::optional<std::string> default_history_file(const char* xdg_state_home, const char* home) {
    if (xdg_state_home != nullptr && xdg_state_home[0] == '/') {
        return std::string(xdg_state_home) + "/wsx/history";
    }
    if (home != nullptr && home[0] != '\0') return std::string(home) + "/.local/state/wsx/history";
    return std::nullopt;
}

std::string expand_home(std::string_view path, const char* home) {
    if (home == nullptr || home[0] == '\0' || path.empty() || path.front() != '~') {
        return std::string(path);
    }
    if (path.size() == 1 || path[1] == '/') return std::string(home) + std::string(path.substr(1));
    return std::string(path);  // ~user: left alone
}

// ---------------------------------------------------------------------------
// The console

namespace {

constexpr std::size_t max_file_bytes = 64u << 20;
constexpr int history_limit = 1000;
/// Bytes of a binary message shown as hex (256 lines); the rest is only counted.
constexpr std::size_t max_dump_bytes = 4096;

// ANSI SGR sequences used when colour is on.
constexpr std::string_view sgr_reset = "\x1b[0m";
constexpr std::string_view sgr_dim = "\x1b[2m";
constexpr std::string_view sgr_incoming = "\x1b[1;32m";
constexpr std::string_view sgr_info = "\x1b[2;36m";
constexpr std::string_view sgr_error = "\x1b[31m";

/// "[HH:MM:SS.mmm] " in local time.
std::string clock_prefix() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    localtime_r(&secs, &tm);
    char buf[32];
    std::snprintf(buf, sizeof buf, "[%02d:%02d:%02d.%03d] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms));
    return buf;
}

/// Reads a whole file for /file, refusing more than max_file_bytes.
/// Returns the error text instead when it cannot.
std::variant<std::string, std::string> read_file_capped(const std::string& path) {
    using result = std::variant<std::string, std::string>;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return result(std::in_place_index<1>, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            ::close(fd);
            return result(std::in_place_index<1>, "is a directory");
        }
        if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_file_bytes) {
            ::close(fd);
            return result(std::in_place_index<1>, std::to_string(st.st_size) +
                                                      " bytes is over the 64 MiB limit for one message");
        }
    }
    std::string data;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return result(std::in_place_index<1>, std::strerror(err));
        }
        data.append(buf, static_cast<std::size_t>(n));
        // Pipes and devices have no size up front.
        if (data.size() > max_file_bytes) {
            ::close(fd);
            return result(std::in_place_index<1>, "over the 64 MiB limit for one message");
        }
    }
    ::close(fd);
    return result(std::in_place_index<0>, std::move(data));
}

/// Creates the parent directories of `file` (mode 0700, like XDG state dirs).
void make_parent_dirs(const std::string& file) {
    const auto parent = std::filesystem::path(file).parent_path();
    if (parent.empty()) return;
    std::string sofar;
    for (const auto& part : parent) {
        if (part == "/") {
            sofar = "/";
            continue;
        }
        if (!sofar.empty() && sofar.back() != '/') sofar += '/';
        sofar += part.string();
        ::mkdir(sofar.c_str(), 0700);  // EEXIST and friends show up when the file is written
    }
}

}  // namespace

struct repl::impl {
    impl(net::any_io_executor ex, repl_controller& ctl, repl_options opts)
        : ex_(std::move(ex)), ctl_(ctl), opts_(std::move(opts)), input_(ex_), winch_(ex_) {}

    // Readline's callback API is process-global; this is the one console using it.
    static inline std::atomic<impl*> active_{nullptr};

    net::any_io_executor ex_;
    repl_controller& ctl_;
    repl_options opts_;
    /// Watches the terminal for input; readline itself does the reading from fd 0.
    net::posix::stream_descriptor input_;
    net::signal_set winch_;
    /// Expires with this object, so handlers that run later know not to touch it.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);

    std::string prompt_;           ///< as given to readline (colour codes wrapped in \001 \002)
    std::string history_file_;     ///< empty: no history file
    int new_history_entries_ = 0;

    bool started_ = false;
    bool stopped_ = false;
    bool installed_ = false;       ///< the readline handler is installed
    /// True while the prompt and typed text are on screen, i.e. installed and
    /// not inside the line handler after Enter (readline moved to a new line then).
    bool prompt_visible_ = false;

    // --- start / stop ---------------------------------------------------------

    void start() {
        if (started_ || stopped_) return;
        started_ = true;

        prompt_ = opts_.colour ? "\001\x1b[1;34m\002" + opts_.prompt + "\001\x1b[0m\002" : opts_.prompt;

        rl_readline_name = "wsx";
        rl_instream = stdin;
        rl_outstream = stdout;
        // The caller's event loop owns SIGINT/SIGTERM; window size changes are
        // handled below, right away rather than at the next key press.
        rl_catch_signals = 0;
        rl_catch_sigwinch = 0;
        rl_change_environment = 0;
        rl_erase_empty_line = 1;  // Enter on an empty line leaves no blank prompt behind
        rl_attempted_completion_function = &impl::complete;
        rl_completion_entry_function = &impl::no_completion;

        load_history();

        rl_callback_handler_install(prompt_.c_str(), &impl::on_line);
        installed_ = true;
        prompt_visible_ = true;

        open_watch();
        error_code ec;
        winch_.add(SIGWINCH, ec);
        if (!ec) watch_resize();
        wait_input();
    }

    /// Removes the handler and leaves the cursor at the start of a fresh line.
    void detach_terminal() {
        if (!installed_) return;
        if (prompt_visible_) {
            if (rl_end == 0) {
                rl_clear_visible_line();  // an empty prompt is not worth keeping
            } else {
                rl_point = rl_end;
                rl_redisplay();
                std::fputs("\n", stdout);
            }
        }
        rl_callback_handler_remove();
        std::fflush(stdout);
        installed_ = false;
        prompt_visible_ = false;
        error_code ignored;
        input_.close(ignored);  // our own descriptor, never fd 0
        winch_.cancel(ignored);
    }

    void stop() {
        if (stopped_) return;
        stopped_ = true;
        detach_terminal();
        if (started_) save_history();
    }

    // --- watching the terminal -----------------------------------------------

    void open_watch() {
        // A separate open file description of the terminal: asio sets O_NONBLOCK
        // on descriptors it waits on, and on a dup of fd 0 that flag would also hit
        // fd 0, stdout (usually the same description) and the shell's terminal.
        int fd = -1;
        if (const char* tty = ::ttyname(STDIN_FILENO)) fd = ::open(tty, O_RDONLY | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0) {
            input_.assign(fd);
            return;
        }
        // Fallback: a dup shares the flags, so mark it non-blocking as far as asio
        // knows and clear the real flag again at once.
        fd = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) return;
        input_.assign(fd);
        error_code ec;
        input_.native_non_blocking(true, ec);
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    }

    void wait_input() {
        if (!installed_ || !input_.is_open()) return;
        input_.async_wait(net::posix::stream_descriptor::wait_read,
                          [this, alive = std::weak_ptr<int>(alive_)](error_code ec) {
                              if (alive.expired() || ec) return;
                              on_readable();
                          });
    }

    bool input_pending() {
        pollfd p{.fd = input_.native_handle(), .events = POLLIN, .revents = 0};
        return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    }

    void on_readable() {
        // readline reads one byte per call and asio's epoll is edge-triggered:
        // drain what is there, in slices so a large paste cannot starve the loop.
        const std::weak_ptr<int> alive = alive_;
        for (int i = 0; i < 4096; ++i) {
            rl_callback_read_char();
            if (alive.expired() || !installed_) return;
            if (!input_pending()) {
                wait_input();
                return;
            }
        }
        net::post(ex_, [this, alive] {
            if (!alive.expired() && installed_) on_readable();
        });
    }

    void watch_resize() {
        winch_.async_wait([this, alive = std::weak_ptr<int>(alive_)](error_code ec, int) {
            if (alive.expired() || ec || !installed_) return;
            rl_resize_terminal();
            watch_resize();
        });
    }

    // --- readline callbacks -----------------------------------------------------

    static void on_line(char* line) {
        impl* self = active_.load();
        if (self == nullptr || !self->installed_) {
            std::free(line);
            return;
        }
        if (line == nullptr) {
            // Ctrl-D on an empty line, or the terminal went away. The prompt
            // stays as the record of it; when readline switched bracketed paste
            // off it also moved to a new line, otherwise that is left to us.
            const char* paste = rl_variable_value("enable-bracketed-paste");
            const bool moved_on = rl_eof_found != 0 && paste != nullptr && std::strcmp(paste, "on") == 0;
            self->prompt_visible_ = false;
            self->detach_terminal();
            if (!moved_on) {
                std::fputs("\n", stdout);
                std::fflush(stdout);
            }
            self->ctl_.quit();
            return;
        }
        const std::string text(line);
        std::free(line);
        self->prompt_visible_ = false;
        const std::weak_ptr<int> alive = self->alive_;
        self->record_history(text);
        self->run(text);
        // The controller may have stopped (or even destroyed) the console.
        if (!alive.expired() && self->installed_) self->prompt_visible_ = true;
    }

    static char* command_generator(const char* text, int state) {
        static std::size_t next = 0;
        if (state == 0) next = 0;
        const std::string_view prefix(text);
        const auto commands = repl_commands();
        while (next < commands.size()) {
            const auto name = commands[next++].name;
            if (name.starts_with(prefix)) return ::strdup(std::string(name).c_str());
        }
        return nullptr;
    }

    static char** complete(const char* text, int start, int /*end*/) {
        rl_attempted_completion_over = 1;  // never fall back to file names for plain text
        if (rl_line_buffer == nullptr || rl_line_buffer[0] != '/') return nullptr;
        if (start == 0) return rl_completion_matches(text, &impl::command_generator);
        if (std::string_view(rl_line_buffer).starts_with("/file ")) {
            return rl_completion_matches(text, &rl_filename_completion_function);
        }
        return nullptr;
    }

    static char* no_completion(const char*, int) { return nullptr; }

    // --- commands ---------------------------------------------------------------

    void run(const std::string& line) {
        auto cmd = parse_repl_line(line);
        using kind = repl_command::kind;
        switch (cmd.what) {
            case kind::ignore: return;
            case kind::text: ctl_.send_text(std::move(cmd.argument)); return;
            case kind::ping: ctl_.send_ping(std::move(cmd.argument)); return;
            case kind::close: ctl_.close_connection(cmd.close_code, std::move(cmd.close_reason)); return;
            case kind::binary: ctl_.send_binary(std::move(cmd.argument)); return;
            case kind::file: send_file(cmd.argument); return;
            case kind::stats: print_info(ctl_.stats_text()); return;
            case kind::quit: ctl_.quit(); return;
            case kind::help: print_help(); return;
            case kind::invalid: print_error(cmd.argument); return;
        }
    }

    void send_file(const std::string& typed) {
        const std::string path = expand_home(typed, std::getenv("HOME"));
        auto content = read_file_capped(path);
        if (content.index() == 1) {
            print_error("/file: cannot send " + path + ": " + std::get<1>(content));
            return;
        }
        const auto size = std::get<0>(content).size();
        ctl_.send_binary(std::move(std::get<0>(content)));
        print_info("sent " + path + " (" + std::to_string(size) + " bytes) as a binary message");
    }

    void print_help() {
        std::size_t width = 0;
        for (const auto& c : repl_commands()) width = std::max(width, c.name.size() + 1 + c.args.size());
        std::string text;
        for (const auto& c : repl_commands()) {
            std::string usage(c.name);
            if (!c.args.empty()) usage += ' ' + std::string(c.args);
            usage.resize(width, ' ');
            text += usage + "  " + std::string(c.summary) + '\n';
        }
        text += "Any other line is sent as a text message (// at the start sends one /).";
        print_info(text);
    }

    // --- history --------------------------------------------------------------

    void load_history() {
        using_history();
        clear_history();  // a previous console in this process may have left entries
        stifle_history(history_limit);
        history_file_ = opts_.history_file.empty()
                            ? default_history_file(std::getenv("XDG_STATE_HOME"), std::getenv("HOME"))
                                  .value_or("")
                            : expand_home(opts_.history_file, std::getenv("HOME"));
        if (history_file_.empty()) return;
        const int err = read_history(history_file_.c_str());
        if (err != 0 && err != ENOENT) {
            print_error("cannot read history file " + history_file_ + ": " + std::strerror(err));
            history_file_.clear();  // do not overwrite what could not be read
        }
    }

    void record_history(const std::string& line) {
        if (line.empty()) return;
        if (history_length > 0) {
            const HIST_ENTRY* last = history_get(history_base + history_length - 1);
            if (last != nullptr && last->line != nullptr && line == last->line) return;
        }
        add_history(line.c_str());
        ++new_history_entries_;
    }

    void save_history() {
        if (history_file_.empty() || new_history_entries_ == 0) return;
        make_parent_dirs(history_file_);
        // Appending keeps what other sessions saved in the meantime.
        const int err = ::access(history_file_.c_str(), F_OK) == 0
                            ? append_history(std::min(new_history_entries_, history_length),
                                             history_file_.c_str())
                            : write_history(history_file_.c_str());
        if (err != 0) {
            print_error("cannot save history to " + history_file_ + ": " + std::strerror(err));
            return;
        }
        history_truncate_file(history_file_.c_str(), history_limit);
        ::chmod(history_file_.c_str(), 0600);  // typed lines may hold tokens
        new_history_entries_ = 0;
    }

    // --- output -----------------------------------------------------------------

    /// Writes complete lines above the prompt, then redraws the prompt and
    /// whatever was being typed, cursor included.
    void emit(const std::string& text) {
        if (prompt_visible_) rl_clear_visible_line();
        std::fwrite(text.data(), 1, text.size(), stdout);
        if (prompt_visible_) {
            rl_forced_update_display();
        }
        std::fflush(stdout);
    }

    /// Lays `body` out under a marker: "[ts] < first line" and the following
    /// lines indented to line up with the first. `body_sgr` colours each line
    /// of `body` (empty: as given, e.g. already coloured JSON); the lines of
    /// `plain_tail` follow it, indented the same way and uncoloured.
    std::string layout(std::string_view marker, std::string_view marker_sgr, std::string_view body,
                       std::string_view body_sgr, std::string_view plain_tail = {}) const {
        const bool colour = opts_.colour;
        std::string out;
        std::size_t width = 0;
        if (opts_.timestamps) {
            const auto ts = clock_prefix();
            width += ts.size();
            if (colour) out.append(sgr_dim).append(ts).append(sgr_reset);
            else out += ts;
        }
        width += marker.size();
        if (colour && !marker_sgr.empty()) out.append(marker_sgr).append(marker).append(sgr_reset);
        else out += marker;

        bool first = true;
        const auto add_lines = [&](std::string_view text, std::string_view sgr) {
            std::size_t pos = 0;
            for (;;) {
                const auto nl = text.find('\n', pos);
                const auto line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
                if (!first) out.append(width, ' ');
                first = false;
                if (colour && !sgr.empty() && !line.empty()) out.append(sgr).append(line).append(sgr_reset);
                else out += line;
                out += '\n';
                if (nl == std::string_view::npos) break;
                pos = nl + 1;
            }
        };
        add_lines(body, body_sgr);
        if (!plain_tail.empty()) add_lines(plain_tail, {});
        return out;
    }

    void print_incoming(std::string_view payload, bool binary) {
        if (binary) {
            const std::string header =
                "binary, " + std::to_string(payload.size()) + (payload.size() == 1 ? " byte" : " bytes");
            // A terminal full of hex helps nobody; the head of a big message does.
            const std::size_t shown = std::min(payload.size(), max_dump_bytes);
            std::string dump = hex_dump(payload.substr(0, shown));
            if (!dump.empty() && dump.back() == '\n') dump.pop_back();
            if (shown < payload.size()) {
                dump += "\n... " + std::to_string(payload.size() - shown) + " more bytes not shown";
            }
            emit(layout("< ", sgr_incoming, header, sgr_dim, dump));
            return;
        }
        if (auto json = pretty_json(payload, opts_.colour)) {
            emit(layout("< ", sgr_incoming, *json, {}));
            return;
        }
        if (payload.empty()) {
            emit(layout("< ", sgr_incoming, "(empty text message)", sgr_dim));
            return;
        }
        emit(layout("< ", sgr_incoming, escape_for_terminal(payload), {}));
    }

    // Info and error text may quote the peer (close reasons, upgrade bodies), so it
    // is escaped too. A final newline is the caller's habit, not a blank line.
    void print_info(std::string_view line) {
        while (line.ends_with('\n')) line.remove_suffix(1);
        emit(layout("* ", sgr_info, escape_for_terminal(line), sgr_info));
    }

    void print_error(std::string_view line) {
        while (line.ends_with('\n')) line.remove_suffix(1);
        emit(layout("! ", sgr_error, escape_for_terminal(line), sgr_error));
    }
};

repl::repl(net::any_io_executor ex, repl_controller& ctl, repl_options opts)
    : impl_(std::make_unique<impl>(std::move(ex), ctl, std::move(opts))) {
    impl* expected = nullptr;
    if (!impl::active_.compare_exchange_strong(expected, impl_.get())) {
        throw std::logic_error("wsx::repl: only one console may exist at a time (readline state is global)");
    }
}

repl::~repl() {
    stop();
    impl::active_.store(nullptr);
}

void repl::start() { impl_->start(); }

void repl::stop() { impl_->stop(); }

void repl::print_incoming(std::string_view payload, bool binary) { impl_->print_incoming(payload, binary); }

void repl::print_info(std::string_view line) { impl_->print_info(line); }

void repl::print_error(std::string_view line) { impl_->print_error(line); }

}  // namespace wsx
