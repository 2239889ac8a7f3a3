#include "redis.hpp"

#include <algorithm>
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
#include "url_reference.hpp"

namespace wsx {

std::string format_node(const std::string& host, std::uint16_t port) { return fmt::format("{}:{}", host, port); }

std::string format_sentinels(const redis_url& url) {
    std::string out;
    for (const auto& s : url.cluster() ? url.cluster_nodes : url.sentinels) {
        if (!out.empty()) out += ',';
        out += s.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", s.host, s.port) : format_node(s.host, s.port);
    }
    return out;
}

namespace {
constexpr const char* sentinel_form = "redis+sentinel://[user:pass@]host:port[,host:port...]/MASTERNAME[/db]";
constexpr const char* cluster_form = "redis+cluster://[user:pass@]host:port[,host:port...]";

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %XX escapes, as in the userinfo and path of any URL.
std::optional<std::string> percent_decoded(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;
        const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

bool parse_port(std::string_view ps, std::uint16_t& port, std::string& error) {
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), p);
    if (ps.empty() || ec != std::errc() || ptr != ps.data() + ps.size() || p == 0 || p > 65535) {
        error = fmt::format("bad port '{}'", escape_one_line(ps));
        return false;
    }
    port = static_cast<std::uint16_t>(p);
    return true;
}

bool parse_db(std::string_view db, int& out, std::string& error) {
    int n = 0;
    auto [ptr, ec] = std::from_chars(db.data(), db.data() + db.size(), n);
    if (db.empty() || ec != std::errc() || ptr != db.data() + db.size() || n < 0) {
        error = fmt::format("bad database number '{}'", escape_one_line(db));
        return false;
    }
    out = n;
    return true;
}

// redis+sentinel://[user:pass@]host:port[,host:port...]/MASTERNAME[/db] and
// redis+cluster://[user:pass@]host:port[,host:port...][/]: not URLs a generic parser takes (a
// list of hosts), so read here.
std::optional<redis_url> parse_sentinel_url(std::string_view text, bool tls, bool cluster, std::string& error) {
    const auto fail = [&](std::string what) {
        error = fmt::format("{} (use {})", what, cluster ? cluster_form : sentinel_form);
        return std::nullopt;
    };
    const std::string_view what = cluster ? "cluster node" : "sentinel";
    redis_url r;
    r.tls = tls;
    const auto slash = text.find('/');
    std::string_view authority = text.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? std::string_view() : text.substr(slash + 1);
    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        const auto info = authority.substr(0, at);
        authority.remove_prefix(at + 1);
        const auto colon = info.find(':');
        auto user = percent_decoded(info.substr(0, colon));
        auto pass = percent_decoded(colon == std::string_view::npos ? std::string_view() : info.substr(colon + 1));
        if (!user || !pass) return fail("bad %-escape in the user or password");
        r.user = std::move(*user);
        r.password = std::move(*pass);
        if (colon == std::string_view::npos) {
            r.password = std::move(r.user);  // redis+sentinel://secret@...: a password alone
            r.user.clear();
            r.name_only = true;
        }
    }
    if (authority.empty()) return fail(fmt::format("no {} given: the host list is empty", what));
    for (std::size_t from = 0;;) {
        const auto comma = authority.find(',', from);
        std::string_view item = authority.substr(from, comma == std::string_view::npos ? comma : comma - from);
        redis_node n{.host = "", .port = static_cast<std::uint16_t>(cluster ? 6379 : 26379)};
        std::string_view host = item, port;
        if (!item.empty() && item.front() == '[') {
            const auto close = item.find(']');
            if (close == std::string_view::npos) return fail(fmt::format("bad {} address '{}'", what, escape_one_line(item)));
            host = item.substr(1, close - 1);
            const auto rest = item.substr(close + 1);
            if (!rest.empty()) {
                if (rest.front() != ':') return fail(fmt::format("bad {} address '{}'", what, escape_one_line(item)));
                port = rest.substr(1);
                if (port.empty()) return fail(fmt::format("bad port '' in '{}'", escape_one_line(item)));
            }
        } else if (const auto colon = item.rfind(':'); colon != std::string_view::npos) {
            host = item.substr(0, colon);
            port = item.substr(colon + 1);
            if (port.empty()) return fail(fmt::format("bad port '' in '{}'", escape_one_line(item)));
        }
        if (host.empty())
            return fail(item.empty() ? fmt::format("empty entry in the {} list", what)
                                     : fmt::format("no host in {} address '{}'", what, escape_one_line(item)));
        // A name or an IPv4 address; an IPv6 address (with its zone) in brackets.
        const bool bracketed = host.data() != item.data();
        const auto allowed = [&](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
                   (bracketed && (c == ':' || c == '%'));
        };
        if (!std::all_of(host.begin(), host.end(), allowed))
            return fail(fmt::format("bad {} host '{}'", what, escape_one_line(host)));
        if (!port.empty() && !parse_port(port, n.port, error)) return fail(error);
        n.host = std::string(host);
        r.sentinels.push_back(std::move(n));
        if (comma == std::string_view::npos) break;
        from = comma + 1;
    }
    if (r.sentinels.size() > 64) return fail(fmt::format("more than 64 {}s", what));
    if (path.find_first_of("?#") != std::string_view::npos) return fail("no query or fragment goes in the URL");
    if (cluster) {
        // A cluster has database 0 only.
        if (!path.empty() && path != "0") {
            int db = 0;
            if (!parse_db(path, db, error)) return fail(error);
            return fail(fmt::format("database {} asked for: a Redis Cluster has database 0 only (leave /{} out)", db, db));
        }
        r.cluster_nodes = std::move(r.sentinels);
        r.sentinels.clear();
        r.host = r.cluster_nodes.front().host;
        r.port = r.cluster_nodes.front().port;
        return r;
    }
    const auto name_end = path.find('/');
    auto name = percent_decoded(path.substr(0, name_end));
    if (!name) return fail("bad %-escape in the master name");
    if (name->empty()) return fail("missing master name after the sentinel list");
    if (std::any_of(name->begin(), name->end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
        return fail(fmt::format("bad master name '{}'", escape_one_line(*name)));
    r.master_name = std::move(*name);
    if (name_end != std::string_view::npos) {
        const auto db = path.substr(name_end + 1);
        if (!db.empty() && !parse_db(db, r.db, error)) return fail(error);
    }
    r.host = r.sentinels.front().host;
    r.port = r.sentinels.front().port;
    return r;
}
}  // namespace

std::optional<redis_url> parse_redis_url(const std::string& text, std::string& error) {
    constexpr const char* form = "redis://[user:pass@]host:port[/db], rediss:// for TLS, redis+sentinel://... or redis+cluster://...";
    for (const std::string_view scheme : {"redis+sentinel://", "rediss+sentinel://", "redis+cluster://", "rediss+cluster://"}) {
        if (text.size() >= scheme.size() && std::equal(scheme.begin(), scheme.end(), text.begin(), [](char a, char b) {
                return a == (b >= 'A' && b <= 'Z' ? static_cast<char>(b - 'A' + 'a') : b);
            }))
            return parse_sentinel_url(std::string_view(text).substr(scheme.size()), scheme[5] == 's',
                                      scheme.find("cluster") != std::string_view::npos, error);
    }
    std::string respelt;
    auto u = parse_url_reference(text, respelt);
    if (!u && u.error() == boost::urls::grammar::error::invalid) {
        error = fmt::format("the host and port end at the first '/' (a port is digits only; use {})", form);
        return std::nullopt;
    }
    if (!u) {
        error = fmt::format("not a URL (use {})", form);
        return std::nullopt;
    }
    if (u->scheme() != "redis" && u->scheme() != "rediss") {
        error = fmt::format("only redis://, rediss://, redis+sentinel:// and redis+cluster:// URLs are supported (use {})", form);
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

// A pub/sub delivery: ["message", channel, payload], or ["smessage", ...] from a shard channel.
bool is_message(const redis_value& v) {
    return v.type == redis_value::kind::array && v.elements.size() >= 3 &&
           v.elements[0].type == redis_value::kind::string && (v.elements[0].str == "message" || v.elements[0].str == "smessage");
}

// ["KIND", channel, count]: a (un)subscription's confirmation or a server's notice.
bool is_push(const redis_value& v, std::string_view kind) {
    return v.type == redis_value::kind::array && v.elements.size() >= 2 && v.elements[0].type == redis_value::kind::string &&
           v.elements[0].str == kind;
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

// hiredis allocates an aggregate's element array as soon as it reads the count, and waits for a
// bulk string's declared length: "*2000000000\r\n" alone costs 16 GB. The guard follows the
// structure of the stream as hiredis will read it (type byte, header line, payload) and stops
// the bytes at the first header that declares too much, so hiredis never sees it. Where the
// stream is not RESP it stops following and lets hiredis say why.
struct redis_reply_reader::guard {
    enum class state { type, line, header, payload, off } at = state::type;
    char kind = 0;                    // the header's type byte
    bool cr = false;                  // the last byte of the line so far was '\r'
    bool negative = false, bad = false;
    std::size_t length = 0;           // of the header line so far
    std::uint64_t value = 0;          // the header's number (saturated)
    std::uint64_t skip = 0;           // payload bytes (and their CRLF) still to come
    std::vector<std::uint64_t> open;  // elements still to come in each open aggregate
    std::uint64_t declared = 0;       // elements declared in the reply being read
    std::string refused;

    /// How many of `b` may reach hiredis; fewer than all: `refused` says why.
    std::size_t scan(std::string_view b) {
        std::size_t i = 0;
        while (i < b.size()) {
            switch (at) {
            case state::off: return b.size();
            case state::type:
                switch (const char c = b[i++]) {
                case '*': case '%': case '~': case '>': case '$': case '=': case '!':
                    kind = c;
                    at = state::header;
                    cr = negative = bad = false;
                    length = 0;
                    value = 0;
                    break;
                case '+': case '-': case ':': case ',': case '_': case '#': case '(':
                    at = state::line;
                    cr = false;
                    break;
                default:
                    at = state::off;  // not a type byte: hiredis refuses the stream
                    return b.size();
                }
                break;
            case state::line: {
                // To the first "\r\n", as hiredis looks for it.
                for (; i < b.size() && at == state::line; ++i) {
                    if (cr && b[i] == '\n') {
                        at = state::type;
                        element_done();
                    }
                    cr = b[i] == '\r';
                }
                break;
            }
            case state::header: {
                const char c = b[i];
                if (cr && c == '\n') {
                    if (!header_done()) return i;  // this '\n' completes the line: it never arrives
                    ++i;
                    break;
                }
                ++i;
                if (cr) bad = true;  // a '\r' inside the line
                cr = c == '\r';
                if (cr) continue;
                if (c == '-' && length == 0) negative = true;
                else if (c >= '0' && c <= '9') value = std::min<std::uint64_t>(value * 10 + static_cast<unsigned>(c - '0'), std::uint64_t{1} << 40);
                else bad = true;
                ++length;
                break;
            }
            case state::payload: {
                const auto n = std::min<std::uint64_t>(skip, b.size() - i);
                i += n;
                skip -= n;
                if (skip == 0) {
                    at = state::type;
                    element_done();
                }
                break;
            }
            }
        }
        return b.size();
    }

    // The header line is complete; false: it is refused.
    bool header_done() {
        if (bad || length == 0 || (negative && value != 1)) {
            at = state::off;  // not a number, or negative: hiredis refuses it
            return true;
        }
        if (negative) {  // -1: nil, nothing follows
            at = state::type;
            element_done();
            return true;
        }
        if (kind == '$' || kind == '=' || kind == '!') {
            if (value > max_bulk) {
                refused = fmt::format("a bulk string of {} bytes, more than the {} accepted", describe(value), max_bulk);
                return false;
            }
            skip = value + 2;
            at = state::payload;
            return true;
        }
        const std::uint64_t n = kind == '%' ? value * 2 : value;
        if (n > max_elements - declared) {
            refused = fmt::format("a reply of more than {} elements ({} declared by one header)", max_elements, describe(n));
            return false;
        }
        declared += n;
        at = state::type;
        if (n == 0) element_done();
        else if (open.size() >= 64) at = state::off;  // far deeper than hiredis reads
        else open.push_back(n);
        return true;
    }

    void element_done() {
        for (; !open.empty(); open.pop_back())
            if (--open.back() > 0) return;
        declared = 0;  // a whole reply
    }

    static std::string describe(std::uint64_t v) { return v >= (std::uint64_t{1} << 40) ? "over 2^40" : std::to_string(v); }
};

redis_reply_reader::redis_reply_reader() : r_(redisReaderCreate()), guard_(std::make_unique<guard>()) {
    if (!r_) throw std::bad_alloc();
}

redis_reply_reader::~redis_reply_reader() { redisReaderFree(r_); }

void redis_reply_reader::feed(std::string_view bytes) {
    if (bytes.empty() || !guard_->refused.empty()) return;
    const auto n = guard_->scan(bytes);
    if (n > 0) redisReaderFeed(r_, bytes.data(), n);
}

redis_reply_reader::result redis_reply_reader::next(redis_value& out) {
    void* reply = nullptr;
    if (redisReaderGetReply(r_, &reply) != REDIS_OK) return result::error;
    if (!reply) return guard_->refused.empty() ? result::more : result::error;
    out = convert(static_cast<redisReply*>(reply));
    freeReplyObject(reply);
    return result::reply;
}

std::string redis_reply_reader::error() const {
    if (r_->err) return r_->errstr;
    return guard_->refused.empty() ? std::string() : "refused " + guard_->refused;
}

// The connection ----------------------------------------------------------------------------

struct redis_connection::link {
    link(net::io_context& ioc, ssl::context* tls, std::string host, std::uint16_t port)
        : resolver(ioc), in(std::make_unique<std::array<char, 64 * 1024>>()), host(std::move(host)), port(port) {
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
        std::size_t confirmations = 0;  // > 0: a SUBSCRIBE, SSUBSCRIBE or SUNSUBSCRIBE
        enum class sub { none, ssubscribe, sunsubscribe } shard = sub::none;
        std::string channel;  // of an SSUBSCRIBE or SUNSUBSCRIBE
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
    std::string host;               // where it goes
    std::uint16_t port;
    // A question to a sentinel: which one (in url.sentinels), and whether it is the check made
    // while connected (else the discovery before a connect).
    bool probe = false, watch = false;
    std::size_t sentinel = 0;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

redis_connection::redis_connection(net::io_context& ioc, redis_url url, std::string name)
    : ioc_(ioc), url_(std::move(url)), name_(std::move(name)), retry_timer_(std::make_unique<net::steady_timer>(ioc)),
      watchdog_(std::make_unique<net::steady_timer>(ioc)), watch_timer_(std::make_unique<net::steady_timer>(ioc)) {}

redis_connection::~redis_connection() { stop(); }

std::string redis_connection::node() const {
    std::lock_guard lock(node_mutex_);
    return node_;
}

void redis_connection::set_node(std::string n) {
    std::lock_guard lock(node_mutex_);
    node_ = std::move(n);
}

std::chrono::milliseconds redis_connection::attempt_timeout() const {
    if (timeout_.count() > 0) return timeout_;
    // Sentinels: a black-holed address must not hold discovery up for good.
    return url_.sentinel() ? std::chrono::milliseconds(2000) : std::chrono::milliseconds(0);
}

void redis_connection::start() {
    stopped_ = false;
    connect();
    arm_watchdog();
}

void redis_connection::arm_watchdog() {
    const auto attempt = attempt_timeout();
    if (attempt.count() <= 0 || !watchdog_) return;
    watchdog_->expires_after(attempt / 4);
    watchdog_->async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        const auto now = std::chrono::steady_clock::now();
        const auto attempt = self->attempt_timeout();
        if (auto p = self->probe_; p && now - p->started > attempt)
            self->fail(p, fmt::format("no answer within {}ms ({})", attempt.count(), p->phase));
        if (auto l = self->link_) {
            if (!self->up_ && now - l->started > attempt)
                // A connection attempt that hangs: a black-holed address, a frozen server.
                self->fail(l, fmt::format("no answer within {}ms ({})", attempt.count(), l->phase));
            else if (self->up_ && self->timeout_.count() > 0 && !l->queue.empty() && now - self->progress_ > self->timeout_)
                // Every pending command is answered with nullopt; the usual reconnect follows.
                self->fail(l, fmt::format("no reply within {}ms", self->timeout_.count()));
        }
        self->arm_watchdog();
    });
}

void redis_connection::stop() {
    if (stopped_ && !link_ && !probe_) return;
    stopped_ = true;
    retry_timer_.reset();
    watchdog_.reset();
    watch_timer_.reset();
    on_message = nullptr;
    on_ssubscribed = nullptr;
    on_sunsubscribed = nullptr;
    on_up = nullptr;
    on_down = nullptr;
    on_failover = nullptr;
    if (probe_) fail(probe_, "stopped");
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
    if (!url_.sentinel()) return connect_to({url_.host, url_.port});
    // Ask the sentinels in turn; a check still in flight from the last connection is dropped.
    if (auto p = std::exchange(probe_, nullptr)) p->close();
    sentinel_errors_.clear();
    ask_sentinel(0, false);
}

void redis_connection::connect_to(const redis_node& n) {
    auto l = std::make_shared<link>(ioc_, tls_.get(), n.host, n.port);
    link_ = l;
    open(l);
}

void redis_connection::ask_sentinel(std::size_t i, bool watch) {
    const auto& s = url_.sentinels.at(i);
    auto l = std::make_shared<link>(ioc_, tls_.get(), s.host, s.port);
    l->probe = true;
    l->watch = watch;
    l->sentinel = i;
    probe_ = l;
    open(l);
}

// A sentinel answered (`master`), or did not (`why`).
void redis_connection::sentinel_answer(link_ptr l, std::optional<redis_node> master, std::string why) {
    if (l != probe_) return;
    probe_.reset();
    l->close();
    // Its question's handler holds the link: dropped here, or the two would keep each other.
    const auto unanswered = std::move(l->queue);
    l->queue.clear();
    if (stopped_) return;
    const auto asked = format_node(l->host, l->port);
    if (l->watch) {
        // The check made while connected: a sentinel that does not answer says nothing about
        // the master; the next check asks the next sentinel.
        if (!master) {
            watch_from_ = (l->sentinel + 1) % url_.sentinels.size();
            return;
        }
        const auto now = format_node(master->host, master->port);
        if (up_ && link_ && now != node())
            fail(link_, fmt::format("sentinel {} says master '{}' is now at {}", asked, escape_one_line(url_.master_name), now));
        return;
    }
    if (master) return connect_to(*master);
    if (!sentinel_errors_.empty()) sentinel_errors_ += "; ";
    sentinel_errors_ += fmt::format("sentinel {}: {}", asked, why);
    if (l->sentinel + 1 < url_.sentinels.size()) return ask_sentinel(l->sentinel + 1, false);
    last_error_ = sentinel_errors_;
    schedule_reconnect();
}

// While connected, the sentinels are asked every second whether the master is still where it was:
// a subscriber connection gets no error from a master that became a replica.
void redis_connection::watch_master() {
    if (!url_.sentinel() || !watch_timer_) return;
    watch_timer_->expires_after(std::chrono::seconds(1));
    watch_timer_->async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_ || !self->up_) return;
        if (!self->probe_) self->ask_sentinel(self->watch_from_ % self->url_.sentinels.size(), true);
        self->watch_master();
    });
}

void redis_connection::open(const link_ptr& l) {
    error_code ec;
    const auto addr = net::ip::make_address(l->host, ec);
    if (!ec) return on_resolved(l, {tcp::endpoint(addr, l->port)});
    l->resolver.async_resolve(l->host, std::to_string(l->port),
                              [w = weak_from_this(), l](error_code ec, const tcp::resolver::results_type& eps) {
                                  auto self = w.lock();
                                  if (!self || !self->current(l)) return;
                                  if (ec) return self->fail(l, ec.message());
                                  self->on_resolved(l, std::vector<tcp::endpoint>(eps.begin(), eps.end()));
                              });
}

void redis_connection::on_resolved(const link_ptr& l, const std::vector<tcp::endpoint>& eps) {
    l->phase = "TCP connect";
    l->lowest().async_connect(eps, [w = weak_from_this(), l](error_code ec, const tcp::endpoint&) {
        auto self = w.lock();
        if (!self || !self->current(l)) return;
        if (ec) return self->fail(l, ec.message());  // "Connection refused", ...
        self->on_connected(l);
    });
}

void redis_connection::on_connected(const link_ptr& l) {
    error_code ec;
    l->lowest().socket().set_option(tcp::no_delay(true), ec);
    if (!l->tls_stream) return start_session(l);
    l->phase = "TLS handshake";
    // SNI for names, and the server's certificate must name the host connected to (the URL's,
    // a sentinel's, or the master's as the sentinels give it).
    prepare_client_stream(*l->tls_stream, tls_client_options{}, l->host);
    l->tls_stream->async_handshake(ssl::stream_base::client, [w = weak_from_this(), l](error_code ec) {
        auto self = w.lock();
        if (!self || !self->current(l)) return;
        if (ec) return self->fail(l, self->describe_io_error(l, ec, true));
        self->start_session(l);
    });
}

// A question to a sentinel, without AUTH (sentinels are asked as they are, see redis_url).
void redis_connection::start_session(const link_ptr& l) {
    if (l->probe) {
        l->phase = "reply to SENTINEL get-master-addr-by-name";
        do_read(l);
        return send(l, redis_encode({"SENTINEL", "get-master-addr-by-name", url_.master_name}),
                    [w = weak_from_this(), l](std::optional<redis_value> v) {
                        auto self = w.lock();
                        if (!self || l != self->probe_ || !v) return;
                        const auto& name = self->url_.master_name;
                        if (v->type == redis_value::kind::nil)
                            return self->sentinel_answer(l, std::nullopt, fmt::format("no master named '{}' is monitored "
                                                                                      "(check the name in the URL)",
                                                                                      escape_one_line(name)));
                        if (v->is_error())
                            return self->sentinel_answer(l, std::nullopt, fmt::format("not a sentinel? {}", escape_one_line(v->str)));
                        redis_node master;
                        std::string error;
                        // An IP address or a host name: it goes into logs and metric labels as it is.
                        const auto plain_host = [](const std::string& h) {
                            return !h.empty() && h.size() <= 255 && h.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz"
                                                                                        "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_:%") ==
                                                                         std::string::npos;
                        };
                        if (v->type != redis_value::kind::array || v->elements.size() != 2 || !plain_host(v->elements[0].str) ||
                            !parse_port(v->elements[1].str, master.port, error))
                            return self->sentinel_answer(l, std::nullopt, "not an address in the reply (not a sentinel?)");
                        master.host = v->elements[0].str;
                        self->sentinel_answer(l, master, {});
                    });
    }
    start_master_session(l);
}

