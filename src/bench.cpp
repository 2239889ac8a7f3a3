#include "bench.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include <boost/asio/use_future.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "connect_hints.hpp"
#include "exit_code.hpp"
#include "frame_reader.hpp"
#include "joined_fields.hpp"
#include "permessage_deflate.hpp"
#include "random_seed.hpp"
#include "tls.hpp"
#include "units.hpp"

namespace wsx {

std::string_view scenario_name(bench_scenario s) noexcept {
    switch (s) {
        case bench_scenario::echo: return "echo";
        case bench_scenario::connect: return "connect";
        case bench_scenario::send: return "send";
        case bench_scenario::fanout: return "fanout";
    }
    return "echo";
}

std::optional<bench_scenario> parse_scenario(std::string_view s) noexcept {
    for (auto v : {bench_scenario::echo, bench_scenario::connect, bench_scenario::send, bench_scenario::fanout})
        if (scenario_name(v) == s) return v;
    return std::nullopt;
}

std::uint64_t bench_result::error_count() const noexcept {
    std::uint64_t n = 0;
    for (const auto& [k, v] : errors) n += v;
    return n;
}

double bench_result::cpu_per_message_ns() const noexcept {
    // CPU covers the whole run (warmup and connecting included), so divide by every message
    // the run handled, not only the measured ones.
    std::uint64_t all = 0;
    for (const auto& i : series) all += std::max(i.sent, i.received);
    if (all == 0) all = std::max(sent, received);
    return all ? (cpu_user_s + cpu_system_s) * 1e9 / double(all) : 0;
}

double bench_result::cpu_utilisation() const noexcept {
    // After a merge, threads is the sum over runs and wall the longest run: an upper bound.
    const double capacity = cpu_wall_s * std::max(1u, config.threads);
    return capacity > 0 ? (cpu_user_s + cpu_system_s) / capacity : 0;
}

// ---------------------------------------------------------------------------------------------
// Wire helpers

namespace message_stamp {
namespace {
constexpr char hex_digits[] = "0123456789abcdef";
void put_hex(char* out, std::uint64_t v) noexcept {
    for (int i = 15; i >= 0; --i) {
        out[i] = hex_digits[v & 0xf];
        v >>= 4;
    }
}
bool get_hex(const char* in, std::uint64_t& v) noexcept {
    v = 0;
    for (int i = 0; i < 16; ++i) {
        char c = in[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = unsigned(c - '0');
        else if (c >= 'a' && c <= 'f') d = unsigned(c - 'a' + 10);
        else return false;
        v = (v << 4) | d;
    }
    return true;
}
void put_le(char* out, std::uint64_t v) noexcept {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint64_t get_le(const char* in) noexcept {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}
}  // namespace

void write(char* out, bool binary, std::uint64_t seq, std::uint64_t time_ns) noexcept {
    if (binary) {
        put_le(out, seq);
        put_le(out + 8, time_ns);
    } else {
        put_hex(out, seq);
        put_hex(out + 16, time_ns);
    }
}

bool read(std::string_view payload, bool binary, std::uint64_t& seq, std::uint64_t& time_ns) noexcept {
    if (payload.size() < size(binary)) return false;
    if (binary) {
        seq = get_le(payload.data());
        time_ns = get_le(payload.data() + 8);
        return true;
    }
    return get_hex(payload.data(), seq) && get_hex(payload.data() + 16, time_ns);
}
}  // namespace message_stamp

namespace bench_frame {
void append_stamped(std::string& out, bool binary, std::uint64_t seq, std::uint64_t time_ns, std::string_view body,
                    std::uint32_t key) {
    const std::size_t ss = message_stamp::size(binary);
    const std::size_t len = ss + body.size();
    char head[max_frame_header];
    const std::size_t hs = encode_frame_header(head, binary ? opcode_byte::binary : opcode_byte::text, len, &key);
    const std::size_t at = out.size();
    out.resize(at + hs + len);
    char* p = out.data() + at;
    std::memcpy(p, head, hs);
    message_stamp::write(p + hs, binary, seq, time_ns);
    if (!body.empty()) std::memcpy(p + hs + ss, body.data(), body.size());
    apply_mask(p + hs, p + hs, len, key);
}
}  // namespace bench_frame

// ---------------------------------------------------------------------------------------------
// Engine

namespace {

using clock = std::chrono::steady_clock;
constexpr std::uint64_t no_end = UINT64_MAX;
constexpr std::uint64_t second_ns = 1'000'000'000;
constexpr unsigned publisher_shift = 48;  // fanout: the publisher's index sits above the sequence

enum class conn_role { echo, sender, publisher, subscriber, storm };

// State every thread reads; the few fields written during the run are atomics.
struct run_shared {
    const bench_options& o;
    clock::time_point origin;
    std::uint64_t warmup_end_ns = 0;
    std::uint64_t end_ns = no_end;
    tcp::resolver::results_type endpoints, publish_endpoints;
    endpoint publish_url;
    client_options publish_client;  // the client options with the publishers' URL
    std::shared_ptr<ssl::context> tls;
    std::atomic<bool> stopping{false};
    std::atomic<std::uint64_t> next_attempt{0};      // connect scenario: attempts scheduled so far
    std::atomic<std::int64_t> handshakes_left{0};    // connect scenario with -n
    std::atomic<unsigned> subscribers_settled{0};    // fanout: connected or failed
    std::atomic<unsigned> publishers_done{0};
    std::atomic<std::uint64_t> published_total{0};   // fanout: every message publishers sent
    std::mutex failure_mutex;
    std::optional<std::pair<int, std::string>> first_failure;

    explicit run_shared(const bench_options& opts) : o(opts) {}
    std::uint64_t now_ns() const noexcept {
        return std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - origin).count());
    }
    clock::time_point at(std::uint64_t ns) const noexcept { return origin + std::chrono::nanoseconds(ns); }
    void note_failure(exit_code c, const std::string& msg) {
        std::lock_guard lock(failure_mutex);
        if (!first_failure) first_failure.emplace(static_cast<int>(c), msg);
    }
};

struct conn_base {
    virtual ~conn_base() = default;
    /// Housekeeping every tick: deadlines and end-of-run checks.
    virtual void tick(std::uint64_t now_ns) = 0;
    /// Ends the connection now (interrupted run).
    virtual void interrupt() = 0;
};

struct conn_spec {
    conn_role role;
    unsigned index;       // global index among connections of its role
};

// One thread's share of the run: its io_context, connections, histograms and counters.
struct worker {
    run_shared& s;
    net::io_context ioc{1};
    std::vector<conn_spec> specs;
    std::vector<std::shared_ptr<conn_base>> conns;
    unsigned active = 0;  // connections launched and not yet finished
    net::steady_timer ticker{ioc};

    histogram latency, handshake, interval;
    std::uint64_t sent = 0, received = 0, bytes_sent = 0, bytes_received = 0;
    std::uint64_t wire_bytes_sent = 0, wire_bytes_received = 0;
    std::string extensions;  // what the first connection's server answered
    std::uint64_t i_sent = 0, i_received = 0, i_errors = 0, i_bytes_sent = 0, i_bytes_received = 0;
    std::uint64_t first_measured_ns = no_end, last_measured_ns = 0, last_sent_ns = 0;
    std::uint64_t attempted = 0, established = 0, failed = 0, subscribers_established = 0;
    std::map<std::string, std::uint64_t> errors, connect_errors;
    std::map<int, std::uint64_t> close_codes;
    std::vector<bench_interval> series;
    std::uint64_t next_boundary_ns = second_ns;
    std::uint64_t error_total = 0;
    std::uint64_t stalled = 0;  // connections whose writes stopped (the server took no data)
    std::uint64_t not_opened = 0;  // --connect-rate scheduled them after the end of the run

