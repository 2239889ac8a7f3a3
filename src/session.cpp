#include "session.hpp"

#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace wsx {

template <class Layer>
session<Layer>::session(typename Layer::next_layer_type&& stream, std::string early, session_options opts,
                        beast::role_type role, std::optional<pmd::agreement> deflate)
    : layer_(std::move(stream)),
      role_(role),
      opts_(opts),
      reader_(opts.max_message_size, role == beast::role_type::server),
      partial_(std::move(early)) {
    if (deflate) {
        pmd::codec c(*deflate, role == beast::role_type::client);
        deflate_ = std::move(c.out);
        inflate_ = std::move(c.in);
        reader_.set_inflater(inflate_.get());
    }
}

template <class Layer>
void session<Layer>::start(std::shared_ptr<channel_events> events) {
    events_ = std::move(events);
    stats_.opened = last_activity_ = last_message_ = steady_clock::now();
    // Writes wait for the read loop to flush them together; a client's Close still leaves in a
    // write of its own, after everything queued (see do_close).
    layer().set_coalescing(true);
    arm_ping();
    arm_idle();
    // Bytes may already wait in the socket (or behind the upgrade request): read before waiting.
    net::post(layer().get_executor(), [self = self()] { self->pump(); });
}

namespace {
/// Where a plain socket's bytes land: one buffer per thread, shared by its connections (a
/// read is taken and handled before the next connection's).
constexpr std::size_t read_chunk = 64 * 1024;
char* thread_read_buffer() {
    static thread_local std::unique_ptr<char[]> buf(new char[read_chunk]);
    return buf.get();
}
}  // namespace

// Handles what was kept from earlier reads and whatever the socket has now, then reads on.
template <class Layer>
void session<Layer>::pump() {
    if (finished() || read_stopped_) return;
    write_batch batch;
    if (read_paused_) {
        read_parked_ = true;
        return;
    }
    if constexpr (plain_socket) {
        char* buf = thread_read_buffer();
        const std::size_t have = std::min(partial_.size(), read_chunk);
        std::memcpy(buf, partial_.data(), have);
        partial_.erase(0, have);
        consume(buf, have, true);
    } else {
        if (partial_.empty()) return read_tls();
        // Bytes held back while reading was paused: handle them before reading more.
        const std::size_t used = handle_frames(partial_.data(), partial_.size());
        if (finished()) return;
        partial_.erase(0, used);
        if (read_paused_) read_parked_ = true;
        else if (!read_stopped_) read_tls();
    }
}

// Plain sockets: wait until the socket has something, holding no buffer meanwhile, then read
// all there is into the thread's buffer.
template <class Layer>
void session<Layer>::read_plain() {
    layer().async_wait_readable(beast::bind_front_handler(&session::on_plain_ready, self()));
}

template <class Layer>
void session<Layer>::on_plain_ready(error_code ec) {
    if (finished()) return;
    write_batch batch;
    char* buf = thread_read_buffer();
    const std::size_t have = partial_.size();  // bytes left while reading was paused, if any
    std::memcpy(buf, partial_.data(), have);
    partial_.clear();
    if (ec) return end_of_input(buf, have, ec);
    consume(buf, have, true);
}

