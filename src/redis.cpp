#include "redis.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <fstream>

#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "one_line.hpp"
#include "tls.hpp"

namespace wsx {

std::optional<redis_url> parse_redis_url(const std::string& text, std::string& error) {
    constexpr const char* form = "redis://[user:pass@]host:port[/db], or rediss:// for TLS";
    auto u = boost::urls::parse_uri(text);
    if (!u) {
        error = fmt::format("not a URL (use {})", form);
        return std::nullopt;
    }
    if (u->scheme() != "redis" && u->scheme() != "rediss") {
        error = fmt::format("only redis:// and rediss:// URLs are supported (use {})", form);
        return std::nullopt;
    }
    redis_url r;
    r.tls = u->scheme() == "rediss";
    if (!u->encoded_host().empty()) r.host = std::string(u->host_address());
    if (u->has_port()) {
        unsigned p = 0;
        auto ps = u->port();
        auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), p);
        if (ec != std::errc() || ptr != ps.data() + ps.size() || p == 0 || p > 65535) {
            error = fmt::format("bad port '{}'", escape_one_line(ps));
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
            r.name_only = true;
        }
    }
    std::string path(u->path());
    if (!path.empty() && path != "/") {
        std::string_view db(path);
        db.remove_prefix(1);
        int n = 0;
        auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), n);
        if (ec != std::errc() || ptr != db.data() + db.size() || n < 0) {
            error = fmt::format("bad database number '{}'", escape_one_line(db));
            return std::nullopt;
        }
        r.db = n;
    }
    return r;
}

void use_redis_password(redis_url& url, std::string password) {
    if (url.name_only) {
        url.user = std::move(url.password);
        url.name_only = false;
    } else if (!url.password.empty()) {
        return;
    }
    url.password = std::move(password);
}

namespace {
bool readable(const std::string& path, std::string_view option, std::string& error) {
    std::ifstream f(path);
    if (f) return true;
    error = fmt::format("{} '{}': cannot read the file ({})", option, path, std::strerror(errno));
    return false;
}

bool loaded(const error_code& ec, std::string_view option, const std::string& path, std::string& error) {
    if (!ec) return true;
    error = fmt::format("{} '{}': not a usable PEM file ({})", option, path, describe_tls_error(ec));
    return false;
}
}  // namespace

std::shared_ptr<ssl::context> make_redis_tls(const redis_url& url, std::string& error) {
    std::shared_ptr<ssl::context> ctx;
    try {
        // The shared client defaults (verification on, the system store, SSLKEYLOGFILE).
        ctx = make_client_tls({});
    } catch (const std::exception& e) {
        error = e.what();
        return nullptr;
    }
    error_code ec;
    if (!url.cacert.empty()) {
        if (!readable(url.cacert, "--redis-cacert", error)) return nullptr;
        // This bundle alone: a fresh store drops the system's CAs.
        SSL_CTX_set_cert_store(ctx->native_handle(), X509_STORE_new());
        ctx->load_verify_file(url.cacert, ec);
        if (!loaded(ec, "--redis-cacert", url.cacert, error)) return nullptr;
    }
    if (!url.cert.empty() || !url.key.empty()) {
        if (url.cert.empty() || url.key.empty()) {
            error = "--redis-cert and --redis-key go together: give both the client certificate and its key";
            return nullptr;
        }
        if (!readable(url.cert, "--redis-cert", error) || !readable(url.key, "--redis-key", error)) return nullptr;
        // The key first: a certificate loaded after a key that does not match it is refused by
        // the check below, in words, instead of by OpenSSL's "key values mismatch".
        ctx->use_private_key_file(url.key, ssl::context::pem, ec);
        if (!loaded(ec, "--redis-key", url.key, error)) return nullptr;
        ctx->use_certificate_chain_file(url.cert, ec);
        if (!loaded(ec, "--redis-cert", url.cert, error)) return nullptr;
        if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
            error = fmt::format("--redis-key '{}' does not match --redis-cert '{}'", url.key, url.cert);
            return nullptr;
        }
    }
    return ctx;
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

