#include "connect_app.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <deque>
#include <iostream>
#include <random>

#include <boost/regex.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "event_json.hpp"
#include "random_seed.hpp"
#include "repl.hpp"
#include "units.hpp"

namespace wsx {

// Boost.Regex rather than std::regex: libstdc++ matches by recursion and overflows the stack
// on messages of some tens of KiB (`"status":.*ok`); Boost's matcher is iterative and gives
// up with an exception when a pattern is too costly instead.
struct expect_regex {
    boost::regex re;
};

namespace {
/// Boost.Regex messages run to several sentences and end with a full stop: the first is enough.
std::string first_sentence(std::string_view what) {
    what = what.substr(0, what.find(".  "));
    if (what.ends_with('.')) what.remove_suffix(1);
    return std::string(what);
}
}  // namespace

std::optional<expectation> expectation::regex(std::string text, std::string* error) {
    try {
        expectation x;
        x.re = std::make_shared<expect_regex>(expect_regex{boost::regex(text, boost::regex::ECMAScript)});
        x.text = std::move(text);
        return x;
    } catch (const std::exception& e) {
        if (error) *error = first_sentence(e.what());
        return std::nullopt;
    }
}

bool expectation::matches(std::string_view message, std::string* error) const {
    if (is_json) return json.matches_text(message);
    if (!re) return false;
    try {
        return boost::regex_search(message.begin(), message.end(), re->re);
    } catch (const std::exception& e) {
        if (error) *error = first_sentence(e.what());
        return false;
    }
}

namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

std::string clock_stamp() {
    auto now = std::chrono::system_clock::now();
    auto t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    localtime_r(&t, &tm);
    return fmt::format("{:02}:{:02}:{:02}.{:03}", tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

std::string shorten(std::string_view s, std::size_t max = 120) {
    std::string e = escape_for_terminal(s.substr(0, max));
    if (s.size() > max) e += "...";
    return e;
}

std::string describe_close(int code, std::string_view reason) {
    return reason.empty() ? fmt::format("{}", code) : fmt::format("{} \"{}\"", code, shorten(reason, 123));
}

/// Adds one connection's counters to totals kept across reconnects.
void accumulate(session_stats& total, const session_stats& s) {
    total.messages_in += s.messages_in;
    total.messages_out += s.messages_out;
    total.bytes_in += s.bytes_in;
    total.bytes_out += s.bytes_out;
    total.pings_sent += s.pings_sent;
    total.pongs_received += s.pongs_received;
    total.dropped_messages += s.dropped_messages;
    total.rtt_sum += s.rtt_sum;
    if (s.rtt_min.count() && (!total.rtt_min.count() || s.rtt_min < total.rtt_min)) total.rtt_min = s.rtt_min;
    total.rtt_max = std::max(total.rtt_max, s.rtt_max);
    if (total.first_message == steady_clock::time_point{} && s.first_message != steady_clock::time_point{})
        total.first_message = s.first_message, total.opened = s.opened;
}

/// Buffered stdout that never throws: data goes out in large writes, flushed at the end
/// of each batch of events (or at once on a terminal).
class output {
public:
    output() : tty_(::isatty(1) == 1) { buf_.reserve(1 << 16); }
    bool broken() const { return broken_; }
    bool tty() const { return tty_; }
    void write(std::string_view s) {
        if (broken_) return;
        buf_.append(s);
        if (tty_ || buf_.size() >= (1 << 16)) flush();
    }
    void flush() {
        std::size_t off = 0;
        while (off < buf_.size() && !broken_) {
            ssize_t n = ::write(1, buf_.data() + off, buf_.size() - off);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    fd_set w;
                    FD_ZERO(&w);
                    FD_SET(1, &w);
                    ::select(2, nullptr, &w, nullptr, nullptr);
                    continue;
                }
                broken_ = true;  // EPIPE: the reader went away
                break;
            }
            off += static_cast<std::size_t>(n);
        }
        buf_.clear();
    }
    bool pending() const { return !buf_.empty(); }
    std::size_t size() const { return buf_.size(); }

private:
    std::string buf_;
    bool tty_;
    bool broken_ = false;
};

class connect_app final : public channel_events, public repl_controller, public std::enable_shared_from_this<connect_app> {
public:
    connect_app(net::io_context& ioc, const connect_options& o)
        : ioc_(ioc), o_(o), signals_(ioc, SIGINT, SIGTERM), deadline_(ioc), backoff_(ioc), keepalive_(ioc), linger_(ioc),
          step_timer_(ioc), rng_(random_seed()) {}

    int run();

    // channel_events
    void on_message(std::string&& payload, bool binary) override;
    void on_ping(std::string_view payload) override;
    void on_pong(std::string_view payload, nanoseconds rtt) override;
    void on_writable() override;
    void on_close(const close_info& info) override;