// Handles the frames in buf[0, total), reading more behind them while the socket may have
// more (`more`), for a few rounds at most before letting other connections run.
template <class Layer>
void session<Layer>::consume(char* buf, std::size_t total, bool more) {
    for (int round = 0;; ++round) {
        if (more && total < read_chunk) {
            error_code ec;
            const std::size_t room = read_chunk - total;
            const std::size_t n = layer().read_available(net::buffer(buf + total, room), ec);
            if (ec == net::error::would_block || ec == net::error::try_again) more = false;
            else if (ec) return end_of_input(buf, total, ec);
            // A read that did not fill the buffer took all there was. The wait that follows
            // re-arms the socket's readiness (EPOLL_CTL_MOD), so it ends at once should
            // anything, even the peer's FIN, be left behind.
            if (n < room) more = false;
            total += n;
        }
        const std::size_t used = handle_frames(buf, total);
        if (finished()) return;
        total -= used;
        if (read_paused_ || read_stopped_ || (more && round >= 8)) {
            partial_.assign(buf + used, total);
            if (read_paused_) read_parked_ = true;
            else if (!read_stopped_) net::post(layer().get_executor(), [self = self()] { self->pump(); });
            return;
        }
        std::memmove(buf, buf + used, total);
        if (!more) break;
    }
    partial_.assign(buf, total);
    if (partial_.capacity() > 1024) partial_.shrink_to_fit();
    read_plain();
}

// The socket failed or the peer left: the frames that arrived before still count.
template <class Layer>
void session<Layer>::end_of_input(char* buf, std::size_t total, error_code ec) {
    handle_frames(buf, total);
    if (finished() || read_stopped_) return;
    close_info info;
    info.error = ec;
    info.what = abort_what_.empty() ? ec.message() : abort_what_;
    if (ec == net::error::eof && layer().buffered() > 0) {
        // The peer ended its half only: the answers to what it sent still go out first
        // (within the close timeout, in case it does not read them).
        read_stopped_ = true;
        layer().async_drain([self = self(), info = std::move(info)](error_code) mutable { self->finish(std::move(info)); });
        arm_close_timer();
        return;
    }
    finish(std::move(info));
}

template <class Layer>
void session<Layer>::read_tls() {
    constexpr std::size_t tls_chunk = 16 * 1024 + 256;
    if (!tls_buf_) tls_buf_.reset(new char[tls_chunk]);
    const std::size_t have = partial_.size();  // bytes left while reading was paused, if any
    std::memcpy(tls_buf_.get(), partial_.data(), have);
    partial_.clear();
    layer().async_read_some(net::buffer(tls_buf_.get() + have, tls_chunk - have),
                            [self = self(), have](error_code ec, std::size_t n) { self->on_tls_read(ec, have + n); });
}

template <class Layer>
void session<Layer>::on_tls_read(error_code ec, std::size_t n) {
    if (finished()) return;
    write_batch batch;
    if (ec) return end_of_input(tls_buf_.get(), n, ec);
    const std::size_t used = handle_frames(tls_buf_.get(), n);
    if (finished()) return;
    partial_.assign(tls_buf_.get() + used, n - used);
    if (read_stopped_) return;
    if (read_paused_) read_parked_ = true;  // resume_reading() handles what is kept first
    else read_tls();
}

// Handles the complete frames in [data, data + n); returns the bytes used. Stops at a Close,
// a protocol error, or when the consumer paused reading.
template <class Layer>
std::size_t session<Layer>::handle_frames(char* data, std::size_t n) {
    std::size_t used = 0;
    frame_event ev;
    // One clock reading for all the frames that arrived together.
    steady_clock::time_point now{};
    auto arrived = [&] {
        if (now == steady_clock::time_point{}) now = steady_clock::now();
        last_activity_ = now;
    };
    // The reader yields an event or takes every byte offered: each turn makes progress.
    while (used < n && !finished() && !read_stopped_ && !read_paused_) {
        used += reader_.next(data + used, n - used, ev);
        switch (ev.kind) {
            case frame_event::none:
                return used;  // all taken: the rest of a frame comes with the next read
            case frame_event::message:
                arrived();
                last_message_ = now;
                if (stats_.messages_in++ == 0) stats_.first_message = last_activity_;
                stats_.bytes_in += ev.data().size();
                if (!events_) break;
                if (ev.in_place) events_->on_message_view(ev.control, ev.binary);
                else events_->on_message(std::move(ev.payload), ev.binary);
                break;
            case frame_event::ping:
                arrived();
                if (opts_.answer_pings && !close_sent()) layer().write_control(opcode_byte::pong, ev.control, masks());
                if (events_) events_->on_ping(ev.control);
                break;
            case frame_event::pong:
                arrived();
                note_pong(ev.control);
                break;
            case frame_event::close:
                arrived();
                on_peer_close(ev.close_code, ev.control);
                return used;
            case frame_event::error:
                fail_connection(ev.failure, ev.close_code);
                return used;
        }
    }
    return used;
}

