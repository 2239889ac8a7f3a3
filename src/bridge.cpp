#include "bridge.hpp"

#include <deque>

#include <fmt/format.h>

namespace wsx {

namespace {

enum kind_t { k_message = 0, k_ping = 1, k_close = 2, k_pong = 3 };

/// Close codes that may not appear in a Close frame stand for "no code" or "no Close at all".
bool sendable(int code) { return code >= 1000 && code < 5000 && code != 1005 && code != 1006 && code != 1015; }

/// At most `max` bytes of `s`, cut at a character boundary (a Close reason must be valid UTF-8).
std::string utf8_prefix(std::string_view s, std::size_t max) {
    if (s.size() <= max) return std::string(s);
    s = s.substr(0, max);
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xc0) == 0x80) s.remove_suffix(1);
    if (!s.empty() && static_cast<unsigned char>(s.back()) >= 0xc0) s.remove_suffix(1);
    return std::string(s);
}

}  // namespace

// ----------------------------------------------------------------------------------------
// ws <-> ws

struct ws_ws_bridge::side final : channel_events {
    side(std::shared_ptr<ws_ws_bridge> b, bool client) : b(std::move(b)), client(client) {}
    void on_message(std::string&& payload, bool binary) override { b->message(client, payload, &payload, binary); }
    void on_message_view(std::string_view payload, bool binary) override { b->message(client, payload, nullptr, binary); }
    void on_ping(std::string_view payload) override { b->ping(client, payload); }
    void on_pong(std::string_view payload, std::chrono::nanoseconds rtt) override { b->pong(client, payload, rtt); }
    void on_writable() override { b->writable(client); }
    void on_close_received(int code, std::string_view reason) override {
        if (client) b->close_received(code, reason);
    }
    void on_close(const close_info& info) override {
        auto keep = std::move(b);
        keep->closed(client, info);
    }
    std::shared_ptr<ws_ws_bridge> b;
    bool client;
};

struct ws_ws_bridge::delayed {
    steady_clock::time_point due;
    int kind;
    std::string payload;
    bool binary;
    std::uint16_t code;
};

struct ws_ws_bridge::delay_line {
    explicit delay_line(const net::any_io_executor& ex) : timer(ex) {}
    std::deque<delayed> items;
    net::steady_timer timer;
    bool armed = false;
};

ws_ws_bridge::ws_ws_bridge(std::shared_ptr<ws_session> client, std::shared_ptr<ws_session> upstream, bridge_config cfg)
    : client_(std::move(client)), upstream_(std::move(upstream)), cfg_(std::move(cfg)) {}

ws_ws_bridge::~ws_ws_bridge() = default;

std::shared_ptr<channel_events> ws_ws_bridge::client_handler() { return std::make_shared<side>(shared_from_this(), true); }

void ws_ws_bridge::start() {
    started_ = true;
    client_->hold_close_reply();
    if (client_closing_ && !client_done_) {
        upstream_->start(std::make_shared<side>(shared_from_this(), false));
        deliver(false, k_close, client_close_reason_, false, static_cast<std::uint16_t>(client_close_code_));
        return;
    }
    if (client_done_) {
        // The client left before the upstream was read from: let the upstream know.
        upstream_->start(std::make_shared<side>(shared_from_this(), false));
        if (sendable(client_close_.code)) upstream_->close(static_cast<std::uint16_t>(client_close_.code), client_close_.reason);
        else upstream_->abort("client left");
        return;
    }
    upstream_->start(std::make_shared<side>(shared_from_this(), false));
    if (cfg_.fault.close_after_time.count() > 0) {
        close_timer_ = std::make_unique<net::steady_timer>(client_->get_executor(), cfg_.fault.close_after_time);
        close_timer_->async_wait([self = shared_from_this()](error_code ec) {
            if (!ec) self->close_client_for_fault("fault: close after time");
        });
    }
}

void ws_ws_bridge::close_client_for_fault(const char* why) {
    if (client_done_) return;
    client_->close(cfg_.fault.close_code, why);
    if (!upstream_done_) upstream_->close(1001, "client closed by the proxy");
}

