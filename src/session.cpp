#include "session.hpp"

#include <fmt/format.h>

namespace wsx {

template <class Layer>
session<Layer>::session(websocket::stream<Layer>&& ws, beast::role_type role, session_options opts)
    : ws_(std::move(ws)),
      role_(role),
      opts_(opts),
      ping_timer_(ws_.get_executor()),
      idle_timer_(ws_.get_executor()),
      close_timer_(ws_.get_executor()),
      pong_timer_(ws_.get_executor()) {}

template <class Layer>
void session<Layer>::start(std::shared_ptr<channel_events> events) {
    events_ = std::move(events);
    stats_.opened = last_activity_ = steady_clock::now();
    ws_.read_message_max(opts_.max_message_size);
    direct_ = opts_.direct_writes;
    // Clients coalesce only with direct writes: their Close then leaves in a write of its own,
    // after everything queued (see do_close), and Beast's frames keep their order.
    if (role_ == beast::role_type::server || direct_) ws_.next_layer().set_coalescing(true);
    if (role_ == beast::role_type::server) ws_.next_layer().set_drop_pongs(!opts_.answer_pings);
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view payload) { on_control(kind, payload); });
    arm_ping();
    arm_idle();
    do_read();
}

template <class Layer>
void session<Layer>::do_read() {
    ws_.async_read(rbuf_, beast::bind_front_handler(&session::on_read, self()));
}

template <class Layer>
void session<Layer>::on_read(error_code ec, std::size_t) {
    if (ec) {
        close_info info;
        if (ec == websocket::error::closed) {
            const auto& r = ws_.reason();
            info.code = r.code == websocket::close_code::none ? 1005 : static_cast<int>(r.code);
            info.reason = std::string(r.reason.data(), r.reason.size());
            info.clean = true;
            info.by_peer = !close_sent_ || bad_close_code_;
        } else {
            info.error = ec;
            info.what = abort_what_.empty() ? ec.message() : abort_what_;
        }
        return finish(std::move(info));
    }
    last_activity_ = steady_clock::now();
    if (stats_.messages_in++ == 0) stats_.first_message = last_activity_;
    std::string payload = beast::buffers_to_string(rbuf_.data());
    stats_.bytes_in += payload.size();
    rbuf_.consume(rbuf_.size());
    if (events_) events_->on_message(std::move(payload), ws_.got_binary());
    if (finished_) return;
    if (read_paused_) read_parked_ = true;
    else do_read();
}

template <class Layer>
void session<Layer>::pause_reading() {
    if (read_paused_ || finished_) return;
    read_paused_ = true;
    // With coalescing, writes go out when the read loop next waits: it will not wait now.
    ws_.next_layer().set_read_paused(true);
}

template <class Layer>
void session<Layer>::hold_close_reply() {
    if (!direct_ || finished_) return;  // Beast's own writes would wait behind the held answer
    hold_close_ = true;
}

template <class Layer>
void session<Layer>::resume_reading() {
    if (!read_paused_) return;
    read_paused_ = false;
    ws_.next_layer().set_read_paused(false);
    if (read_parked_ && !finished_) {
        read_parked_ = false;
        do_read();
    }
}

template <class Layer>
void session<Layer>::send(std::string payload, bool binary) {
    if (finished_ || close_requested_) {
        ++stats_.dropped_messages;
        stats_.dropped_bytes += payload.size();
        return;
    }
    if (direct_) {
        const std::size_t queued = ws_.next_layer().buffered();
        if (queued > 0 && queued + payload.size() > opts_.send_queue_limit) {
            ++stats_.dropped_messages;
            stats_.dropped_bytes += payload.size();
            if (opts_.overflow == overflow_policy::close) return close(1008, "send queue limit exceeded");
            if (opts_.overflow == overflow_policy::drop) return want_writable();
        }
        ++stats_.messages_out;
        stats_.bytes_out += payload.size();
        ws_.next_layer().write_frame(binary, payload, role_ == beast::role_type::client);
        return;
    }
    if (queued_bytes_ + payload.size() > opts_.send_queue_limit && !queue_.empty()) {
        blocked_ = true;
        if (opts_.overflow == overflow_policy::drop) {
            ++stats_.dropped_messages;
            stats_.dropped_bytes += payload.size();
            return;
        }
        if (opts_.overflow == overflow_policy::close) {
            // Keep the message being written (its buffer is on the wire); drop the rest.
            while (queue_.size() > (writing_ ? 1u : 0u)) {
                queued_bytes_ -= queue_.back().payload.size();
                ++stats_.dropped_messages;
                stats_.dropped_bytes += queue_.back().payload.size();
                queue_.pop_back();
            }
            close(1008, "send queue limit exceeded");
            return;
        }
    }
    queued_bytes_ += payload.size();
    queue_.push_back({std::move(payload), binary});
    if (!writing_) do_write();
}