// The peer's Close: answer it (or, held for a proxy, report it and answer at close()), then
// end the connection; or, when ours went first, the closing handshake is complete.
template <class Layer>
void session<Layer>::on_peer_close(std::uint16_t code, std::string_view reason) {
    read_stopped_ = peer_closed_ = true;
    peer_code_ = code;
    peer_reason_ = std::string(reason);
    close_info info;
    info.code = code;
    info.reason = peer_reason_;
    info.clean = true;
    info.by_peer = !close_sent();
    if (close_sent()) return teardown_and_finish(std::move(info));
    if (hold_close_ && events_) {
        // Messages may still be sent until close() gives the answer.
        events_->on_close_received(code, peer_reason_);
        return;
    }
    // RFC 6455 5.5.1: the answer echoes the status code.
    state_ = conn_state::close_sent;
    close_code_ = code == 1005 ? 0 : code;
    close_reason_.clear();
    end_with_close(close_code_, {}, std::move(info));
}

// A protocol error: send the Close that RFC 6455 prescribes, then drop the connection.
template <class Layer>
void session<Layer>::fail_connection(websocket::error e, std::uint16_t code) {
    read_stopped_ = true;
    close_info info;
    info.error = e;
    info.what = info.error.message();
    if (close_sent()) {
        abort(info.what, info.error);
        return;
    }
    state_ = conn_state::close_sent;
    close_code_ = code;
    close_reason_.clear();
    failure_ = info.error;
    // RFC 6455 7.1.7: failing the connection does not wait for the peer's answer. Our Close
    // goes out (within a second at most), then TCP ends and the cause is reported at once.
    failing_ = true;
    end_with_close(code, {}, std::move(info));
}

// Frames parsed here, reading over: sends Close after everything queued, then ends the
// connection and reports `info`, within the close timeout.
template <class Layer>
void session<Layer>::end_with_close(std::uint16_t code, std::string_view reason, close_info info) {
    layer().inject_and_seal(encode_close_frame(code, reason, masks()),
                            [self = self(), info = std::move(info)](error_code ec) mutable {
                                // The peer's Close came, then a reset (it closed its socket with
                                // our data unread): its code is the connection's close code
                                // (RFC 6455 7.1.5), though our answer could not reach it.
                                if (ec && info.by_peer && !self->failing_ &&
                                    (ec == net::error::connection_reset || ec == net::error::broken_pipe))
                                    return self->teardown_and_finish(std::move(info));
                                if (ec) return self->abort("could not send Close", ec);
                                if (!self->failing_) return self->teardown_and_finish(std::move(info));
                                // The cause is reported at once; TCP ends behind our Close. What
                                // is held until the close (a connection slot) stays held until the
                                // socket is closed: it still takes a descriptor meanwhile.
                                auto keep = std::move(self->held_until_close_);
                                self->held_until_close_.clear();
                                self->finish(std::move(info));
                                self->close_after_failing(std::move(keep));
                            });
    arm_close_timer();
}

