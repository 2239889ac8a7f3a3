#pragma once
/// The byte-stream layer beneath every websocket::stream in wsx.
///
/// Why it exists: Beast's async_close discards every data frame that arrives after
/// our Close frame, but RFC 6455 lets the peer keep sending until its own Close, and
/// wsx promises that every received message is written out, also at close. So wsx
/// writes its Close frame itself through this layer (close_frame()) and keeps the
/// Beast read loop running; when the peer's Close arrives, Beast's automatic reply
/// is swallowed here because ours already went out.
#include "frame_reader.hpp"
#include "net.hpp"
#include "random_seed.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace wsx {

/// A move-only void(error_code) callable (completion handlers need not be copyable).
class ec_callback {
public:
    ec_callback() = default;
    template <class F>
    ec_callback(F f) : p_(std::make_unique<impl<F>>(std::move(f))) {}  // NOLINT: implicit on purpose
    explicit operator bool() const noexcept { return p_ != nullptr; }
    void operator()(error_code ec) {
        auto p = std::move(p_);
        p->call(ec);
    }

private:
    struct base {
        virtual ~base() = default;
        virtual void call(error_code ec) = 0;
    };
    template <class F>
    struct impl final : base {
        explicit impl(F f) : f(std::move(f)) {}
        void call(error_code ec) override { f(ec); }
        F f;
    };
    std::unique_ptr<base> p_;
};

/// Frames handled together on one thread (one read's worth): the streams written to meanwhile
/// are flushed once, when the batch ends, instead of each on a later turn of the event loop.
/// Sessions open a batch around the handling of what they read (write_batch below).
class write_batch {
public:
    write_batch() noexcept { ++state().depth; }
    ~write_batch() {
        auto& st = state();
        if (--st.depth > 0) return;
        // A flush may start another batch's worth of work only through posted completions,
        // never inline, so the list is stable while it is walked.
        for (std::size_t i = 0; i < st.dirty.size(); ++i) {
            auto& d = st.dirty[i];
            if (!d.alive.expired()) d.flush(d.self);
        }
        st.dirty.clear();
    }
    write_batch(const write_batch&) = delete;
    write_batch& operator=(const write_batch&) = delete;

    /// True inside a batch: `flush(self)` is then called at its end (while `alive` lives).
    static bool defer(std::weak_ptr<char> alive, void (*flush)(void*), void* self) {
        auto& st = state();
        if (st.depth == 0) return false;
        st.dirty.push_back({std::move(alive), flush, self});
        return true;
    }

private:
    struct entry {
        std::weak_ptr<char> alive;
        void (*flush)(void*);
        void* self;
    };
    struct state_t {
        int depth = 0;
        std::vector<entry> dirty;
    };
    static state_t& state() noexcept {
        static thread_local state_t st;
        return st;
    }
};

template <class Next>
class ws_layer {
public:
    using next_layer_type = Next;
    using executor_type = typename Next::executor_type;

    /// Outgoing bytes held for one gathered write; past this, Beast's write waits for the socket.
    static constexpr std::size_t coalesce_limit = 64 * 1024;
    /// A socket written with send(2) directly (TCP or unix), not through TLS.
    static constexpr bool plain_socket = requires(Next& n) { n.socket().native_handle(); };

    template <class... Args>
    explicit ws_layer(Args&&... args) : next_(std::forward<Args>(args)...) {}

    next_layer_type& next_layer() noexcept { return next_; }
    const next_layer_type& next_layer() const noexcept { return next_; }
    executor_type get_executor() noexcept { return next_.get_executor(); }

    bool sealed() const noexcept { return swallow_; }

    /// Turns write coalescing on (a session, once the upgrade is done): from now on the read
    /// loop flushes pending writes each time it waits for the socket. Off (the default, for
    /// the upgrade's HTTP exchange), every write goes straight to the socket.
    void set_coalescing(bool on) noexcept { coalesce_ = on; }