void ws_ws_bridge::message(bool from_client, std::string_view payload, std::string* owned, bool binary) {
    if (cfg_.backend) (from_client ? cfg_.backend->bytes_up : cfg_.backend->bytes_down) += payload.size();
    const auto& f = cfg_.fault;
    if (f.close_after_messages > 0 && ++messages_ > f.close_after_messages) return close_client_for_fault("fault: close after messages");
    if (f.drop > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < f.drop) return;
    // The tap shows what is passed on: a message dropped on purpose never reached the other side.
    if (cfg_.tap)
        cfg_.tap->write(cfg_.id, from_client ? tap_direction::to_upstream : tap_direction::to_client, binary ? "binary" : "text",
                        payload);
    pass_on(!from_client, payload, owned, binary);
    if (f.close_after_messages > 0 && messages_ == f.close_after_messages) close_client_for_fault("fault: close after messages");
}

// Pings and pongs pass through as they came: neither session answers pings itself, so the
// far end answers (through any delay fault), and unsolicited pongs reach the other side too.
void ws_ws_bridge::ping(bool from_client, std::string_view payload) {
    // Stalled pongs: the client's pings vanish here (its session does not answer them either).
    if (from_client && cfg_.fault.stall_pongs) return;
    if (cfg_.tap)
        cfg_.tap->write(cfg_.id, from_client ? tap_direction::to_upstream : tap_direction::to_client, "ping", payload);
    deliver(!from_client, k_ping, std::string(payload), false, 0);
}

void ws_ws_bridge::pong(bool from_client, std::string_view payload, std::chrono::nanoseconds rtt) {
    // A pong that answered the proxy's own ping (--ping-interval) ends here.
    if (rtt.count() > 0) return;
    if (cfg_.tap)
        cfg_.tap->write(cfg_.id, from_client ? tap_direction::to_upstream : tap_direction::to_client, "pong", payload);
    deliver(!from_client, k_pong, std::string(payload), false, 0);
}

void ws_ws_bridge::closed(bool from_client, const close_info& info) {
    (from_client ? client_done_ : upstream_done_) = true;
    if (from_client) client_close_ = info;
    if (close_timer_) close_timer_->cancel();
    if (cfg_.tap && info.clean && !(from_client && client_closing_))
        cfg_.tap->write_close(cfg_.id, from_client ? tap_direction::to_upstream : tap_direction::to_client, info.code, info.reason);
    // A paused side must read again to see the closing handshake.
    if (from_client && upstream_paused_) upstream_->resume_reading(), upstream_paused_ = false;
    if (!from_client && client_paused_) client_->resume_reading(), client_paused_ = false;
    const bool other_done = from_client ? upstream_done_ : client_done_;
    if (!other_done && (from_client ? started_ : true)) {
        if (from_client && client_closing_) {
            // Already passed on when it arrived.
        } else if (info.clean && sendable(info.code)) {
            deliver(!from_client, k_close, info.reason, false, static_cast<std::uint16_t>(info.code));
        } else if (info.clean) {
            deliver(!from_client, k_close, {}, false, 0);  // a Close without a code
        } else if (from_client) {
            upstream_->abort("client connection lost");
        } else {
            // The upstream failed (the proxy closed it for a protocol error, or it was lost): the
            // client gets a Close that says so (1014, bad gateway), not a dropped connection.
            const std::string why = info.sent_code ? fmt::format("{} (sent it {})", info.what, info.sent_code)
                                                   : info.what.empty() ? std::string("connection lost")
                                                                       : "connection lost: " + info.what;
            if (cfg_.log) cfg_.log(fmt::format("upstream failed: {}; closing the client with 1014", why));
            client_->close(1014, utf8_prefix("upstream failed: " + why, 123));
        }
    }
    if (client_done_ && (upstream_done_ || !started_) && !ended_) {
        ended_ = true;
        if (to_client_line_) to_client_line_->timer.cancel();
        if (to_upstream_line_) to_upstream_line_->timer.cancel();
        if (cfg_.on_end) cfg_.on_end(client_close_);
    }
}