// A pub/sub delivery: ["message", channel, payload].
bool is_message(const redis_value& v) {
    return v.type == redis_value::kind::array && v.elements.size() >= 3 &&
           v.elements[0].type == redis_value::kind::string && v.elements[0].str == "message";
}
}  // namespace

std::string redis_encode(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* out = nullptr;
    const int n = redisFormatCommandArgv(&out, static_cast<int>(argv.size()), argv.data(), lens.data());
    if (n < 0 || !out) throw std::bad_alloc();
    std::string s(out, static_cast<std::size_t>(n));
    redisFreeCommand(out);
    return s;
}

redis_reply_reader::redis_reply_reader() : r_(redisReaderCreate()) {
    if (!r_) throw std::bad_alloc();
}

redis_reply_reader::~redis_reply_reader() { redisReaderFree(r_); }

void redis_reply_reader::feed(std::string_view bytes) {
    if (!bytes.empty()) redisReaderFeed(r_, bytes.data(), bytes.size());
}

redis_reply_reader::result redis_reply_reader::next(redis_value& out) {
    void* reply = nullptr;
    if (redisReaderGetReply(r_, &reply) != REDIS_OK) return result::error;
    if (!reply) return result::more;
    out = convert(static_cast<redisReply*>(reply));
    freeReplyObject(reply);
    return result::reply;
}

std::string redis_reply_reader::error() const { return r_->err ? std::string(r_->errstr) : std::string(); }

// The connection ----------------------------------------------------------------------------

struct redis_connection::link {
    link(net::io_context& ioc, ssl::context* tls) : resolver(ioc), in(std::make_unique<std::array<char, 64 * 1024>>()) {
        if (tls) tls_stream.emplace(ioc, *tls);
        else tcp_stream.emplace(ioc);
    }
    beast::tcp_stream& lowest() { return tls_stream ? beast::get_lowest_layer(*tls_stream) : *tcp_stream; }
    template <class F>
    void with_stream(F&& f) {
        if (tls_stream) f(*tls_stream);
        else f(*tcp_stream);
    }
    void close() {
        resolver.cancel();
        error_code ec;
        lowest().socket().close(ec);
    }

    // A command waiting for its reply. A SUBSCRIBE is answered by one confirmation per channel.
    struct pending {
        reply_handler done;
        std::size_t confirmations = 0;  // > 0: a SUBSCRIBE
    };

    tcp::resolver resolver;
    std::optional<beast::tcp_stream> tcp_stream;
    std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream;
    std::unique_ptr<std::array<char, 64 * 1024>> in;
    redis_reply_reader reader;
    std::deque<pending> queue;
    std::string out, sending;  // encoded commands not yet written / being written
    bool writing = false;
    bool answered = false;     // a reply arrived
    bool subscribed = false;   // a subscription was confirmed: "message" arrays are deliveries
    const char* phase = "resolve";  // what a connection attempt is waiting for
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

redis_connection::redis_connection(net::io_context& ioc, redis_url url, std::string name)
    : ioc_(ioc), url_(std::move(url)), name_(std::move(name)), retry_timer_(std::make_unique<net::steady_timer>(ioc)),
      watchdog_(std::make_unique<net::steady_timer>(ioc)) {}

redis_connection::~redis_connection() { stop(); }

void redis_connection::start() {
    stopped_ = false;
    connect();
    arm_watchdog();
}

void redis_connection::arm_watchdog() {
    if (timeout_.count() <= 0 || !watchdog_) return;
    watchdog_->expires_after(timeout_ / 4);
    watchdog_->async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        if (auto l = self->link_) {
            const auto now = std::chrono::steady_clock::now();
            if (!self->up_ && now - l->started > self->timeout_)
                // A connection attempt that hangs: a black-holed address, a frozen server.
                self->fail(l, fmt::format("no answer within {}ms ({})", self->timeout_.count(), l->phase));
            else if (self->up_ && !l->queue.empty() && now - self->progress_ > self->timeout_)
                // Every pending command is answered with nullopt; the usual reconnect follows.
                self->fail(l, fmt::format("no reply within {}ms", self->timeout_.count()));
        }
        self->arm_watchdog();
    });
}