    /// While the owner does not read (backpressure), pending writes are flushed on the next
    /// turn instead of waiting for the read loop.
    void set_read_paused(bool paused) {
        read_paused_ = paused;
        if (paused && !pending_.empty()) flush();
    }

    /// Appends one complete data message (masked when `mask`, as clients must; RSV1 set when
    /// `compressed`, the payload deflated) to the pending bytes: many queued messages then
    /// cost one write and no per-message operation. `fragment` > 0: as frames of at most that
    /// many payload bytes (see for_each_fragment), each masked with its own key.
    void write_frame(bool binary, std::string_view payload, bool mask = false, bool compressed = false,
                     std::size_t fragment = 0) {
        if (swallow_) return;
        const unsigned char first = (binary ? opcode_byte::binary : opcode_byte::text) | (compressed ? opcode_byte::rsv1 : 0);
        if (fragment > 0 && payload.size() > fragment) {
            // The frames are queued together: a Ping or Pong queued later follows the last one
            // (RFC 6455 5.4 allows control frames between fragments; it does not ask for them there).
            for_each_fragment(first, payload, fragment, [&](unsigned char b, std::string_view piece) { append_frame(b, piece, mask); });
            if (pending_.size() + writing_.size() > coalesce_limit) flush();
            else schedule_flush();
            return;
        }
        if constexpr (plain_socket) {
            // A large frame goes out at once, gathered with what is pending, instead of being
            // copied behind it: only what the socket does not take is kept.
            if (!mask && payload.size() >= direct_send_min && can_send_now()) {
                char head[max_frame_header];
                return send_now(head, encode_frame_header(head, first, payload.size(), nullptr), payload);
            }
        }
        append_frame(first, payload, mask);
        if (pending_.size() + writing_.size() > coalesce_limit) flush();
        else schedule_flush();
    }

    /// Appends a Ping or Pong frame (payload at most 125 bytes; masked when `mask`, as clients must).
    void write_control(unsigned char first_byte, std::string_view payload, bool mask = false) {
        if (swallow_) return;
        append_frame(first_byte, payload.substr(0, 125), mask);
        schedule_flush();
    }

    /// Bytes accepted and not yet written.
    std::size_t buffered() const noexcept { return pending_.size() + writing_.size(); }

    /// Calls `cb` once, after a write completes with at most `below` bytes still buffered.
    void notify_below(std::size_t below, ec_callback cb) {
        low_water_ = below;
        low_water_cb_ = std::move(cb);
    }

    /// Calls done(ec) once every pending byte has been written (at once if none is).
    void async_drain(ec_callback done) {
        if (!in_flight_ && pending_.empty()) {
            net::post(next_.get_executor(), [done = std::move(done), ec = write_error_]() mutable { done(ec); });
            return;
        }
        drain_waiters_.push_back(std::move(done));
        flush();
    }

    /// Every read from the socket first sends what is pending: at that moment every frame
    /// already received has been parsed and answered, so the answers leave in one write.
    template <class MutableBuffers, class Handler>
    auto async_read_some(const MutableBuffers& b, Handler&& h) {
        flush();
        return net::async_initiate<Handler, void(error_code, std::size_t)>(
            [this](auto handler, const MutableBuffers& buffers) {
                ++reads_in_flight_;
                next_.async_read_some(buffers, [this, handler = std::move(handler)](error_code ec, std::size_t n) mutable {
                    --reads_in_flight_;
                    handler(ec, n);
                });
            },
            h, b);
    }

    /// Plain sockets: sends what is pending, like async_read_some, then waits until the socket
    /// can be read (bytes, end of stream or an error) without taking anything from it. Only
    /// after read_available() found the socket empty: the wait is for what arrives next.
    template <class Handler>
    void async_wait_readable(Handler&& h) {
        flush();
        ++reads_in_flight_;
        beast::get_lowest_layer(next_).socket().async_wait(
            net::socket_base::wait_read, [this, h = std::forward<Handler>(h)](error_code ec) mutable {
                --reads_in_flight_;
                h(ec);
            });
    }