    // repl_controller
    void send_text(std::string text) override { send_record(std::move(text), false); }
    void send_binary(std::string bytes) override { send_record(std::move(bytes), true); }
    void send_ping(std::string payload) override;
    void close_connection(int code, std::string reason) override;
    std::string stats_text() override;
    void quit() override { input_finished(); }

private:
    /// -n or --expect: the run ends when they are met.
    bool simple_goal() const { return o_.count > 0 || !o_.expects.empty(); }
    bool goal_set() const { return simple_goal() || o_.script.has_value(); }
    bool goal_reached() const {
        return (o_.count == 0 || received_ >= o_.count) && next_expect_ >= o_.expects.size() &&
               (!o_.script || script_done_);
    }
    std::string goal_status() const;
    void connect();
    void on_connected(connect_result r);
    /// `lasting`: a failure another attempt cannot cure (a 4xx refusal, a certificate that
    /// does not verify), which --reconnect does not retry.
    void on_connect_failed(exit_code code, std::string message, bool lasting);
    void arm_keepalive();
    /// Schedules a reconnect if allowed; when not, `why` may gain the reason we gave up.
    bool try_reconnect(std::string& why);
    void start_stdin();
    void read_stdin();
    void on_stdin(error_code ec, std::size_t n);
    void send_record(std::string payload, bool binary);
    void input_finished();
    void close_if_done();
    /// Input is over: close now, or after --linger of silence.
    void linger_then_close();
    void arm_linger();
    // --script
    void run_script();
    void next_step();
    /// Looks for the current expect step's match among the messages not read yet.
    bool match_unread();
    void arm_step_timer(nanoseconds d);
    void on_step_timer();
    void on_script_message(std::string&& payload);
    /// Ends the run when the connection closed while the script was not done.
    void on_script_close(const close_info& info);
    /// "script.txt:4: expect ^ready$" for the current step.
    std::string script_where() const;
    /// What the current expect step saw instead of a match.
    std::string what_arrived() const;
    void begin_close(std::uint16_t code, std::string reason);
    std::string describe_end(const close_info& info) const;
    void finish(exit_code code, std::string message);
    void stop();
    void note(std::string_view line, bool error = false);
    void print_message(std::string_view payload, bool binary, std::string_view dir);
    void log_event(std::string_view kind, std::string_view dir, std::string_view data, std::optional<int> code = {},
                   std::string_view reason = {}, bool binary = false);
    /// Writes one --jsonl event (the format of event_json.hpp); `kind` "message" is a text or
    /// binary message.
    void write_event(std::string_view kind, std::string_view dir, std::string_view data, std::optional<int> code,
                     std::string_view reason, bool binary);
    void schedule_flush();
    void defer_flush(std::size_t seen);
    void add_session_stats();
    void print_stats();

    net::io_context& ioc_;
    const connect_options& o_;
    net::signal_set signals_;
    net::steady_timer deadline_;
    net::steady_timer backoff_;
    net::steady_timer keepalive_;
    net::steady_timer linger_;
    net::steady_timer step_timer_;
    std::mt19937 rng_;
    output out_;
    std::unique_ptr<repl> repl_;

    std::shared_ptr<ws_session> session_;
    connect_result last_connect_;
    bool connected_once_ = false;
    int attempts_ = 0;          // consecutive failed attempts
    int reconnects_ = 0;

    // stdin
    std::unique_ptr<net::posix::stream_descriptor> stdin_;
    int stdin_flags_ = -1;
    std::vector<char> inbuf_ = std::vector<char>(1 << 16);
    std::optional<record_splitter> splitter_;
    bool reading_ = false, paused_ = false, input_done_ = false, warned_hold_ = false;
    std::deque<std::pair<std::string, bool>> outbox_;
    std::uint64_t outbox_bytes_ = 0;

    // progress and outcome
    std::uint64_t received_ = 0;
    std::size_t next_expect_ = 0;
    std::string last_received_;
    bool closing_ = false;            // we started the closing handshake on purpose
    bool finished_ = false;
    bool flush_posted_ = false;
    exit_code code_ = exit_code::ok;
    std::string message_;
    close_info last_close_;
    session_stats totals_;
    std::uint64_t pongs_ = 0;
    std::deque<std::string> console_pings_;  // payloads of /ping commands not answered yet
    bool lingering_ = false;                 // input is over; closing once --linger passes in silence
    std::uint64_t linger_armed_ = 0;         // counts arm_linger() calls