    // Published at each tick for the progress line (relaxed: figures for people).
    std::atomic<std::uint64_t> p_sent{0}, p_received{0}, p_errors{0}, p_established{0}, p_failed{0};
    std::atomic<std::uint64_t> p_interval_received{0}, p_interval_p99{0};

    explicit worker(run_shared& shared) : s(shared) {}

    bool measured(std::uint64_t t_ns) const noexcept { return t_ns >= s.warmup_end_ns; }

    void count_sent(std::uint64_t t_ns, std::size_t bytes, std::size_t wire = 0) noexcept {
        ++i_sent;
        i_bytes_sent += bytes;
        if (measured(t_ns)) {
            ++sent;
            bytes_sent += bytes;
            wire_bytes_sent += wire;
            if (t_ns < first_measured_ns) first_measured_ns = t_ns;
            if (t_ns > last_sent_ns) last_sent_ns = t_ns;
        }
    }
    // The send scenario counts a message when its write completed, not when it was queued:
    // a server that stops reading must not show as throughput.
    struct send_batch {
        std::uint64_t all = 0, bytes_all = 0;
        std::uint64_t measured = 0, bytes_measured = 0, wire_measured = 0, first_measured_ns = no_end;
    };
    void count_written(const send_batch& b, std::uint64_t now_ns) noexcept {
        i_sent += b.all;
        i_bytes_sent += b.bytes_all;
        if (b.measured == 0) return;
        sent += b.measured;
        bytes_sent += b.bytes_measured;
        wire_bytes_sent += b.wire_measured;
        first_measured_ns = std::min(first_measured_ns, b.first_measured_ns);
        last_sent_ns = std::max(last_sent_ns, now_ns);
    }
    void count_received(std::uint64_t sent_ns, std::uint64_t now_ns, std::size_t bytes, bool has_latency,
                        std::size_t wire = 0) noexcept {
        ++i_received;
        i_bytes_received += bytes;
        const std::uint64_t lat = now_ns > sent_ns ? now_ns - sent_ns : 0;
        if (has_latency) interval.record(lat);
        if (measured(sent_ns)) {
            ++received;
            bytes_received += bytes;
            wire_bytes_received += wire;
            if (has_latency) latency.record(lat);
            if (now_ns > last_measured_ns) last_measured_ns = now_ns;
        }
    }
    void error(const std::string& kind, std::uint64_t n = 1) {
        if (n == 0) return;
        errors[kind] += n;
        i_errors += n;
        error_total += n;
    }
    /// `counted`: false for a connect-scenario attempt made during the warmup.
    void connect_failed(const std::string& reason, exit_code code, const std::string& message, bool counted = true) {
        if (counted) {
            ++failed;
            ++connect_errors[reason];
        }
        s.note_failure(code, message);
    }

    void close_interval(std::uint64_t start_ns, std::uint64_t end_ns) {
        bench_interval iv;
        iv.start_s = double(start_ns) / 1e9;
        iv.length_s = double(std::clamp(end_ns - std::min(end_ns, start_ns), std::uint64_t(1'000'000), second_ns)) / 1e9;
        iv.sent = i_sent;
        iv.received = i_received;
        iv.errors = i_errors;
        iv.bytes_sent = i_bytes_sent;
        iv.bytes_received = i_bytes_received;
        p_interval_received.store(i_received, std::memory_order_relaxed);
        p_interval_p99.store(interval.value_at_percentile(99), std::memory_order_relaxed);
        iv.latency = interval;
        series.push_back(std::move(iv));
        interval.reset();
        i_sent = i_received = i_errors = i_bytes_sent = i_bytes_received = 0;
    }

    void publish_progress() {
        p_sent.store(sent, std::memory_order_relaxed);
        p_received.store(received, std::memory_order_relaxed);
        p_errors.store(error_total, std::memory_order_relaxed);
        p_established.store(established, std::memory_order_relaxed);
        p_failed.store(failed, std::memory_order_relaxed);
    }

    void on_tick() {
        const std::uint64_t now = s.now_ns();
        while (now >= next_boundary_ns) {
            close_interval(next_boundary_ns - second_ns, next_boundary_ns);
            next_boundary_ns += second_ns;
        }
        const bool stopping = s.stopping.load(std::memory_order_relaxed);
        // Ticking may finish connections, which removes them from `conns`: iterate a copy.
        auto snapshot = conns;
        for (auto& c : snapshot) {
            if (stopping) c->interrupt();
            else c->tick(now);
        }
        publish_progress();
        if (active == 0) return finish();
        ticker.expires_at(s.at((now / 100'000'000 + 1) * 100'000'000));
        ticker.async_wait([this](error_code ec) {
            if (!ec) on_tick();
        });
    }

    void finish() {
        ticker.cancel();
        if (i_sent || i_received || i_errors) close_interval(next_boundary_ns - second_ns, s.now_ns());
        publish_progress();
    }

    void connection_done(conn_base* c) {
        auto it = std::find_if(conns.begin(), conns.end(), [c](const auto& p) { return p.get() == c; });
        if (it != conns.end()) conns.erase(it);
        --active;
    }

    void run();
};

// What the upgrade settled besides the connection itself.
struct upgrade_info {
    std::string extensions;                  // the server's Sec-WebSocket-Extensions
    std::optional<pmd::agreement> deflate;   // permessage-deflate in force
};

std::uint32_t seed32() {
    thread_local std::mt19937 rng{random_seed()};
    return rng() | 1u;
}

// ---------------------------------------------------------------------------------------------
// One established connection: hand-rolled client framing over the socket.

template <class Stream>
class connection final : public conn_base, public std::enable_shared_from_this<connection<Stream>> {
public:
    connection(Stream&& stream, worker& w, conn_spec spec, std::string leftover, const upgrade_info& info)
        : stream_(std::move(stream)), w_(w), s_(w.s), o_(w.s.o), spec_(spec), timer_(w.ioc), rng_(seed32()),
          reader_(w.s.o.client.session.max_message_size, false) {
        if (info.deflate) {
            pmd::codec c(*info.deflate, true);
            deflater_ = std::move(c.out);
            inflater_ = std::move(c.in);
            reader_.set_inflater(inflater_.get());
        }
        rbuf_.resize(std::max<std::size_t>(64 * 1024, leftover.size() + 16 * 1024));
        std::memcpy(rbuf_.data(), leftover.data(), leftover.size());
        rend_ = leftover.size();
        budget_ = no_end;
        if (o_.messages > 0 && spec_.role != conn_role::subscriber) {
            // Spread the total over the connections that send; the first ones take the remainder.
            const std::uint64_t senders = spec_.role == conn_role::publisher ? o_.publishers : o_.connections;
            budget_ = o_.messages / senders + (spec_.index < o_.messages % senders ? 1 : 0);
        }
        if (spec_.role == conn_role::subscriber) pub_last_.assign(o_.publishers, no_end);
    }