    /// Plain sockets: reads what is there without waiting (would_block when nothing is;
    /// eof when the peer has shut its side).
    std::size_t read_available(net::mutable_buffer b, error_code& ec) {
        ec = {};
        for (;;) {
            const ssize_t n = ::recv(beast::get_lowest_layer(next_).socket().native_handle(), b.data(), b.size(), MSG_DONTWAIT);
            if (n > 0) return static_cast<std::size_t>(n);
            if (n == 0) {
                if (b.size() > 0) ec = net::error::eof;
                return 0;
            }
            if (errno == EINTR) continue;
            ec = error_code(errno, boost::system::system_category());  // EAGAIN: net::error::would_block
            return 0;
        }
    }

    /// Writes are copied into a pending buffer and complete at once (on the next turn of
    /// the executor); the buffer goes out in one gathered write when the read side is about
    /// to wait for the socket, or on the next turn when nobody reads. One syscall then
    /// carries many messages instead of one each.
    template <class ConstBuffers, class Handler>
    auto async_write_some(const ConstBuffers& b, Handler&& h) {
        return net::async_initiate<Handler, void(error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& buffers) {
                const std::size_t n = net::buffer_size(buffers);
                auto ex = net::get_associated_executor(handler, next_.get_executor());
                if (swallow_) {
                    net::post(ex, [handler = std::move(handler), n]() mutable { handler(error_code{}, n); });
                    return;
                }
                if (write_error_) {
                    net::post(ex, [handler = std::move(handler), ec = write_error_]() mutable { handler(ec, 0); });
                    return;
                }
                if (!coalesce_) {
                    ++writes_in_flight_;
                    next_.async_write_some(buffers, [this, handler = std::move(handler)](error_code ec, std::size_t n) mutable {
                        --writes_in_flight_;
                        if (inject_pending_) flush();  // our Close goes out between two writes, never inside one
                        handler(ec, n);
                    });
                    return;
                }
                const std::size_t old = pending_.size();
                pending_.resize(old + n);
                net::buffer_copy(net::buffer(pending_.data() + old, n), buffers);
                if (pending_.size() + writing_.size() <= coalesce_limit) {
                    net::post(ex, [handler = std::move(handler), n]() mutable { handler(error_code{}, n); });
                    schedule_flush();
                    return;
                }
                // Too much is waiting for the socket: complete this write only once it has gone out.
                blocked_ = [handler = std::move(handler), n](error_code ec) mutable { handler(ec, ec ? 0 : n); };
                flush();
            },
            h, b);
    }

    /// Writes raw bytes (our own Close frame) after everything pending, and from that moment
    /// swallows every later write. Calls done(ec) when written.
    template <class Done>
    void inject_and_seal(std::string bytes, Done done) {
        swallow_ = true;
        on_injected_ = std::move(done);
        pending_.append(bytes);
        inject_pending_ = true;
        flush();
    }

    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& b, error_code& ec) { return next_.read_some(b, ec); }
    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& b) { return next_.read_some(b); }
    template <class ConstBuffers>
    std::size_t write_some(const ConstBuffers& b, error_code& ec) {
        if (swallow_) return net::buffer_size(b);
        if (!pending_.empty() && !in_flight_) {
            net::write(next_, net::buffer(pending_), ec);
            pending_.clear();
            if (ec) return 0;
        }
        return next_.write_some(b, ec);
    }
    template <class ConstBuffers>
    std::size_t write_some(const ConstBuffers& b) {
        error_code ec;
        auto n = write_some(b, ec);
        if (ec) throw boost::system::system_error(ec);
        return n;
    }