void ws_ws_bridge::close_received(int code, std::string_view reason) {
    if (client_closing_) return;
    client_closing_ = true;
    // 1005 (a Close without a code) is passed on as such: code 0 sends no code.
    client_close_code_ = sendable(code) ? code : 0;
    client_close_reason_ = std::string(reason);
    if (cfg_.tap) cfg_.tap->write_close(cfg_.id, tap_direction::to_upstream, code, reason);
    if (client_paused_) {
        client_paused_ = false;
        client_->resume_reading();
    }
    if (started_ && !upstream_done_)
        deliver(false, k_close, client_close_reason_, false, static_cast<std::uint16_t>(client_close_code_));
}

void ws_ws_bridge::writable(bool client_side) {
    // The side that drained lets the other side's reading resume.
    if (client_side && upstream_paused_) {
        upstream_paused_ = false;
        upstream_->resume_reading();
    } else if (!client_side && client_paused_) {
        client_paused_ = false;
        client_->resume_reading();
    }
}

void ws_ws_bridge::deliver(bool to_client, int kind, std::string payload, bool binary, std::uint16_t code) {
    const auto& f = cfg_.fault;
    if (f.delay.count() > 0 || f.jitter.count() > 0) {
        auto& line = to_client ? to_client_line_ : to_upstream_line_;
        if (!line) line = std::make_unique<delay_line>(client_->get_executor());
        auto due = steady_clock::now() + f.delay;
        if (f.jitter.count() > 0)
            due += std::chrono::nanoseconds(std::uniform_int_distribution<std::int64_t>(0, f.jitter.count())(rng_));
        // Order is kept: nothing overtakes a message delayed longer by its jitter.
        if (!line->items.empty() && line->items.back().due > due) due = line->items.back().due;
        line->items.push_back({due, kind, std::move(payload), binary, code});
        if (!line->armed) pump_delayed(to_client);
        return;
    }
    auto& to = to_client ? client_ : upstream_;
    switch (kind) {
    case k_message:
        to->send(std::move(payload), binary);
        after_send(to_client);
        break;
    case k_ping:
    case k_pong:
        to->send_control(kind == k_ping, payload);
        break;
    case k_close:
        to->close(code, std::move(payload));
        break;
    }
}

// A message on its way without a copy, unless it must wait (delay fault).
void ws_ws_bridge::pass_on(bool to_client, std::string_view payload, std::string* owned, bool binary) {
    const auto& f = cfg_.fault;
    if (f.delay.count() > 0 || f.jitter.count() > 0)
        return deliver(to_client, k_message, owned ? std::move(*owned) : std::string(payload), binary, 0);
    auto& to = to_client ? client_ : upstream_;
    if (owned) to->send(std::move(*owned), binary);
    else to->send_view(payload, binary);
    after_send(to_client);
}

// Backpressure: a side whose queue grew past the limit stops the other side's reading.
void ws_ws_bridge::after_send(bool to_client) {
    auto& to = to_client ? client_ : upstream_;
    auto& from = to_client ? upstream_ : client_;
    if (to->queued_bytes() > cfg_.pause_bytes) {
        bool& paused = to_client ? upstream_paused_ : client_paused_;
        if (!paused) {
            paused = true;
            from->pause_reading();
            to->want_writable();
        }
    }
}

void ws_ws_bridge::pump_delayed(bool to_client) {
    auto& line = *(to_client ? to_client_line_ : to_upstream_line_);
    const auto now = steady_clock::now();
    while (!line.items.empty() && line.items.front().due <= now) {
        auto item = std::move(line.items.front());
        line.items.pop_front();
        auto& to = to_client ? client_ : upstream_;
        if (item.kind == k_message) to->send(std::move(item.payload), item.binary);
        else if (item.kind == k_ping || item.kind == k_pong) to->send_control(item.kind == k_ping, item.payload);
        else to->close(item.code, std::move(item.payload));
    }
    line.armed = !line.items.empty();
    if (!line.armed) return;
    line.timer.expires_at(line.items.front().due);
    line.timer.async_wait([self = shared_from_this(), to_client](error_code ec) {
        if (!ec && !self->ended_) self->pump_delayed(to_client);
    });
}

// ----------------------------------------------------------------------------------------
// ws <-> tcp

