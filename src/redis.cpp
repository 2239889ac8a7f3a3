#include "redis.hpp"

#include <charconv>

#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

namespace wsx {

std::optional<redis_url> parse_redis_url(const std::string& text, std::string& error) {
    auto u = boost::urls::parse_uri(text);
    if (!u) {
        error = "not a URL (use redis://[user:pass@]host:port[/db])";
        return std::nullopt;
    }
    if (u->scheme() != "redis") {
        error = "only redis:// URLs are supported (use redis://[user:pass@]host:port[/db])";
        return std::nullopt;
    }
    redis_url r;
    if (!u->encoded_host().empty()) r.host = std::string(u->host_address());
    if (u->has_port()) {
        unsigned p = 0;
        auto ps = u->port();
        auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), p);
        if (ec != std::errc() || ptr != ps.data() + ps.size() || p == 0 || p > 65535) {
            error = fmt::format("bad port '{}'", std::string(ps));
            return std::nullopt;
        }
        r.port = static_cast<std::uint16_t>(p);
    }
    if (u->has_userinfo()) {
        r.user = std::string(u->user());
        r.password = std::string(u->password());
        if (!u->has_password()) {
            // redis://secret@host: a password alone, as redis-cli reads it.
            r.password = r.user;
            r.user.clear();
        }
    }
    std::string path(u->path());
    if (!path.empty() && path != "/") {
        std::string_view db(path);
        db.remove_prefix(1);
        int n = 0;
        auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), n);
        if (ec != std::errc() || ptr != db.data() + db.size() || n < 0) {
            error = fmt::format("bad database number '{}'", std::string(db));
            return std::nullopt;
        }
        r.db = n;
    }
    return r;
}

namespace {
redis_value convert(const redisReply* r) {
    redis_value v;
    switch (r->type) {
    case REDIS_REPLY_STRING:
        v.type = redis_value::kind::string;
        v.str.assign(r->str, r->len);
        break;
    case REDIS_REPLY_STATUS:
        v.type = redis_value::kind::status;
        v.str.assign(r->str, r->len);
        break;
    case REDIS_REPLY_ERROR:
        v.type = redis_value::kind::error;
        v.str.assign(r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        v.type = redis_value::kind::integer;
        v.integer = r->integer;
        break;
    case REDIS_REPLY_ARRAY:
        v.type = redis_value::kind::array;
        v.elements.reserve(r->elements);
        for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(convert(r->element[i]));
        break;
    default:
        break;
    }
    return v;
}
}  // namespace

/// The descriptor hiredis reads and writes, watched by the reactor. hiredis owns the fd (it
/// closes it), so the descriptor is released, never closed, when hiredis cleans up.
struct redis_connection::io_state : std::enable_shared_from_this<io_state> {
    io_state(net::io_context& ioc, redisAsyncContext* c) : sd(ioc), ac(c) {}
    net::posix::stream_descriptor sd;
    redisAsyncContext* ac;
    bool reading = false, writing = false, read_armed = false, write_armed = false, dead = false;