// Before the connection counts as up: AUTH, SELECT and a PING, pipelined. The PING tells a
// server that wants a password (NOAUTH) from one that does not. Through sentinels, a ROLE
// follows: the address they gave may already be a replica (a demoted master).
void redis_connection::start_master_session(const link_ptr& l) {
    l->phase = url_.password.empty() ? "reply to PING" : "reply to AUTH";
    auto check = [w = weak_from_this(), l](std::string what, bool last) {
        return [w, l, what = std::move(what), last](std::optional<redis_value> v) {
            auto self = w.lock();
            if (!self || l != self->link_ || !v) return;
            if (v->is_error()) {
                if (v->str.rfind("NOAUTH", 0) == 0)
                    return self->fail(l, "authentication required: the server wants a password (redis://:PASSWORD@..., "
                                         "--redis-password-file or WSX_REDIS_PASSWORD): " + v->str);
                return self->fail(l, what + v->str);
            }
            if (!last) return;
            if (self->url_.sentinel()) {
                const bool master = v->type == redis_value::kind::array && !v->elements.empty() && v->elements[0].str == "master";
                if (!master)
                    return self->fail(l, fmt::format("not the master (ROLE: {}), waiting for the sentinels to agree",
                                                     v->type == redis_value::kind::array && !v->elements.empty()
                                                         ? escape_one_line(v->elements[0].str)
                                                         : std::string("no answer")));
            }
            self->session_ready(l);  // everything before it succeeded
        };
    };
    do_read(l);
    if (!url_.password.empty()) {
        const auto who = url_.user.empty() ? std::string() : fmt::format(" as user '{}'", url_.user);
        std::vector<std::string> auth{"AUTH"};
        if (!url_.user.empty()) auth.push_back(url_.user);
        auth.push_back(url_.password);
        send(l, redis_encode(auth), check(fmt::format("authentication failed{}: ", who), false));
    }
    if (url_.db != 0) send(l, redis_encode({"SELECT", std::to_string(url_.db)}), check(fmt::format("SELECT {}: ", url_.db), false));
    send(l, redis_encode({"PING"}), check("", !url_.sentinel()));
    if (url_.sentinel()) send(l, redis_encode({"ROLE"}), check("ROLE: ", true));
}