template <class Layer>
void session<Layer>::do_write() {
    if (queue_.empty()) {
        writing_ = false;
        if (close_requested_ && !close_sent_) do_close();
        return;
    }
    writing_ = true;
    ws_.binary(queue_.front().binary);
    ws_.async_write(net::buffer(queue_.front().payload), beast::bind_front_handler(&session::on_write, self()));
}

template <class Layer>
void session<Layer>::on_write(error_code ec, std::size_t) {
    if (ec) {
        // The read side sees the same failure and reports it; stop writing.
        writing_ = false;
        return;
    }
    ++stats_.messages_out;
    stats_.bytes_out += queue_.front().payload.size();
    queued_bytes_ -= queue_.front().payload.size();
    queue_.pop_front();
    if (blocked_ && queued_bytes_ <= opts_.send_queue_limit / 2 && !close_requested_) {
        blocked_ = false;
        if (events_) events_->on_writable();
    }
    do_write();
}

template <class Layer>
void session<Layer>::want_writable() {
    if (finished_ || close_requested_) return;
    if (direct_) {
        // The stream's buffer is the queue: ask it to call back once it has drained.
        if (ws_.next_layer().buffered() <= opts_.send_queue_limit / 2) {
            net::post(ws_.get_executor(), [self = self()] {
                if (!self->finished_ && self->events_) self->events_->on_writable();
            });
            return;
        }
        ws_.next_layer().notify_below(opts_.send_queue_limit / 2, [self = self()](error_code ec) {
            if (!ec && !self->finished_ && self->events_) self->events_->on_writable();
        });
        return;
    }
    if (queued_bytes_ <= opts_.send_queue_limit / 2 && !writing_) {
        // Already drained: answer on the next turn, never from inside the caller.
        net::post(ws_.get_executor(), [self = self()] {
            if (!self->finished_ && self->events_) self->events_->on_writable();
        });
        return;
    }
    blocked_ = true;
}

template <class Layer>
void session<Layer>::close(std::uint16_t code, std::string reason) {
    if (finished_ || close_requested_) return;
    close_requested_ = true;
    close_code_ = code;
    close_reason_ = std::move(reason);
    if (!writing_) do_close();
}

template <class Layer>
void session<Layer>::do_close() {
    if (direct_ && role_ == beast::role_type::client && !close_drained_) {
        // Let the queued messages leave before the Close, in writes of their own: some servers
        // stop answering a batch that arrives together with the client's Close.
        close_drained_ = true;
        ws_.next_layer().async_drain([self = self()](error_code) {
            if (!self->finished_) self->do_close();
        });
        return;
    }
    close_sent_ = true;
    ws_.next_layer().inject_and_seal(encode_close_frame(close_code_, close_reason_, role_ == beast::role_type::client),
                                     [self = self()](error_code ec) {
                                         if (ec) self->abort("could not send Close", ec);
                                     });
    if (hold_close_) ws_.next_layer().release_close_reply();
    close_timer_.expires_after(opts_.close_timeout);
    close_timer_.async_wait([self = self()](error_code ec) {
        if (ec || self->finished_) return;
        self->abort(fmt::format("no Close from peer within {}ms",
                                std::chrono::duration_cast<std::chrono::milliseconds>(self->opts_.close_timeout).count()),
                    net::error::timed_out);
    });
}

template <class Layer>
void session<Layer>::abort(std::string what, error_code ec) {
    if (finished_) return;
    if (abort_what_.empty()) abort_what_ = std::move(what);
    if (ec == net::error::timed_out) timed_out_ = true;
    if (hold_close_) ws_.next_layer().release_close_reply(net::error::operation_aborted);
    error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
}