void redis_connection::stop() {
    if (stopped_ && !link_) return;
    stopped_ = true;
    retry_timer_.reset();
    watchdog_.reset();
    on_message = nullptr;
    on_up = nullptr;
    on_down = nullptr;
    if (link_) fail(link_, "stopped");
    up_ = false;
}

void redis_connection::connect() {
    if (stopped_) return;
    if (url_.tls && !tls_) {
        // Checked at start-up; a file that went away since is retried like a failed connect.
        tls_ = make_redis_tls(url_, last_error_);
        if (!tls_) return schedule_reconnect();
    }
    auto l = std::make_shared<link>(ioc_, tls_.get());
    link_ = l;
    error_code ec;
    const auto addr = net::ip::make_address(url_.host, ec);
    if (!ec) return on_resolved(l, {tcp::endpoint(addr, url_.port)});
    l->resolver.async_resolve(url_.host, std::to_string(url_.port),
                              [w = weak_from_this(), l](error_code ec, const tcp::resolver::results_type& eps) {
                                  auto self = w.lock();
                                  if (!self || l != self->link_) return;
                                  if (ec) return self->fail(l, ec.message());
                                  self->on_resolved(l, std::vector<tcp::endpoint>(eps.begin(), eps.end()));
                              });
}

void redis_connection::on_resolved(const link_ptr& l, const std::vector<tcp::endpoint>& eps) {
    l->phase = "TCP connect";
    l->lowest().async_connect(eps, [w = weak_from_this(), l](error_code ec, const tcp::endpoint&) {
        auto self = w.lock();
        if (!self || l != self->link_) return;
        if (ec) return self->fail(l, ec.message());  // "Connection refused", ...
        self->on_connected(l);
    });
}

void redis_connection::on_connected(const link_ptr& l) {
    error_code ec;
    l->lowest().socket().set_option(tcp::no_delay(true), ec);
    if (!l->tls_stream) return start_session(l);
    l->phase = "TLS handshake";
    // SNI for names, and the server's certificate must name the host of the URL.
    prepare_client_stream(*l->tls_stream, tls_client_options{}, url_.host);
    l->tls_stream->async_handshake(ssl::stream_base::client, [w = weak_from_this(), l](error_code ec) {
        auto self = w.lock();
        if (!self || l != self->link_) return;
        if (ec) return self->fail(l, self->describe_io_error(l, ec, true));
        self->start_session(l);
    });
}

// Before the connection counts as up: AUTH, SELECT and a PING, pipelined. The PING tells a
// server that wants a password (NOAUTH) from one that does not.
void redis_connection::start_session(const link_ptr& l) {
    l->phase = url_.password.empty() ? "reply to PING" : "reply to AUTH";
    auto check = [w = weak_from_this(), l](std::string what) {
        return [w, l, what = std::move(what)](std::optional<redis_value> v) {
            auto self = w.lock();
            if (!self || l != self->link_ || !v) return;
            if (v->is_error()) {
                if (v->str.rfind("NOAUTH", 0) == 0)
                    return self->fail(l, "authentication required: the server wants a password (redis://:PASSWORD@..., "
                                         "--redis-password-file or WSX_REDIS_PASSWORD): " + v->str);
                return self->fail(l, what + v->str);
            }
            if (what.empty()) self->session_ready(l);  // the PING: everything before it succeeded
        };
    };
    do_read(l);
    if (!url_.password.empty()) {
        const auto who = url_.user.empty() ? std::string() : fmt::format(" as user '{}'", url_.user);
        std::vector<std::string> auth{"AUTH"};
        if (!url_.user.empty()) auth.push_back(url_.user);
        auth.push_back(url_.password);
        send(l, redis_encode(auth), check(fmt::format("authentication failed{}: ", who)));
    }
    if (url_.db != 0) send(l, redis_encode({"SELECT", std::to_string(url_.db)}), check(fmt::format("SELECT {}: ", url_.db)));
    send(l, redis_encode({"PING"}), check(""));
}

