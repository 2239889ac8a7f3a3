#pragma once
/// A Redis connection driven by the Asio event loop, over TCP or TLS (rediss://). The socket
/// is Asio's; hiredis only encodes commands and parses replies. It reconnects on its own with
/// backoff, re-authenticates, re-selects the database and re-subscribes its channels.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net.hpp"

struct redisReader;

namespace wsx {

/// `redis://[user:pass@]host:port[/db]`, or `rediss://...` for TLS.
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
};

/// Parses a redis:// or rediss:// URL; nullopt with `error` set when it is not one.
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

/// Splits a byte stream from Redis into replies, however it is cut.
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

private:
    ::redisReader* r_;
};

/// One connection. All calls and callbacks happen on the io_context given to the constructor.
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
    std::function<void(const std::string& channel, std::string payload)> on_message;
    /// The connection is ready (after a connect or a reconnect).
    std::function<void()> on_up;
    /// The connection went away (it will be retried); `why` says what happened.
    std::function<void(const std::string& why)> on_down;

    /// A command unanswered this long (a frozen or unreachable server) drops the connection:
    /// pending commands get nullopt and a reconnect follows. It also bounds each connection
    /// attempt (TCP, TLS, AUTH). 0: wait forever.
    void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

    std::uint64_t reconnects() const noexcept { return reconnects_; }
    /// Why the last connection attempt or command failed (empty when nothing failed).
    const std::string& last_error() const noexcept { return last_error_; }

private:
    struct link;  // one TCP or TLS connection and the commands in flight on it
    using link_ptr = std::shared_ptr<link>;

    void connect();
    void on_resolved(const link_ptr& l, const std::vector<tcp::endpoint>& eps);
    void on_connected(const link_ptr& l);
    void start_session(const link_ptr& l);
    void session_ready(const link_ptr& l);
    void send(const link_ptr& l, std::string bytes, reply_handler done, std::size_t subscribes = 0);
    void do_write(const link_ptr& l);
    void do_read(const link_ptr& l);
    void on_reply(const link_ptr& l, redis_value v);
    void fail(link_ptr l, std::string why);  // by value: it may be given link_, which it resets
    std::string describe_io_error(const link_ptr& l, const error_code& ec, bool handshake) const;
    void schedule_reconnect();
    void arm_watchdog();

    net::io_context& ioc_;
    redis_url url_;
    std::string name_;  // which connection this is ("commands", "subscriber")
    std::shared_ptr<ssl::context> tls_;  // rediss://: made at the first connect
    link_ptr link_;     // the current connection attempt or connection
    std::vector<std::string> channels_;
    // Timers are released in stop(), while the io_context still exists.
    std::unique_ptr<net::steady_timer> retry_timer_, watchdog_;
    std::chrono::milliseconds timeout_{0};
    std::chrono::steady_clock::time_point progress_{};  // last reply, or first pending command
    std::chrono::milliseconds backoff_{100};
    bool up_ = false;
    bool stopped_ = true;
    std::uint64_t reconnects_ = 0;
    std::string last_error_;
};

}  // namespace wsx