    // --script
    std::size_t step_ = 0;                   // the step running or waited for
    std::size_t last_expect_step_ = 0;       // messages are kept for expect steps up to this one
    bool script_started_ = false, script_done_ = false;
    std::deque<std::string> unread_;         // messages no expect step has looked at yet
    std::uint64_t unread_bytes_ = 0;
    std::deque<std::string> skipped_;        // the last few messages the current expect step passed over
    std::uint64_t skipped_count_ = 0;
};

int connect_app::run() {
    auto self = shared_from_this();
    signals_.async_wait([self](error_code ec, int) {
        if (ec) return;
        // A second signal ends the process at once.
        self->signals_.async_wait([self](error_code ec2, int) {
            if (ec2) return;
            if (self->repl_) self->repl_->stop();
            // stdin's file description is shared with the shell: leave it blocking as found.
            if (self->stdin_flags_ >= 0) ::fcntl(0, F_SETFL, self->stdin_flags_);
            std::_Exit(static_cast<int>(exit_code::interrupted));
        });
        self->finish(exit_code::interrupted, "");
    });
    // The console draws a prompt and redraws lines on stdout: only when both ends are a
    // terminal. `wsx connect URL > log` gets the data alone, and --jsonl (a machine format),
    // --send, --expect and -n are for scripts.
    const bool tty = ::isatty(0) == 1 && ::isatty(1) == 1;
    const bool interactive = !o_.jsonl && !o_.script && !o_.receive_only &&
                             (o_.interactive == interactive_mode::always ||
                              (o_.interactive == interactive_mode::automatic && tty && !goal_set() && o_.send.empty()));
    if (interactive) {
        repl_ = std::make_unique<repl>(ioc_.get_executor(), *this,
                                       repl_options{.history_file = o_.history_file, .colour = o_.colour,
                                                    .timestamps = o_.timestamps});
        repl_->start();
    } else if (o_.script || o_.receive_only) {
        // Neither reads stdin (a script given as - was read before connecting); input never
        // "ends": the script's end, the server's Close, -n or --timeout do.
    } else if (o_.send.empty() || o_.then_stdin) {
        start_stdin();
    } else {
        input_done_ = true;  // --send replaces stdin
    }
    if (o_.script)
        for (std::size_t i = 0; i < o_.script->steps.size(); ++i)
            if (o_.script->matchers[i]) last_expect_step_ = i + 1;
    auto timeout = o_.timeout;
    // A check waiting for a message must not hang (a script's steps bound themselves).
    if (timeout.count() == 0 && simple_goal()) timeout = 10s;
    if (timeout.count() > 0) {
        deadline_.expires_after(timeout);
        deadline_.async_wait([self, timeout](error_code ec) {
            if (ec || self->finished_) return;
            std::string what = fmt::format("timed out after {} (--timeout)", format_duration(timeout));
            // Still opening: no message could have come yet, so say where it stuck instead.
            if (!self->session_)
                what += " while opening the connection: TCP, TLS or the upgrade got no answer";
            else if (!self->goal_reached() && self->goal_set())
                what += " " + self->goal_status();
            self->finish(exit_code::timeout, what);
        });
    }
    connect();
    ioc_.run();
    if (repl_) repl_->stop();
    out_.flush();
    if (stdin_flags_ >= 0) ::fcntl(0, F_SETFL, stdin_flags_);
    if (o_.stats || o_.stats_json) print_stats();
    if (code_ != exit_code::ok && !message_.empty()) std::cerr << "wsx: error: " << message_ << std::endl;
    return static_cast<int>(code_);
}

std::string connect_app::goal_status() const {
    if (o_.script) {
        const auto& steps = o_.script->steps;
        const bool expecting = step_ < steps.size() && o_.script->matchers[step_];
        return fmt::format("at {}{}", script_where(), expecting ? "; " + what_arrived() : "");
    }
    std::string last = received_ == 0 ? "no message received" : fmt::format("last message received: '{}'", shorten(last_received_));
    if (next_expect_ < o_.expects.size())
        return fmt::format("waiting for {} '{}' (expectation {} of {}); {}",
                           o_.expects[next_expect_].is_json ? "--expect-json" : "--expect", o_.expects[next_expect_].text,
                           next_expect_ + 1, o_.expects.size(), last);
    return fmt::format("waiting for message {} of {} (-n); {}", received_ + 1, o_.count, last);
}

void connect_app::connect() {
    auto self = shared_from_this();
    net::co_spawn(
        ioc_, [self]() -> net::awaitable<void> {
            std::optional<connect_result> r;
            exit_code code = exit_code::ok;
            std::string msg;
            bool lasting = false;  // trying again cannot help
            try {
                r = co_await async_connect(self->o_.client, self->o_.verbose ? &std::cerr : nullptr);
            } catch (const upgrade_rejected& f) {
                code = f.code();
                msg = f.what();
                // A 4xx refuses this request as made (auth, path, origin); 408 and 429 ask
                // for a later attempt.
                lasting = f.status() >= 400 && f.status() < 500 && f.status() != 408 && f.status() != 429;
            } catch (const failure& f) {
                code = f.code();
                msg = f.what();
                lasting = code == exit_code::tls && msg.find("certificate verification failed") != std::string::npos;
                // A redirect -L cannot follow (too many, a loop, out of TLS) is the server's setup.
                if (auto* of = dynamic_cast<const open_failure*>(&f); of && of->reason() == "redirect") lasting = true;
            } catch (const std::exception& e) {
                code = exit_code::failure;
                msg = e.what();
            }
            if (self->finished_) co_return;
            if (r) self->on_connected(std::move(*r));
            else self->on_connect_failed(code, std::move(msg), lasting);
        },
        net::detached);
}

void connect_app::on_connected(connect_result r) {
    attempts_ = 0;
    session_ = r.session;
    last_connect_ = std::move(r);
    if (connected_once_) ++reconnects_;
    connected_once_ = true;
    if (repl_)
        repl_->print_info(fmt::format("connected to {}{}", o_.client.url.to_string(),
                                      last_connect_.subprotocol.empty() ? "" : " (" + last_connect_.subprotocol + ")"));
    else if (reconnects_ > 0)
        note(fmt::format("reconnected to {}", o_.client.url.to_string()));
    log_event("open", "in", {});
    session_->start(shared_from_this());
    for (const auto& m : o_.send) {
        log_event("message", "out", m);
        session_->send(m, false);
    }
    // What stdin produced during an outage goes out now, in order.
    while (!outbox_.empty()) {
        auto [payload, binary] = std::move(outbox_.front());
        outbox_.pop_front();
        outbox_bytes_ -= payload.size();
        log_event("message", "out", payload, {}, {}, binary);
        session_->send(std::move(payload), binary);
    }
    if (paused_) on_writable();
    arm_keepalive();
    if (o_.script && !script_started_) {
        script_started_ = true;
        return run_script();
    }
    close_if_done();
}

void connect_app::arm_keepalive() {
    if (o_.ping_interval.count() <= 0) return;
    keepalive_.expires_after(o_.ping_interval);
    keepalive_.async_wait([self = shared_from_this(), s = std::weak_ptr<ws_session>(session_)](error_code ec) {
        auto session = s.lock();
        // A reconnect re-arms the timer for the new session; this wait belongs to the old one.
        if (ec || self->finished_ || !session || session != self->session_) return;
        if (session->is_open()) {
            const auto sent = session->stats().pings_sent;
            std::string payload = fmt::format("{}", sent + 1);
            session->ping(payload);
            // The session skips a ping while one is unanswered under --ping-timeout.
            if (session->stats().pings_sent > sent) self->log_event("ping", "out", payload);
        }
        self->arm_keepalive();
    });
}

void connect_app::on_connect_failed(exit_code code, std::string message, bool lasting) {
    if (lasting && o_.reconnect && !finished_) message += " (--reconnect does not retry this)";
    if (code == exit_code::usage || lasting || !try_reconnect(message)) finish(code, std::move(message));
}

bool connect_app::try_reconnect(std::string& why) {
    if (!o_.reconnect || finished_ || closing_) return false;
    if (o_.max_retries >= 0 && attempts_ >= o_.max_retries) {
        if (o_.max_retries > 0) why += fmt::format(" (gave up after {} {})", attempts_, attempts_ == 1 ? "retry" : "retries");
        return false;
    }
    ++attempts_;
    double base = std::chrono::duration<double>(o_.backoff_initial).count() * std::pow(o_.backoff_factor, attempts_ - 1);
    base = std::min(base, std::chrono::duration<double>(o_.backoff_max).count());
    // Jitter in [base/2, base] so a fleet of clients does not reconnect in lockstep.
    double delay = std::uniform_real_distribution<double>(base / 2, base)(rng_);
    note(fmt::format("{}; reconnecting in {} (attempt {})", why,
                     format_duration(std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double>(delay))),
                     attempts_));
    backoff_.expires_after(std::chrono::duration_cast<nanoseconds>(std::chrono::duration<double>(delay)));
    backoff_.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec && !self->finished_) self->connect();
    });
    return true;
}