void redis_connection::session_ready(const link_ptr& l) {
    up_ = true;
    backoff_ = std::chrono::milliseconds(100);
    auto now = format_node(l->host, l->port);
    set_node(now);
    const auto before = std::exchange(master_, now);
    if (!channels_.empty()) {
        std::vector<std::string> args{"SUBSCRIBE"};
        args.insert(args.end(), channels_.begin(), channels_.end());
        send(l, redis_encode(args), {}, channels_.size());
    }
    // One SSUBSCRIBE per shard channel: channels of different slots cannot share one.
    for (const auto& c : schannels_) send_shard(l, "SSUBSCRIBE", c);
    if (url_.sentinel()) {
        watch_master();
        if (!before.empty() && before != now) {
            failovers_.fetch_add(1, std::memory_order_relaxed);
            if (on_failover) on_failover(before, now);
            if (l != link_) return;  // the handler stopped the connection
        }
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
    if (l && l == probe_) return sentinel_answer(std::move(l), std::nullopt, std::move(why));
    if (!l || l != link_) return;
    link_.reset();
    l->close();
    const bool was_up = up_;
    up_ = false;
    set_node({});
    // stop() leaves the last real failure. Through sentinels, the address is the news.
    if (!stopped_)
        last_error_ = url_.sentinel() ? fmt::format("master '{}' at {}: {}", escape_one_line(url_.master_name),
                                                    format_node(l->host, l->port), why)
                                      : std::move(why);
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
                return fmt::format("TLS certificate not valid for {}: {}", l->host, why);
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
    l->queue.push_back({.done = std::move(done), .confirmations = subscribes, .shard = link::pending::sub::none, .channel = {}});
    l->out += bytes;
    if (l->writing) return;
    // Commands issued in the same turn of the event loop leave in one write.
    l->writing = true;
    net::post(ioc_, [w = weak_from_this(), l] {
        if (auto self = w.lock(); self && self->current(l)) self->do_write(l);
    });
}

void redis_connection::do_write(const link_ptr& l) {
    l->sending.swap(l->out);
    l->out.clear();
    l->with_stream([&](auto& s) {
        net::async_write(s, net::buffer(l->sending), [w = weak_from_this(), l](error_code ec, std::size_t) {
            auto self = w.lock();
            if (!self || !self->current(l)) return;
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
            if (!self || !self->current(l)) return;
            if (ec) return self->fail(l, self->describe_io_error(l, ec, false));
            l->reader.feed(std::string_view(l->in->data(), n));
            for (;;) {
                redis_value v;
                const auto r = l->reader.next(v);
                if (r == redis_reply_reader::result::more) break;
                if (r == redis_reply_reader::result::error) return self->fail(l, "protocol error: " + l->reader.error());
                self->on_reply(l, std::move(v));
                if (!self->current(l)) return;  // a handler dropped or stopped the connection
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
    using shard = link::pending::sub;
    if (l->subscribed && is_push(v, "sunsubscribe")) {
        const auto& channel = v.elements[1].str;
        if (l->queue.empty() || l->queue.front().shard != shard::sunsubscribe || l->queue.front().channel != channel) {
            // Not asked for: the channel's slot left this node.
            const auto it = std::find(schannels_.begin(), schannels_.end(), channel);
            if (it != schannels_.end()) {
                schannels_.erase(it);
                if (on_sunsubscribed) on_sunsubscribed(channel, {});
            }
            return;
        }
    }
    if (l->queue.empty()) return;  // nothing asked for it
    auto& front = l->queue.front();
    if (front.shard != shard::none) {
        auto p = std::move(front);
        l->queue.pop_front();
        if (v.is_error()) {
            last_error_ = (p.shard == shard::ssubscribe ? "SSUBSCRIBE: " : "SUNSUBSCRIBE: ") + v.str;
            const auto it = std::find(schannels_.begin(), schannels_.end(), p.channel);
            if (p.shard == shard::ssubscribe && it != schannels_.end()) {
                schannels_.erase(it);
                if (on_sunsubscribed) on_sunsubscribed(p.channel, v.str);
            }
            return;
        }
        l->subscribed = true;
        if (p.shard == shard::ssubscribe && on_ssubscribed &&
            std::find(schannels_.begin(), schannels_.end(), p.channel) != schannels_.end())
            on_ssubscribed(p.channel);
        return;
    }
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
    // A master demoted to a replica while connected (a failover it slept through): writes are
    // refused. Through sentinels, the new master is found by reconnecting.
    const bool readonly = url_.sentinel() && !l->probe && v.is_error() &&
                          (v.str.rfind("READONLY", 0) == 0 || v.str.find("READONLY You can't write") != std::string::npos);
    const auto text = readonly ? escape_one_line(v.str) : std::string();
    if (done) done(std::move(v));
    if (readonly && l == link_) fail(l, "the server is read-only now (" + text + "): asking the sentinels for the master");
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

void redis_connection::send_shard(const link_ptr& l, const char* verb, const std::string& channel) {
    if (l->queue.empty()) progress_ = std::chrono::steady_clock::now();
    link::pending p{.done = {}, .confirmations = 1,
                    .shard = verb[1] == 'S' ? link::pending::sub::ssubscribe : link::pending::sub::sunsubscribe, .channel = channel};
    l->queue.push_back(std::move(p));
    l->out += redis_encode({verb, channel});
    if (l->writing) return;
    l->writing = true;
    net::post(ioc_, [w = weak_from_this(), l] {
        if (auto self = w.lock(); self && self->current(l)) self->do_write(l);
    });
}

void redis_connection::ssubscribe(std::string channel) {
    if (ssubscribed(channel)) return;
    schannels_.push_back(std::move(channel));
    if (link_ && up_) send_shard(link_, "SSUBSCRIBE", schannels_.back());
}

void redis_connection::sunsubscribe(const std::string& channel) {
    const auto it = std::find(schannels_.begin(), schannels_.end(), channel);
    if (it == schannels_.end()) return;
    schannels_.erase(it);
    if (link_ && up_) send_shard(link_, "SUNSUBSCRIBE", channel);
}

bool redis_connection::ssubscribed(const std::string& channel) const {
    return std::find(schannels_.begin(), schannels_.end(), channel) != schannels_.end();
}

}  // namespace wsx