    void start() {
        auto self = this->shared_from_this();
        const std::uint64_t now = s_.now_ns();
        last_progress_ns_ = now;
        if (spec_.role == conn_role::subscriber) {
            for (const auto& m : o_.subscribe_messages) append_data(m, false);
        }
        open_loop_ = o_.rate > 0 && (spec_.role == conn_role::echo || spec_.role == conn_role::sender ||
                                     spec_.role == conn_role::publisher);
        if (spec_.role == conn_role::publisher && !open_loop_) open_loop_ = true;  // fanout always paces
        if (open_loop_) {
            double per_conn = o_.rate;
            if (!o_.rate_per_conn) per_conn /= spec_.role == conn_role::publisher ? o_.publishers : o_.connections;
            interval_ns_ = 1e9 / per_conn;
            // A random phase keeps connections from sending in lockstep.
            t0_ns_ = now + std::uint64_t(double(rng_ % 1000) / 1000.0 * interval_ns_);
            schedule();
        } else if (spec_.role == conn_role::echo) {
            for (unsigned i = 0; i < o_.in_flight && can_send(now); ++i) send_one(now);
        } else if (spec_.role == conn_role::sender) {
            refill(now);
        }
        flush();
        // Frames that came with the upgrade answer are handled now, not when more arrive
        // (a server may send nothing else).
        if (rend_ > 0) return on_read({}, 0);
        do_read();
        check_done(now);
    }

    void tick(std::uint64_t now) override {
        if (done_) return;
        if (closing_) {
            if (now >= close_deadline_ns_) end();
            return;
        }
        if (writing_) {
            // A write that makes no progress: the server stopped reading. It gives up after
            // --reply-timeout, and a sender stuck when a timed run ends does not hold the run.
            const std::uint64_t still = now - std::min(now, last_write_progress_ns_);
            const bool sends = spec_.role == conn_role::sender || spec_.role == conn_role::publisher;
            const std::uint64_t at_end = std::min<std::uint64_t>(std::uint64_t(o_.reply_timeout.count()), 250'000'000);
            if (still > std::uint64_t(o_.reply_timeout.count()) || (sends && now >= s_.end_ns && still >= at_end)) {
                w_.error("stalled");
                ++w_.stalled;
                return lost_quietly();
            }
        }
        if (outstanding_ > 0 && now - std::min(now, last_progress_ns_) > std::uint64_t(o_.reply_timeout.count())) {
            w_.error("timeout", outstanding_);
            outstanding_ = 0;
            sending_over_ = true;
            return start_close();
        }
        if (spec_.role == conn_role::subscriber) {
            const unsigned pubs = s_.publishers_done.load(std::memory_order_acquire);
            if (pubs >= o_.publishers) {
                const std::uint64_t total = s_.published_total.load(std::memory_order_acquire);
                if (pubs_done_ns_ == 0) pubs_done_ns_ = now;
                if (received_all_ >= total) return start_close();
                if (now - pubs_done_ns_ > std::uint64_t(o_.reply_timeout.count())) {
                    w_.error("lost", total - received_all_);
                    return start_close();
                }
            }
        }
        check_done(now);
    }

    void interrupt() override {
        if (done_) return;
        outstanding_ = 0;
        sending_over_ = true;
        if (!closing_) start_close();
        else end();
    }

private:
    std::uint32_t next_key() noexcept {
        rng_ ^= rng_ << 13;
        rng_ ^= rng_ >> 17;
        rng_ ^= rng_ << 5;
        return rng_;
    }

    /// Queues one masked frame (a client's, RFC 6455 5.3).
    void append_masked(unsigned char first, std::string_view payload) {
        const std::uint32_t key = next_key();
        append_frame(pending_, first, payload, &key);
    }

    /// Queues a data message of the run's type; `compressed`: the payload is deflated (RSV1).
    /// With --fragment, as frames of at most that many payload bytes, each with its own key.
    void append_data(std::string_view payload, bool compressed) {
        const unsigned char op = o_.binary ? opcode_byte::binary : opcode_byte::text;
        for_each_fragment(compressed ? static_cast<unsigned char>(op | opcode_byte::rsv1) : op, payload,
                          o_.client.session.fragment_size,
                          [this](unsigned char first, std::string_view piece) { append_masked(first, piece); });
    }

    bool can_send(std::uint64_t now) const noexcept {
        if (sending_over_ || closing_) return false;
        if (now >= s_.end_ns) return false;
        if (s_.stopping.load(std::memory_order_relaxed)) return false;
        if (budget_ == 0 && now >= s_.warmup_end_ns) return false;
        return true;
    }

    void send_one(std::uint64_t t_ns) {
        const std::uint64_t seq = (std::uint64_t(spec_.role == conn_role::publisher ? spec_.index : 0) << publisher_shift) |
                                  next_seq_++;
        const std::size_t before = pending_.size();
        const std::size_t size = message_stamp::size(o_.binary) + o_.body.size();
        // A message cut into frames is assembled first (the stamp and body split across frames).
        const bool fragmented = o_.client.session.fragment_size > 0 && size > o_.client.session.fragment_size;
        if (deflater_ || fragmented) {
            plain_.resize(size);
            message_stamp::write(plain_.data(), o_.binary, seq, t_ns);
            if (!o_.body.empty()) std::memcpy(plain_.data() + message_stamp::size(o_.binary), o_.body.data(), o_.body.size());
            if (deflater_) {
                zbuf_.clear();
                deflater_->compress(plain_, zbuf_);
            }
            append_data(deflater_ ? zbuf_ : plain_, deflater_ != nullptr);
        } else {
            bench_frame::append_stamped(pending_, o_.binary, seq, t_ns, o_.body, next_key());
        }
        if (spec_.role == conn_role::sender) {
            ++pending_batch_.all;
            pending_batch_.bytes_all += size;
            if (w_.measured(t_ns)) {
                ++pending_batch_.measured;
                pending_batch_.bytes_measured += size;
                pending_batch_.wire_measured += pending_.size() - before;
                pending_batch_.first_measured_ns = std::min(pending_batch_.first_measured_ns, t_ns);
            }
        } else {
            w_.count_sent(t_ns, size, pending_.size() - before);
        }
        if (t_ns >= s_.warmup_end_ns && budget_ != no_end) --budget_;
        ++sent_all_;
        if (spec_.role == conn_role::echo) {
            if (outstanding_ == 0) last_progress_ns_ = s_.now_ns();
            ++outstanding_;
        }
    }

    // Fire-and-forget: keep about 64 KiB queued behind the write on the wire.
    void refill(std::uint64_t now) {
        const std::size_t size = message_stamp::size(o_.binary) + o_.body.size() + 14;
        std::size_t n = std::max<std::size_t>(1, (64 * 1024) / size);
        while (n-- > 0 && can_send(now)) send_one(now);
        if (!can_send(now)) sending_over_ = true;
    }

