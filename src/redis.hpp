#pragma once
/// A Redis connection driven by the Asio event loop: hiredis's async context with its
/// read/write hooks mapped onto a posix::stream_descriptor. It reconnects on its own with
/// backoff, re-authenticates, re-selects the database and re-subscribes its channels.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net.hpp"

struct redisAsyncContext;

namespace wsx {

/// `redis://[user:pass@]host:port[/db]`.
struct redis_url {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string user, password;
    int db = 0;
};

/// Parses a redis:// URL; nullopt with `error` set when it is not one.
std::optional<redis_url> parse_redis_url(const std::string& text, std::string& error);

/// A reply, copied out of hiredis's reply tree.
struct redis_value {
    enum class kind { nil, string, integer, array, status, error } type = kind::nil;
    std::string str;  ///< string, status and error text
    long long integer = 0;
    std::vector<redis_value> elements;

    bool is_error() const noexcept { return type == kind::error; }
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
    /// pending commands get nullopt and a reconnect follows. 0: wait forever.
    void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

    std::uint64_t reconnects() const noexcept { return reconnects_; }
    /// Why the last connection attempt or command failed (empty when nothing failed).
    const std::string& last_error() const noexcept { return last_error_; }

private:
    struct io_state;
    void connect();
    void schedule_reconnect();
    void arm_watchdog();
    void connected_cb(int status);
    void disconnected_cb(int status);
    static void on_connect(const ::redisAsyncContext* ac, int status);
    static void on_disconnect(const ::redisAsyncContext* ac, int status);
    static void on_reply(::redisAsyncContext* ac, void* reply, void* privdata);
    static void on_sub_reply(::redisAsyncContext* ac, void* reply, void* privdata);

    net::io_context& ioc_;
    redis_url url_;
    std::string name_;
    ::redisAsyncContext* ac_ = nullptr;
    std::shared_ptr<io_state> io_;
    std::vector<std::string> channels_;
    net::steady_timer retry_timer_;
    net::steady_timer watchdog_;
    std::chrono::milliseconds timeout_{0};
    std::size_t pending_ = 0;                       // commands sent and not answered
    std::chrono::steady_clock::time_point progress_{};  // last reply, or first pending command
    bool timed_out_ = false;
    std::chrono::milliseconds backoff_{100};
    bool up_ = false;
    bool stopped_ = true;
    bool ever_up_ = false;
    std::uint64_t reconnects_ = 0;
    std::string last_error_;
};

}  // namespace wsx
