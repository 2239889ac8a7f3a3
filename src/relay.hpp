#pragma once
/// `wsx relay`: a pub/sub hub. Clients connected to /<topic> publish and receive raw
/// messages; clients speaking the `wsx.relay.v1` JSON protocol subscribe to many topics,
/// query presence and send direct messages. Everything is in-process unless a Redis URL is
/// given, in which case every instance pointed at the same Redis forms one logical hub.
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "redis.hpp"
#include "serve_app.hpp"

#include <map>

namespace wsx {

class redis_cluster;

/// The subprotocol that selects the JSON protocol.
inline constexpr const char* relay_subprotocol = "wsx.relay.v1";

/// What happens to a subscriber whose queue (bytes) is full.
enum class slow_policy { drop_oldest, close };

/// A subscriber's messages in batches: one text frame holding a JSON array of up to `max`
/// messages, sent when it is full or `interval` after its first message, whichever is first.
struct relay_batch {
    std::size_t max = 1;
    std::chrono::nanoseconds interval{0};
};
inline constexpr std::size_t relay_batch_max = 10000;                               ///< largest `max`
inline constexpr std::chrono::nanoseconds relay_batch_max_interval = std::chrono::minutes(1);  ///< longest `interval`

/// Parses the query's `batch` value, "N,INTERVAL" (e.g. "100,50ms"); nullopt with `error` set
/// to one line naming the problem and the fix.
std::optional<relay_batch> parse_relay_batch(std::string_view text, std::string& error);

/// The close code and reason of a connection replaced by a newer one of the same user
/// (--one-connection-per-user).
inline constexpr std::uint16_t relay_replaced_code = 4001;

struct relay_options {
    bool echo_self = false;                  ///< publishers receive their own messages too
    std::size_t history = 0;                 ///< messages kept per topic for replay
    std::size_t subscriber_queue = 1u << 20; ///< bytes a subscriber may have waiting in the relay
    slow_policy slow = slow_policy::drop_oldest;
    /// Feed a session while it holds at most this many bytes (half its send queue limit, where
    /// its on_writable fires); the rest waits in the relay's bounded queue.
    std::size_t session_high_water = 512u << 10;
    std::string control_path;                ///< JSON protocol at this path too (empty: subprotocol only)
    std::string acl_claim = "topics";        ///< JWT claim listing the topics a token may use
    std::optional<redis_url> redis;          ///< set: share topics through this Redis
    std::string redis_prefix = "wsx:relay";  ///< key and channel prefix in Redis
    std::chrono::milliseconds presence_ttl{10000};  ///< an instance silent this long is gone
    std::chrono::milliseconds redis_timeout{2000};  ///< a Redis command unanswered this long: reconnect
    /// An authenticated user holds one connection at a time: a new one closes the older ones (on
    /// every instance sharing the Redis) with 4001 "replaced".
    bool one_connection_per_user = false;
    /// Data messages between instances go through a Redis Stream (each instance reads on from
    /// the last entry it saw) instead of pub/sub: an outage delays them instead of losing them.
    bool durable = false;
    std::size_t durable_maxlen = 100000;    ///< durable: stream entries Redis keeps (about)
    std::size_t durable_buffer = 8u << 20;  ///< durable: bytes of publishes held for Redis at most
    bool quiet = false;
    std::function<void(const std::string&)> log;     ///< log lines (stderr); null: silent
};

/// One message travelling through the hub.
struct relay_message {
    enum class kind { data, join, leave, direct };
    kind type = kind::data;
    std::string topic;         ///< for direct messages: the addressee
    std::uint64_t id = 0;      ///< per topic, increasing; 0 for events
    std::string from;          ///< the sender's identity (or the member for join/leave)
    std::string data;
    bool binary = false;
    std::uint64_t origin = 0;  ///< the publishing connection on this instance; 0 from elsewhere
    std::string json;          ///< the envelope protocol clients receive, encoded once