struct ws_tcp_bridge::side final : channel_events {
    explicit side(std::shared_ptr<ws_tcp_bridge> b) : b(std::move(b)) {}
    void on_message(std::string&& payload, bool binary) override { b->ws_message(std::move(payload), binary); }
    void on_ping(std::string_view payload) override { b->ws_ping(payload); }
    void on_writable() override { b->ws_writable(); }
    void on_close_received(int code, std::string_view) override { b->ws_close_received(code); }
    void on_close(const close_info& info) override {
        auto keep = std::move(b);
        keep->ws_closed(info);
    }
    std::shared_ptr<ws_tcp_bridge> b;
};

ws_tcp_bridge::ws_tcp_bridge(std::shared_ptr<ws_session> ws, tcp::socket sock, bool ws_is_client, bridge_config cfg)
    : ws_(std::move(ws)), sock_(std::move(sock)), ws_is_client_(ws_is_client), cfg_(std::move(cfg)), rbuf_(64 * 1024) {
    error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
}

std::shared_ptr<channel_events> ws_tcp_bridge::ws_handler() { return std::make_shared<side>(shared_from_this()); }

void ws_tcp_bridge::start() {
    if (ws_done_) {
        tcp_finished();
        return;
    }
    // websockify: the client's Close is answered once the TCP peer has answered our half-close
    // with its EOF, so that what it sends meanwhile still reaches the client.
    if (ws_is_client_) ws_->hold_close_reply();
    do_tcp_read();
}

static tap_direction ws_dir(bool ws_is_client, bool from_ws) {
    return from_ws == ws_is_client ? tap_direction::to_upstream : tap_direction::to_client;
}

void ws_tcp_bridge::ws_message(std::string&& payload, bool binary) {
    if (cfg_.backend) (ws_is_client_ ? cfg_.backend->bytes_up : cfg_.backend->bytes_down) += payload.size();
    if (cfg_.tap) cfg_.tap->write(cfg_.id, ws_dir(ws_is_client_, true), binary ? "binary" : "text", payload);
    if (tcp_closed_ || payload.empty()) return;
    wqueued_ += payload.size();
    wqueue_.push_back(std::move(payload));
    if (wqueued_ > cfg_.pause_bytes && !ws_paused_) {
        ws_paused_ = true;
        ws_->pause_reading();
    }
    if (!writing_) do_tcp_write();
}

// TCP has no pings to pass them on to: the proxy answers them.
void ws_tcp_bridge::ws_ping(std::string_view payload) {
    if (cfg_.answer_pings) ws_->send_control(false, payload);
}

void ws_tcp_bridge::do_tcp_write() {
    if (wqueue_.empty()) {
        writing_ = false;
        if ((ws_done_ || ws_closing_) && !tcp_closed_) {
            // Everything the WebSocket side sent is out: end the TCP stream too.
            if (!tcp_shut_) {
                tcp_shut_ = true;
                error_code ec;
                sock_.shutdown(tcp::socket::shutdown_send, ec);
            }
            // A held Close keeps the socket open for the TCP peer's last bytes, up to its EOF.
            if (ws_done_ || tcp_eof_) tcp_finished();
        }
        return;
    }
    writing_ = true;
    net::async_write(sock_, net::buffer(wqueue_.front()), [self = shared_from_this()](error_code ec, std::size_t) {
        // Closed meanwhile (its queue may be emptied already, even when this write got through).
        if (ec || self->tcp_closed_) {
            self->writing_ = false;
            self->wqueue_.clear();
            self->wqueued_ = 0;
            self->tcp_finished();
            return;
        }
        self->wqueued_ -= self->wqueue_.front().size();
        self->wqueue_.pop_front();
        if (self->ws_paused_ && self->wqueued_ <= self->cfg_.pause_bytes / 2) {
            self->ws_paused_ = false;
            self->ws_->resume_reading();
        }
        self->do_tcp_write();
    });
}