    void arm_read() {
        if (read_armed || dead) return;
        read_armed = true;
        sd.async_wait(net::posix::stream_descriptor::wait_read, [self = shared_from_this()](error_code ec) {
            self->read_armed = false;
            if (ec || self->dead || !self->reading) return;
            redisAsyncHandleRead(self->ac);  // may free the context (cleanup sets dead)
            if (!self->dead && self->reading) self->arm_read();
        });
    }
    void arm_write() {
        if (write_armed || dead) return;
        write_armed = true;
        sd.async_wait(net::posix::stream_descriptor::wait_write, [self = shared_from_this()](error_code ec) {
            self->write_armed = false;
            if (ec || self->dead || !self->writing) return;
            redisAsyncHandleWrite(self->ac);
            if (!self->dead && self->writing) self->arm_write();
        });
    }
    static io_state* of(void* p) { return static_cast<io_state*>(p); }
};

redis_connection::redis_connection(net::io_context& ioc, redis_url url, std::string name)
    : ioc_(ioc), url_(std::move(url)), name_(std::move(name)), retry_timer_(ioc), watchdog_(ioc) {}

redis_connection::~redis_connection() { stop(); }

void redis_connection::start() {
    stopped_ = false;
    connect();
    arm_watchdog();
}

void redis_connection::arm_watchdog() {
    if (timeout_.count() <= 0) return;
    watchdog_.expires_after(timeout_ / 4);
    watchdog_.async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        if (self->ac_ && self->up_ && self->pending_ > 0 && std::chrono::steady_clock::now() - self->progress_ > self->timeout_) {
            // Freeing the context answers every pending command with nullopt and reports the
            // disconnect; the usual reconnect follows.
            self->timed_out_ = true;
            self->last_error_ = fmt::format("no reply within {}ms", self->timeout_.count());
            redisAsyncFree(self->ac_);
        }
        self->arm_watchdog();
    });
}

void redis_connection::stop() {
    if (stopped_ && !ac_) return;
    stopped_ = true;
    retry_timer_.cancel();
    watchdog_.cancel();
    on_message = nullptr;
    on_up = nullptr;
    on_down = nullptr;
    up_ = false;
    if (ac_) {
        auto* ac = ac_;
        ac_ = nullptr;
        ac->data = nullptr;
        redisAsyncFree(ac);
    }
}

void redis_connection::connect() {
    if (stopped_) return;
    redisAsyncContext* ac = redisAsyncConnect(url_.host.c_str(), url_.port);
    if (!ac) return schedule_reconnect();
    if (ac->err) {
        last_error_ = ac->errstr;
        redisAsyncFree(ac);
        return schedule_reconnect();
    }
    ac_ = ac;
    ac->data = this;
    io_ = std::make_shared<io_state>(ioc_, ac);
    error_code ec;
    io_->sd.assign(ac->c.fd, ec);
    if (ec) {
        last_error_ = ec.message();
        io_->dead = true;
        ac_ = nullptr;
        ac->data = nullptr;
        redisAsyncFree(ac);
        return schedule_reconnect();
    }
    ac->ev.data = io_.get();
    ac->ev.addRead = [](void* p) {
        auto* s = io_state::of(p);
        s->reading = true;
        s->arm_read();
    };
    ac->ev.delRead = [](void* p) { io_state::of(p)->reading = false; };
    ac->ev.addWrite = [](void* p) {
        auto* s = io_state::of(p);
        s->writing = true;
        s->arm_write();
    };
    ac->ev.delWrite = [](void* p) { io_state::of(p)->writing = false; };
    ac->ev.cleanup = [](void* p) {
        auto* s = io_state::of(p);
        s->dead = true;
        s->reading = s->writing = false;
        s->sd.release();  // hiredis closes the fd itself
    };
    redisAsyncSetConnectCallback(ac, &redis_connection::on_connect);
    redisAsyncSetDisconnectCallback(ac, &redis_connection::on_disconnect);
}

void redis_connection::schedule_reconnect() {
    if (stopped_) return;
    retry_timer_.expires_after(backoff_);
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, std::chrono::seconds(2));
    retry_timer_.async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        ++self->reconnects_;
        self->connect();
    });
}

void redis_connection::on_connect(const redisAsyncContext* ac, int status) {
    if (auto* self = static_cast<redis_connection*>(ac->data)) self->connected_cb(status);
}

void redis_connection::on_disconnect(const redisAsyncContext* ac, int status) {
    if (auto* self = static_cast<redis_connection*>(ac->data)) self->disconnected_cb(status);
}