    /// What a raw client's batch holds for this message (a JSON string, or
    /// {"data":BASE64,"binary":true}): encoded once, by the first batch that needs it, for
    /// every batching subscriber.
    const std::string& raw_batch_element() const;

private:
    struct lazy_text {
        std::once_flag once;
        std::string text;
        lazy_text() = default;
        lazy_text(const lazy_text&) {}  // a copy is another message: encoded again when needed
        lazy_text& operator=(const lazy_text&) { return *this; }
    };
    mutable lazy_text raw_batch_;
};
using relay_message_ptr = std::shared_ptr<const relay_message>;

/// The JSON envelope of a delivery ({"type":"message","topic","id","from","data"[,"binary"]}).
std::string relay_envelope(const relay_message& m);
/// The form of a message inside Redis (pub/sub payload and history entry); binary-safe.
std::string relay_wire_encode(const relay_message& m, const std::string& instance);
/// Parses relay_wire_encode's output; nullopt when it is not one. `instance` gets the origin.
std::optional<relay_message> relay_wire_decode(std::string_view wire, std::string& instance);

/// Glob match: `*` any run of characters, `?` one character.
bool topic_matches(std::string_view pattern, std::string_view topic);
/// A valid topic or identity: 1..256 bytes, no control characters.
bool valid_name(std::string_view name);

/// Topic access from JWT claims: the claim holds a list of patterns (subscribe and publish),
/// or {"subscribe":[...],"publish":[...]}. No claim: everything is allowed.
struct topic_acl {
    bool all = true;
    std::vector<std::string> subscribe, publish;
    bool may_subscribe(std::string_view topic) const;
    bool may_publish(std::string_view topic) const;
    /// nullopt with `error` set when the claim has the wrong shape.
    static std::optional<topic_acl> from_claims(const std::string& claims_json, const std::string& claim, std::string& error);
};

/// A receiver of the hub's deliveries: one connection. deliver/replay_done run on `executor`.
class relay_subscriber {
public:
    virtual ~relay_subscriber() = default;
    /// False when the message is not for this subscriber (its own, or an event it does not take).
    virtual bool deliver(const relay_message_ptr& m) = 0;
    /// The history asked for at subscribe time (oldest first; may be empty).
    virtual void replay_done(const std::string& topic, std::vector<relay_message_ptr> history) = 0;
    /// A newer connection of the same user took over (--one-connection-per-user): close.
    virtual void replace() {}

    std::uint64_t conn_id = 0;
    std::string identity;
    bool exclusive = false;            ///< the identity is an authenticated user held by one connection
    std::size_t worker = 0;            ///< deliveries are batched per worker
    net::any_io_executor executor;
};

/// What a new subscriber wants of the history.
struct replay_request {
    std::size_t last = 0;                 ///< the last N kept (SIZE_MAX: all)
    std::optional<std::uint64_t> since;   ///< everything after this id
};

/// One request of the JSON protocol, as read from a client's message (nothing done yet).
struct relay_request {
    std::string op;                        ///< subscribe, unsubscribe, publish, presence or send
    std::string topic;                     ///< all but send
    std::string to;                        ///< send: the addressee's identity
    std::optional<replay_request> replay;  ///< subscribe: the history asked for
    std::string data;                      ///< publish and send
    bool binary = false;                   ///< publish and send: `data` is binary
    std::optional<relay_batch> batch;      ///< batch: the new setting (none: one message per frame)
};

/// A request refused before anything was done: the fields of the error reply.
struct relay_request_error {
    std::string error;
    std::string op;     ///< empty when the request named none that could be read
    std::string topic;  ///< empty when the error is not about a topic
    bool acl = false;   ///< refused by the token's topic ACL (counted apart)
};

/// Reads one message of the JSON protocol (`binary`: it came in a binary frame), checking each
/// field the way the relay answers it, in the same order, the ACL included. Pure: the
/// connection then acts on the request or sends the error. Never throws.
std::variant<relay_request, relay_request_error> parse_relay_request(std::string_view payload, bool binary,
                                                                     const topic_acl& acl);

/// Counters of the hub, readable from any thread.
struct relay_counters {
    std::atomic<std::uint64_t> published{0}, delivered{0}, slow_dropped{0}, slow_closed{0}, protocol_errors{0},
        acl_refusals{0}, direct_sent{0}, direct_failed{0};
    std::atomic<std::uint64_t> redis_out{0}, redis_in{0}, redis_local_only{0}, redis_disconnects{0}, redis_missed{0};
    std::atomic<std::uint64_t> replaced{0}, batches{0};
    /// --durable: read from the stream after an outage (published while this instance or its
    /// origin could not reach Redis), held here while Redis was unreachable, refused because the
    /// outbox was full, refused by Redis (an error reply: dropped).
    std::atomic<std::uint64_t> redis_replayed{0}, durable_held{0}, durable_refused{0}, durable_failed{0};
    std::atomic<std::int64_t> subscribers{0};
};

/// Topics, history, presence and identities; thread-safe. With Redis, the Redis work runs on
/// the main context given to start().
class relay_hub {
public:
    explicit relay_hub(relay_options o);
    ~relay_hub();
    /// Starts the Redis connections and the heartbeat (when Redis is used).
    void start(net::io_context& main);
    void stop();