template <class Layer>
void session<Layer>::ping(std::string payload) {
    if (finished_ || close_sent_ || ping_in_flight_) return;
    // An unanswered ping keeps its deadline: a new ping must not push the timeout further out.
    if (awaiting_pong_ && opts_.ping_timeout.count() > 0) return;
    if (payload.size() > 125) payload.resize(125);
    ping_in_flight_ = true;
    ping_payload_ = payload;
    ping_sent_ = steady_clock::now();
    awaiting_pong_ = true;
    ++stats_.pings_sent;
    ws_.async_ping(websocket::ping_data(payload.data(), payload.size()), [self = self()](error_code) {
        self->ping_in_flight_ = false;
    });
    if (opts_.ping_timeout.count() > 0) {
        pong_timer_.expires_after(opts_.ping_timeout);
        pong_timer_.async_wait([self = self()](error_code ec) {
            if (ec || self->finished_ || !self->awaiting_pong_) return;
            self->ping_timed_out_ = true;
            self->abort(fmt::format("no pong within {}ms",
                                    std::chrono::duration_cast<std::chrono::milliseconds>(self->opts_.ping_timeout).count()),
                        net::error::timed_out);
        });
    }
}

template <class Layer>
void session<Layer>::on_control(websocket::frame_type kind, beast::string_view payload) {
    last_activity_ = steady_clock::now();
    if (kind == websocket::frame_type::ping) {
        if (events_) events_->on_ping({payload.data(), payload.size()});
    } else if (kind == websocket::frame_type::close) {
        if (ws_.reason().code >= 5000 && !close_sent_) {
            // RFC 6455 7.4 allows codes up to 4999, Beast any above 2999: fail the connection
            // with 1002 ourselves. Beast's echo of the code that follows is swallowed by the layer.
            bad_close_code_ = true;
            close_requested_ = close_sent_ = true;
            close_code_ = 1002;
            close_reason_ = "invalid close code";
            ws_.next_layer().inject_and_seal(encode_close_frame(close_code_, close_reason_, role_ == beast::role_type::client),
                                             [](error_code) {});
            return;
        }
        if (hold_close_ && events_) {
            // Beast writes its answer right after this call: hold that one frame only (a Close
            // Beast sends on its own, e.g. 1009 for a message too big, must go out at once).
            ws_.next_layer().set_hold_close_reply(true);
            const auto& r = ws_.reason();
            events_->on_close_received(r.code == websocket::close_code::none ? 1005 : static_cast<int>(r.code),
                                       {payload.data(), payload.size()});
        }
    } else if (kind == websocket::frame_type::pong) {
        ++stats_.pongs_received;
        std::chrono::nanoseconds rtt{0};
        if (awaiting_pong_ && std::string_view(payload.data(), payload.size()) == ping_payload_) {
            awaiting_pong_ = false;
            pong_timer_.cancel();
            rtt = last_activity_ - ping_sent_;
            stats_.rtt_last = rtt;
            stats_.rtt_sum += rtt;
            if (stats_.rtt_min.count() == 0 || rtt < stats_.rtt_min) stats_.rtt_min = rtt;
            if (rtt > stats_.rtt_max) stats_.rtt_max = rtt;
        }
        if (events_) events_->on_pong({payload.data(), payload.size()}, rtt);
    }
}

template <class Layer>
void session<Layer>::arm_ping() {
    if (opts_.ping_interval.count() <= 0) return;
    ping_timer_.expires_after(opts_.ping_interval);
    ping_timer_.async_wait([self = self()](error_code ec) {
        if (ec || self->finished_) return;
        self->ping(fmt::format("{}", self->stats_.pings_sent + 1));
        self->arm_ping();
    });
}

template <class Layer>
void session<Layer>::arm_idle() {
    if (opts_.idle_timeout.count() <= 0) return;
    idle_timer_.expires_at(last_activity_ + opts_.idle_timeout);
    idle_timer_.async_wait([self = self()](error_code ec) {
        if (ec || self->finished_ || self->close_requested_) return;
        if (steady_clock::now() - self->last_activity_ >= self->opts_.idle_timeout) {
            self->timed_out_ = true;
            self->abort_what_ = "idle timeout";
            self->close(1001, "idle timeout");
            return;
        }
        self->arm_idle();
    });
}

template <class Layer>
void session<Layer>::finish(close_info info) {
    if (finished_) return;
    finished_ = true;
    error_code ignored;
    ping_timer_.cancel();
    idle_timer_.cancel();
    close_timer_.cancel();
    pong_timer_.cancel();
    if (close_sent_) {
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