    // Open loop: send every message whose intended time has come, then sleep until the next.
    void schedule() {
        if (done_ || closing_) return;
        const std::uint64_t now = s_.now_ns();
        for (;;) {
            const std::uint64_t t = t0_ns_ + std::uint64_t(double(sched_index_) * interval_ns_);
            if (t > now) {
                flush();
                timer_.expires_at(s_.at(t));
                timer_.async_wait([self = this->shared_from_this()](error_code ec) {
                    if (!ec) self->schedule();
                });
                return;
            }
            if (!can_send(t)) {
                sending_over_ = true;
                break;
            }
            ++sched_index_;
            if (pending_.size() + out_.size() > o_.max_backlog) {
                // The server is not reading: skip rather than grow without bound, and say so.
                w_.error("backlog");
                continue;
            }
            send_one(t);
        }
        flush();
        check_done(now);
    }

    void flush() {
        if (writing_ || pending_.empty() || done_) return;
        out_.swap(pending_);
        out_batch_ = pending_batch_;
        pending_batch_ = {};
        out_written_ = 0;
        writing_ = true;
        last_write_progress_ns_ = s_.now_ns();
        write_some();
    }

    // Writes out_ piece by piece, so that tick() sees whether the server still takes data.
    void write_some() {
        stream_.async_write_some(net::buffer(out_.data() + out_written_, out_.size() - out_written_),
                                 [self = this->shared_from_this()](error_code ec, std::size_t n) {
                                     if (!ec && !self->done_) {
                                         self->out_written_ += n;
                                         self->last_write_progress_ns_ = self->s_.now_ns();
                                         if (self->out_written_ < self->out_.size()) return self->write_some();
                                     }
                                     self->on_write(ec);
                                 });
    }

    void on_write(error_code ec) {
        writing_ = false;
        out_.clear();
        if (done_) return;
        if (ec) return lost("write", ec);
        const std::uint64_t now = s_.now_ns();
        w_.count_written(out_batch_, now);
        out_batch_ = {};
        if (spec_.role == conn_role::sender && !open_loop_) refill(now);
        if (spec_.role == conn_role::publisher) w_.last_measured_ns = std::max(w_.last_measured_ns, now);
        flush();
        if (closing_ && !writing_ && close_received_) return end();
        check_done(now);
    }

    // Reads into rbuf_ behind the bytes that came with the upgrade answer (the first read only).
    void do_read() {
        stream_.async_read_some(net::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_),
                                [self = this->shared_from_this()](error_code ec, std::size_t n) { self->on_read(ec, n); });
    }

    void on_read(error_code ec, std::size_t n) {
        if (done_) return;
        if (ec) {
            if (closing_) return end();
            return lost(ec == net::error::eof ? "disconnected" : "read", ec);
        }
        const std::size_t total = std::exchange(rend_, 0) + n;
        const std::uint64_t now = s_.now_ns();
        replies_ = 0;
        frame_event ev;
        // The reader yields an event or takes every byte offered: each turn makes progress.
        for (std::size_t used = 0; used < total;) {
            used += reader_.next(rbuf_.data() + used, total - used, ev);
            if (ev.kind == frame_event::none) break;
            if (!on_event(ev, now)) return;
        }
        if (spec_.role == conn_role::echo && !open_loop_) {
            for (std::uint64_t i = 0; i < replies_ && can_send(now); ++i) send_one(now);
        }
        flush();
        check_done(now);
        if (!done_) do_read();
    }

    // Returns false when the connection ended.
    bool on_event(frame_event& ev, std::uint64_t now) {
        switch (ev.kind) {
            case frame_event::message:
                on_message(ev.data(), now, ev.wire);
                return true;
            case frame_event::ping:
                append_masked(opcode_byte::pong, ev.control);
                return true;
            case frame_event::pong:
            case frame_event::none:
                return true;
            case frame_event::error:
                w_.error(ev.compressed ? "inflate" : "protocol");
                lost_quietly();
                return false;
            case frame_event::close:
                break;
        }
        ++w_.close_codes[ev.close_code];
        close_received_ = true;
        if (!closing_) {
            // The server ended the conversation while we still had work.
            if (!sending_over_ || outstanding_ > 0) w_.error("closed_by_server");
            if (outstanding_ > 0) w_.error("unanswered", outstanding_);
            outstanding_ = 0;
            sending_over_ = true;
            start_close(1000);
        }
        if (!writing_) end();
        return false;
    }

    void on_message(std::string_view payload, std::uint64_t now, std::size_t wire) {
        switch (spec_.role) {
            case conn_role::echo: return on_echo(payload, now, wire);
            case conn_role::subscriber:
                if (o_.unbatch) return on_batch(payload, now, wire);
                return on_delivery(payload, now, wire);
            default:
                // Replies a sink or a broadcast server sends to senders are read and dropped.
                w_.i_bytes_received += payload.size();
                return;
        }
    }

    bool body_ok(std::string_view payload) const noexcept {
        const std::size_t ss = message_stamp::size(o_.binary);
        return payload.size() == ss + o_.body.size() &&
               std::memcmp(payload.data() + ss, o_.body.data(), o_.body.size()) == 0;
    }

    // Echoes are matched by sequence number. One that arrives ahead of others leaves a gap
    // behind it: a late echo that fills a gap is out of order but answered (and measured),
    // one that fills none was answered before (duplicate), and a gap never filled is a
    // message the server dropped, which the reply timeout counts.
    void on_echo(std::string_view payload, std::uint64_t now, std::size_t wire) {
        std::uint64_t seq = 0, t = 0;
        last_progress_ns_ = now;
        const bool stamped = message_stamp::read(payload, o_.binary, seq, t) && t <= now && seq < next_seq_;
        bool late = false;
        if (stamped && seq < expect_seq_) {
            if (!fill_gap(seq)) {
                w_.error("duplicate");  // answers nothing outstanding
                return;
            }
            late = true;
        }
        ++replies_;
        if (outstanding_ > 0) --outstanding_;
        if (!stamped) {
            w_.error("corrupt");
            return;
        }
        if (!late) {
            if (seq > expect_seq_) gaps_.emplace_back(expect_seq_, seq);
            expect_seq_ = seq + 1;
        }
        if (!body_ok(payload)) {
            w_.error("corrupt");
            return;
        }
        if (late) w_.error("out_of_order");
        w_.count_received(t, now, payload.size(), true, wire);
    }

    // Removes seq from the gaps; false when it was in none.
    bool fill_gap(std::uint64_t seq) {
        auto it = std::upper_bound(gaps_.begin(), gaps_.end(), seq,
                                   [](std::uint64_t v, const std::pair<std::uint64_t, std::uint64_t>& g) { return v < g.second; });
        if (it == gaps_.end() || seq < it->first) return false;
        if (it->first + 1 == it->second) gaps_.erase(it);
        else if (seq == it->first) ++it->first;
        else if (seq + 1 == it->second) --it->second;
        else {
            const std::uint64_t hi = it->second;
            it->second = seq;
            gaps_.emplace(it + 1, seq + 1, hi);
        }
        return true;
    }