// After failing the connection: our Close is out. Closing the socket now, with the peer's
// bytes unread (the rest of an oversize message, a flood), would send a reset, and a reset
// makes the peer's system discard what it has not read yet, our Close with it. So: end our
// sending side (FIN after the Close), discard what arrives until the peer ends its side, for
// at most a second, then close.
template <class Layer>
void session<Layer>::close_after_failing(std::vector<std::shared_ptr<const void>> keep) {
    auto& sock = beast::get_lowest_layer(layer()).socket();
    error_code ignored;
    sock.shutdown(net::socket_base::shutdown_send, ignored);
    sock.non_blocking(true, ignored);
    timer(close_timer_).expires_after(std::min<std::chrono::nanoseconds>(opts_.close_timeout, std::chrono::seconds(1)));
    close_timer_->async_wait([self = self()](error_code ec) {
        if (ec) return;
        error_code ignored;
        beast::get_lowest_layer(self->layer()).socket().close(ignored);  // ends the discarding wait
    });
    discard_until_eof(std::make_shared<std::vector<std::shared_ptr<const void>>>(std::move(keep)));
}

template <class Layer>
void session<Layer>::discard_until_eof(std::shared_ptr<std::vector<std::shared_ptr<const void>>> keep) {
    beast::get_lowest_layer(layer()).socket().async_wait(net::socket_base::wait_read, [self = self(), keep](error_code ec) {
        auto& sock = beast::get_lowest_layer(self->layer()).socket();
        if (!ec && sock.is_open()) {
            // What there is, without waiting (the socket is non-blocking), up to 4 MiB a wake-up.
            bool more = true;
            for (int i = 0; i < 64 && more; ++i) {
                error_code rec;
                const auto n = sock.read_some(net::buffer(thread_read_buffer(), read_chunk), rec);
                if (rec == net::error::would_block || rec == net::error::try_again) return self->discard_until_eof(keep);
                more = !rec && n > 0;  // else the peer's end of the stream, or an error
            }
            if (more) return self->discard_until_eof(keep);  // a flood: on until the deadline
        }
        error_code ignored;
        if (self->close_timer_) self->close_timer_->cancel();
        sock.close(ignored);
    });
}

template <class Layer>
void session<Layer>::refuse(std::uint16_t code, std::string reason) {
    if (state_ != conn_state::open) return;
    read_stopped_ = true;
    state_ = conn_state::close_sent;
    close_code_ = code;
    close_reason_ = reason;
    failing_ = true;
    end_with_close(code, reason, close_info{});
}

template <class Layer>
void session<Layer>::arm_close_timer() {
    // A client leaving after its idle timeout, or a connection failed for a protocol error,
    // waits no longer than a second for its Close to go.
    const bool short_wait = give_up_after_close_ || failing_;
    timer(close_timer_).expires_after(short_wait ? std::min<std::chrono::nanoseconds>(opts_.close_timeout, std::chrono::seconds(1))
                                                 : opts_.close_timeout);
    close_timer_->async_wait([self = self()](error_code ec) {
        if (ec || self->finished()) return;
        if (self->failing_) {
            // Our Close could not leave in time: end TCP and report the protocol error.
            error_code ignored;
            beast::get_lowest_layer(self->layer()).socket().close(ignored);
            close_info info;
            info.error = self->failure_;
            info.what = info.error.message();
            return self->finish(std::move(info));
        }
        if (self->state_ == conn_state::tearing_down) {
            // The Close frames are exchanged (or ours, failing the connection, went out): only
            // the peer's end of TCP is late. Drop the connection; the teardown reports the close.
            error_code ignored;
            beast::get_lowest_layer(self->layer()).socket().close(ignored);
            return;
        }
        self->abort(fmt::format("no Close from peer within {}ms",
                                std::chrono::duration_cast<std::chrono::milliseconds>(self->opts_.close_timeout).count()),
                    net::error::timed_out);
    });
}