    const relay_options& options() const { return o_; }
    const std::string& instance() const { return instance_; }
    relay_counters& counters() { return c_; }
    bool redis_up() const;

    /// Registers a connection's identity (for direct messages).
    void attach(const std::shared_ptr<relay_subscriber>& s);
    /// Unsubscribes from `topics` and forgets the identity; on the subscriber's executor.
    void detach(relay_subscriber& s, const std::set<std::string>& topics);
    /// Adds `s` to `topic`; with `replay`, s->replay_done follows with the history.
    void subscribe(const std::string& topic, const std::shared_ptr<relay_subscriber>& s, std::optional<replay_request> replay);
    void unsubscribe(const std::string& topic, relay_subscriber& s);
    /// False when refused: --durable and the outbox already holds --durable-buffer bytes.
    bool publish(const std::string& topic, const relay_subscriber& from, std::string data, bool binary);
    /// Identities subscribed to `topic` (all instances). `done` runs on an arbitrary thread.
    void presence(const std::string& topic, std::function<void(std::vector<std::string>)> done);
    /// Sends to every connection holding identity `to`; done("") on success, else why not.
    void send_direct(const relay_subscriber& from, const std::string& to, std::string data, bool binary,
                     std::function<void(std::string)> done);

    void render_metrics(std::string& out);
    void log(const std::string& line) const;
    /// One line summarising the counters (for the log at exit).
    std::string summary();

private:
    struct topic_state;
    using by_worker = std::vector<std::vector<std::shared_ptr<relay_subscriber>>>;
    std::shared_ptr<topic_state> topic(const std::string& name, bool create);
    void rebuild(topic_state& t);
    void fan_out(const std::shared_ptr<topic_state>& t, const relay_message_ptr& m);
    void post_drain(const std::shared_ptr<topic_state>& t, std::size_t worker, net::any_io_executor ex, std::size_t seen);
    void drain(const std::shared_ptr<topic_state>& t, std::size_t worker, net::any_io_executor ex, std::size_t seen);
    void publish_local(std::shared_ptr<relay_message> m);
    void publish_event(relay_message::kind k, const std::string& topic, const std::string& member, std::uint64_t origin);
    std::vector<relay_message_ptr> local_history(topic_state& t, const replay_request& r);
    bool deliver_direct_local(const relay_message_ptr& m);
    // --one-connection-per-user across instances (main context only)
    void claim_identity(const std::string& id, std::uint64_t conn, std::uint64_t at_us, std::weak_ptr<relay_subscriber> w);
    void control_received(std::string_view payload);
    void forget_claims(const std::string& id);
    // Redis (main context only)
    void redis_received(const std::string& channel, std::string payload);
    void redis_went_up();
    void redis_went_down(const std::string& why);
    void heartbeat();
    void track_sequence(const std::string& topic, std::uint64_t id);
    std::string key(std::string_view kind, std::string_view name) const;
    std::string tkey(std::string_view kind, std::string_view topic) const;  // a topic's key (hash-tagged with a cluster)
    std::string inst_channel(std::string_view instance) const;
    std::string ctl_channel() const;
    bool redis_ready() const;  // the commands connection (or the cluster) is up
    /// To the one Redis, or the cluster's master of the slot of args[key_arg].
    void redis_command(std::vector<std::string> args, std::size_t key_arg, redis_connection::reply_handler done = {});
    // Redis Cluster (main context only)
    struct topic_order {
        bool based = false;      // seen is known (the channel was subscribed and the id asked)
        std::uint64_t seen = 0;  // the last id delivered here
        std::map<std::uint64_t, std::shared_ptr<relay_message>> held;  // arrived ahead of missing ones
        bool filling = false, refill = false;
        int tries = 0;  // history reads that did not fill the gap
    };
    void sync_channel(const std::string& name);
    void channel_ready(const std::string& channel);
    void cluster_deliver(std::shared_ptr<relay_message> m);
    void flush_order(topic_order& o);
    void set_base(const std::string& name, topic_order& o, std::uint64_t base);
    /// Subscribed again: the topic's ids asked of its master (`tries` times so far) to tell a
    /// gap from ids that went back.
    void recheck_base(const std::string& name, int tries);
    void fill_gap(const std::string& name);
    void cluster_presence(const std::string& name, std::function<void(std::vector<std::string>)> done,
                          std::function<std::vector<std::string>()> local,
                          std::function<void(std::vector<std::string>, const std::function<void(std::vector<std::string>)>&)> finish);
    // --durable (main context only, except publish_durable)
    bool publish_durable(std::shared_ptr<relay_message> m);
    void start_stream(net::io_context& main);
    void outbox_push(std::shared_ptr<relay_message> m, std::size_t cost);
    void outbox_pump();
    void outbox_answered(std::uint64_t seq, std::uint64_t generation, std::optional<redis_value> v);
    void read_back(std::uint64_t seq);
    void check_epoch(redis_connection& link, std::function<void()> then);
    void data_lost();
    void stream_went_up();
    void stream_position();
    void stream_read();
    void stream_entry(const redis_value& e);
    void durable_report();

