#include "serve_app.hpp"

#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <deque>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "event_json.hpp"
#include "exec.hpp"
#include "metrics.hpp"
#include "rate_limit.hpp"
#include "shutdown.hpp"
#include "static_files.hpp"
#include "units.hpp"

extern char** environ;

namespace wsx {

int effective_close_code(const close_info& info) {
    if (info.clean) return info.code;
    if (info.sent_code) return info.sent_code;
    if (info.error == websocket::error::message_too_big || info.error == websocket::error::buffer_overflow) return 1009;
    if (info.error == websocket::error::bad_frame_payload) return 1007;
    if (info.error == websocket::condition::protocol_violation) return 1002;
    return 1006;
}

namespace {

std::string lenient_percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
            out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::string_view target_path(const http_request& req) {
    std::string_view t(req.target().data(), req.target().size());
    return t.substr(0, t.find('?'));
}

std::string now_iso8601() {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:03}Z", buf, ms);
}

thread_local std::size_t tl_worker = 0;

/// A line is at most --max-message-size bytes (what a client of this server may send, and so
/// what it is assumed to take): while `partial` (a line still without its newline) holds more,
/// its first `max` bytes, cut after a whole UTF-8 character, go to `emit` as a message of their
/// own and the line goes on in the next one. This also bounds the memory a writer that never
/// writes a newline can take.
template <class Emit>
void split_long_line(std::string& partial, std::uint64_t max, Emit emit) {
    const auto cap = static_cast<std::size_t>(std::clamp<std::uint64_t>(max, 4, std::size_t(-1)));
    std::size_t done = 0;
    while (partial.size() - done > cap) {
        std::string_view head(partial.data() + done, cap);
        auto n = utf8_complete_prefix(head);
        if (n == std::string_view::npos || n == 0) n = cap;  // not text anyway: cut anywhere
        emit(std::string(head.substr(0, n)));
        done += n;
    }
    partial.erase(0, done);
}

}  // namespace