// A server closes the connection after a complete closing handshake, or shuts its sending
// half and lets the peer close after a protocol error; a client waits for the server to close
// first (RFC 6455 7.1.1). Then report.
template <class Layer>
void session<Layer>::teardown_and_finish(close_info info) {
    if (state_ >= conn_state::tearing_down) return;
    state_ = conn_state::tearing_down;
    if constexpr (plain_socket) {
        if (role_ == beast::role_type::server && peer_closed_) {
            // Both Close frames have passed: RFC 6455 7.1.1 has the server close the TCP
            // connection at once. Waiting for the client's FIN as well only cost system calls.
            layer().async_drain([self = self(), info = std::move(info)](error_code) mutable {
                error_code ignored;
                beast::get_lowest_layer(self->layer()).socket().close(ignored);
                self->finish(std::move(info));
            });
            return;
        }
    }
    async_teardown(role_, layer(), [self = self(), info = std::move(info)](error_code) mutable {
        error_code ignored;
        beast::get_lowest_layer(self->layer()).socket().close(ignored);
        self->finish(std::move(info));
    });
}

template <class Layer>
void session<Layer>::pause_reading() {
    if (read_paused_ || finished()) return;
    read_paused_ = true;
    // With coalescing, writes go out when the read loop next waits: it will not wait now.
    layer().set_read_paused(true);
}

template <class Layer>
void session<Layer>::hold_close_reply() {
    if (finished()) return;
    hold_close_ = true;
}

template <class Layer>
void session<Layer>::resume_reading() {
    if (!read_paused_) return;
    read_paused_ = false;
    layer().set_read_paused(false);
    if (read_parked_ && !finished()) {
        read_parked_ = false;
        net::post(layer().get_executor(), [self = self()] { self->pump(); });
    }
}

// A data message, encoded (and compressed, when agreed) straight into the stream's write
// buffer, which is the send queue: what is queued leaves in one write.
template <class Layer>
void session<Layer>::send_view(std::string_view payload, bool binary) {
    if (state_ != conn_state::open) {
        ++stats_.dropped_messages;
        stats_.dropped_bytes += payload.size();
        return;
    }
    const std::size_t queued = layer().buffered();
    if (queued > 0 && queued + payload.size() > opts_.send_queue_limit && opts_.overflow != overflow_policy::queue) {
        ++stats_.dropped_messages;
        stats_.dropped_bytes += payload.size();
        if (opts_.overflow == overflow_policy::close) {
            // The peer reads nothing and may send on: read nothing more from it until our Close
            // has gone out (only then can its answer come), so it cannot make us read and drop
            // its data until the close timeout.
            paused_for_close_ = !read_paused_;
            pause_reading();
            close(1008, "send queue limit exceeded");
        } else {
            want_writable();
        }
        return;
    }
    ++stats_.messages_out;
    stats_.bytes_out += payload.size();
    if (opts_.idle_timeout.count() > 0) last_message_ = steady_clock::now();
    if (!deflate_) return layer().write_frame(binary, payload, masks(), false, opts_.fragment_size);
    zbuf_.clear();
    deflate_->compress(payload, zbuf_);
    layer().write_frame(binary, zbuf_, masks(), true, opts_.fragment_size);
    // A large message's buffer is not kept for an idle connection.
    if (zbuf_.capacity() > 64 * 1024) std::string().swap(zbuf_);
}

template <class Layer>
void session<Layer>::send(std::string payload, bool binary) {
    send_view(payload, binary);
}

template <class Layer>
void session<Layer>::want_writable() {
    if (state_ != conn_state::open) return;
    // The stream's buffer is the queue: ask it to call back once it has drained (or on the
    // next turn when it has, never from inside the caller).
    if (layer().buffered() <= opts_.send_queue_limit / 2) {
        net::post(layer().get_executor(), [self = self()] {
            if (!self->finished() && self->events_) self->events_->on_writable();
        });
        return;
    }
    layer().notify_below(opts_.send_queue_limit / 2, [self = self()](error_code ec) {
        if (self->finished()) return;
        // The queue will never drain: the peer is gone. A peer that reset the connection may
        // have sent its Close first: while a read is under way it gets that Close (bytes that
        // came before a reset stay readable), then the reset, and ends the session with them.
        // Reading may be paused instead (a bridge waits for this side before it reads on), so
        // no read would notice: then it ends here.
        const bool reset = ec == net::error::connection_reset || ec == net::error::broken_pipe;
        if (ec && reset && !self->read_stopped_ && !self->read_paused_ && !self->read_parked_) return;
        if (ec) return self->abort("could not send: " + ec.message(), ec);
        if (self->events_) self->events_->on_writable();
    });
}