void redis_connection::connected_cb(int status) {
    if (status != REDIS_OK) {
        // hiredis frees the context right after this call; no disconnect callback follows.
        if (ac_ && ac_->errstr) last_error_ = ac_->errstr;
        if (ac_) ac_->data = nullptr;
        ac_ = nullptr;
        return schedule_reconnect();
    }
    up_ = true;
    ever_up_ = true;
    pending_ = 0;
    backoff_ = std::chrono::milliseconds(100);
    if (!url_.password.empty()) {
        if (url_.user.empty())
            command({"AUTH", url_.password}, [this](std::optional<redis_value> v) {
                if (v && v->is_error()) last_error_ = "AUTH: " + v->str;
            });
        else
            command({"AUTH", url_.user, url_.password});
    }
    if (url_.db != 0) command({"SELECT", std::to_string(url_.db)});
    if (!channels_.empty()) {
        std::vector<const char*> argv{"SUBSCRIBE"};
        std::vector<std::size_t> lens{9};
        for (const auto& c : channels_) {
            argv.push_back(c.data());
            lens.push_back(c.size());
        }
        redisAsyncCommandArgv(ac_, &redis_connection::on_sub_reply, nullptr, static_cast<int>(argv.size()), argv.data(), lens.data());
    }
    if (on_up) on_up();
}

void redis_connection::disconnected_cb(int status) {
    std::string why = timed_out_ ? last_error_
                                 : status == REDIS_OK ? "connection closed" : (ac_ && ac_->errstr ? ac_->errstr : "connection lost");
    timed_out_ = false;
    pending_ = 0;
    if (ac_) ac_->data = nullptr;
    ac_ = nullptr;
    up_ = false;
    if (stopped_) return;
    // hiredis reports a disconnect only for a connection that was established.
    if (on_down) on_down(why);
    schedule_reconnect();
}

void redis_connection::command(const std::vector<std::string>& args, reply_handler done) {
    if (!ac_ || !up_) {
        if (done) net::post(ioc_, [done = std::move(done)] { done(std::nullopt); });
        return;
    }
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* h = done ? new reply_handler(std::move(done)) : nullptr;
    if (redisAsyncCommandArgv(ac_, &redis_connection::on_reply, h, static_cast<int>(argv.size()), argv.data(), lens.data()) ==
        REDIS_OK) {
        if (pending_++ == 0) progress_ = std::chrono::steady_clock::now();
    } else {
        if (h) {
            net::post(ioc_, [h] {
                (*h)(std::nullopt);
                delete h;
            });
        }
    }
}

void redis_connection::on_reply(redisAsyncContext* ac, void* reply, void* privdata) {
    // A null reply means the connection is being torn down: stop sending before the handler
    // runs, so that a handler that retries does not queue onto the dying context.
    if (auto* self = static_cast<redis_connection*>(ac->data)) {
        if (!reply) self->up_ = false;
        if (self->pending_ > 0) --self->pending_;
        self->progress_ = std::chrono::steady_clock::now();
    }
    auto* h = static_cast<reply_handler*>(privdata);
    if (!h) return;
    if (reply)
        (*h)(convert(static_cast<redisReply*>(reply)));
    else
        (*h)(std::nullopt);
    delete h;
}

void redis_connection::on_sub_reply(redisAsyncContext* ac, void* reply, void*) {
    auto* self = static_cast<redis_connection*>(ac->data);
    if (!self || !reply) return;
    auto* r = static_cast<redisReply*>(reply);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
    if (r->element[0]->type != REDIS_REPLY_STRING || std::string_view(r->element[0]->str, r->element[0]->len) != "message")
        return;
    if (!self->on_message) return;
    std::string channel(r->element[1]->str, r->element[1]->len);
    std::string payload(r->element[2]->str, r->element[2]->len);
    self->on_message(channel, std::move(payload));
}

void redis_connection::subscribe(std::string channel) {
    channels_.push_back(std::move(channel));
    if (ac_ && up_) {
        const char* argv[2] = {"SUBSCRIBE", channels_.back().data()};
        std::size_t lens[2] = {9, channels_.back().size()};
        redisAsyncCommandArgv(ac_, &redis_connection::on_sub_reply, nullptr, 2, argv, lens);
    }
}

}  // namespace wsx