void ws_tcp_bridge::do_tcp_read() {
    if (tcp_closed_ || tcp_eof_) return;
    reading_ = true;
    sock_.async_read_some(net::buffer(rbuf_), [self = shared_from_this()](error_code ec, std::size_t n) {
        self->reading_ = false;
        if (ec) {
            if (ec == net::error::operation_aborted) return;
            self->tcp_eof_ = true;
            if (self->ws_closing_ && !self->ws_done_) {
                // The TCP peer's answer to our half-close (or its end): all it sent is passed
                // on, the client's Close is answered after it, TCP closes once our writes are out.
                self->ws_->close(static_cast<std::uint16_t>(self->ws_close_code_), "");
                if (!self->writing_) self->do_tcp_write();
            } else if (!self->ws_done_) {
                // The TCP peer finished (or failed): close the WebSocket after what is queued.
                if (ec == net::error::eof) self->ws_->close(1000, "");
                else self->ws_->abort("tcp connection lost", ec);
            } else if (!self->writing_) {
                self->tcp_finished();
            }
            return;
        }
        std::string chunk(self->rbuf_.data(), n);
        if (self->cfg_.backend) (self->ws_is_client_ ? self->cfg_.backend->bytes_down : self->cfg_.backend->bytes_up) += n;
        if (self->cfg_.tap) self->cfg_.tap->write(self->cfg_.id, ws_dir(self->ws_is_client_, false), "binary", chunk);
        if (self->ws_done_) return;
        self->ws_->send(std::move(chunk), true);
        if (self->ws_->queued_bytes() > self->cfg_.pause_bytes) {
            self->read_paused_ = true;
            self->ws_->want_writable();
            return;
        }
        self->do_tcp_read();
    });
}

void ws_tcp_bridge::ws_writable() {
    if (read_paused_) {
        read_paused_ = false;
        do_tcp_read();
    }
}

// The client's Close, held: half-close TCP after what is queued and keep passing on what the
// TCP peer sends until its EOF; the close timeout bounds the wait.
void ws_tcp_bridge::ws_close_received(int code) {
    if (ws_closing_ || ws_done_) return;
    ws_closing_ = true;
    // RFC 6455 5.5.1: the answer echoes the code (1005, none, is answered without one).
    ws_close_code_ = sendable(code) ? code : 0;
    if (ws_paused_) {
        ws_paused_ = false;
        ws_->resume_reading();
    }
    // Also bounds a TCP peer that stops reading what is still queued for it.
    close_timer_ = std::make_unique<net::steady_timer>(ws_->get_executor(), cfg_.close_timeout);
    close_timer_->async_wait([self = shared_from_this()](error_code ec) {
        if (ec || self->ended_) return;
        // No EOF from the TCP peer in time: answer the client now and drop the TCP connection.
        self->tcp_finished();
    });
    // The TCP side ended first: its Close is already on its way (or the answer goes now).
    if (tcp_eof_ || tcp_closed_) ws_->close(static_cast<std::uint16_t>(ws_close_code_), "");
    if (!writing_) do_tcp_write();
}

void ws_tcp_bridge::ws_closed(const close_info& info) {
    ws_done_ = true;
    ws_close_ = info;
    if (cfg_.tap && (info.clean || info.by_peer)) cfg_.tap->write_close(cfg_.id, ws_dir(ws_is_client_, true), info.code, info.reason);
    if (!info.clean) {
        // Lost, not closed: drop the TCP side too (a write under way empties the queue when it ends).
        if (!writing_) {
            wqueue_.clear();
            wqueued_ = 0;
        }
        tcp_finished();
        return;
    }
    if (!writing_) do_tcp_write();  // closes the TCP side once the queue is empty
}

void ws_tcp_bridge::tcp_finished() {
    if (!tcp_closed_) {
        tcp_closed_ = true;
        error_code ec;
        sock_.close(ec);
        if (!ws_done_) ws_->close(static_cast<std::uint16_t>(ws_closing_ ? ws_close_code_ : 1000), "");
    }
    maybe_end();
}

void ws_tcp_bridge::maybe_end() {
    if (ended_ || !ws_done_ || !tcp_closed_) return;
    ended_ = true;
    if (close_timer_) close_timer_->cancel();
    if (cfg_.on_end) cfg_.on_end(ws_close_);
}

}  // namespace wsx