template <class Layer>
void session<Layer>::close(std::uint16_t code, std::string reason) {
    if (state_ != conn_state::open) return;
    state_ = conn_state::closing;
    close_code_ = code;
    close_reason_ = std::move(reason);
    do_close();
}

template <class Layer>
void session<Layer>::do_close() {
    if (role_ == beast::role_type::client && !close_drained_ && !give_up_after_close_) {
        // Let the queued messages leave before the Close, in writes of their own: some servers
        // stop answering a batch that arrives together with the client's Close.
        close_drained_ = true;
        // Held weakly: the layer keeps this callback, and the session the layer, so a drain that
        // never ends (a server that stopped reading, then the run stopped) would keep both
        // alive. The read under way and the session's owner hold it meanwhile.
        layer().async_drain([weak = std::weak_ptr<ws_session>(self())](error_code) {
            auto s = weak.lock();
            if (!s) return;
            auto* self = static_cast<session*>(s.get());
            if (!self->finished()) self->do_close();
        });
        watch_drain(layer().buffered());
        return;
    }
    state_ = conn_state::close_sent;
    if (peer_closed_) {
        // The answer to a held Close (a proxy passing on the far end's): the handshake is over.
        close_info info;
        info.code = peer_code_;
        info.reason = peer_reason_;
        info.clean = true;
        info.by_peer = true;
        return end_with_close(close_code_, close_reason_, std::move(info));
    } else {
        layer().inject_and_seal(encode_close_frame(close_code_, close_reason_, masks()),
                                [self = self()](error_code ec) {
                                    if (ec) self->abort("could not send Close", ec);
                                    else if (self->give_up_after_close_) self->abort(self->abort_what_, net::error::timed_out);
                                    else if (std::exchange(self->paused_for_close_, false)) self->resume_reading();
                                });
    }
    arm_close_timer();
}

// A server that stops reading must not hold a client's close forever: the drain before our
// Close may take as long as it needs while bytes leave, but not a close timeout without any.
template <class Layer>
void session<Layer>::watch_drain(std::size_t unsent) {
    timer(close_timer_).expires_after(opts_.close_timeout);
    close_timer_->async_wait([self = self(), unsent](error_code ec) {
        if (ec || self->close_sent()) return;
        const std::size_t now = self->layer().buffered();
        if (now < unsent) return self->watch_drain(now);
        self->abort(fmt::format("the peer read nothing for {}ms; {} bytes were not sent",
                                std::chrono::duration_cast<std::chrono::milliseconds>(self->opts_.close_timeout).count(), now),
                    net::error::timed_out);
    });
}

template <class Layer>
void session<Layer>::abort(std::string what, error_code ec) {
    if (finished()) return;
    if (abort_what_.empty()) abort_what_ = std::move(what);
    if (ec == net::error::timed_out) timed_out_ = true;
    error_code ignored;
    beast::get_lowest_layer(layer()).socket().close(ignored);
    if (read_parked_ || read_stopped_) {
        // No read is outstanding to report the end (reading is paused, or over after a Close or
        // a protocol error): report it here, on the next turn.
        close_info info;
        if (peer_closed_) {
            info.code = peer_code_;
            info.reason = peer_reason_;
            info.by_peer = true;
        }
        info.error = ec ? ec : net::error::operation_aborted;
        net::post(layer().get_executor(), [self = self(), info = std::move(info)]() mutable { self->finish(std::move(info)); });
    }
}

template <class Layer>
void session<Layer>::send_control(bool ping, std::string_view payload) {
    if (close_sent()) return;
    layer().write_control(ping ? opcode_byte::ping : opcode_byte::pong, payload.substr(0, 125), masks());
}