private:
    /// Appends one frame to the pending bytes; masked with a fresh key when `mask`.
    void append_frame(unsigned char first, std::string_view payload, bool mask) {
        if (!mask) return wsx::append_frame(pending_, first, payload);
        const std::uint32_t key = next_mask_key();
        wsx::append_frame(pending_, first, payload, &key);
    }

    /// RFC 6455 5.3: a fresh, unpredictable key per frame (xorshift seeded from the OS).
    std::uint32_t next_mask_key() noexcept {
        if (mask_state_ == 0) mask_state_ = random_seed() | 1;
        mask_state_ ^= mask_state_ << 13;
        mask_state_ ^= mask_state_ >> 17;
        mask_state_ ^= mask_state_ << 5;
        return mask_state_;
    }

    void schedule_flush() {
        if (flush_scheduled_ || in_flight_) return;
        flush_scheduled_ = true;
        if (write_batch::defer(alive_, &ws_layer::batch_flush, this)) return;
        check_flush(std::size_t(-1));
    }

    static void batch_flush(void* self) {
        auto* l = static_cast<ws_layer*>(self);
        l->flush_scheduled_ = false;
        l->flush();
    }

    // A writer that keeps producing (one message per turn of the event loop) is let finish
    // its batch: the flush waits until a turn adds nothing, then sends everything at once.
    void check_flush(std::size_t seen) {
        net::post(next_.get_executor(), [this, seen, alive = std::weak_ptr<char>(alive_)] {
            if (alive.expired()) return;
            if (pending_.size() != seen && pending_.size() < coalesce_limit && !blocked_)
                return check_flush(pending_.size());
            flush_scheduled_ = false;
            // The read side flushes when it next waits for the socket; flush here only when it
            // is already waiting (otherwise this would split a batch it is still producing).
            if (reads_in_flight_ > 0 || blocked_ || read_paused_) flush();
        });
    }

    /// Payloads from this size on are written from the caller's bytes (send_now) when they can.
    static constexpr std::size_t direct_send_min = 4096;

    /// Nothing is being written and nobody waits for a write to complete: bytes may go to the
    /// socket now, with an asynchronous write only for what it does not take.
    bool can_send_now() const noexcept {
        return !in_flight_ && writes_in_flight_ == 0 && !inject_pending_ && !blocked_ && !low_water_cb_ &&
               drain_waiters_.empty() && !write_error_;
    }

    /// Writes the pending bytes, then head[0, n), then the payload, in one sendmsg(2); keeps
    /// what the socket did not take and writes it asynchronously.
    void send_now(const char* head, std::size_t n, std::string_view payload) {
        iovec iov[3];
        int count = 0;
        if (!pending_.empty()) iov[count++] = {pending_.data(), pending_.size()};
        iov[count++] = {const_cast<char*>(head), n};
        iov[count++] = {const_cast<char*>(payload.data()), payload.size()};
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<decltype(msg.msg_iovlen)>(count);
        const ssize_t sent = ::sendmsg(beast::get_lowest_layer(next_).socket().native_handle(), &msg,
                                       MSG_DONTWAIT | MSG_NOSIGNAL);
        std::size_t skip = sent > 0 ? static_cast<std::size_t>(sent) : 0;
        if (skip == pending_.size() + n + payload.size()) {
            std::string().swap(pending_);  // idle connections keep no write buffer
            return;
        }
        // Keep the rest, in order; the asynchronous write reports an error the socket gave.
        std::string rest;
        rest.reserve(pending_.size() + n + payload.size() - skip);
        for (int i = 0; i < count; ++i) {
            const std::size_t len = iov[i].iov_len;
            if (skip >= len) {
                skip -= len;
                continue;
            }
            rest.append(static_cast<const char*>(iov[i].iov_base) + skip, len - skip);
            skip = 0;
        }
        pending_.swap(rest);
        flush();
    }

    void flush() {
        if (in_flight_ || pending_.empty() || writes_in_flight_ > 0) return;
        if constexpr (plain_socket) {
            // Nobody waits for this write to complete: try the socket now, and go through an
            // asynchronous write only for what it does not take (or to report its error).
            if (can_send_now()) {
                const ssize_t n = ::send(beast::get_lowest_layer(next_).socket().native_handle(), pending_.data(),
                                         pending_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n == static_cast<ssize_t>(pending_.size())) {
                    std::string().swap(pending_);  // idle connections keep no write buffer
                    return;
                }
                if (n > 0) pending_.erase(0, static_cast<std::size_t>(n));
            }
        }
        in_flight_ = true;
        writing_.swap(pending_);
        const bool injection = inject_pending_;
        inject_pending_ = false;
        net::async_write(next_, net::buffer(writing_), [this, injection, alive = std::weak_ptr<char>(alive_)](error_code ec, std::size_t) {
            if (alive.expired()) return;
            in_flight_ = false;
            writing_.clear();
            if (ec && !write_error_) write_error_ = ec;
            // After a write error nothing pending will ever be written: whoever waits for it
            // hears so now (a callback kept here would keep its session alive for ever).
            // Each callback may end the session, and this layer with it.
            if (blocked_ && (pending_.empty() || write_error_)) {
                auto b = std::move(blocked_);
                b(write_error_);
                if (alive.expired()) return;
            }
            if ((injection || write_error_) && on_injected_) {
                auto done = std::move(on_injected_);
                inject_pending_ = false;
                done(injection ? ec : write_error_);
                if (alive.expired()) return;
            }
            if (low_water_cb_ && (write_error_ || pending_.size() <= low_water_)) {
                auto cb = std::move(low_water_cb_);
                cb(write_error_);
                if (alive.expired()) return;
            }
            // A callback above may have started the next write (writing_ is on the wire again).
            if (in_flight_) return;
            if (!pending_.empty() && !write_error_) return flush();
            // Idle connections should not keep write buffers around.
            std::string().swap(writing_);
            std::string().swap(pending_);
            auto waiters = std::move(drain_waiters_);
            drain_waiters_.clear();
            for (auto& w : waiters) w(write_error_);
        });
    }

    Next next_;
    std::shared_ptr<char> alive_ = std::make_shared<char>();  // guards posted flushes against destruction
    bool swallow_ = false;
    bool inject_pending_ = false;
    bool in_flight_ = false;
    bool flush_scheduled_ = false;
    bool coalesce_ = false;
    std::uint32_t mask_state_ = 0;
    bool read_paused_ = false;
    int reads_in_flight_ = 0;
    int writes_in_flight_ = 0;  // pass-through writes (coalescing off)
    error_code write_error_;
    std::string pending_, writing_;
    ec_callback blocked_;
    ec_callback on_injected_;
    ec_callback low_water_cb_;
    std::size_t low_water_ = 0;
    std::vector<ec_callback> drain_waiters_;
};

/// Encodes a Close frame (RFC 6455 5.5.1); masked when sent by a client.
inline std::string encode_close_frame(std::uint16_t code, std::string_view reason, bool mask) {
    std::string frame;
    if (!mask) {
        append_frame(frame, opcode_byte::close, close_payload(code, reason));
        return frame;
    }
    static thread_local std::mt19937 rng{random_seed()};
    const auto key = static_cast<std::uint32_t>(rng());
    append_frame(frame, opcode_byte::close, close_payload(code, reason), &key);
    return frame;
}

template <class Next>
void teardown(beast::role_type role, ws_layer<Next>& s, error_code& ec) {
    using websocket::teardown;
    teardown(role, s.next_layer(), ec);
}

/// Beast's teardown shuts the socket down: first let the pending bytes (its Close reply) out.
template <class Next, class Handler>
void async_teardown(beast::role_type role, ws_layer<Next>& s, Handler&& h) {
    s.async_drain([role, &s, h = std::forward<Handler>(h)](error_code) mutable {
        using websocket::async_teardown;
        async_teardown(role, s.next_layer(), std::move(h));
    });
}

}  // namespace wsx