void redis_connection::session_ready(const link_ptr& l) {
    up_ = true;
    backoff_ = std::chrono::milliseconds(100);
    if (!channels_.empty()) {
        std::vector<std::string> args{"SUBSCRIBE"};
        args.insert(args.end(), channels_.begin(), channels_.end());
        send(l, redis_encode(args), {}, channels_.size());
    }
    if (on_up) on_up();
}

void redis_connection::schedule_reconnect() {
    if (stopped_ || !retry_timer_) return;
    retry_timer_->expires_after(backoff_);
    backoff_ = std::min<std::chrono::milliseconds>(backoff_ * 2, std::chrono::seconds(2));
    retry_timer_->async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        ++self->reconnects_;
        self->connect();
    });
}

void redis_connection::fail(link_ptr l, std::string why) {
    if (!l || l != link_) return;
    link_.reset();
    l->close();
    const bool was_up = up_;
    up_ = false;
    if (!stopped_) last_error_ = std::move(why);  // stop() leaves the last real failure
    // Unanswered commands learn it first, as hiredis did; a handler that retries finds the
    // connection down.
    auto queue = std::move(l->queue);
    l->queue.clear();
    for (auto& p : queue)
        if (p.done) p.done(std::nullopt);
    if (stopped_) return;
    if (was_up && on_down) on_down(last_error_);
    schedule_reconnect();
}

std::string redis_connection::describe_io_error(const link_ptr& l, const error_code& ec, bool handshake) const {
    const bool dropped = ec == net::error::eof || ec == ssl::error::stream_truncated || ec == net::error::connection_reset ||
                         ec == net::error::broken_pipe;
    if (dropped && l->tls_stream && !handshake && !l->answered) {
        // With TLS 1.3 a server checks the client certificate after the handshake and closes
        // with an alert; when the first commands were already on their way, a reset can
        // overtake the alert. Either way: dropped after the handshake, before any reply.
        const std::string what = ec == net::error::connection_reset ? ec.message() : "closed";
        if (url_.cert.empty())
            return fmt::format("TLS: the server dropped the connection before any reply ({}), as one that requires a client "
                               "certificate does (use --redis-cert and --redis-key)", what);
        return fmt::format("TLS: the server dropped the connection before any reply ({}): did it refuse the client "
                           "certificate --redis-cert {}?", what, url_.cert);
    }
    if (dropped && ec != net::error::connection_reset) return "the server closed the connection";
    if (!l->tls_stream || ec.category() != net::error::get_ssl_category()) return ec.message();
    if (handshake) {
        const long v = SSL_get_verify_result(l->tls_stream->native_handle());
        if (v != X509_V_OK) {
            const char* why = X509_verify_cert_error_string(v);
            if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
                return fmt::format("TLS certificate not valid for {}: {}", url_.host, why);
            if (url_.cacert.empty())
                return fmt::format("TLS certificate not verified by the system's trusted CAs (use --redis-cacert FILE): {}", why);
            return fmt::format("TLS certificate not verified by --redis-cacert {}: {}", url_.cacert, why);
        }
    }
    const std::string reason = describe_tls_error(ec);
    if (reason.find("wrong version number") != std::string::npos)
        return fmt::format("TLS handshake failed ({}): is the server speaking TLS on this port? (redis:// is without TLS)", reason);
    if (reason.find("certificate required") != std::string::npos ||
        (url_.cert.empty() && reason.find("handshake failure") != std::string::npos))
        return fmt::format("TLS: the server requires a client certificate (use --redis-cert and --redis-key): {}", reason);
    if (!url_.cert.empty() && (reason.find("unknown ca") != std::string::npos || reason.find("bad certificate") != std::string::npos ||
                               reason.find("certificate unknown") != std::string::npos))
        return fmt::format("TLS: the server refused the client certificate --redis-cert {}: {}", url_.cert, reason);
    return fmt::format("TLS{}: {}", handshake ? " handshake failed" : "", reason);
}

