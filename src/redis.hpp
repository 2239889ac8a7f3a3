#pragma once
/// A Redis connection driven by the Asio event loop, over TCP or TLS (rediss://). The socket
/// is Asio's; hiredis only encodes commands and parses replies. It reconnects on its own with
/// backoff, re-authenticates, re-selects the database and re-subscribes its channels.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net.hpp"

struct redisReader;

namespace wsx {

/// A server's address, as Redis Sentinel gives it.
struct redis_node {
    std::string host;
    std::uint16_t port = 0;
};

/// "host:port", as Redis and its logs write an address.
std::string format_node(const std::string& host, std::uint16_t port);

/// `redis://[user:pass@]host:port[/db]`, or `rediss://...` for TLS; or
/// `redis+sentinel://[user:pass@]host:port[,host:port...]/MASTERNAME[/db]` (`rediss+sentinel://`
/// for TLS to the sentinels and the master alike): the master's address is asked of the sentinels;
/// or `redis+cluster://[user:pass@]host:port[,host:port...][/]` (`rediss+cluster://`): a Redis
/// Cluster whose layout is asked of these nodes.
struct redis_url {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user, password;
    int db = 0;
    /// The userinfo was one name (`redis://NAME@host`): the password, as redis-cli reads it,
    /// unless use_redis_password() gives the password from elsewhere (NAME is then the user).
    bool name_only = false;
    bool tls = false;        ///< rediss://
    std::string cacert;      ///< TLS: trust only this PEM bundle (empty: the system store)
    std::string cert, key;   ///< TLS: client certificate and key (PEM)
    /// redis+sentinel://: the sentinels, asked in this order (host and port are the first one's).
    /// They are contacted without AUTH; user and password are the master's.
    std::vector<redis_node> sentinels;
    std::string master_name;  ///< redis+sentinel://: the name the sentinels monitor the master by
    /// redis+cluster://: the seed nodes the cluster's layout is first asked of (host and port are
    /// the first one's). Database 0 only.
    std::vector<redis_node> cluster_nodes;

    bool sentinel() const noexcept { return !sentinels.empty(); }
    bool cluster() const noexcept { return !cluster_nodes.empty(); }
};

/// The sentinels of a redis+sentinel:// URL, or the seed nodes of a redis+cluster:// URL, as the
/// URL lists them ("h1:p1,h2:p2").
std::string format_sentinels(const redis_url& url);

/// Parses a redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or
/// rediss+cluster:// URL; nullopt with `error` set when it is not one.
std::optional<redis_url> parse_redis_url(const std::string& text, std::string& error);

/// A password that does not come from the URL (a file, the environment). A URL with a password
/// of its own keeps it; `redis://NAME@host` then means user NAME.
void use_redis_password(redis_url& url, std::string password);

/// The TLS context for a rediss:// URL: its CA, client certificate and key checked. nullptr and
/// `error` (naming the option and the file, e.g. "--redis-cacert 'ca.pem': ...") when a file
/// cannot be used.
std::shared_ptr<ssl::context> make_redis_tls(const redis_url& url, std::string& error);

/// A reply, copied out of hiredis's reply tree.
struct redis_value {
    enum class kind { nil, string, integer, array, status, error } type = kind::nil;
    std::string str;  ///< string, status and error text
    long long integer = 0;
    std::vector<redis_value> elements;

    bool is_error() const noexcept { return type == kind::error; }
};

/// RESP encoding of one command (an array of bulk strings).
std::string redis_encode(const std::vector<std::string>& args);

/// Splits a byte stream from Redis into replies, however it is cut. A reply that would make the
/// parser allocate far beyond what was received is refused before the parser sees it: more than
/// max_elements elements declared in one reply (arrays, maps, sets, nested ones counted together),
/// or a bulk string longer than max_bulk.
class redis_reply_reader {
public:
    redis_reply_reader();
    ~redis_reply_reader();
    redis_reply_reader(const redis_reply_reader&) = delete;
    redis_reply_reader& operator=(const redis_reply_reader&) = delete;

    void feed(std::string_view bytes);
    enum class result { reply, more, error };
    /// reply: `out` holds the next reply; more: feed more bytes; error: the stream is not RESP
    /// (error() says why) and the reader stays in error.
    result next(redis_value& out);
    std::string error() const;

    static constexpr std::uint64_t max_elements = 1 << 20;
    static constexpr std::uint64_t max_bulk = 512ull << 20;

private:
    struct guard;  // scans the RESP headers ahead of hiredis
    ::redisReader* r_;
    std::unique_ptr<guard> guard_;
};

/// One connection. All calls and callbacks happen on the io_context given to the constructor,
/// except node() and failovers(), which may be read from any thread.
///
/// With a redis+sentinel:// URL every connect (the first and each reconnect) asks the sentinels
/// in turn where the master is, connects there and checks with ROLE that it is the master. A
/// READONLY error, or the sentinels naming another master (asked every second while connected),
/// drops the connection, and the reconnect finds the new master.
class redis_connection : public std::enable_shared_from_this<redis_connection> {
public:
    /// nullopt: the command did not get an answer (not connected, or the connection was lost).
    using reply_handler = std::function<void(std::optional<redis_value>)>;