void connect_app::start_stdin() {
    int fd = ::dup(0);
    if (fd < 0) {
        input_done_ = true;
        return;
    }
    stdin_flags_ = ::fcntl(0, F_GETFL);
    splitter_.emplace(o_.framing == input_framing::lines  ? record_splitter::mode::lines
                      : o_.framing == input_framing::nul ? record_splitter::mode::nul
                                                         : record_splitter::mode::chunks,
                      std::size_t{64} << 20);
    stdin_ = std::make_unique<net::posix::stream_descriptor>(ioc_, fd);
    read_stdin();
}

void connect_app::read_stdin() {
    if (reading_ || input_done_ || !stdin_ || finished_) return;
    reading_ = true;
    stdin_->async_read_some(net::buffer(inbuf_), beast::bind_front_handler(&connect_app::on_stdin, shared_from_this()));
}

void connect_app::on_stdin(error_code ec, std::size_t n) {
    reading_ = false;
    if (finished_) return;
    const bool binary = o_.framing == input_framing::binary;
    // A text message must be UTF-8 (RFC 6455): a record that is not goes out as a binary
    // message with the same bytes, as serve --exec/--stdio do, rather than making the server
    // close with 1007 and losing the rest of stdin.
    auto deliver = [&](std::string_view rec) { send_record(std::string(rec), binary || !is_valid_utf8(rec)); };
    if (n > 0) splitter_->feed(std::string_view(inbuf_.data(), n), deliver);
    if (ec) {
        if (ec != net::error::eof) note(fmt::format("reading stdin: {}", ec.message()), true);
        splitter_->finish(deliver);
        input_finished();
        return;
    }
    const std::uint64_t backlog = session_ ? session_->queued_bytes() : outbox_bytes_;
    const std::uint64_t limit = session_ ? o_.client.session.send_queue_limit : o_.buffer_limit;
    if (backlog > limit) {
        paused_ = true;
        if (session_) session_->want_writable();  // on_writable() resumes reading
        if (!session_ && !warned_hold_) {
            warned_hold_ = true;
            note(fmt::format("holding {} of input while disconnected (--buffer-limit); pausing stdin until reconnected",
                             format_bytes(outbox_bytes_)));
        }
        return;
    }
    read_stdin();
}

void connect_app::on_writable() {
    if (!paused_) return;
    paused_ = false;
    read_stdin();
}

void connect_app::send_record(std::string payload, bool binary) {
    if (finished_) return;
    if (session_ && session_->is_open()) {
        log_event("message", "out", payload, {}, {}, binary);
        session_->send(std::move(payload), binary);
        return;
    }
    if (!o_.reconnect && connected_once_ && !session_) return;  // the connection is over; nothing will take it
    outbox_bytes_ += payload.size();
    outbox_.emplace_back(std::move(payload), binary);
}

void connect_app::input_finished() {
    if (input_done_) return;
    input_done_ = true;
    if (repl_ && !session_) return finish(code_, message_);
    close_if_done();
}

void connect_app::close_if_done() {
    if (!session_ || closing_ || !outbox_.empty()) return;
    if (o_.script) {
        if (script_done_) linger_then_close();
        return;
    }
    if (simple_goal()) {
        if (goal_reached()) begin_close(o_.close_code, o_.close_reason);
        return;
    }
    if (input_done_) linger_then_close();
}

void connect_app::linger_then_close() {
    if (o_.linger.count() <= 0) return begin_close(o_.close_code, o_.close_reason);
    if (lingering_) return;
    lingering_ = true;
    arm_linger();
}