template <class Layer>
void session<Layer>::ping(std::string payload) {
    if (close_sent()) return;
    // An unanswered ping keeps its deadline: a new ping must not push the timeout further out.
    if (awaiting_pong_ && opts_.ping_timeout.count() > 0) return;
    if (payload.size() > 125) payload.resize(125);
    ping_payload_ = payload;
    ping_sent_ = steady_clock::now();
    awaiting_pong_ = true;
    ++stats_.pings_sent;
    layer().write_control(opcode_byte::ping, payload, masks());
    if (opts_.ping_timeout.count() > 0) {
        timer(pong_timer_).expires_after(opts_.ping_timeout);
        pong_timer_->async_wait([self = self()](error_code ec) {
            if (ec || self->finished() || !self->awaiting_pong_) return;
            self->ping_timed_out_ = true;
            self->abort(fmt::format("no pong within {}ms",
                                    std::chrono::duration_cast<std::chrono::milliseconds>(self->opts_.ping_timeout).count()),
                        net::error::timed_out);
        });
    }
}

template <class Layer>
void session<Layer>::note_pong(std::string_view payload) {
    ++stats_.pongs_received;
    std::chrono::nanoseconds rtt{0};
    if (awaiting_pong_ && payload == ping_payload_) {
        awaiting_pong_ = false;
        if (pong_timer_) pong_timer_->cancel();
        rtt = last_activity_ - ping_sent_;
        stats_.rtt_last = rtt;
        stats_.rtt_sum += rtt;
        if (stats_.rtt_min.count() == 0 || rtt < stats_.rtt_min) stats_.rtt_min = rtt;
        if (rtt > stats_.rtt_max) stats_.rtt_max = rtt;
    }
    if (events_) events_->on_pong(payload, rtt);
}

template <class Layer>
void session<Layer>::arm_ping() {
    if (opts_.ping_interval.count() <= 0) return;
    timer(ping_timer_).expires_after(opts_.ping_interval);
    ping_timer_->async_wait([self = self()](error_code ec) {
        if (ec || self->finished()) return;
        self->ping(fmt::format("{}", self->stats_.pings_sent + 1));
        self->arm_ping();
    });
}

template <class Layer>
void session<Layer>::arm_idle() {
    if (opts_.idle_timeout.count() <= 0) return;
    timer(idle_timer_).expires_at(idle_since() + opts_.idle_timeout);
    idle_timer_->async_wait([self = self()](error_code ec) {
        if (ec || self->state_ != conn_state::open) return;
        if (steady_clock::now() - self->idle_since() >= self->opts_.idle_timeout) {
            self->timed_out_ = true;
            self->abort_what_ = "idle timeout";
            // A client has heard nothing for the whole timeout: it says why it leaves, and
            // leaves, without waiting for an answer from a server that is likely gone. A server
            // closes politely: its silent client may well answer.
            if (self->role_ == beast::role_type::client) self->give_up_after_close_ = true;
            self->close(1001, "idle timeout");
            return;
        }
        self->arm_idle();
    });
}

template <class Layer>
void session<Layer>::finish(close_info info) {
    if (finished()) return;
    const bool sent = close_sent();
    state_ = conn_state::finished;
    for (auto* t : {&ping_timer_, &idle_timer_, &close_timer_, &pong_timer_})
        if (*t) (*t)->cancel();
    if (sent) {
        info.sent_code = close_code_;
        info.sent_reason = close_reason_;
    }
    info.timed_out = timed_out_;
    info.ping_timeout = ping_timed_out_;
    if (info.what.empty() && !abort_what_.empty()) info.what = abort_what_;
    held_until_close_.clear();
    auto events = std::move(events_);
    if (events) events->on_close(info);
}

template class session<tcp_layer>;
template class session<tls_layer>;
template class session<unix_layer>;

}  // namespace wsx