    redis_connection(net::io_context& ioc, redis_url url, std::string name);
    ~redis_connection();

    /// Connects, and keeps reconnecting (100 ms doubling to 2 s) until stop().
    void start();
    void stop();
    /// Connected, authenticated and the database selected.
    bool connected() const noexcept { return up_; }

    /// Sends a command; `done` (optional) gets the reply.
    void command(const std::vector<std::string>& args, reply_handler done = {});

    /// Subscriber mode: channels to (re)subscribe on every connect; messages go to `on_message`.
    void subscribe(std::string channel);
    /// Shard channels (Redis Cluster): SSUBSCRIBE on every connect, one command per channel;
    /// their messages go to `on_message` too.
    void ssubscribe(std::string channel);
    /// SUNSUBSCRIBE, and no longer on reconnects.
    void sunsubscribe(const std::string& channel);
    bool ssubscribed(const std::string& channel) const;
    std::function<void(const std::string& channel, std::string payload)> on_message;
    /// A shard channel's SSUBSCRIBE was confirmed (after each connect too).
    std::function<void(const std::string& channel)> on_ssubscribed;
    /// A shard channel this connection no longer holds though nobody asked: the server dropped
    /// it (its slot moved to another node: `why` empty) or refused it (`why` is the error, e.g.
    /// MOVED). It is not subscribed again on reconnects.
    std::function<void(const std::string& channel, const std::string& why)> on_sunsubscribed;
    /// The connection is ready (after a connect or a reconnect).
    std::function<void()> on_up;
    /// The connection went away (it will be retried); `why` says what happened.
    std::function<void(const std::string& why)> on_down;
    /// redis+sentinel://: connected to a master at another address than the previous one (called
    /// before on_up).
    std::function<void(const std::string& old_node, const std::string& new_node)> on_failover;

    /// A command unanswered this long (a frozen or unreachable server) drops the connection:
    /// pending commands get nullopt and a reconnect follows. It also bounds each connection
    /// attempt (TCP, TLS, AUTH) and, with sentinels, each question to a sentinel. 0: wait
    /// forever (with sentinels: connection attempts and questions are bounded by 2 s).
    void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

    std::uint64_t reconnects() const noexcept { return reconnects_; }
    /// Why the last connection attempt or command failed (empty when nothing failed).
    const std::string& last_error() const noexcept { return last_error_; }
    /// "host:port" of the server connected to (the master found through the sentinels); empty
    /// while not connected.
    std::string node() const;
    /// redis+sentinel://: times the master was found at another address than before.
    std::uint64_t failovers() const noexcept { return failovers_.load(std::memory_order_relaxed); }

private:
    struct link;  // one TCP or TLS connection and the commands in flight on it
    using link_ptr = std::shared_ptr<link>;

    void connect();
    void connect_to(const redis_node& n);
    void ask_sentinel(std::size_t i, bool watch);
    void sentinel_answer(link_ptr l, std::optional<redis_node> master, std::string why);
    void watch_master();
    bool current(const link_ptr& l) const noexcept { return l && (l == link_ || l == probe_); }
    std::chrono::milliseconds attempt_timeout() const;
    void open(const link_ptr& l);
    void on_resolved(const link_ptr& l, const std::vector<tcp::endpoint>& eps);
    void on_connected(const link_ptr& l);
    void start_session(const link_ptr& l);
    void start_master_session(const link_ptr& l);
    void session_ready(const link_ptr& l);
    void send(const link_ptr& l, std::string bytes, reply_handler done, std::size_t subscribes = 0);
    void send_shard(const link_ptr& l, const char* verb, const std::string& channel);
    void do_write(const link_ptr& l);
    void do_read(const link_ptr& l);
    void on_reply(const link_ptr& l, redis_value v);
    void fail(link_ptr l, std::string why);  // by value: it may be given link_, which it resets
    std::string describe_io_error(const link_ptr& l, const error_code& ec, bool handshake) const;
    void schedule_reconnect();
    void arm_watchdog();
    void set_node(std::string n);

    net::io_context& ioc_;
    redis_url url_;
    std::string name_;  // which connection this is ("commands", "subscriber")
    std::shared_ptr<ssl::context> tls_;  // rediss://: made at the first connect
    link_ptr link_;     // the current connection attempt or connection
    link_ptr probe_;    // sentinels: the question to a sentinel in flight
    std::vector<std::string> channels_;
    std::vector<std::string> schannels_;  // shard channels
    // Timers are released in stop(), while the io_context still exists.
    std::unique_ptr<net::steady_timer> retry_timer_, watchdog_, watch_timer_;
    std::chrono::milliseconds timeout_{0};
    std::chrono::steady_clock::time_point progress_{};  // last reply, or first pending command
    std::chrono::milliseconds backoff_{100};
    bool up_ = false;
    bool stopped_ = true;
    std::uint64_t reconnects_ = 0;
    std::string last_error_;
    std::string sentinel_errors_;  // what each sentinel asked in this round said
    std::size_t watch_from_ = 0;   // the sentinel asked while connected
    std::string master_;           // the last master connected to
    std::atomic<std::uint64_t> failovers_{0};
    mutable std::mutex node_mutex_;
    std::string node_;
};

}  // namespace wsx