    relay_options o_;
    std::string instance_;
    relay_counters c_;
    mutable std::mutex topics_mutex_;
    std::unordered_map<std::string, std::shared_ptr<topic_state>> topics_;
    std::mutex ids_mutex_;
    std::unordered_multimap<std::string, std::weak_ptr<relay_subscriber>> identities_;
    std::atomic<std::uint64_t> next_conn_{1};

    net::io_context* main_ = nullptr;
    std::shared_ptr<redis_connection> cmd_, sub_;
    std::shared_ptr<redis_cluster> cluster_;  // redis+cluster://, instead of cmd_ and sub_
    std::unordered_map<std::string, topic_order> order_;  // topics whose shard channel is subscribed
    std::unordered_map<std::string, std::string> channel_topics_;  // shard channel → topic
    std::unique_ptr<net::steady_timer> heartbeat_timer_;
    std::atomic<bool> redis_up_{false};
    steady_clock::time_point down_since_{};
    std::uint64_t local_only_at_down_ = 0;
    bool was_down_ = false;
    std::unordered_map<std::string, std::uint64_t> redis_seen_;  // main context: last id per topic

    // --durable. Publishes wait in the outbox (main context) until Redis has added them to the
    // stream; they reach subscribers, here as everywhere, when read back from the stream, so
    // every subscriber of a topic sees one order and one id per message.
    struct outbox_entry {
        std::uint64_t seq;  // per instance, increasing: Redis adds an entry once however often it is sent
        std::shared_ptr<relay_message> m;
        std::size_t cost;    // bytes counted against --durable-buffer
        std::uint64_t at_ms; // wall clock when published
        bool held;           // published while Redis was unreachable
    };
    std::shared_ptr<redis_connection> stream_;
    std::deque<outbox_entry> outbox_;   // not yet taken by Redis
    std::deque<outbox_entry> unread_;   // in the stream, not yet read back here
    /// Read back here lately (kept while Redis is unreachable): sent again if Redis comes back
    /// without its data, for the relays that had not read them.
    std::deque<std::pair<steady_clock::time_point, outbox_entry>> recent_;
    std::size_t recent_bytes_ = 0;
    std::string epoch_;    // the value of PREFIX:epoch: a new one means Redis lost its data
    bool cmd_ready_ = false;  // the commands link checked the epoch since it (re)connected
    std::size_t outbox_sent_ = 0;        // entries at the front sent on the current connection
    std::uint64_t outbox_generation_ = 0;  // bumped when a connection's sends are given up
    std::uint64_t next_seq_ = 1;
    std::atomic<std::size_t> outbox_bytes_{0}, outbox_count_{0};  // outbox_ and unread_
    std::string stream_last_;  // the last stream entry read ("0-0": from the start); empty: not known yet
    bool stream_reading_ = false;
    bool stream_caught_up_ = false;      // the last read returned less than a full batch
    std::uint64_t stream_back_at_ms_ = 0;  // wall clock when the stream link came back after an outage
    std::unique_ptr<net::steady_timer> stream_retry_;
    std::unordered_map<std::string, std::uint64_t> stream_seqs_;  // per instance: the highest seq read
    bool report_pending_ = false;        // a reconnect to report once the held publishes are read back
    std::uint64_t report_seq_ = 0;       // the last publish held when Redis came back
    double report_down_secs_ = 0;
    std::uint64_t held_at_down_ = 0, replayed_at_down_ = 0;
    bool stopping_ = false;
    /// Main context: per exclusive identity held here, the newest claim seen from any instance
    /// and this instance's connections with the claim number Redis gave them (0: not yet).
    struct claims {
        /// Claims are ordered by (when the connection arrived, in µs of wall-clock time; the
        /// number Redis gave the claim): a claim's trip to Redis may be slower than a newer
        /// connection's elsewhere, the moment its connection arrived is not.
        using order = std::pair<std::uint64_t, std::uint64_t>;
        order latest{0, 0};
        struct conn {
            std::uint64_t id, at_us, number;
            std::weak_ptr<relay_subscriber> sub;
        };
        std::vector<conn> conns;
    };
    std::unordered_map<std::string, claims> claims_;

public:
    std::uint64_t next_conn_id() { return next_conn_++; }
};

/// The relay as a service of the serve machinery.
class relay_service final : public service {
public:
    explicit relay_service(relay_options o);
    void start(net::io_context& main) override;
    std::optional<http_response> check_upgrade(const http_request& req, peer_info& peer, std::string& subprotocol) override;
    std::shared_ptr<channel_events> make_handler(std::shared_ptr<ws_session> s, const http_request& req, const peer_info& peer,
                                                 std::uint64_t id) override;
    void render_metrics(std::string& out) override;
    void stop() override;
    relay_hub& hub() { return *hub_; }

private:
    std::shared_ptr<relay_hub> hub_;
};

/// What else a connection asked for, or was given, at its upgrade.
struct relay_conn_settings {
    std::optional<relay_batch> batch;  ///< ?batch=N,INTERVAL
    bool exclusive = false;            ///< the identity is an authenticated user (--one-connection-per-user)
};

/// Creates the handler of one relay connection (exposed for tests). `topic` empty: the JSON
/// protocol; else a raw subscriber/publisher of that topic.
std::shared_ptr<channel_events> make_relay_connection(std::shared_ptr<relay_hub> hub, std::shared_ptr<ws_session> s,
                                                      std::size_t worker, std::string identity, std::string topic,
                                                      topic_acl acl, std::optional<replay_request> replay,
                                                      relay_conn_settings settings = {});

}  // namespace wsx