    // --unbatch: a frame is a JSON array of strings, each one message. Strings without escapes
    // (the stamp is hex, the filler plain) are read in place; anything else goes through the
    // JSON parser. A frame that is not an array of strings is one corrupt delivery.
    void on_batch(std::string_view frame, std::uint64_t now, std::size_t wire) {
        if (frame.find('\\') == std::string_view::npos) {
            std::vector<std::string_view> items;
            std::size_t i = 0;
            const auto skip_ws = [&] {
                while (i < frame.size() && (frame[i] == ' ' || frame[i] == '\n' || frame[i] == '\r' || frame[i] == '\t')) ++i;
            };
            skip_ws();
            bool ok = i < frame.size() && frame[i++] == '[';
            skip_ws();
            if (ok && i < frame.size() && frame[i] == ']') ++i;
            else
                while (ok) {
                    skip_ws();
                    if (i >= frame.size() || frame[i] != '"') {
                        ok = false;
                        break;
                    }
                    const auto end = frame.find('"', i + 1);
                    if (end == std::string_view::npos) {
                        ok = false;
                        break;
                    }
                    items.push_back(frame.substr(i + 1, end - i - 1));
                    i = end + 1;
                    skip_ws();
                    if (i < frame.size() && frame[i] == ',') {
                        ++i;
                        continue;
                    }
                    ok = i < frame.size() && frame[i++] == ']';
                    break;
                }
            skip_ws();
            if (!ok || i != frame.size() || items.empty()) {
                ++received_all_;
                last_progress_ns_ = now;
                w_.error("corrupt");
                return;
            }
            for (std::size_t k = 0; k < items.size(); ++k) on_delivery(items[k], now, k == 0 ? wire : 0);
            return;
        }
        const auto j = nlohmann::json::parse(frame, nullptr, false);
        if (!j.is_array() || j.empty() ||
            !std::all_of(j.begin(), j.end(), [](const nlohmann::json& e) { return e.is_string(); })) {
            ++received_all_;
            last_progress_ns_ = now;
            w_.error("corrupt");
            return;
        }
        for (std::size_t k = 0; k < j.size(); ++k) on_delivery(j[k].get_ref<const std::string&>(), now, k == 0 ? wire : 0);
    }

    void on_delivery(std::string_view payload, std::uint64_t now, std::size_t wire) {
        std::uint64_t seq = 0, t = 0;
        ++received_all_;
        last_progress_ns_ = now;
        if (!message_stamp::read(payload, o_.binary, seq, t) || t > now || !body_ok(payload)) {
            w_.error("corrupt");
            return;
        }
        const std::uint64_t pub = seq >> publisher_shift;
        const std::uint64_t n = seq & ((1ULL << publisher_shift) - 1);
        if (pub >= pub_last_.size()) {
            w_.error("corrupt");
            return;
        }
        if (pub_last_[pub] != no_end && n <= pub_last_[pub]) {
            w_.error(n == pub_last_[pub] ? "duplicate" : "out_of_order");
            return;
        }
        pub_last_[pub] = n;
        w_.count_received(t, now, payload.size(), true, wire);
    }

    void check_done(std::uint64_t now) {
        if (done_ || closing_) return;
        if (!sending_over_ && !can_send(now)) {
            // Open loop: the schedule decides; closed loop ends when no more may be sent.
            if (!open_loop_ || now >= s_.end_ns || budget_ == 0 || s_.stopping.load(std::memory_order_relaxed))
                sending_over_ = true;
        }
        if (!sending_over_) return;
        switch (spec_.role) {
            case conn_role::echo:
                if (outstanding_ == 0) start_close();
                break;
            case conn_role::sender:
            case conn_role::publisher:
                if (!writing_ && pending_.empty()) {
                    if (spec_.role == conn_role::publisher && !counted_publish_) {
                        counted_publish_ = true;
                        s_.published_total.fetch_add(sent_all_, std::memory_order_acq_rel);
                        s_.publishers_done.fetch_add(1, std::memory_order_acq_rel);
                    }
                    start_close();
                }
                break;
            default:
                break;
        }
    }

    void start_close(std::uint16_t code = 1000) {
        if (closing_ || done_) return;
        if (spec_.role == conn_role::publisher && !counted_publish_) {
            counted_publish_ = true;
            s_.published_total.fetch_add(sent_all_, std::memory_order_acq_rel);
            s_.publishers_done.fetch_add(1, std::memory_order_acq_rel);
        }
        closing_ = true;
        timer_.cancel();
        close_deadline_ns_ = s_.now_ns() + 1'000'000'000;
        append_masked(opcode_byte::close, close_payload(code, {}));
        flush();
        if (close_received_ && !writing_) end();
    }

    void lost(const char* what, error_code ec) {
        if (!sending_over_ || outstanding_ > 0) w_.error(ec == net::error::eof || ec == net::error::connection_reset ? "disconnected" : what);
        lost_quietly();
    }

    void lost_quietly() {
        if (outstanding_ > 0) w_.error("unanswered", outstanding_);
        outstanding_ = 0;
        sending_over_ = true;
        if (spec_.role == conn_role::publisher && !counted_publish_) {
            counted_publish_ = true;
            s_.published_total.fetch_add(sent_all_, std::memory_order_acq_rel);
            s_.publishers_done.fetch_add(1, std::memory_order_acq_rel);
        }
        end();
    }

    void end() {
        if (done_) return;
        done_ = true;
        timer_.cancel();
        error_code ec;
        auto& sock = beast::get_lowest_layer(stream_);
        if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
            sock.socket().shutdown(tcp::socket::shutdown_both, ec);
            sock.close();
        } else {  // a TCP or unix socket
            sock.shutdown(net::socket_base::shutdown_both, ec);
            sock.close(ec);
        }
        w_.connection_done(this);
    }

    Stream stream_;
    worker& w_;
    run_shared& s_;
    const bench_options& o_;
    conn_spec spec_;
    net::steady_timer timer_;
    std::uint32_t rng_;

    frame_reader reader_;
    std::vector<char> rbuf_;
    std::size_t rend_ = 0;  // bytes in rbuf_ not yet handled (what came with the upgrade answer)
    std::string out_, pending_;
    std::size_t out_written_ = 0;
    worker::send_batch out_batch_, pending_batch_;   // sender: the messages in out_ and pending_
    std::uint64_t last_write_progress_ns_ = 0;
    bool writing_ = false;
    // permessage-deflate, when negotiated: the message before and after compression.
    std::unique_ptr<pmd::deflater> deflater_;
    std::unique_ptr<pmd::inflater> inflater_;
    std::string plain_, zbuf_;

    std::uint64_t budget_;
    std::uint64_t next_seq_ = 0, expect_seq_ = 0, outstanding_ = 0, replies_ = 0, sent_all_ = 0, received_all_ = 0;
    std::uint64_t last_progress_ns_ = 0, pubs_done_ns_ = 0, close_deadline_ns_ = 0;
    bool open_loop_ = false, sending_over_ = false, closing_ = false, close_received_ = false, done_ = false;
    bool counted_publish_ = false;
    double interval_ns_ = 0;
    std::uint64_t t0_ns_ = 0, sched_index_ = 0;
    std::vector<std::uint64_t> pub_last_;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps_;  // echo: [lo, hi) sent, not echoed, below expect_seq_
};

// ---------------------------------------------------------------------------------------------
// Connecting: TCP, proxy, TLS and the HTTP upgrade, with failures sorted by reason.

struct opened_failure {
    std::string reason;
    exit_code code;
    std::string message;
};

// Writes `data`, giving up after `limit`.
template <class Stream>
net::awaitable<void> write_within(Stream& stream, const std::string& data, std::chrono::nanoseconds limit) {
    beast::get_lowest_layer(stream).expires_after(limit);
    error_code ec;
    co_await net::async_write(stream, net::buffer(data), net::redirect_error(net::use_awaitable, ec));
}