void redis_connection::send(const link_ptr& l, std::string bytes, reply_handler done, std::size_t subscribes) {
    if (l->queue.empty()) progress_ = std::chrono::steady_clock::now();
    l->queue.push_back({std::move(done), subscribes});
    l->out += bytes;
    if (l->writing) return;
    // Commands issued in the same turn of the event loop leave in one write.
    l->writing = true;
    net::post(ioc_, [w = weak_from_this(), l] {
        if (auto self = w.lock(); self && l == self->link_) self->do_write(l);
    });
}

void redis_connection::do_write(const link_ptr& l) {
    l->sending.swap(l->out);
    l->out.clear();
    l->with_stream([&](auto& s) {
        net::async_write(s, net::buffer(l->sending), [w = weak_from_this(), l](error_code ec, std::size_t) {
            auto self = w.lock();
            if (!self || l != self->link_) return;
            if (ec) return self->fail(l, self->describe_io_error(l, ec, false));
            l->sending.clear();
            if (l->out.empty()) l->writing = false;
            else self->do_write(l);
        });
    });
}

void redis_connection::do_read(const link_ptr& l) {
    l->with_stream([&](auto& s) {
        s.async_read_some(net::buffer(*l->in), [w = weak_from_this(), l](error_code ec, std::size_t n) {
            auto self = w.lock();
            if (!self || l != self->link_) return;
            if (ec) return self->fail(l, self->describe_io_error(l, ec, false));
            l->reader.feed(std::string_view(l->in->data(), n));
            for (;;) {
                redis_value v;
                const auto r = l->reader.next(v);
                if (r == redis_reply_reader::result::more) break;
                if (r == redis_reply_reader::result::error) return self->fail(l, "protocol error: " + l->reader.error());
                self->on_reply(l, std::move(v));
                if (l != self->link_) return;  // a handler dropped or stopped the connection
            }
            self->do_read(l);
        });
    });
}

void redis_connection::on_reply(const link_ptr& l, redis_value v) {
    progress_ = std::chrono::steady_clock::now();
    l->answered = true;
    if (l->subscribed && is_message(v)) {
        if (on_message) on_message(v.elements[1].str, std::move(v.elements[2].str));
        return;
    }
    if (l->queue.empty()) return;  // nothing asked for it
    auto& front = l->queue.front();
    if (front.confirmations > 0) {
        if (v.is_error()) {
            last_error_ = "SUBSCRIBE: " + v.str;
            l->queue.pop_front();
        } else {
            l->subscribed = true;
            if (--front.confirmations == 0) l->queue.pop_front();
        }
        return;
    }
    auto done = std::move(front.done);
    l->queue.pop_front();
    if (done) done(std::move(v));
}

void redis_connection::command(const std::vector<std::string>& args, reply_handler done) {
    if (!link_ || !up_) {
        if (done) net::post(ioc_, [done = std::move(done)] { done(std::nullopt); });
        return;
    }
    send(link_, redis_encode(args), std::move(done));
}

void redis_connection::subscribe(std::string channel) {
    channels_.push_back(std::move(channel));
    if (link_ && up_) send(link_, redis_encode({"SUBSCRIBE", channels_.back()}), {}, 1);
}

}  // namespace wsx