// Re-armed by every message that arrives: the Close leaves once the server has been quiet for
// --linger (and everything we queued has been written), so echoes still on their way are read.
void connect_app::arm_linger() {
    linger_.expires_after(o_.linger);
    // A wait that had already expired when a message re-armed the timer is not cancelled by it:
    // only the latest wait may close.
    linger_.async_wait([self = shared_from_this(), armed = ++linger_armed_](error_code ec) {
        if (ec || self->finished_ || !self->lingering_ || armed != self->linger_armed_) return;
        if (self->session_ && self->session_->queued_bytes() > 0) return self->arm_linger();
        self->lingering_ = false;
        if (self->session_ && !self->closing_) self->begin_close(self->o_.close_code, self->o_.close_reason);
    });
}

void connect_app::run_script() {
    using K = script_step::kind;
    const auto& steps = o_.script->steps;
    while (!finished_ && !script_done_ && step_ < steps.size()) {
        if (!session_ || closing_) return;
        const auto& st = steps[step_];
        switch (st.op) {
        case K::send:
        case K::send_json:
            send_record(st.text, false);
            break;
        case K::send_file:
            // As a stdin line: text when it is UTF-8, else binary with the same bytes.
            send_record(st.text, !is_valid_utf8(st.text));
            break;
        case K::send_binary:
            send_record(st.text, true);
            break;
        case K::ping:
            log_event("ping", "out", st.text);
            session_->ping(st.text);
            break;
        case K::wait:
            return arm_step_timer(st.duration);
        case K::expect:
        case K::expect_json:
            if (!match_unread()) {
                if (!finished_) arm_step_timer(st.timeout.value_or(default_step_timeout));
                return;
            }
            break;
        case K::expect_close:
            return arm_step_timer(st.timeout.value_or(default_step_timeout));
        case K::close:
            script_done_ = true;
            if (st.code) begin_close(static_cast<std::uint16_t>(*st.code), st.text);
            else begin_close(o_.close_code, o_.close_reason);
            return;
        }
        next_step();
    }
    if (!finished_ && !script_done_ && step_ >= steps.size()) {
        script_done_ = true;
        close_if_done();
    }
}

void connect_app::next_step() {
    ++step_;
    skipped_.clear();
    skipped_count_ = 0;
    if (step_ >= last_expect_step_) {
        unread_.clear();  // no expect step is left to read them
        unread_bytes_ = 0;
    }
}

bool connect_app::match_unread() {
    const auto& m = *o_.script->matchers[step_];
    while (!unread_.empty()) {
        std::string msg = std::move(unread_.front());
        unread_.pop_front();
        unread_bytes_ -= msg.size();
        std::string error;
        if (m.matches(msg, &error)) return true;
        if (!error.empty()) {
            finish(exit_code::failure, fmt::format("{}: cannot match a message of {}: {} (simplify the pattern)",
                                                   script_where(), format_bytes(msg.size()), error));
            return false;
        }
        ++skipped_count_;
        skipped_.push_back(shorten(msg, 80));
        if (skipped_.size() > 3) skipped_.pop_front();
    }
    return false;
}

void connect_app::arm_step_timer(nanoseconds d) {
    step_timer_.expires_after(d);
    step_timer_.async_wait([self = shared_from_this(), step = step_](error_code ec) {
        if (ec || self->finished_ || step != self->step_) return;
        self->on_step_timer();
    });
}

void connect_app::on_step_timer() {
    const auto& st = o_.script->steps[step_];
    if (st.op == script_step::kind::wait) {
        next_step();
        return run_script();
    }
    // The step's own timeout= shows in its source; the default is named, with how to change it.
    const auto limit = format_duration(st.timeout.value_or(default_step_timeout));
    const std::string bound = st.timeout ? limit : limit + " (the default step timeout; add timeout=DURATION to the step)";
    if (st.op == script_step::kind::expect_close)
        return finish(exit_code::timeout, fmt::format("{}: no Close from the server within {}", script_where(), bound));
    finish(exit_code::timeout, fmt::format("{}: no matching message within {}; {}", script_where(), bound, what_arrived()));
}