// Opens one connection to `url` through the client open path (the one wsx connect uses), with
// the addresses and TLS context resolved once for the run. On success calls ready(stream,
// leftover bytes, handshake ns, upgrade info), the stream a plain socket where no TLS is on.
template <class Ready>
net::awaitable<std::optional<opened_failure>> open_any(run_shared& s, bool publisher, Ready ready) {
    const client_options& o = publisher ? s.publish_client : s.o.client;
    open_hints hints;
    const auto& eps = publisher ? s.publish_endpoints : s.endpoints;
    if (!o.url.is_unix()) hints.first_hop = &eps;
    hints.tls = s.tls;
    std::optional<opened_connection> opened;
    try {
        opened.emplace(co_await async_open(o, hints));
    } catch (const upgrade_rejected& e) {
        co_return opened_failure{fmt::format("HTTP {}", e.status()), e.code(), e.what()};
    } catch (const open_failure& e) {
        co_return opened_failure{e.reason(), e.code(), e.what()};
    } catch (const failure& e) {
        co_return opened_failure{std::string(exit_code_name(e.code())), e.code(), e.what()};
    }
    opened_connection& c = *opened;
    upgrade_info info{std::move(c.extensions), c.deflate};
    const auto hs = std::uint64_t(c.info.timings.total.count());
    if (o.deflate.enabled && !info.deflate) {
        // --compress measures compressed traffic or nothing: leave with 1010 (RFC 6455
        // section 7.4.1: an extension the client needs was not negotiated).
        std::string close;
        const std::uint32_t key = seed32();
        append_frame(close, opcode_byte::close, close_payload(1010, "permessage-deflate required"), &key);
        co_await std::visit([&](auto& stream) { return write_within(stream, close, std::chrono::seconds(1)); }, *c.stream);
        co_return opened_failure{"compression declined", exit_code::upgrade,
                                 fmt::format("{} declined permessage-deflate (--compress): its upgrade answer has no "
                                             "Sec-WebSocket-Extensions; enable compression on the server, or leave "
                                             "out --compress to measure uncompressed traffic",
                                             o.url.to_string())};
    }
    std::visit(
        [&](auto& stream) {
            using S = std::decay_t<decltype(stream)>;
            if constexpr (std::is_same_v<S, tls_stream>) ready(std::move(stream), std::move(c.leftover), hs, info);
            else ready(stream.release_socket(), std::move(c.leftover), hs, info);
        },
        *c.stream);
    co_return std::nullopt;
}

// Sleeps until `t` in steps of at most 100 ms, so that an interrupted run does not wait
// for the end of a long ramp-up.
net::awaitable<void> sleep_until(const run_shared& s, clock::time_point t) {
    net::steady_timer timer(co_await net::this_coro::executor);
    while (!s.stopping.load(std::memory_order_relaxed)) {
        const auto now = clock::now();
        if (now >= t) break;
        timer.expires_at(std::min(t, now + std::chrono::milliseconds(100)));
        error_code ec;
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
}

// A connection of the load: wait for its turn, connect, then hand over to connection<>.
net::awaitable<void> launch(worker& w, conn_spec spec) {
    run_shared& s = w.s;
    const auto& o = s.o;
    if (o.connect_rate > 0) {
        // A connection whose turn comes after the end of a timed run is not opened at all.
        const std::uint64_t when = std::uint64_t(std::min(double(spec.index) / o.connect_rate * 1e9, 9e18));
        if (when < s.end_ns) co_await sleep_until(s, s.at(when));
        if (when >= s.end_ns || s.now_ns() >= s.end_ns) {
            ++w.not_opened;
            if (spec.role == conn_role::subscriber) s.subscribers_settled.fetch_add(1, std::memory_order_acq_rel);
            w.connection_done(nullptr);
            co_return;
        }
    }
    if (spec.role == conn_role::publisher) {
        // Publish only once every subscriber is connected (or failed), plus the settle time.
        while (s.subscribers_settled.load(std::memory_order_acquire) < o.connections && !s.stopping.load())
            co_await sleep_until(s, clock::now() + std::chrono::milliseconds(5));
        co_await sleep_until(s, clock::now() + o.settle);
    }
    if (s.stopping.load()) {
        w.connection_done(nullptr);
        co_return;
    }
    const bool publisher = spec.role == conn_role::publisher;
    ++w.attempted;
    auto on_ready = [&w, spec](auto&& stream, std::string leftover, std::uint64_t hs_ns, const upgrade_info& info) {
        using S = std::decay_t<decltype(stream)>;
        ++w.established;
        if (spec.role == conn_role::subscriber) ++w.subscribers_established;
        w.handshake.record(hs_ns);
        if (w.extensions.empty()) w.extensions = info.extensions;
        auto c = std::make_shared<connection<S>>(std::move(stream), w, spec, std::move(leftover), info);
        w.conns.push_back(c);
        c->start();
    };
    std::optional<opened_failure> f = co_await open_any(s, publisher, on_ready);
    if (spec.role == conn_role::subscriber) s.subscribers_settled.fetch_add(1, std::memory_order_acq_rel);
    if (f) {
        w.connect_failed(f->reason, f->code, f->message);
        if (publisher) {
            s.publishers_done.fetch_add(1, std::memory_order_acq_rel);
        }
        w.connection_done(nullptr);
    }
}

// The connect scenario: one slot opening, upgrading and closing connections in a loop.
net::awaitable<void> storm(worker& w) {
    run_shared& s = w.s;
    const auto& o = s.o;
    for (;;) {
        if (s.stopping.load() || s.now_ns() >= s.end_ns) break;
        if (o.connect_rate > 0) {
            const std::uint64_t k = s.next_attempt.fetch_add(1);
            const std::uint64_t when = std::uint64_t(std::min(double(k) / o.connect_rate * 1e9, 9e18));
            if (when >= s.end_ns) break;
            co_await sleep_until(s, s.at(when));
            if (s.stopping.load()) break;
        }
        const std::uint64_t t_start = s.now_ns();
        // Handshakes started during the warmup are the warmup: they count nowhere, -n included.
        const bool measured = w.measured(t_start);
        if (measured && o.messages > 0 && s.handshakes_left.fetch_sub(1) <= 0) break;
        if (measured) ++w.attempted;
        w.count_sent(t_start, 0);
        std::optional<tcp::socket> plain;
        std::optional<net::local::stream_protocol::socket> local;
        std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
        std::string leftover;
        std::uint64_t hs = 0;
        auto on_ready = [&](auto&& stream, std::string left, std::uint64_t hs_ns, const upgrade_info& info) {
            using S = std::decay_t<decltype(stream)>;
            if constexpr (std::is_same_v<S, tcp::socket>) plain.emplace(std::move(stream));
            else if constexpr (std::is_same_v<S, net::local::stream_protocol::socket>) local.emplace(std::move(stream));
            else secure.emplace(std::move(stream));
            leftover = std::move(left);
            hs = hs_ns;
            if (w.extensions.empty()) w.extensions = info.extensions;
        };
        std::optional<opened_failure> f = co_await open_any(s, false, on_ready);
        if (f) {
            w.connect_failed(f->reason, f->code, f->message, measured);
            ++w.i_errors;
            continue;
        }
        if (measured) {
            ++w.established;
            w.handshake.record(hs);
        }
        w.count_received(t_start, t_start + hs, 0, true);
        // Close politely: our Close, then read until the server's Close or end of stream.
        std::string frame;
        const std::uint32_t key = seed32();
        append_frame(frame, opcode_byte::close, close_payload(1000, {}), &key);
        auto finish_close = [&](auto& stream) -> net::awaitable<void> {
            error_code ec;
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
            co_await net::async_write(stream, net::buffer(frame), net::redirect_error(net::use_awaitable, ec));
            frame_reader reader(1 << 20, false);
            pmd::inflater inflater(false);
            if (o.client.deflate.enabled) reader.set_inflater(&inflater);
            std::string buf = leftover;
            std::array<char, 4096> chunk;
            for (;;) {
                frame_event ev;
                for (std::size_t used = 0; used < buf.size() && !reader.done();)
                    used += reader.next(buf.data() + used, buf.size() - used, ev);
                if (ev.kind == frame_event::close && measured) ++w.close_codes[ev.close_code];
                if (reader.done() || ec) break;
                std::size_t n = co_await stream.async_read_some(net::buffer(chunk), net::redirect_error(net::use_awaitable, ec));
                buf.assign(chunk.data(), n);
            }
        };
        if (plain) {
            beast::tcp_stream t(std::move(*plain));
            co_await finish_close(t);
            error_code ec;
            t.socket().shutdown(tcp::socket::shutdown_both, ec);
            t.close();
        } else if (local) {
            beast::basic_stream<net::local::stream_protocol> t(std::move(*local));
            co_await finish_close(t);
            error_code ec;
            t.socket().shutdown(net::socket_base::shutdown_both, ec);
            t.close();
        } else {
            co_await finish_close(*secure);
            beast::get_lowest_layer(*secure).close();
        }
    }
    w.connection_done(nullptr);
}

void worker::run() {
    active = unsigned(specs.size());
    for (const auto& spec : specs) {
        if (spec.role == conn_role::storm) net::co_spawn(ioc, storm(*this), net::detached);
        else net::co_spawn(ioc, launch(*this, spec), net::detached);
    }
    if (active == 0) return finish();
    ticker.expires_at(s.at(100'000'000));
    ticker.async_wait([this](error_code ec) {
        if (!ec) on_tick();
    });
    ioc.run();
}

double cpu_seconds(const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) / 1e6; }

