#pragma once
/// A Redis Cluster client over redis_connection: the layout (which master holds which of the
/// 16384 slots) is asked of the seed nodes with CLUSTER SLOTS, one connection per master runs
/// the commands of its slots, and one subscriber connection per master holds the shard
/// channels (SSUBSCRIBE) of its slots. -MOVED and -ASK are followed; the layout is asked again
/// every few seconds and after each redirection. Every retry is bounded.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "redis.hpp"

namespace wsx {

inline constexpr std::size_t redis_cluster_slots = 16384;

/// The slot of a key: CRC16 (XMODEM) of its hash tag (the text between the first '{' and the
/// next '}', when not empty) or of the whole key, mod 16384.
std::uint16_t redis_key_slot(std::string_view key);

/// One range of slots and the master that holds it.
struct redis_slot_range {
    std::uint16_t first = 0, last = 0;
    redis_node master;
};

/// Reads a CLUSTER SLOTS reply; nullopt with `error` set when it is not one.
std::optional<std::vector<redis_slot_range>> parse_cluster_slots(const redis_value& v, std::string& error);

/// Everything runs on the io_context given to the constructor, except the accessors marked.
class redis_cluster : public std::enable_shared_from_this<redis_cluster> {
public:
    using reply_handler = redis_connection::reply_handler;

    redis_cluster(net::io_context& ioc, redis_url url, std::string name);
    ~redis_cluster();

    void start();
    void stop();
    /// The layout is known and every master's command connection is up.
    bool connected() const noexcept { return up_; }
    void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

    /// Sends `args` to the master of the slot of args[key]; `done` gets the reply, or nullopt
    /// when it could not be routed or answered within the retries.
    void command(std::vector<std::string> args, std::size_t key, reply_handler done = {});

    /// Keeps `channel` subscribed (SSUBSCRIBE) on the master of its slot, following it when the
    /// slot moves.
    void ssubscribe(const std::string& channel);
    void sunsubscribe(const std::string& channel);

    std::function<void(const std::string& channel, std::string payload)> on_message;
    /// A shard channel's subscription was confirmed: first, after a reconnect, after a move.
    std::function<void(const std::string& channel)> on_ssubscribed;
    std::function<void()> on_up;
    std::function<void(const std::string& why)> on_down;
    /// Layout news, one line each.
    std::function<void(const std::string& line)> on_log;

    /// Any thread: redirections followed.
    std::uint64_t moved() const noexcept { return moved_.load(std::memory_order_relaxed); }
    std::uint64_t asked() const noexcept { return asked_.load(std::memory_order_relaxed); }
    /// Any thread: the masters whose command connection is up ("host:port"), and all masters known.
    std::vector<std::string> connected_nodes() const;
    std::size_t node_count() const;
    const std::string& last_error() const noexcept { return last_error_; }

private:
    struct node {
        std::shared_ptr<redis_connection> cmd, sub;
    };
    struct op;
    using op_ptr = std::shared_ptr<op>;

    redis_url node_url(const std::string& host, std::uint16_t port) const;
    void refresh();
    void ask_layout(std::size_t seed);
    void apply(const std::vector<redis_slot_range>& ranges);
    node& ensure(const std::string& addr);
    void dispatch(const op_ptr& o);
    void answered(const op_ptr& o, std::optional<redis_value> v);
    void retry_later(const op_ptr& o);
    void arm_serial(std::uint16_t slot, std::chrono::milliseconds delay);
    void finish(const op_ptr& o, std::optional<redis_value> v);
    void place(const std::string& channel);
    void check_up();
    void tick();
    std::string owner(std::uint16_t slot) const;

    net::io_context& ioc_;
    redis_url url_;
    std::string name_;
    std::chrono::milliseconds timeout_{2000};
    std::map<std::string, node> nodes_;      // "host:port" → its connections (masters only)
    std::vector<std::string> masters_;       // index → "host:port"
    std::array<std::uint16_t, redis_cluster_slots> slots_{};  // slot → index in masters_ (+1; 0: nobody)
    // The last layout read (slots_ and masters_ also follow MOVED replies).
    std::vector<std::string> layout_masters_;
    std::array<std::uint16_t, redis_cluster_slots> layout_slots_{};
    std::map<std::string, std::string> channels_;  // wanted shard channel → the node it is subscribed on
    struct held {
        std::vector<op_ptr> list;  // in the order given
        bool head_out = false;     // one of them is being tried
        bool timer = false;        // the next try is scheduled
    };
    std::map<std::uint16_t, held> serial_;  // slot → commands held while one of them is retried
    std::uint64_t next_seq_ = 0;  // commands given, in order
    std::map<std::string, int> quick_moves_;  // shard channel → times placed again since confirmed
    std::shared_ptr<redis_connection> probe_;
    std::size_t probe_seed_ = 0;
    std::unique_ptr<net::steady_timer> tick_, probe_timer_;
    std::chrono::steady_clock::time_point last_refresh_{};
    bool refreshing_ = false, again_ = false, up_ = false, stopped_ = true, known_ = false;
    bool refresh_armed_ = false;    // a refresh waits for refresh_gap to pass
    std::size_t refresh_turn_ = 0;  // which connected master the next refresh asks
    std::string last_error_;
    std::atomic<std::uint64_t> moved_{0}, asked_{0};
    mutable std::mutex nodes_mutex_;
    std::vector<std::string> up_nodes_;  // under nodes_mutex_
    std::size_t node_count_ = 0;         // under nodes_mutex_
};

}  // namespace wsx