void connect_app::on_script_message(std::string&& payload) {
    if (script_done_ || step_ >= last_expect_step_) return;
    // Kept for the expect steps to come, up to a bound (the oldest go first).
    unread_bytes_ += payload.size();
    unread_.push_back(std::move(payload));
    while (unread_.size() > 1 && (unread_.size() > 100'000 || unread_bytes_ > (std::uint64_t{64} << 20))) {
        unread_bytes_ -= unread_.front().size();
        unread_.pop_front();
    }
    if (!o_.script->matchers[step_] || !session_) return;
    if (match_unread()) {
        step_timer_.cancel();
        next_step();
        run_script();
    }
}

void connect_app::on_script_close(const close_info& info) {
    const auto& steps = o_.script->steps;
    if (step_ < steps.size() && steps[step_].op == script_step::kind::expect_close) {
        const auto& st = steps[step_];
        if (info.clean && info.by_peer && (!st.code || *st.code == info.code)) {
            script_done_ = true;
            return finish(exit_code::ok, "");
        }
        if (info.clean && info.by_peer)
            return finish(exit_code::expectation, fmt::format("{}: the server closed with {}", script_where(),
                                                              describe_close(info.code, info.reason)));
    }
    if (info.timed_out) return finish(exit_code::timeout, fmt::format("{}: {}", script_where(), describe_end(info)));
    const bool expecting = step_ < steps.size() && o_.script->matchers[step_];
    finish(exit_code::expectation, fmt::format("{}: the connection ended before this step was done ({}){}", script_where(),
                                               describe_end(info), expecting ? "; " + what_arrived() : ""));
}

std::string connect_app::script_where() const {
    const auto& steps = o_.script->steps;
    const auto& st = steps[std::min(step_, steps.size() - 1)];
    return fmt::format("{}:{}: {}", o_.script->name, st.line, shorten(st.source, 100));
}

std::string connect_app::what_arrived() const {
    if (skipped_count_ == 0) return "no message arrived since the previous step";
    std::string last;
    for (const auto& m : skipped_) last += fmt::format("{}'{}'", last.empty() ? "" : ", ", m);
    if (skipped_count_ == 1) return "1 other message arrived: " + last;
    return fmt::format("{} other messages arrived, the last {}: {}", skipped_count_, skipped_.size(), last);
}

void connect_app::begin_close(std::uint16_t code, std::string reason) {
    const bool first = !closing_;
    closing_ = true;
    if (!session_) return;
    if (first) log_event("close", "out", {}, code, reason);
    session_->close(code, std::move(reason));
}

void connect_app::on_message(std::string&& payload, bool binary) {
    // Once -n/--expect are satisfied the output is complete: what arrives while the closing
    // handshake runs is not printed, so `-n 3` prints exactly three messages.
    if (simple_goal() && goal_reached()) return;
    ++received_;
    if (!o_.send_only) print_message(payload, binary, "in");
    if (lingering_) arm_linger();
    if (o_.script) {
        on_script_message(std::move(payload));
        if (out_.broken() && !finished_)
            finish(exit_code::expectation, "stdout was closed while " + goal_status());
        return;
    }
    if (next_expect_ < o_.expects.size()) {
        std::string error;
        if (o_.expects[next_expect_].matches(payload, &error)) ++next_expect_;
        else if (!error.empty())
            return finish(exit_code::failure,
                          fmt::format("--expect '{}': cannot match a message of {}: {} (simplify the pattern)",
                                      o_.expects[next_expect_].text, format_bytes(payload.size()),
                                      error));
    }
    if (goal_set()) last_received_ = payload.substr(0, 256);
    if (goal_set() && goal_reached()) close_if_done();
    // The reader of stdout went away (`| head -1`): nothing more can be shown, so the run
    // ends, and a goal still unmet is a failure, as when the connection closes before it.
    if (out_.broken()) {
        if (goal_set() && !goal_reached()) return finish(exit_code::expectation, "stdout was closed while " + goal_status());
        finish(exit_code::ok, "");
    }
}

void connect_app::on_ping(std::string_view payload) {
    log_event("ping", "in", payload);
}

void connect_app::on_pong(std::string_view payload, nanoseconds rtt) {
    ++pongs_;
    log_event("pong", "in", payload);
    // The console reports the answers to /ping; keepalive pongs only with -v, or a line
    // would appear every --ping-interval.
    auto asked = std::find(console_pings_.begin(), console_pings_.end(), payload);
    const bool requested = asked != console_pings_.end();
    if (requested) console_pings_.erase(asked);
    if (repl_ && (requested || o_.verbose)) {
        if (rtt.count() > 0) repl_->print_info(fmt::format("pong '{}': rtt {}", shorten(payload), format_duration(rtt)));
        else repl_->print_info(fmt::format("pong '{}'", shorten(payload)));
    }
}

void connect_app::send_ping(std::string payload) {
    if (!session_) return note("not connected", true);
    log_event("ping", "out", payload);
    if (console_pings_.size() >= 64) console_pings_.pop_front();  // pings the server never answered
    console_pings_.push_back(payload);
    session_->ping(std::move(payload));
}

void connect_app::close_connection(int code, std::string reason) {
    if (!session_) return finish(code_, message_);
    input_done_ = true;
    begin_close(static_cast<std::uint16_t>(code), std::move(reason));
}

void connect_app::on_close(const close_info& info) {
    add_session_stats();
    last_close_ = info;
    session_.reset();
    // A Close the session sent by itself, failing the connection (1002, 1007, 1009): it left
    // like any other frame, so the event stream shows it.
    if (!closing_ && info.error && info.sent_code != 0) log_event("close", "out", {}, info.sent_code, info.sent_reason);
    log_event("close", "in", {}, info.code, info.reason);
    if (finished_) return stop();
    lingering_ = false;
    if (o_.script && !script_done_) return on_script_close(info);
    std::string what = describe_end(info);
    if (repl_) repl_->print_info(what);
    if (closing_) {
        // We asked for the close (stdin EOF, -n, --expect, /close, /quit).
        if (!info.clean && info.timed_out) {
            // Our Close never left: the server stopped reading what came before it.
            std::string slow = info.sent_code == 0 && !info.what.empty()
                                   ? fmt::format("the server stopped reading: {} (--wait {})", info.what, format_duration(o_.wait))
                                   : fmt::format("the server did not answer Close within --wait {}", format_duration(o_.wait));
            // What was asked for (-n, --expect, a script) was had: a slow goodbye does not undo it.
            if (goal_set() && goal_reached()) {
                note("warning: " + slow);
                return finish(exit_code::ok, "");
            }
            return finish(exit_code::timeout, std::move(slow));
        }
        // The exit status says how the connection ended, whoever started the close and
        // whichever Close crossed which: a hang-up without a Close (1006), or a Close with a
        // code other than 1000/1001, is abnormal. The code we sent ourselves (/close 4000)
        // coming back is the normal answer to it.
        const bool echoed = info.clean && !info.by_peer && info.sent_code != 0 && info.code == info.sent_code;
        if (!info.normal() && !echoed) {
            if (info.clean && !info.by_peer)
                what = fmt::format("connection closed abnormally: the server answered our Close with {}",
                                   describe_close(info.code, info.reason));
            else if (info.clean)
                what = fmt::format("connection closed abnormally by server: {}", describe_close(info.code, info.reason));
            return finish(exit_code::abnormal_close, what);
        }
        if (goal_set() && !goal_reached()) return finish(exit_code::expectation, "connection closed while " + goal_status());
        return finish(exit_code::ok, "");
    }
    if (try_reconnect(what)) return;
    if (info.timed_out) return finish(exit_code::timeout, what);
    if (!info.normal())
        return finish(exit_code::abnormal_close,
                      info.clean ? fmt::format("connection closed abnormally by server: {}", describe_close(info.code, info.reason))
                                 : what);
    if (goal_set() && !goal_reached()) return finish(exit_code::expectation, "connection closed while " + goal_status());
    finish(exit_code::ok, "");
}

std::string connect_app::describe_end(const close_info& info) const {
    // A timeout of ours ends the connection even when the server then answers our Close:
    // name the timeout, not the server's echo of it.
    if (info.timed_out && info.what == "idle timeout")
        return fmt::format("idle timeout: nothing received for {} (--idle-timeout)", format_duration(o_.idle_timeout));
    if (info.ping_timeout)
        return fmt::format("{} (--ping-timeout)", info.what);
    if (info.error == websocket::error::message_too_big)
        return fmt::format("a message larger than --max-message-size {} arrived; closed with 1009",
                           format_bytes(o_.client.session.max_message_size));
    if (info.error && info.error.category() == websocket::make_error_code(websocket::error::closed).category())
        return fmt::format("protocol error: the server {} (closed with {})", describe_protocol_error(info.error),
                           info.sent_code ? info.sent_code : 1002);
    if (info.clean && !info.by_peer)
        return fmt::format("connection closed: the server answered our Close {}", describe_close(info.code, info.reason));
    if (info.clean) return fmt::format("connection closed by server: {}", describe_close(info.code, info.reason));
    return fmt::format("connection lost without a Close frame (1006): {}",
                       info.what.empty() ? std::string("closed by the peer") : info.what);
}

void connect_app::finish(exit_code code, std::string message) {
    if (finished_) return;
    finished_ = true;
    code_ = code;
    message_ = std::move(message);
    deadline_.cancel();
    backoff_.cancel();
    keepalive_.cancel();
    linger_.cancel();
    step_timer_.cancel();
    if (stdin_) {
        error_code ignored;
        stdin_->cancel(ignored);
    }
    if (session_ && (code == exit_code::ok || code == exit_code::expectation)) {
        // Normal end: complete the closing handshake (bounded by --wait) before exiting.
        if (!closing_) begin_close(o_.close_code, o_.close_reason);
        return;
    }
    if (session_ && code == exit_code::interrupted) {
        if (!closing_) log_event("close", "out", {}, 1001, "interrupted");
        closing_ = true;
        session_->close(1001, "interrupted");
        auto t = std::make_shared<net::steady_timer>(ioc_, 1s);
        t->async_wait([t, self = shared_from_this()](error_code) {
            if (self->session_) self->session_->abort("interrupted");
        });
        return;
    }
    if (session_) return session_->abort(message_);
    stop();
}

void connect_app::stop() {
    signals_.cancel();
    deadline_.cancel();
    linger_.cancel();
    step_timer_.cancel();
    backoff_.cancel();
    keepalive_.cancel();
    if (stdin_) {
        error_code ignored;
        stdin_->cancel(ignored);
        stdin_->close(ignored);
    }
    if (repl_) repl_->stop();
    out_.flush();
    ioc_.stop();
}

void connect_app::note(std::string_view line, bool error) {
    if (repl_) {
        error ? repl_->print_error(line) : repl_->print_info(line);
        return;
    }
    std::cerr << "wsx: " << (error ? "error: " : "") << line << std::endl;
}

void connect_app::schedule_flush() {
    if (flush_posted_ || !out_.pending()) return;
    flush_posted_ = true;
    defer_flush(std::size_t(-1));  // at least one more turn: the next message may already be parsed
}

// Messages parsed from one socket read complete one by one, each on its own turn of the
// event loop: the flush waits until a turn adds nothing more, so one write carries them all.
void connect_app::defer_flush(std::size_t seen) {
    net::post(ioc_, [self = shared_from_this(), seen] {
        if (self->out_.size() != seen && self->out_.pending()) return self->defer_flush(self->out_.size());
        self->flush_posted_ = false;
        self->out_.flush();
    });
}

void connect_app::log_event(std::string_view kind, std::string_view dir, std::string_view data, std::optional<int> code,
                            std::string_view reason, bool binary) {
    if (!o_.jsonl || (kind == "message" && dir == "in")) return;
    write_event(kind, dir, data, code, reason, binary);
    schedule_flush();
}

void connect_app::write_event(std::string_view kind, std::string_view dir, std::string_view data,
                              std::optional<int> code, std::string_view reason, bool binary) {
    // 1005 is "the Close frame had no code": the event then has no code (1006, no Close frame
    // at all, is kept: it is how the stream tells an abnormal end).
    if (code && *code == 1005) code.reset();
    const auto ts = rfc3339_utc(std::chrono::system_clock::now());
    ws_event e{.type = kind == "message" ? (binary ? "binary" : "text") : kind, .dir = dir, .conn = {},
               .data = data, .code = code, .reason = reason, .ts = ts};
    out_.write(to_event_json(e));
}

void connect_app::print_message(std::string_view payload, bool binary, std::string_view dir) {
    if (repl_) return repl_->print_incoming(payload, binary);
    if (o_.jsonl) {
        write_event("message", dir, payload, {}, {}, binary);
    } else {
        if (o_.timestamps) out_.write(clock_stamp() + " ");
        if (binary && o_.display == binary_display::hex) {
            out_.write(to_hex(payload));
            out_.write("\n");
        } else if (binary && o_.display == binary_display::base64) {
            out_.write(base64_encode(payload));
            out_.write("\n");
        } else {
            // Remote bytes reach a terminal escaped (a server must not retitle it, clear it
            // or hide text with control sequences); piped, they stay exact.
            std::string escaped;
            if (out_.tty()) escaped = escape_for_terminal(payload);
            out_.write(out_.tty() ? std::string_view(escaped) : payload);
            if (o_.framing == input_framing::binary) return schedule_flush();
            out_.write(o_.framing == input_framing::nul ? std::string_view("\0", 1) : std::string_view("\n"));
        }
    }
    schedule_flush();
}

void connect_app::add_session_stats() {
    if (session_) accumulate(totals_, session_->stats());
}

std::string connect_app::stats_text() {
    session_stats t = totals_;
    if (session_) accumulate(t, session_->stats());
    const auto& tm = last_connect_.timings;
    std::string out;
    out += fmt::format("url:           {}\n", o_.client.url.to_string());
    for (const auto& hop : last_connect_.redirects)
        out += fmt::format("redirect:      HTTP {} to {} ({})\n", hop.status, hop.to.to_string(), format_duration(hop.time));
    out += fmt::format("remote:        {}\n", last_connect_.remote.empty() ? "-" : last_connect_.remote);
    out += fmt::format("dns:           {}\n", format_duration(tm.dns));
    out += fmt::format("tcp connect:   {}\n", format_duration(tm.tcp));
    if (o_.client.proxy) out += fmt::format("proxy:         {}\n", format_duration(tm.proxy));
    if (o_.client.url.tls || last_connect_.url.tls) out += fmt::format("tls handshake: {}\n", format_duration(tm.tls));
    out += fmt::format("upgrade:       {}\n", format_duration(tm.upgrade));
    out += fmt::format("connect total: {}\n", format_duration(tm.total));
    out += fmt::format("first message: {}\n", t.first_message == steady_clock::time_point{}
                                                  ? std::string("-")
                                                  : format_duration(t.first_message - t.opened) + " after open");
    out += fmt::format("sent:          {} messages, {}\n", t.messages_out, format_bytes(t.bytes_out));
    out += fmt::format("received:      {} messages, {}\n", t.messages_in, format_bytes(t.bytes_in));
    if (t.pings_sent || t.pongs_received) {
        out += fmt::format("pings:         {} sent, {} pongs", t.pings_sent, t.pongs_received);
        if (t.pongs_received && t.rtt_max.count())
            out += fmt::format(", rtt min {} avg {} max {}", format_duration(t.rtt_min),
                               format_duration(t.rtt_sum / std::max<std::uint64_t>(1, t.pongs_received)), format_duration(t.rtt_max));
        out += "\n";
    }
    if (reconnects_) out += fmt::format("reconnects:    {}\n", reconnects_);
    if (!session_ && connected_once_)
        out += fmt::format("close:         {}{}\n", describe_close(last_close_.code, last_close_.reason),
                           last_close_.clean ? (last_close_.by_peer ? " (by server)" : " (by client)") : " (abnormal)");
    return out;
}

void connect_app::print_stats() {
    if (o_.stats) std::cerr << stats_text();
    if (!o_.stats_json) return;
    session_stats t = totals_;
    const auto& tm = last_connect_.timings;
    auto sec = [](nanoseconds d) { return std::chrono::duration<double>(d).count(); };
    auto redirect_list = nlohmann::json::array();
    for (const auto& hop : last_connect_.redirects)
        redirect_list.push_back({{"status", hop.status}, {"url", hop.to.to_string()}, {"time", sec(hop.time)}});
    nlohmann::json j = {
        {"url", o_.client.url.to_string()},
        {"remote", last_connect_.remote},
        {"redirects", redirect_list},
        {"subprotocol", last_connect_.subprotocol},
        {"time_dns", sec(tm.dns)},
        {"time_connect", sec(tm.tcp)},
        {"time_proxy", sec(tm.proxy)},
        {"time_tls", sec(tm.tls)},
        {"time_upgrade", sec(tm.upgrade)},
        {"time_total_connect", sec(tm.total)},
        {"time_first_message", t.first_message == steady_clock::time_point{} ? nlohmann::json(nullptr)
                                                                                : nlohmann::json(sec(t.first_message - t.opened))},
        {"messages_sent", t.messages_out},
        {"bytes_sent", t.bytes_out},
        {"messages_received", t.messages_in},
        {"bytes_received", t.bytes_in},
        {"pings_sent", t.pings_sent},
        {"pongs_received", t.pongs_received},
        {"rtt_min", sec(t.rtt_min)},
        {"rtt_avg", t.pongs_received ? sec(t.rtt_sum / t.pongs_received) : 0.0},
        {"rtt_max", sec(t.rtt_max)},
        {"reconnects", reconnects_},
        {"close_code", connected_once_ ? nlohmann::json(last_close_.code) : nlohmann::json(nullptr)},
        {"close_reason", last_close_.reason},
        {"exit_code", static_cast<int>(code_)},
    };
    std::cerr << j.dump() << std::endl;
}

}  // namespace

int run_connect(const connect_options& o) {
    net::io_context ioc(1);
    auto app = std::make_shared<connect_app>(ioc, o);
    return app->run();
}

}  // namespace wsx