std::string utc_now() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The addresses of the first hop to `url` (the server, or the proxy), looked up once for the run
// by the client open path's resolver.
tcp::resolver::results_type resolve_or_throw(net::io_context& ioc, const client_options& c, const endpoint& url) {
    const bool proxy = c.proxy.has_value();
    const std::string host = proxy ? c.proxy->host : url.host;
    const std::uint16_t port = proxy ? c.proxy->port : url.port;
    // The coroutine runs in ioc.run() below and refers to its arguments: none may be a temporary.
    const std::string name = url.to_string();
    auto done = net::co_spawn(ioc, resolve(host, port, clock::now() + c.connect_timeout, name, "--connect-timeout",
                                           c.connect_timeout),
                              net::use_future);
    ioc.run();
    ioc.restart();
    return done.get();
}

}  // namespace

client_options settle_redirects(const client_options& c) {
    if (!c.redirects.follow) return c;
    net::io_context ioc;
    // The coroutine runs in ioc.run() below and refers to its arguments: none may be a temporary
    // (the default open_hints{} would be gone by then).
    const open_hints hints;
    auto done = net::co_spawn(ioc, async_settle_redirects(c, hints), net::use_future);
    ioc.run();
    return done.get();
}

bench_result run_bench(const bench_options& o, std::pair<int, std::string>* first_failure) {
    run_shared s(o);
    // Thousands of connections need thousands of descriptors: lift the soft limit to the hard one.
    if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    {
        net::io_context rio;
        if (!o.client.url.is_unix()) s.endpoints = resolve_or_throw(rio, o.client, o.client.url);
        s.publish_url = o.client.url;
        if (o.scenario == bench_scenario::fanout && !o.publish_url.empty()) {
            std::string err;
            auto u = parse_ws_url(o.publish_url, &err);
            if (!u) throw failure(exit_code::usage, "--publish-url: " + err);
            s.publish_url = *u;
        }
        if (s.publish_url.is_unix()) {
            // a unix socket needs no addresses
        } else if (!o.client.url.is_unix() && s.publish_url.host == o.client.url.host && s.publish_url.port == o.client.url.port) {
            s.publish_endpoints = s.endpoints;
        } else {
            s.publish_endpoints = resolve_or_throw(rio, o.client, s.publish_url);
        }
    }
    if (o.client.url.tls || s.publish_url.tls) s.tls = make_client_tls(o.client.tls);
    s.publish_client = o.client;
    s.publish_client.url = s.publish_url;

    std::vector<conn_spec> specs;
    if (o.scenario == bench_scenario::connect) {
        for (unsigned i = 0; i < o.connections; ++i) specs.push_back({conn_role::storm, i});
        s.handshakes_left = std::int64_t(o.messages);
    } else {
        const conn_role r = o.scenario == bench_scenario::echo   ? conn_role::echo
                            : o.scenario == bench_scenario::send ? conn_role::sender
                                                                 : conn_role::subscriber;
        for (unsigned i = 0; i < o.connections; ++i) specs.push_back({r, i});
        if (o.scenario == bench_scenario::fanout)
            for (unsigned i = 0; i < o.publishers; ++i) specs.push_back({conn_role::publisher, i});
    }
    const unsigned nthreads = std::max(1u, std::min<unsigned>(o.threads, unsigned(specs.size())));
    std::vector<std::unique_ptr<worker>> workers;
    for (unsigned i = 0; i < nthreads; ++i) workers.push_back(std::make_unique<worker>(s));
    for (std::size_t i = 0; i < specs.size(); ++i) workers[i % nthreads]->specs.push_back(specs[i]);

    bench_result r;
    r.started_at = utc_now();
    rusage ru0{}, ru1{};
    getrusage(RUSAGE_SELF, &ru0);
    s.origin = clock::now();
    s.warmup_end_ns = std::uint64_t(o.warmup.count());
    if (o.duration.count() > 0) s.end_ns = std::uint64_t(o.duration.count());

    net::io_context monitor(1);
    net::signal_set signals(monitor, SIGINT, SIGTERM);
    net::steady_timer progress(monitor);
    std::atomic<unsigned> finished{0};
    signals.async_wait([&](error_code ec, int) {
        if (ec) return;
        r.interrupted = true;
        s.stopping = true;
    });
    int progress_ticks = 0;
    std::function<void()> arm_progress = [&] {
        // Just after each whole second, once the workers have closed that second's interval.
        progress.expires_at(s.origin + std::chrono::seconds(++progress_ticks) + std::chrono::milliseconds(150));
        progress.async_wait([&](error_code ec) {
            if (ec) return;
            // A timed run that overstays every deadline it has is stopped rather than left hanging.
            if (o.duration.count() > 0 && !s.stopping.load() &&
                clock::now() - s.origin > o.duration + o.reply_timeout + o.client.connect_timeout + std::chrono::seconds(5)) {
                s.stopping = true;
                r.warnings.push_back("the run did not end within its deadlines and was stopped; figures cover the part that ran");
            }
            if (o.on_progress) {
                bench_progress p;
                p.elapsed_s = double(s.now_ns()) / 1e9;
                for (auto& w : workers) {
                    p.sent += w->p_sent.load(std::memory_order_relaxed);
                    p.received += w->p_received.load(std::memory_order_relaxed);
                    p.errors += w->p_errors.load(std::memory_order_relaxed);
                    p.established += w->p_established.load(std::memory_order_relaxed);
                    p.failed += w->p_failed.load(std::memory_order_relaxed);
                    p.rate += double(w->p_interval_received.load(std::memory_order_relaxed));
                    p.p99_ns = std::max(p.p99_ns, w->p_interval_p99.load(std::memory_order_relaxed));
                }
                o.on_progress(p);
            }
            arm_progress();
        });
    };
    arm_progress();
    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&, wp = w.get()] {
            wp->run();
            net::post(monitor, [&] {
                if (++finished == workers.size()) {
                    signals.cancel();
                    progress.cancel();
                }
            });
        });
    }
    monitor.run();
    for (auto& t : threads) t.join();
    const double wall = double(s.now_ns()) / 1e9;
    getrusage(RUSAGE_SELF, &ru1);

    // Merge the per-thread figures.
    r.config.scenario = std::string(scenario_name(o.scenario));
    r.config.url = o.client.url.to_string();
    if (o.scenario == bench_scenario::fanout) r.config.publish_url = s.publish_url.to_string();
    r.config.connections = o.connections;
    r.config.publishers = o.scenario == bench_scenario::fanout ? o.publishers : 0;
    r.config.connect_rate = o.connect_rate;
    r.config.duration_s = double(o.duration.count()) / 1e9;
    r.config.messages = o.messages;
    r.config.warmup_s = double(o.warmup.count()) / 1e9;
    r.config.threads = nthreads;
    r.config.in_flight = o.rate > 0 || o.scenario != bench_scenario::echo ? 0 : o.in_flight;
    r.config.rate = o.rate_per_conn ? o.rate * (o.scenario == bench_scenario::fanout ? o.publishers : o.connections) : o.rate;
    r.config.message_size = o.scenario == bench_scenario::connect ? 0 : message_stamp::size(o.binary) + o.body.size();
    r.config.binary = o.binary;
    r.config.compress = o.client.deflate.enabled;

    std::uint64_t first = no_end, last = 0;
    for (auto& w : workers) {
        r.conn_attempted += w->attempted;
        r.conn_established += w->established;
        r.conn_failed += w->failed;
        for (auto& [k, v] : w->connect_errors) r.connect_errors[k] += v;
        r.handshake.merge(w->handshake);
        r.latency.merge(w->latency);
        r.sent += w->sent;
        r.received += w->received;
        r.bytes_sent += w->bytes_sent;
        r.bytes_received += w->bytes_received;
        r.wire_bytes_sent += w->wire_bytes_sent;
        r.wire_bytes_received += w->wire_bytes_received;
        if (r.extensions.empty()) r.extensions = w->extensions;
        for (auto& [k, v] : w->errors) r.errors[k] += v;
        for (auto& [k, v] : w->close_codes) r.close_codes[k] += v;
        first = std::min(first, w->first_measured_ns);
        // Sends count too: against a server that never answers, the window is the sending.
        last = std::max({last, w->last_measured_ns, w->last_sent_ns});
        for (auto& iv : w->series) {
            std::size_t k = std::size_t(iv.start_s + 0.5);
            while (r.series.size() <= k) {
                bench_interval e;
                e.start_s = double(r.series.size());
                e.length_s = 0;  // the longest of the threads' intervals
                r.series.push_back(std::move(e));
            }
            auto& d = r.series[k];
            d.length_s = std::max(d.length_s, iv.length_s);
            d.sent += iv.sent;
            d.received += iv.received;
            d.errors += iv.errors;
            d.bytes_sent += iv.bytes_sent;
            d.bytes_received += iv.bytes_received;
            d.latency.merge(iv.latency);
        }
    }
    if (o.scenario == bench_scenario::fanout) {
        // Every subscriber that connected should have received every measured publication.
        std::uint64_t subs = 0;
        for (auto& w : workers) subs += w->subscribers_established;
        r.expected = r.sent * subs;
    }
    // The measured window runs from the first measured send to the last measured reply; the
    // replies drained after a timed run's end were sent inside it, so the window stops at the end.
    if (first == no_end) first = s.warmup_end_ns;
    last = std::min(last, s.end_ns);
    if (last < first) last = first;
    r.elapsed_s = double(last - first) / 1e9;
    r.cpu_user_s = cpu_seconds(ru1.ru_utime) - cpu_seconds(ru0.ru_utime);
    r.cpu_system_s = cpu_seconds(ru1.ru_stime) - cpu_seconds(ru0.ru_stime);
    r.cpu_wall_s = wall;
    if (r.cpu_utilisation() > 0.9 && r.received + r.sent > 0)
        r.warnings.push_back(fmt::format(
            "the generator used {:.0f}% of its {} thread(s): it may be what limits these figures; add --threads, "
            "or run wsx bench on another machine than the server",
            r.cpu_utilisation() * 100, nthreads));
    std::uint64_t stalled = 0, not_opened = 0;
    for (auto& w : workers) {
        stalled += w->stalled;
        not_opened += w->not_opened;
    }
    if (not_opened > 0)
        r.warnings.push_back(fmt::format(
            "{} of {} connections were not opened: at --connect-rate {:g}/s their turn came after the end of the run; "
            "raise --connect-rate or -d",
            not_opened, o.connections, o.connect_rate));
    if (o.connect_rate > 0 && o.rate > 0 && !o.rate_per_conn && o.scenario != bench_scenario::fanout &&
        o.connections > 1)
        r.warnings.push_back(fmt::format(
            "--rate is shared by all {} connections, and --connect-rate opens them over {}: until the last is open, "
            "less than --rate is sent",
            o.connections, format_duration(std::chrono::nanoseconds(std::int64_t(std::min(double(o.connections - 1) / o.connect_rate * 1e9, 9e18))))));
    if (stalled > 0)
        r.warnings.push_back(fmt::format(
            "{} connection{} stalled: the server took no data for --reply-timeout ({}){}; what was still queued "
            "was not counted as sent",
            stalled, stalled == 1 ? "" : "s", format_duration(o.reply_timeout),
            o.duration.count() > 0 ? ", or a write was stuck when the run ended" : ""));
    if (o.scenario != bench_scenario::connect && r.conn_established > 0 && !r.interrupted) {
        if (r.sent == 0)
            r.warnings.push_back("no message was measured: nothing was sent after the warmup");
        else if (o.scenario != bench_scenario::send && r.received == 0)
            r.warnings.push_back(fmt::format(
                "no message was {}: {} sent, none came back within --reply-timeout; the latency figures have no sample",
                o.scenario == bench_scenario::fanout ? "delivered" : "answered", r.sent));
    }
    if (r.conn_established == 0 && s.first_failure && first_failure) *first_failure = *s.first_failure;
    return r;
}

}  // namespace wsx