std::optional<std::string> choose_subprotocol(const http_request& req, const std::vector<std::string>& ours) {
    std::vector<std::string_view> offered;
    const auto [first, last] = req.equal_range(http::field::sec_websocket_protocol);
    for (auto f = first; f != last; ++f) {
        std::string_view list(f->value().data(), f->value().size());
        while (!list.empty()) {
            const auto comma = list.find(',');
            auto item = list.substr(0, comma);
            while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
            while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
            if (!item.empty()) offered.push_back(item);
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }
    for (const auto& name : ours)
        if (std::find(offered.begin(), offered.end(), name) != offered.end()) return name;
    return std::nullopt;
}

std::vector<std::string> cgi_environment(const http_request& req, const peer_info& peer, const std::string& script_name,
                                         const std::vector<std::string>& passenv, std::uint64_t connection_id) {
    std::vector<std::string> env;
    auto add = [&](std::string_view k, std::string_view v) { env.push_back(fmt::format("{}={}", k, v)); };
    std::string_view target(req.target().data(), req.target().size());
    auto q = target.find('?');
    std::string_view path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    std::string server_name;
    if (auto host = req.find(http::field::host); host != req.end()) {
        std::string_view h(host->value().data(), host->value().size());
        if (!h.empty() && h[0] == '[') server_name = std::string(h.substr(1, h.find(']') - 1));
        else server_name = std::string(h.substr(0, h.find(':')));
    }
    add("GATEWAY_INTERFACE", "CGI/1.1");
    add("SERVER_SOFTWARE", "wsx/" WSX_VERSION);
    add("SERVER_PROTOCOL", req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1");
    add("SERVER_NAME", server_name);
    // A unix socket has no ports: empty rather than a made-up 0.
    add("SERVER_PORT", peer.is_unix ? std::string() : std::to_string(peer.local_port));
    add("REMOTE_ADDR", peer.address);
    add("REMOTE_HOST", peer.address);
    add("REMOTE_PORT", peer.is_unix ? std::string() : std::to_string(peer.port));
    add("REQUEST_METHOD", std::string_view(req.method_string().data(), req.method_string().size()));
    add("REQUEST_URI", target);
    add("SCRIPT_NAME", script_name);
    std::string_view info = path;
    if (!script_name.empty() && info.substr(0, script_name.size()) == script_name) info.remove_prefix(script_name.size());
    add("PATH_INFO", lenient_percent_decode(info));
    add("QUERY_STRING", query);
    if (peer.tls) add("HTTPS", "on");
    for (const auto& field : req) {
        // HTTP_PROXY is where many programs look for their outgoing proxy: a client must not set
        // it through a Proxy header ("httpoxy", CVE-2016-5385), so that header is not passed on.
        if (beast::iequals(field.name_string(), "proxy")) continue;
        std::string name = "HTTP_";
        for (char c : field.name_string()) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        // A header spelt with characters a variable name cannot hold is dropped, not mangled into another.
        if (name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != std::string::npos) continue;
        add(name, std::string_view(field.value().data(), field.value().size()));
    }
    add("WSX_VERSION", WSX_VERSION);
    add("WSX_CONNECTION_ID", std::to_string(connection_id));
    add("WSX_SCHEME", peer.tls ? "wss" : "ws");
    for (const auto& [k, v] : peer.vars) {
        if (k.starts_with("serve.")) continue;  // the server's own bookkeeping
        std::string name = "WSX_";
        for (char c : k) name += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : '_';
        add(name, v);
    }
    auto pass = [&](const std::string& name) {
        if (const char* v = std::getenv(name.c_str())) add(name, v);
    };
    pass("PATH");
    for (const auto& n : passenv)
        if (n != "PATH") pass(n);
    return env;
}

namespace {
/// format_log_event with more fields for the JSON object (a "message" among them replaces `text`).
std::string log_event_line(log_format format, std::string_view event, const std::string& text, nlohmann::json fields) {
    if (format != log_format::json) return text;
    // In the order a reader looks for them: when, what, the details, the message.
    nlohmann::ordered_json j = {{event_key::ts, rfc3339_now()}, {event_key::type, event}};
    for (const auto& [k, v] : fields.items())
        if (k != "message") j[k] = v;
    j["message"] = fields.contains("message") ? fields["message"] : nlohmann::json(text);
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
}  // namespace

std::string format_log_event(log_format format, std::string_view event, const std::string& text) {
    return log_event_line(format, event, text, nlohmann::json::object());
}

std::string redact_target(std::string_view target) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return std::string(target);
    std::string out(target.substr(0, q + 1));
    auto query = target.substr(q + 1);
    std::string_view fragment;
    if (const auto hash = query.find('#'); hash != std::string_view::npos) {
        fragment = query.substr(hash);
        query = query.substr(0, hash);
    }
    bool first = true;
    for (;;) {
        const auto amp = query.find('&');
        const auto pair = query.substr(0, amp);
        if (!first) out += '&';
        first = false;
        const auto eq = pair.find('=');
        std::string key = lenient_percent_decode(pair.substr(0, eq));
        for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (eq != std::string_view::npos && eq + 1 < pair.size() && (key == "token" || key == "access_token")) {
            out.append(pair.substr(0, eq + 1));
            out += "REDACTED";
        } else {
            out.append(pair);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    out.append(fragment);
    return out;
}

std::string format_access_entry(log_format format, const access_entry& e) {
    const int code = effective_close_code(e.close);
    const auto& info = e.close;
    const std::string reason = info.clean ? info.reason : info.sent_reason;
    const std::string error = info.clean ? std::string() : info.what;
    auto quoted = [](const std::string& s) { return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
    if (format == log_format::json) {
        nlohmann::ordered_json j = {{event_key::ts, rfc3339_now()}, {event_key::type, "close"}, {"peer", e.peer}};
        if (e.path) j["path"] = redact_target(*e.path);
        if (!e.backend.empty()) j["backend"] = e.backend;
        j["duration_ms"] = std::chrono::duration<double, std::milli>(e.duration).count();
        j["messages_in"] = e.messages_in;
        j["bytes_in"] = e.bytes_in;
        j["messages_out"] = e.messages_out;
        j["bytes_out"] = e.bytes_out;
        j[event_key::code] = code;
        j[event_key::reason] = reason;
        j["by_peer"] = info.by_peer;
        if (!error.empty()) j["error"] = error;
        if (e.dropped_messages) j["dropped_messages"] = e.dropped_messages;
        if (e.rate_limited) j["rate_limited"] = e.rate_limited;
        return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string line = fmt::format("{} {} {} {} in={}/{}B out={}/{}B code={}", now_iso8601(), e.peer, e.path ? quoted(redact_target(*e.path)) : "-",
                                   format_duration(std::chrono::duration_cast<std::chrono::nanoseconds>(e.duration)),
                                   e.messages_in, e.bytes_in, e.messages_out, e.bytes_out, code);
    if (!e.backend.empty()) line += " backend=" + quoted(e.backend);
    if (!reason.empty()) line += " reason=" + quoted(reason);
    if (!error.empty()) line += " error=" + quoted(error);
    if (e.dropped_messages) line += fmt::format(" dropped={}", e.dropped_messages);
    if (e.rate_limited) line += fmt::format(" rate_limited={}", e.rate_limited);
    return line;
}

namespace {

class serve_app;

/// One --max-forks slot, taken when an upgrade is admitted (so that concurrent upgrades cannot
/// all pass the check before any child has started) and given back when the last owner lets
/// go: the upgrade that failed, or the handler once its child has exited (or could not start).
struct fork_slot {
    explicit fork_slot(std::atomic<std::size_t>& n) : forks(n) {}
    fork_slot(const fork_slot&) = delete;
    fork_slot& operator=(const fork_slot&) = delete;
    ~fork_slot() { --forks; }
    std::atomic<std::size_t>& forks;
};

/// When a connection last carried a data message, either way (--max-connections-policy
/// evict-oldest). `last` is written on the session's executor and read by any thread.
/// Made at admission: the 101 leaves before the handler exists, and the client may make another
/// connection busy meanwhile.
struct conn_activity {
    conn_activity() { touch(); }
    void touch() { last.store(steady_clock::now().time_since_epoch().count(), std::memory_order_relaxed); }
    /// Activity seen by a look at the counters: it happened after `since` (the previous look).
    /// A later exact time (a message counted as it arrived) is kept.
    void touch_after(steady_clock::time_point since) {
        const auto t = since.time_since_epoch().count();
        auto cur = last.load(std::memory_order_relaxed);
        while (cur < t && !last.compare_exchange_weak(cur, t, std::memory_order_relaxed)) {
        }
    }
    std::weak_ptr<ws_session> session;  ///< set with the handler (its worker's thread only)
    std::atomic<steady_clock::rep> last{0};
    std::atomic<bool> evicting{false};  ///< chosen once: a second upgrade must pick another
    std::uint64_t seen = 0;             ///< messages in + out at the last look (its worker's thread only)
};

/// What every connection handler shares: counting, the access log, the registry.
class conn_handler : public channel_events {
public:
    conn_handler(serve_app& app, std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                 std::uint64_t id);
    void on_close(const close_info& info) override;
    virtual void on_end(const close_info&) {}
    /// A client let in only to be refused (--auth-failure close).
    virtual bool refused() const { return false; }
    std::uint64_t id() const { return id_; }
    /// A line of --stdio input for this client (called on the session's executor).
    void send_stdin_line(std::string line) { send_line(std::move(line)); }
    const std::string& backend() const { return backend_; }
    /// The server is about to close this connection itself: what the handler holds goes first.
    virtual void before_server_close() {}
    std::shared_ptr<conn_activity> activity_;  // set with evict-oldest, before any message

protected:
    /// Counts an incoming message; false when --rate-limit refuses it (dropped, or closing).
    bool admit(std::size_t n) {
        wc_.messages_in.add(1);
        wc_.bytes_in.add(n);
        if (activity_) activity_->touch();
        if (!bucket_ || bucket_->try_take(steady_clock::now())) return true;
        ++rate_limited_;
        count_rate_limited();
        if (!drop_over_rate_) s_->close(1008, "rate limit exceeded");
        return false;
    }
    void count_rate_limited();
    /// Sends, and counts what the session did with it: sent (messages_total{out}) or dropped
    /// under --overflow (wsx_dropped_messages_total, at once rather than at the close).
    void send(std::string payload, bool binary) {
        const auto n = payload.size();
        const auto dropped = s_->stats().dropped_messages;
        s_->send(std::move(payload), binary);
        count_sent(n, dropped);
    }
    /// A line of a child's or of stdin's output: a text message when it is valid UTF-8, else a
    /// binary one (a text message must be UTF-8, RFC 6455 §8.1; the client would fail with 1007).
    void send_line(std::string line) {
        const bool binary = !is_valid_utf8(line);
        send(std::move(line), binary);
    }
    void send_view(std::string_view payload, bool binary) {
        const auto dropped = s_->stats().dropped_messages;
        s_->send_view(payload, binary);
        count_sent(payload.size(), dropped);
    }
    void count_sent(std::size_t bytes, std::uint64_t dropped_before) {
        const auto dropped = s_->stats().dropped_messages - dropped_before;
        if (dropped == 0) {
            wc_.messages_out.add(1);
            wc_.bytes_out.add(bytes);
            return;
        }
        // This message, and with --overflow close those still queued.
        wc_.dropped_messages.add(dropped);
        dropped_counted_ += dropped;
    }

    serve_app& app_;
    ws_session* s_;  // the session owns this handler, so it outlives every event call
    std::weak_ptr<ws_session> weak_;
    worker_counters& wc_;
    std::uint64_t id_;
    std::string path_, peer_, backend_;
    std::optional<token_bucket> bucket_;
    bool drop_over_rate_ = false;
    std::uint64_t rate_limited_ = 0;
    std::uint64_t dropped_counted_ = 0;  // drops already in wc_.dropped_messages
};

class serve_app {
public:
    explicit serve_app(serve_options o);
    ~serve_app() { teardown(); }
    int run();

    // Called from any thread.
    void log_line(const std::string& line);
    /// A line for the log that is not an access entry: `text` as it is, or with --log-format
    /// json one object {"ts", "type", ...fields, "message": text} (fields may replace it).
    void log_event(std::string_view event, const std::string& text, nlohmann::json fields = nlohmann::json::object());
    void connection_closed(conn_handler& h, const std::string& peer, const std::string& path, const session_stats& st,
                           const close_info& info, std::uint64_t rate_limited);
    void count_rate_limited() { ++metrics_.rate_limited; }
    worker_counters& counters() { return metrics_.worker(tl_worker); }
    const serve_options& options() const { return o_; }
    child_reaper& reaper() { return *reaper_; }
    net::io_context& main_context() { return main_; }
    std::atomic<std::size_t> forks_{0};  // --max-forks slots taken: children running or about to start
    void stdio_out(const std::string& payload);
    void stdio_register(std::weak_ptr<ws_session> s, std::weak_ptr<conn_handler> h);
    void maybe_finish();

private:
    std::shared_ptr<channel_events> make_handler(std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer);
    std::shared_ptr<conn_handler> create_handler(std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                                                 std::uint64_t id);
    /// --max-connections-policy evict-oldest: asks the connection idle longest to close; false
    /// when there is none to ask (all handshaking, or already asked).
    bool evict_one();
    /// Every 100 ms on worker `w`: notes which of its connections sent or received since.
    void watch_activity(std::size_t w);
    struct live_conn;
    /// Closes a live connection from the server's side, on its own executor.
    static void close_live(const live_conn& c, std::uint16_t code, std::string reason);
    std::optional<http_response> check_upgrade(const http_request& req, peer_info& peer, std::string& subprotocol);
    /// Closes `s` with 1008 "token expired" once the wall clock passes `expires` (Unix time).
    void close_when_expired(const std::shared_ptr<ws_session>& s, std::chrono::milliseconds expires);
    http_answer answer_http(const http_request& req, const peer_info& peer);
    void close_all(std::uint16_t code, const std::string& reason);
    bool idle();
    void finish();
    void teardown();
    void abort_live();
    std::atomic<std::size_t> workers_done_{0};
    void read_stdin();
    void stdin_line(std::string line);
    void stdin_eof();
    void announce(const std::string& fingerprint);

    serve_options o_;
    net::io_context main_{1};
    std::vector<std::unique_ptr<net::io_context>> workers_;
    std::vector<std::thread> threads_;
    server_metrics metrics_;
    std::unique_ptr<server> server_;
    bool service_started_ = false;  // o_.service->start() ran (the listener was set up)
    std::unique_ptr<child_reaper> reaper_;
    std::optional<static_files> static_;
    std::mutex log_mutex_, stdout_mutex_;
    std::mutex live_mutex_;
    struct live_conn {
        std::weak_ptr<ws_session> session;
        std::weak_ptr<conn_handler> handler;        // owned by the session: lock the session first
        std::shared_ptr<conn_activity> activity;    // with evict-oldest
    };
    std::unordered_map<std::uint64_t, live_conn> live_;
    // evict-oldest: per worker, its connections' activity (touched on that worker's thread only)
    std::vector<std::vector<std::shared_ptr<conn_activity>>> activity_;
    std::vector<std::unique_ptr<net::steady_timer>> activity_timers_;
    std::vector<steady_clock::time_point> activity_looked_;  // per worker: its previous look
    // evict-oldest: connections admitted whose handler does not exist yet (under live_mutex_)
    std::unordered_map<std::uint64_t, std::shared_ptr<conn_activity>> admitted_;
    std::atomic<std::uint64_t> next_admission_{1};
    std::atomic<bool> activity_stop_{false};  // the workers are to run dry: no more looks
    std::atomic<std::uint64_t> next_id_{1};
    std::atomic<std::size_t> reserved_{0};  // connection slots taken (handshaking or open)
    shutdown_control shutdown_;
    // --stdio, all on the main context:
    struct stdio_client {
        std::weak_ptr<ws_session> session;
        std::weak_ptr<conn_handler> handler;  // the session owns it: lock the session first
        bool expired() const { return session.expired(); }
    };
    std::vector<stdio_client> stdio_clients_;
    std::deque<std::string> held_;
    std::size_t held_bytes_ = 0;
    bool stdin_eof_ = false;
    bool served_one_ = false;
};

conn_handler::conn_handler(serve_app& app, std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                           std::uint64_t id)
    : app_(app), s_(s.get()), weak_(s), wc_(app.counters()), id_(id), path_(req.target()),
      peer_(peer.is_unix ? peer.address : format_host_port(peer.address, peer.port)) {
    const auto& o = app.options();
    if (o.service) backend_ = o.service->access_backend(peer);
    if (o.rate_limit > 0) bucket_.emplace(o.rate_limit, std::max(1.0, o.rate_burst));
    drop_over_rate_ = o.rate_limit_drop;
}

void conn_handler::count_rate_limited() { app_.count_rate_limited(); }

void conn_handler::on_close(const close_info& info) {
    wc_.dropped_messages.add(s_->stats().dropped_messages - dropped_counted_);
    app_.connection_closed(*this, peer_, path_, s_->stats(), info, rate_limited_);
    on_end(info);
}

/// Every message back to its sender with the same opcode.
class echo_handler final : public conn_handler {
public:
    using conn_handler::conn_handler;
    void on_message(std::string&& payload, bool binary) override {
        if (admit(payload.size())) send(std::move(payload), binary);
    }
    void on_message_view(std::string_view payload, bool binary) override {
        if (admit(payload.size())) send_view(payload, binary);
    }
};

/// A client let in only to be told why it is refused (--auth-failure close): Close 1008 with
/// the reason at once; whatever it sends meanwhile is ignored.
class refused_handler final : public conn_handler {
public:
    using conn_handler::conn_handler;
    void on_message(std::string&&, bool) override {}
    bool refused() const override { return true; }
};

/// A hosted service's handler behind the shared counting, rate limit and access log.
class service_handler final : public conn_handler {
public:
    service_handler(serve_app& app, std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                    std::uint64_t id, std::shared_ptr<channel_events> inner)
        : conn_handler(app, std::move(s), req, peer, id), inner_(std::move(inner)) {}
    void on_message(std::string&& payload, bool binary) override {
        if (admit(payload.size())) inner_->on_message(std::move(payload), binary);
    }
    void on_message_view(std::string_view payload, bool binary) override {
        if (admit(payload.size())) inner_->on_message_view(payload, binary);
    }
    void on_ping(std::string_view payload) override { inner_->on_ping(payload); }
    void on_pong(std::string_view payload, std::chrono::nanoseconds rtt) override { inner_->on_pong(payload, rtt); }
    void on_writable() override { inner_->on_writable(); }
    void on_close_received(int code, std::string_view reason) override { inner_->on_close_received(code, reason); }
    void before_server_close() override {
        if (auto* h = dynamic_cast<holds_messages*>(inner_.get())) h->flush_held();
    }
    void on_end(const close_info& info) override {
        // The service sends on the session directly: count what left at the end.
        wc_.messages_out.add(s_->stats().messages_out);
        wc_.bytes_out.add(s_->stats().bytes_out);
        inner_->on_close(info);
    }

private:
    std::shared_ptr<channel_events> inner_;
};

/// Client messages to the server's stdout; the server's stdin lines arrive via the hub.
class stdio_handler final : public conn_handler {
public:
    using conn_handler::conn_handler;
    void on_message(std::string&& payload, bool) override {
        if (admit(payload.size())) app_.stdio_out(payload);
    }
};

/// One child process per connection.
class exec_handler final : public conn_handler, public std::enable_shared_from_this<exec_handler> {
public:
    exec_handler(serve_app& app, std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                 std::uint64_t id)
        : conn_handler(app, s, req, peer, id),
          ex_(s->get_executor()),
          in_(ex_),
          out_(ex_),
          err_(ex_),
          timer_(ex_),
          close_timer_(ex_),
          env_(cgi_environment(req, peer, app.options().path, app.options().exec.passenv, id)),
          slot_(std::static_pointer_cast<fork_slot>(peer.attachment)),
          stdin_timer_(ex_) {}

    /// Spawns the child; false (after closing the session with 1011) when it cannot start.
    bool start() {
        if (session_done_) {  // the client left before the child was started
            slot_.reset();
            return false;
        }
        const auto& eo = app_.options().exec;
        std::string error;
        auto child = spawn_child(eo.argv, env_, true, &error);
        env_.clear();
        if (!child) {
            slot_.reset();
            app_.log_event("error", fmt::format("wsx: error: {}: {}", peer_, error), {{"peer", peer_}, {"message", error}});
            s_->close(1011, error);
            return false;
        }
        pid_ = child->pid;
        in_.assign(child->stdin_fd);
        out_.assign(child->stdout_fd);
        err_.assign(child->stderr_fd);
        auto self = shared_from_this();
        auto ex = ex_;
        app_.reaper().watch(pid_, [self, ex](int status) {
            net::post(ex, [self, status] { self->on_exit(status); });
        });
        read_out();
        read_err();
        // The client's Close is answered once the child is done with what came before it.
        s_->hold_close_reply();
        return true;
    }

    /// The client's Close (held): the child gets EOF after the messages that came before it,
    /// and its output still goes out; the answer follows when it has finished. A child still
    /// running --close-grace after its EOF is stopped (end_input); the close timeout bounds the
    /// wait all the same (then the child is stopped as for a client that left).
    void on_close_received(int code, std::string_view) override {
        if (session_done_ || close_received_) return;
        close_received_ = true;
        close_hold_ = weak_.lock();  // reading is over: nothing else keeps the session now
        const auto answer = static_cast<std::uint16_t>(code == 1005 ? 0 : code);
        close_answer_ = answer;
        if (!writing_) end_input();
        else watch_stdin_after_close(written_);
        close_timer_.expires_after(app_.options().server.session.close_timeout);
        close_timer_.async_wait([self = shared_from_this(), answer](error_code ec) {
            if (ec || self->session_done_) return;
            self->s_->close(answer, {});
        });
        maybe_close();
    }

    void on_message(std::string&& payload, bool) override {
        if (!admit(payload.size()) || !in_.is_open()) return;
        if (!app_.options().exec.binary) payload += '\n';
        inq_bytes_ += payload.size();
        inq_.push_back(std::move(payload));
        if (!writing_) write_in();
        // Backpressure: a child slower than its client (or not reading at all) stops the reading
        // from the socket, so that the client's sends back up in TCP instead of in memory here.
        if (!reading_paused_ && inq_bytes_ > stdin_backlog_limit()) {
            reading_paused_ = true;
            // A session is owned by its pending operations, and a paused one may have none.
            paused_hold_ = weak_.lock();
            s_->pause_reading();
        }
    }

    void on_writable() override {
        if (paused_) {
            paused_ = false;
            read_out();
        }
    }

    /// The access log and the close metrics record the code this side sent: how the child
    /// ended (1011 "exit 3") is the outcome even when the client's Close came first and got
    /// that as its answer (the code received is then the client's own, e.g. 1000).
    void on_close(const close_info& info) override {
        if (!info.clean || info.sent_code == 0 || info.sent_code == info.code) return conn_handler::on_close(info);
        close_info sent = info;
        sent.code = info.sent_code;
        sent.reason = info.sent_reason;
        conn_handler::on_close(sent);
    }

    void on_end(const close_info&) override {
        session_done_ = true;
        error_code ec;
        in_.close(ec);
        inq_.clear();
        inq_bytes_ = 0;
        close_timer_.cancel();
        stdin_timer_.cancel();
        // Let go of a paused or closing session after this call, which the session makes.
        if (paused_hold_ || close_hold_)
            net::post(ex_, [a = std::move(paused_hold_), b = std::move(close_hold_)] {});
        if (pid_ <= 0) slot_.reset();  // no child, and start() will not make one
        if (exited_ || pid_ <= 0) return;  // no child (yet): kill(-pid) with pid -1 would signal init
        ::kill(-pid_, SIGTERM);
        timer_.expires_after(app_.options().exec.kill_grace);
        timer_.async_wait([self = shared_from_this()](error_code ec) {
            if (ec || self->exited_) return;
            ::kill(-self->pid_, SIGKILL);
        });
    }

private:
    /// Closes the child's stdin. After the client's Close that is the child's EOF: from then
    /// on it may run --close-grace more (time to write its last lines; a child that streams and
    /// never reads its stdin would not end on its own), then gets SIGTERM, and SIGKILL after
    /// --kill-grace. Output it wrote before it ended still goes out before the Close answer.
    void end_input() {
        error_code ignored;
        in_.close(ignored);
        if (!close_received_ || stop_armed_ || exited_ || session_done_ || pid_ <= 0) return;
        stop_armed_ = true;
        const auto& eo = app_.options().exec;
        timer_.expires_after(eo.close_grace);
        timer_.async_wait([self = shared_from_this(), grace = eo.kill_grace](error_code ec) {
            if (ec || self->exited_ || self->session_done_) return;
            self->stopped_ = true;  // its end is ours, not its own: the client's code answers
            ::kill(-self->pid_, SIGTERM);
            self->timer_.expires_after(grace);
            self->timer_.async_wait([self](error_code ec) {
                if (ec || self->exited_) return;
                ::kill(-self->pid_, SIGKILL);
            });
        });
    }

    /// Bytes waiting for the child's stdin beyond which the client is no longer read (as
    /// `wsx proxy` does between its two sides).
    std::size_t stdin_backlog_limit() const {
        return std::max<std::size_t>(1, std::min<std::size_t>(1 << 20, app_.options().server.session.send_queue_limit / 2));
    }

    /// After the client's Close, while messages from before it still wait for the child's stdin:
    /// a child that takes none of them for --close-grace (one that never reads its stdin) would
    /// never get its EOF, and the Close would wait for the close timeout. Its input is given up
    /// then (the rest is not written) and it is stopped as any child after its EOF.
    void watch_stdin_after_close(std::uint64_t written_before) {
        stdin_timer_.expires_after(app_.options().exec.close_grace);
        stdin_timer_.async_wait([self = shared_from_this(), written_before](error_code ec) {
            if (ec || self->session_done_ || !self->writing_) return;
            if (self->written_ != written_before) return self->watch_stdin_after_close(self->written_);
            error_code ignored;
            self->in_.close(ignored);  // the pending write ends with an error: end_input() follows
        });
    }

    void write_in() {
        if (inq_.empty() || !in_.is_open()) {
            writing_ = false;
            if (close_received_) end_input();  // all that came before the client's Close is written: EOF
            return;
        }
        writing_ = true;
        // A piece at a time (as much as the pipe takes), so that progress is seen (watch_stdin_after_close).
        const auto& front = inq_.front();
        in_.async_write_some(net::buffer(front.data() + front_written_, front.size() - front_written_),
                             [self = shared_from_this()](error_code ec, std::size_t n) {
            if (self->session_done_) return;  // on_end emptied the queue; the session may be gone
            if (ec) {
                // The child closed its stdin (or died), or took nothing after the Close: later
                // messages have nowhere to go.
                self->writing_ = false;
                self->inq_.clear();
                self->inq_bytes_ = 0;
                self->front_written_ = 0;
                self->end_input();
                self->maybe_resume_reading();
                return;
            }
            self->written_ += n;
            self->front_written_ += n;
            if (self->front_written_ == self->inq_.front().size()) {
                self->inq_bytes_ -= self->inq_.front().size();
                self->inq_.pop_front();
                self->front_written_ = 0;
                self->maybe_resume_reading();
            }
            self->write_in();
        });
    }

    void maybe_resume_reading() {
        if (!reading_paused_ || session_done_ || inq_bytes_ > stdin_backlog_limit() / 2) return;
        reading_paused_ = false;
        s_->resume_reading();
        paused_hold_.reset();  // the read resumed holds the session now
    }

    void read_out() {
        out_.async_read_some(net::buffer(buf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            self->on_out(ec, n);
        });
    }

    void on_out(error_code ec, std::size_t n) {
        if (ec) {
            if (!partial_.empty() && !session_done_) send_line(std::exchange(partial_, {}));
            out_eof_ = true;
            error_code ignored;
            out_.close(ignored);
            return maybe_close();
        }
        if (session_done_) return read_out();  // keep draining so the child is never blocked on a full pipe
        std::string_view data(buf_.data(), n);
        if (app_.options().exec.binary) {
            send(std::string(data), true);
        } else {
            while (!data.empty()) {
                auto nl = data.find('\n');
                if (nl == std::string_view::npos) {
                    partial_.append(data);
                    split_long_line(partial_, [this](std::string piece) { send_line(std::move(piece)); });
                    break;
                }
                partial_.append(data.substr(0, nl));
                data.remove_prefix(nl + 1);
                if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
                split_long_line(partial_, [this](std::string piece) { send_line(std::move(piece)); });
                send_line(std::exchange(partial_, {}));
            }
        }
        // Backpressure: stop reading the child while the client is slow; the pipe fills and
        // the child blocks on write, instead of the queue growing without bound.
        if (s_->queued_bytes() > app_.options().server.session.send_queue_limit / 2) {
            paused_ = true;
            s_->want_writable();
            return;
        }
        read_out();
    }

    void read_err() {
        err_.async_read_some(net::buffer(ebuf_), [self = shared_from_this()](error_code ec, std::size_t n) {
            if (ec) {
                if (!self->epartial_.empty()) self->stderr_line(std::exchange(self->epartial_, {}));
                error_code ignored;
                self->err_.close(ignored);
                return;
            }
            std::string_view data(self->ebuf_.data(), n);
            while (!data.empty()) {
                auto nl = data.find('\n');
                auto line = [&self](std::string piece) { self->stderr_line(std::move(piece)); };
                if (nl == std::string_view::npos) {
                    self->epartial_.append(data);
                    self->split_long_line(self->epartial_, line);
                    break;
                }
                self->epartial_.append(data.substr(0, nl));
                data.remove_prefix(nl + 1);
                self->split_long_line(self->epartial_, line);
                self->stderr_line(std::exchange(self->epartial_, {}));
            }
            self->read_err();
        });
    }

    template <class Emit>
    void split_long_line(std::string& partial, Emit emit) {
        wsx::split_long_line(partial, app_.options().server.session.max_message_size, emit);
    }

    void stderr_line(std::string line) {
        if (app_.options().exec.pass_stderr) {
            if (!session_done_) send_line(std::move(line));
        } else {
            app_.log_event("stderr", fmt::format("{} [{}] {}", peer_, pid_, line),
                           {{"peer", peer_}, {"pid", pid_}, {"message", line}});
        }
    }

    void on_exit(int status) {
        exited_ = true;
        status_ = status;
        slot_.reset();
        timer_.cancel();
        net::post(app_.main_context(), [&app = app_] { app.maybe_finish(); });
        if (session_done_) {
            error_code ignored;
            out_.close(ignored);
            err_.close(ignored);
            return;
        }
        if (!out_eof_) {
            // A grandchild may still hold stdout open: give it the grace period, then close.
            timer_.expires_after(app_.options().exec.kill_grace);
            timer_.async_wait([self = shared_from_this()](error_code ec) {
                if (ec || self->out_eof_) return;
                self->out_eof_ = true;
                error_code ignored;
                self->out_.close(ignored);
                self->maybe_close();
            });
        }
        maybe_close();
    }

    void maybe_close() {
        if (!out_eof_ || !exited_ || session_done_) return;
        auto c = close_for_status(status_);
        // After the client's Close, a child we stopped, or one that ended well, answers with the
        // client's own code (RFC 6455 5.5.1); one that failed says so (1011 "exit 3").
        if (stopped_ || (close_received_ && c.code == 1000)) return s_->close(close_answer_, {});
        s_->close(c.code, c.reason);
    }

    net::any_io_executor ex_;
    net::posix::stream_descriptor in_, out_, err_;
    net::steady_timer timer_;
    net::steady_timer close_timer_;  // bounds the wait for the child after the client's Close
    std::vector<std::string> env_;
    std::shared_ptr<fork_slot> slot_;  // null without --max-forks
    pid_t pid_ = -1;
    std::deque<std::string> inq_;
    std::size_t inq_bytes_ = 0;
    std::size_t front_written_ = 0;  // bytes of inq_.front() already written
    std::uint64_t written_ = 0;      // bytes written to the child's stdin so far
    net::steady_timer stdin_timer_;  // watch_stdin_after_close
    bool reading_paused_ = false;
    std::shared_ptr<ws_session> paused_hold_;  // keeps the session while reading is paused
    std::shared_ptr<ws_session> close_hold_;   // keeps the session while its Close is held
    bool close_received_ = false;
    std::uint16_t close_answer_ = 0;  // the client's close code (0: it gave none)
    bool stop_armed_ = false, stopped_ = false;  // the child's stop after its EOF is timed / was begun
    bool writing_ = false, paused_ = false, out_eof_ = false, exited_ = false, session_done_ = false;
    int status_ = 0;
    std::array<char, 65536> buf_;
    std::array<char, 4096> ebuf_;
    std::string partial_, epartial_;
};

serve_app::serve_app(serve_options o)
    : o_(std::move(o)),
      metrics_(o_.threads ? o_.threads : std::max(1u, std::thread::hardware_concurrency())),
      shutdown_(main_, {.drain_first = o_.drain_first, .drain_timeout = o_.drain_timeout, .quiet = o_.quiet},
                {.stop_accepting =
                     [this] {
                         if (server_) server_->stop();
                         if (o_.service) o_.service->begin_shutdown();
                     },
                 .close_all = [this](std::uint16_t code, const std::string& reason) { close_all(code, reason); },
                 .idle = [this] { return idle(); },
                 .finish = [this] { finish(); },
                 .log = [this](const std::string& line) { log_event("shutdown", line); }}) {
    if (o_.threads == 0) o_.threads = std::max(1u, std::thread::hardware_concurrency());
    if (o_.oneshot) {
        o_.max_connections = 1;
        o_.max_policy = max_connections_policy::refuse;  // the one client is never replaced
    }
    // Message buffers freed at the top of the heap would go back to the kernel as soon as more
    // than 128 KiB is free there, and fault in again with the next messages (a third of the
    // throughput with 16 KiB messages): keep up to 4 MiB.
    mallopt(M_TRIM_THRESHOLD, 4 << 20);
    for (std::size_t i = 0; i < o_.threads; ++i) workers_.push_back(std::make_unique<net::io_context>(1));
    if (o_.max_policy == max_connections_policy::evict_oldest) {
        activity_.resize(o_.threads);
        activity_looked_.assign(o_.threads, steady_clock::now());
        for (auto& w : workers_) activity_timers_.push_back(std::make_unique<net::steady_timer>(*w));
    }
    if (!o_.static_dir.empty()) static_.emplace(o_.static_dir);
    if (o_.mode == serve_mode::exec) reaper_ = std::make_unique<child_reaper>(main_);
}

void serve_app::log_line(const std::string& line) {
    std::lock_guard lock(log_mutex_);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fputc('\n', stderr);
    std::fflush(stderr);
}

void serve_app::log_event(std::string_view event, const std::string& text, nlohmann::json fields) {
    log_line(log_event_line(o_.log, event, text, std::move(fields)));
}

void serve_app::stdio_out(const std::string& payload) {
    std::lock_guard lock(stdout_mutex_);
    std::fwrite(payload.data(), 1, payload.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

std::optional<http_response> serve_app::check_upgrade(const http_request& req, peer_info& peer, std::string& subprotocol) {
    if (shutdown_.shutting_down()) {
        metrics_.count_rejection("shutting_down");
        return make_response(http::status::service_unavailable, "server is shutting down");
    }
    // A client refused after its upgrade (--auth-failure close) takes no connection slot (its
    // connection lasts a second at most: see ws_session::refuse), nor a process or a service.
    const bool refused = peer.vars.count("auth.refused") != 0;
    if (o_.max_connections && !refused) {
        // evict-oldest: this upgrade takes the slot of the connection asked to close; the count
        // stays above the limit only until that one's closing handshake is over.
        if (reserved_.fetch_add(1) >= o_.max_connections &&
            (o_.max_policy != max_connections_policy::evict_oldest || !evict_one())) {
            --reserved_;
            metrics_.count_rejection("max_connections");
            auto res = make_response(http::status::service_unavailable,
                                     fmt::format("too many connections (limit {})", o_.max_connections));
            res.set(http::field::retry_after, "1");  // a slot frees when any client leaves
            return res;
        }
        peer.holds.push_back(std::shared_ptr<const void>(nullptr, [this](const void*) { --reserved_; }));
        if (o_.max_policy == max_connections_policy::evict_oldest) {
            // Evictable from here on; make_handler takes it over (or the failed upgrade drops it).
            const auto key = next_admission_++;
            {
                std::lock_guard lock(live_mutex_);
                admitted_.emplace(key, std::make_shared<conn_activity>());
            }
            peer.vars["serve.admitted"] = std::to_string(key);
            peer.holds.push_back(std::shared_ptr<const void>(nullptr, [this, key](const void*) {
                std::lock_guard lock(live_mutex_);
                admitted_.erase(key);
            }));
        }
    }
    if (o_.mode == serve_mode::exec && o_.exec.max_forks && !refused) {
        // Taken here, at admission, and handed to the handler through peer.attachment.
        if (forks_.fetch_add(1) >= o_.exec.max_forks) {
            --forks_;
            metrics_.count_rejection("max_forks");
            auto res = make_response(http::status::service_unavailable,
                                     fmt::format("too many processes (limit {})", o_.exec.max_forks));
            res.set(http::field::retry_after, "1");
            return res;
        }
        peer.attachment = std::make_shared<fork_slot>(forks_);
    }
    if (o_.service && !refused) {
        auto r = o_.service->check_upgrade(req, peer, subprotocol);
        if (r) metrics_.count_rejection(std::to_string(r->result_int()));
        return r;
    }
    return std::nullopt;
}

http_answer serve_app::answer_http(const http_request& req, const peer_info& peer) {
    auto path = target_path(req);
    if (o_.metrics && path == "/metrics") {
        http_response res{http::status::ok, req.version()};
        res.set(http::field::server, "wsx/" WSX_VERSION);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = metrics_.render();
        if (o_.service) o_.service->render_metrics(res.body());
        res.prepare_payload();
        return res;
    }
    if (static_) return static_->serve(req);
    if (o_.service)
        if (auto r = o_.service->answer_http(req, peer)) return std::move(*r);
    if (!o_.path.empty() && path != o_.path) return make_response(http::status::not_found, "not found");
    return make_response(http::status::upgrade_required, "this is a WebSocket endpoint: connect with ws://");
}

std::shared_ptr<channel_events> serve_app::make_handler(std::shared_ptr<ws_session> s, const http_request& req,
                                                        const peer_info& peer) {
    tl_worker = peer.worker;
    const auto id = next_id_++;
    ++metrics_.connections_current;
    ++metrics_.connections_total;
    std::shared_ptr<conn_activity> activity;
    {
        std::lock_guard lock(live_mutex_);
        if (auto t = peer.vars.find("serve.admitted"); t != peer.vars.end())
            if (auto a = admitted_.find(std::strtoull(t->second.c_str(), nullptr, 10)); a != admitted_.end()) {
                activity = std::move(a->second);
                admitted_.erase(a);
            }
        live_.emplace(id, live_conn{.session = s, .handler = {}, .activity = activity});
    }
    auto h = create_handler(s, req, peer, id);
    live_conn entry{.session = s, .handler = h, .activity = activity};
    if (activity) {
        activity->session = s;
        h->activity_ = activity;
        activity_[peer.worker].push_back(activity);
    }
    {
        std::lock_guard lock(live_mutex_);
        if (auto it = live_.find(id); it != live_.end()) it->second.handler = h;
    }
    // Chosen for eviction before it had a handler: it goes now (after its start).
    if (activity && activity->evicting) close_live(entry, 1013, "evicted: connection limit");
    return h;
}

std::shared_ptr<conn_handler> serve_app::create_handler(std::shared_ptr<ws_session> s, const http_request& req,
                                                        const peer_info& peer, std::uint64_t id) {
    if (shutdown_.shutting_down()) {
        // Upgraded while the shutdown began: it still gets its Close 1001.
        // The handler does not exist yet: nothing can be held back.
        net::post(s->get_executor(), [w = std::weak_ptr<ws_session>(s)] {
            if (auto s = w.lock()) s->close(1001, "server shutting down");
        });
    }
    if (const auto refused = peer.vars.find("auth.refused"); refused != peer.vars.end()) {
        const auto status = peer.vars.find("auth.refused_status");
        metrics_.count_rejection(status != peer.vars.end() ? status->second : std::string("401"));
        net::post(s->get_executor(), [w = std::weak_ptr<ws_session>(s), why = refused->second] {
            if (auto s = w.lock()) s->refuse(1008, why);
        });
        return std::make_shared<refused_handler>(*this, s, req, peer, id);
    }
    if (const auto exp = peer.vars.find("auth.expires_ms"); exp != peer.vars.end())
        close_when_expired(s, std::chrono::milliseconds(std::strtoll(exp->second.c_str(), nullptr, 10)));
    if (o_.service) {
        auto inner = o_.service->make_handler(s, req, peer, id);
        return std::make_shared<service_handler>(*this, s, req, peer, id, std::move(inner));
    }
    switch (o_.mode) {
    case serve_mode::echo:
        return std::make_shared<echo_handler>(*this, s, req, peer, id);
    case serve_mode::stdio: {
        auto h = std::make_shared<stdio_handler>(*this, s, req, peer, id);
        net::post(main_, [this, w = std::weak_ptr<ws_session>(s), hw = std::weak_ptr<conn_handler>(h)] {
            stdio_register(w, hw);
        });
        return h;
    }
    case serve_mode::exec: {
        auto h = std::make_shared<exec_handler>(*this, s, req, peer, id);
        // Start reading first so that a child that cannot start is reported with a proper close.
        net::post(s->get_executor(), [h] { h->start(); });
        return h;
    }
    }
    return nullptr;
}

void serve_app::close_when_expired(const std::shared_ptr<ws_session>& s, std::chrono::milliseconds expires) {
    const auto left = expires - std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch());
    // The session keeps the timer; the timer only refers to the session weakly. Waits are
    // capped: a far `exp` is checked again after a day (the clock may have been set since).
    auto timer = std::make_shared<net::steady_timer>(s->get_executor());
    s->hold(timer);
    timer->expires_after(std::clamp(left, std::chrono::milliseconds(0), std::chrono::milliseconds(std::chrono::hours(24))));
    timer->async_wait([this, w = std::weak_ptr<ws_session>(s), expires](error_code ec) {
        if (ec) return;
        auto s = w.lock();
        if (!s || !s->is_open()) return;
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
        if (now < expires) return close_when_expired(s, expires);
        live_conn c;
        {
            std::lock_guard lock(live_mutex_);
            for (auto& [id, l] : live_)
                if (l.session.lock() == s) c = l;
        }
        if (auto h = c.handler.lock()) h->before_server_close();
        s->close(1008, "token expired");
    });
}

void serve_app::connection_closed(conn_handler& h, const std::string& peer, const std::string& path,
                                  const session_stats& st, const close_info& info, std::uint64_t rate_limited) {
    const int code = effective_close_code(info);
    metrics_.count_close(code);
    if (info.ping_timeout) ++metrics_.ping_timeouts;
    --metrics_.connections_current;
    {
        std::lock_guard lock(live_mutex_);
        live_.erase(h.id());
    }
    if (!o_.quiet)
        log_line(format_access_entry(o_.log, {.peer = peer,
                                              .path = path,
                                              .backend = h.backend(),
                                              .duration = steady_clock::now() - st.opened,
                                              .messages_in = st.messages_in,
                                              .bytes_in = st.bytes_in,
                                              .messages_out = st.messages_out,
                                              .bytes_out = st.bytes_out,
                                              .close = info,
                                              .dropped_messages = st.dropped_messages,
                                              .rate_limited = rate_limited}));
    // Only the main thread decides to finish, and only once shutting down (or at the end of
    // --stdio input, or with --oneshot): other closes need not wake it. A shutdown that begins
    // concurrently sees this connection gone from live_ (it reads live_ after setting the flag).
    if (!o_.oneshot && o_.mode != serve_mode::stdio && !shutdown_.shutting_down()) return;
    net::post(main_, [this, refused = h.refused()] {
        // A refused client is not the one --oneshot serves.
        if (o_.oneshot && !refused && !shutdown_.shutting_down()) {
            served_one_ = true;
            shutdown_.begin();
        }
        maybe_finish();
    });
}

// --stdio ------------------------------------------------------------------------------

void serve_app::stdio_register(std::weak_ptr<ws_session> w, std::weak_ptr<conn_handler> hw) {
    auto s = w.lock();
    if (!s) return;
    stdio_clients_.push_back({w, hw});
    if (!held_.empty()) {
        net::post(s->get_executor(), [w, hw, lines = std::move(held_)]() mutable {
            auto s = w.lock();
            auto h = hw.lock();
            if (!s || !h) return;
            for (auto& l : lines) h->send_stdin_line(std::move(l));
        });
        held_.clear();
        held_bytes_ = 0;
    }
    if (stdin_eof_) net::post(s->get_executor(), [w] {
            if (auto s = w.lock()) s->close(1000, "end of input");
        });
}

void serve_app::read_stdin() {
    // A thread, not a descriptor on the reactor: stdin may be a regular file, which epoll refuses.
    std::thread([this] {
        std::string line;
        char buf[65536];
        for (;;) {
            ssize_t n = ::read(0, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            std::string_view data(buf, static_cast<std::size_t>(n));
            while (!data.empty()) {
                auto nl = data.find('\n');
                auto post_line = [this](std::string l) {
                    net::post(main_, [this, l = std::move(l)]() mutable { stdin_line(std::move(l)); });
                };
                if (nl == std::string_view::npos) {
                    line.append(data);
                    split_long_line(line, o_.server.session.max_message_size, post_line);
                    break;
                }
                line.append(data.substr(0, nl));
                data.remove_prefix(nl + 1);
                split_long_line(line, o_.server.session.max_message_size, post_line);
                post_line(std::exchange(line, {}));
            }
        }
        if (!line.empty()) net::post(main_, [this, l = std::move(line)]() mutable { stdin_line(std::move(l)); });
        net::post(main_, [this] { stdin_eof(); });
    }).detach();
}

void serve_app::stdin_line(std::string line) {
    std::erase_if(stdio_clients_, [](const auto& w) { return w.expired(); });
    if (stdio_clients_.empty()) {
        // Nobody is connected yet: hold the line for the next client (bounded, oldest dropped).
        held_bytes_ += line.size();
        held_.push_back(std::move(line));
        while (held_bytes_ > o_.server.session.send_queue_limit && held_.size() > 1) {
            held_bytes_ -= held_.front().size();
            held_.pop_front();
        }
        return;
    }
    for (const auto& c : stdio_clients_) {
        auto s = c.session.lock();
        if (!s) continue;
        net::post(s->get_executor(), [c, l = line]() mutable {
            auto s = c.session.lock();
            if (auto h = c.handler.lock(); s && h) h->send_stdin_line(std::move(l));
        });
    }
}

void serve_app::stdin_eof() {
    stdin_eof_ = true;
    std::erase_if(stdio_clients_, [](const auto& w) { return w.expired(); });
    for (const auto& c : stdio_clients_)
        if (auto s = c.session.lock())
            net::post(s->get_executor(), [w = c.session] {
                if (auto s = w.lock()) s->close(1000, "end of input");
            });
    maybe_finish();
}

// Lifecycle -----------------------------------------------------------------------------

void serve_app::close_live(const live_conn& c, std::uint16_t code, std::string reason) {
    auto s = c.session.lock();
    if (!s) return;
    net::post(s->get_executor(), [c, code, reason = std::move(reason)] {
        auto s = c.session.lock();
        if (!s) return;
        if (auto h = c.handler.lock()) h->before_server_close();
        s->close(code, reason);
    });
}

void serve_app::close_all(std::uint16_t code, const std::string& reason) {
    std::vector<live_conn> all;
    {
        std::lock_guard lock(live_mutex_);
        for (auto& [id, c] : live_) all.push_back(c);
    }
    for (auto& c : all) close_live(c, code, reason);
}

bool serve_app::evict_one() {
    live_conn victim;
    {
        std::lock_guard lock(live_mutex_);
        conn_activity* best = nullptr;
        const live_conn* best_live = nullptr;  // null: admitted, its handler still to come
        auto consider = [&](conn_activity* a, const live_conn* c) {
            if (!a || a->evicting.load()) return;
            // Idle longest first (ties are rare enough not to matter).
            if (!best || a->last.load(std::memory_order_relaxed) < best->last.load(std::memory_order_relaxed)) {
                best = a;
                best_live = c;
            }
        };
        for (auto& [id, c] : live_) consider(c.activity.get(), &c);
        for (auto& [key, a] : admitted_) consider(a.get(), nullptr);
        if (!best) return false;
        best->evicting = true;  // under the lock: no other upgrade can pick it now
        if (!best_live) return true;  // make_handler closes it
        victim = *best_live;
    }
    close_live(victim, 1013, "evicted: connection limit");
    return true;
}

void serve_app::watch_activity(std::size_t w) {
    auto& list = activity_[w];
    // A message sent since the previous look is dated to that look, the earliest it can have
    // been: the order of connections seen active in the same interval is left to the exact
    // times of the messages they received (conn_handler::admit).
    const auto since = std::exchange(activity_looked_[w], steady_clock::now());
    std::erase_if(list, [since](const std::shared_ptr<conn_activity>& a) {
        auto s = a->session.lock();
        if (!s) return true;
        const auto n = s->stats().messages_in + s->stats().messages_out;
        if (n != a->seen) {
            a->seen = n;
            a->touch_after(since);
        }
        return false;
    });
    if (activity_stop_) return;
    activity_timers_[w]->expires_after(std::chrono::milliseconds(100));
    activity_timers_[w]->async_wait([this, w](error_code ec) {
        if (!ec) watch_activity(w);
    });
}

bool serve_app::idle() {
    {
        std::lock_guard lock(live_mutex_);
        if (!live_.empty()) return false;
    }
    return !reaper_ || reaper_->running() == 0;
}

void serve_app::maybe_finish() {
    if (shutdown_.finished()) return;
    if (o_.mode == serve_mode::stdio && stdin_eof_ && !shutdown_.shutting_down() && held_.empty() && idle())
        return shutdown_.finish();
    shutdown_.maybe_finish();
}

void serve_app::finish() {
    if (o_.service) o_.service->stop();
    if (server_) server_->stop();
    main_.stop();
}

void serve_app::announce(const std::string& fingerprint) {
    if (o_.announce_json) {
        nlohmann::ordered_json j = {{event_key::ts, rfc3339_now()},
                                    {event_key::type, "listening"},
                            {"url", server_->url()},
                            {"tls", o_.use_tls},
                            {"threads", o_.threads},
                            {"pid", ::getpid()}};
        if (server_->is_unix()) {
            j["unix_path"] = o_.server.listen.unix_path;
        } else {
            auto ep = server_->local_endpoint();
            j["address"] = ep.address().to_string();
            j["port"] = ep.port();
        }
        if (!fingerprint.empty()) j["fingerprint_sha256"] = fingerprint;
        log_line(j.dump());
        return;
    }
    if (!fingerprint.empty()) log_line("self-signed certificate SHA-256 fingerprint " + fingerprint);
    log_line("listening on " + server_->url());
}

int serve_app::run() {
    std::string fingerprint;
    if (o_.use_tls) o_.server.tls = make_server_tls(o_.tls, &fingerprint);
    std::vector<net::io_context*> workers;
    for (auto& w : workers_) workers.push_back(w.get());
    o_.server.on_refused = [this](const char* reason) { metrics_.count_rejection(reason); };
    server_ = std::make_unique<server>(main_, workers, o_.server,
                                       [this](std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer) {
                                           return make_handler(std::move(s), req, peer);
                                       });
    if (!o_.path.empty())
        server_->add_upgrade_filter([this](const http_request& req, peer_info&, std::string&) -> std::optional<http_response> {
            if (target_path(req) == o_.path) return std::nullopt;
            metrics_.count_rejection("path");
            return make_response(http::status::not_found, fmt::format("no WebSocket endpoint here: try {}", o_.path));
        });
    for (auto& f : o_.filters)
        server_->add_upgrade_filter([this, f](const http_request& req, peer_info& peer, std::string& sub) {
            auto r = f(req, peer, sub);
            if (r) metrics_.count_rejection(std::to_string(r->result_int()));
            return r;
        });
    server_->add_upgrade_filter(
        [this](const http_request& req, peer_info& peer, std::string& sub) { return check_upgrade(req, peer, sub); });
    server_->set_http_handler([this](const http_request& req, const peer_info& peer) { return answer_http(req, peer); });
    if (o_.service) {
        if (auto f = o_.service->async_check_upgrade())
            server_->set_async_upgrade_filter(
                [this, f](const http_request& req, peer_info& peer, std::string& sub) -> net::awaitable<std::optional<http_response>> {
                    if (peer.vars.count("auth.refused")) co_return std::nullopt;  // no upstream for it
                    auto r = co_await f(req, peer, sub);
                    if (r) metrics_.count_rejection(std::to_string(r->result_int()));
                    co_return r;
                });
    }
    server_->listen();
    // Started once the address is ours: a failed listen leaves it untouched (no summary line).
    if (o_.service) {
        o_.service->start(main_);
        service_started_ = true;
    }
    server_->start();
    announce(fingerprint);

    shutdown_.watch_signals();
    if (o_.mode == serve_mode::stdio) read_stdin();

    std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        guards.push_back(net::make_work_guard(*workers_[i]));
        if (o_.max_policy == max_connections_policy::evict_oldest)
            net::post(*workers_[i], [this, i] { watch_activity(i); });
        threads_.emplace_back([this, i] {
            tl_worker = i;
            workers_[i]->run();
            ++workers_done_;
        });
    }
    main_.run();
    // Connections still open (a second signal, or the drain timeout): drop them, so that their
    // pending operations complete with errors and release what they hold, and let the workers
    // run dry for a moment; whatever is left after that is stopped.
    abort_live();
    activity_stop_ = true;
    for (std::size_t i = 0; i < activity_timers_.size(); ++i)
        net::post(*workers_[i], [this, i] { activity_timers_[i]->cancel(); });
    guards.clear();
    const auto dry_by = steady_clock::now() + std::chrono::milliseconds(500);
    while (workers_done_ < workers_.size() && steady_clock::now() < dry_by)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (auto& w : workers_) w->stop();
    for (auto& t : threads_) t.join();
    if (reaper_) reaper_->kill_all();
    guards.clear();  // they refer to the worker contexts teardown() destroys
    teardown();
    std::fflush(stdout);
    return shutdown_.exit_code();
}

void serve_app::abort_live() {
    std::vector<std::weak_ptr<ws_session>> all;
    {
        std::lock_guard lock(live_mutex_);
        for (auto& [id, c] : live_) all.push_back(c.session);
    }
    for (auto& w : all)
        if (auto s = w.lock())
            net::post(s->get_executor(), [w] {
                if (auto s = w.lock()) s->abort("server exiting");
            });
}

void serve_app::teardown() {
    // Dependency order: the acceptor lives on the first worker context, so the server goes
    // (closing it; the worker threads are joined) while the workers exist; the cancelled accept
    // queued there owns a socket of another worker context, so the first one goes first; the
    // workers' pending operations own sessions whose handlers may use the service; the
    // service's timers live on main_.
    if (server_) server_->stop();
    main_.restart();
    main_.poll();
    server_.reset();
    activity_timers_.clear();  // they belong to the worker contexts
    if (!workers_.empty()) workers_.front().reset();
    workers_.clear();
    if (o_.service && service_started_ && !shutdown_.finished()) o_.service->stop();  // finish() did not run
    o_.service.reset();
}

}  // namespace

int run_serve(serve_options o) {
    serve_app app(std::move(o));
    return app.run();
}

}  // namespace wsx
