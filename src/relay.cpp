#include "relay.hpp"

#include <algorithm>
#include <charconv>
#include <random>

#include <boost/url/parse.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "redis_cluster.hpp"
#include "random_seed.hpp"
#include "units.hpp"

namespace wsx {

using json = nlohmann::json;

namespace {
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

// Publishing in Redis: one atomic step assigns the id, keeps the history and fans out.
// ARGV[5] is the highest id this instance has seen for the topic: ids stay increasing even
// after Redis restarted without its data, or after ids were assigned locally during an outage.
constexpr const char* publish_script =
    "local id = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[5])\n"
    "if id <= floor then id = floor + 1 redis.call('SET', KEYS[1], id) end\n"
    "local msg = ARGV[1] .. id .. ARGV[2]\n"
    "local n = tonumber(ARGV[3])\n"
    "if n > 0 then redis.call('RPUSH', KEYS[2], msg) redis.call('LTRIM', KEYS[2], -n, -1) end\n"
    "redis.call('PUBLISH', ARGV[4], msg)\n"
    "return id\n";

// The same with a Redis Cluster: the topic's own shard channel (ARGV[4], in the slot of the
// keys), SPUBLISH.
constexpr const char* publish_script_cluster =
    "local id = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[5])\n"
    "if id <= floor then id = floor + 1 redis.call('SET', KEYS[1], id) end\n"
    "local msg = ARGV[1] .. id .. ARGV[2]\n"
    "local n = tonumber(ARGV[3])\n"
    "if n > 0 then redis.call('RPUSH', KEYS[2], msg) redis.call('LTRIM', KEYS[2], -n, -1) end\n"
    "redis.call('SPUBLISH', ARGV[4], msg)\n"
    "return id\n";

// --durable: the same step, but the message goes to the stream (approximately capped at ARGV[5]
// entries) instead of the channel, and only once per (instance, seq): KEYS[4] holds the highest
// seq of this instance Redis has taken, so an entry sent again after a lost reply is not added
// twice (0 is returned for it). The entry's other fields: s the seq, c the publishing
// connection, t when it was published (ms), h 1 if it was held while Redis was unreachable.
constexpr const char* durable_publish_script =
    "local seq = tonumber(ARGV[6])\n"
    "if seq <= tonumber(redis.call('GET', KEYS[4]) or '0') then return 0 end\n"
    "redis.call('SET', KEYS[4], ARGV[6], 'PX', ARGV[10])\n"
    "local id = redis.call('INCR', KEYS[1])\n"
    "local floor = tonumber(ARGV[4])\n"
    "if id <= floor then id = floor + 1 redis.call('SET', KEYS[1], id) end\n"
    "local msg = ARGV[1] .. id .. ARGV[2]\n"
    "local n = tonumber(ARGV[3])\n"
    "if n > 0 then redis.call('RPUSH', KEYS[2], msg) redis.call('LTRIM', KEYS[2], -n, -1) end\n"
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'm', msg, 's', ARGV[6], 'c', ARGV[7], 't', ARGV[8], 'h', ARGV[9])\n"
    "return id\n";

// --durable: the value of PREFIX:epoch, set by the first relay to connect. Another value later
// means Redis lost its data (restarted without persistence) in between.
constexpr const char* epoch_script =
    "redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
    "return redis.call('GET', KEYS[1])\n";

// How long a publish read back here is kept to be sent again, should Redis come back without
// its data: other relays read an entry about when this one does.
constexpr auto durable_resend_window = std::chrono::seconds(5);

// How long Redis remembers an instance's highest seq: longer than any outage an outbox waits out.
constexpr const char* durable_seq_ttl_ms = "604800000";  // 7 days
// Stream entries read per XREAD.
constexpr std::size_t stream_batch = 1000;
// Outbox entries sent to Redis before their answers (the rest waits in the outbox).
constexpr std::size_t outbox_window = 256;

std::uint64_t wall_ms() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

// Presence: entries of instances whose heartbeat key expired are removed as they are found.
constexpr const char* presence_script =
    "local out = {}\n"
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #h, 2 do\n"
    "  local inst = string.match(h[i], '^(.-)/')\n"
    "  if inst and redis.call('EXISTS', ARGV[1] .. inst) == 1 then out[#out + 1] = h[i + 1]\n"
    "  else redis.call('HDEL', KEYS[1], h[i]) end\n"
    "end\n"
    "return out\n";

// --one-connection-per-user: a claim on an identity gets a number (increasing across every
// instance) and is announced to all; ARGV[2] and ARGV[3] go around the number. Claims are
// ordered by the time their connection arrived first, by the number second.
constexpr const char* claim_script =
    "local n = redis.call('INCR', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[1], ARGV[2] .. n .. ARGV[3])\n"
    "return n\n";

constexpr const char* claim_script_cluster =
    "local n = redis.call('INCR', KEYS[1])\n"
    "redis.call('SPUBLISH', ARGV[1], ARGV[2] .. n .. ARGV[3])\n"
    "return n\n";

// Forget an identity only if this instance still holds it.
constexpr const char* forget_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0\n";

char kind_char(relay_message::kind k) {
    switch (k) {
    case relay_message::kind::data: return 'd';
    case relay_message::kind::join: return 'j';
    case relay_message::kind::leave: return 'l';
    case relay_message::kind::direct: return 'm';
    }
    return 'd';
}
}  // namespace

// Encodings ------------------------------------------------------------------------------

std::string relay_envelope(const relay_message& m) {
    json j;
    switch (m.type) {
    case relay_message::kind::data:
        j = {{"type", "message"}, {"topic", m.topic}, {"id", m.id}, {"from", m.from}};
        break;
    case relay_message::kind::join:
    case relay_message::kind::leave:
        return dump({{"type", m.type == relay_message::kind::join ? "join" : "leave"}, {"topic", m.topic}, {"member", m.from}});
    case relay_message::kind::direct:
        j = {{"type", "direct"}, {"from", m.from}};
        break;
    }
    if (m.binary) {
        j["data"] = base64_encode(m.data);
        j["binary"] = true;
    } else {
        j["data"] = m.data;
    }
    return dump(j);
}

namespace {
// The wire form up to the id and after it: a publishing script puts the id it assigns between.
std::pair<std::string, std::string> relay_wire_around_id(const relay_message& m, const std::string& instance) {
    return {fmt::format("wsx1\n{}\n{}\n{}\n", instance, kind_char(m.type), m.topic),
            fmt::format("\n{}\n{}\n", m.from, m.binary ? 'b' : 't') + m.data};
}
}  // namespace

std::string relay_wire_encode(const relay_message& m, const std::string& instance) {
    auto [prefix, suffix] = relay_wire_around_id(m, instance);
    return prefix + std::to_string(m.id) + suffix;
}

std::optional<relay_message> relay_wire_decode(std::string_view w, std::string& instance) {
    std::string_view f[7];
    for (auto& part : f) {
        auto nl = w.find('\n');
        if (nl == std::string_view::npos) return std::nullopt;
        part = w.substr(0, nl);
        w.remove_prefix(nl + 1);
    }
    if (f[0] != "wsx1" || f[2].size() != 1 || f[6].size() != 1) return std::nullopt;
    relay_message m;
    switch (f[2][0]) {
    case 'd': m.type = relay_message::kind::data; break;
    case 'j': m.type = relay_message::kind::join; break;
    case 'l': m.type = relay_message::kind::leave; break;
    case 'm': m.type = relay_message::kind::direct; break;
    default: return std::nullopt;
    }
    auto id = parse_u64(f[4]);
    if (!id) return std::nullopt;
    instance = std::string(f[1]);
    m.topic = std::string(f[3]);
    m.id = *id;
    m.from = std::string(f[5]);
    m.binary = f[6] == "b";
    m.data = std::string(w);
    return m;
}

const std::string& relay_message::raw_batch_element() const {
    std::call_once(raw_batch_.once, [this] {
        raw_batch_.text = binary ? dump({{"data", base64_encode(data)}, {"binary", true}}) : dump(data);
    });
    return raw_batch_.text;
}

std::optional<relay_batch> parse_relay_batch(std::string_view text, std::string& error) {
    const auto comma = text.find(',');
    if (comma == std::string_view::npos) {
        error = fmt::format("batch: expected N,INTERVAL (messages per frame, longest wait), e.g. batch=100,50ms");
        return std::nullopt;
    }
    relay_batch b;
    const auto n = parse_u64(text.substr(0, comma));
    if (!n || *n < 1 || *n > relay_batch_max) {
        error = fmt::format("batch: N must be a whole number from 1 to {}, e.g. batch=100,50ms", relay_batch_max);
        return std::nullopt;
    }
    b.max = *n;
    const auto d = parse_duration(text.substr(comma + 1));
    if (!d || d->count() <= 0 || *d > relay_batch_max_interval) {
        error = fmt::format("batch: INTERVAL must be a duration above 0 and at most {}, e.g. batch=100,50ms",
                            format_duration(relay_batch_max_interval));
        return std::nullopt;
    }
    b.interval = *d;
    return b;
}

bool topic_matches(std::string_view p, std::string_view t) {
    // Iterative glob with one backtrack point (the last '*').
    std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
    while (ti < t.size()) {
        // A '*' is a wildcard before anything else, also where the topic holds a '*' too (taken
        // as a literal there, it would match only that one character).
        if (pi < p.size() && p[pi] == '*') {
            star = pi++;
            mark = ti;
        } else if (pi < p.size() && (p[pi] == '?' || p[pi] == t[ti])) {
            ++pi;
            ++ti;
        } else if (star != std::string_view::npos) {
            pi = star + 1;
            ti = ++mark;
        } else {
            return false;
        }
    }
    while (pi < p.size() && p[pi] == '*') ++pi;
    return pi == p.size();
}

bool valid_name(std::string_view n) {
    if (n.empty() || n.size() > 256) return false;
    return std::none_of(n.begin(), n.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool topic_acl::may_subscribe(std::string_view t) const {
    return all || std::any_of(subscribe.begin(), subscribe.end(), [&](const auto& p) { return topic_matches(p, t); });
}

bool topic_acl::may_publish(std::string_view t) const {
    return all || std::any_of(publish.begin(), publish.end(), [&](const auto& p) { return topic_matches(p, t); });
}

std::optional<topic_acl> topic_acl::from_claims(const std::string& claims_json, const std::string& claim, std::string& error) {
    topic_acl acl;
    if (claims_json.empty() || claim.empty()) return acl;
    auto j = json::parse(claims_json, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains(claim)) return acl;
    auto list = [&](const json& v, std::vector<std::string>& out) {
        if (!v.is_array()) return false;
        for (const auto& e : v) {
            if (!e.is_string()) return false;
            out.push_back(e.get<std::string>());
        }
        return true;
    };
    const auto& c = j[claim];
    acl.all = false;
    if (c.is_array()) {
        if (!list(c, acl.subscribe)) {
            error = fmt::format("claim '{}' must list topic patterns (strings)", claim);
            return std::nullopt;
        }
        acl.publish = acl.subscribe;
        return acl;
    }
    if (c.is_object()) {
        bool ok = true;
        if (c.contains("subscribe")) ok = ok && list(c["subscribe"], acl.subscribe);
        if (c.contains("publish")) ok = ok && list(c["publish"], acl.publish);
        if (ok) return acl;
    }
    error = fmt::format("claim '{}' must be a list of topic patterns or {{\"subscribe\":[...],\"publish\":[...]}}", claim);
    return std::nullopt;
}

// The JSON protocol's requests ---------------------------------------------------------------

namespace {

/// The fields of one request after its "op", each checked as the relay answers it.
std::variant<relay_request, relay_request_error> read_request(const json& j, const std::string& op, const topic_acl& acl) {
    relay_request r;
    r.op = op;
    auto refuse = [&](std::string what, std::string topic = {}, bool by_acl = false) {
        return relay_request_error{std::move(what), op, std::move(topic), by_acl};
    };
    auto read_topic = [&]() -> std::optional<relay_request_error> {
        auto it = j.find("topic");
        if (it == j.end() || !it->is_string()) return refuse("missing \"topic\" (a string)");
        r.topic = it->get<std::string>();
        if (!valid_name(r.topic)) return refuse("a topic is 1 to 256 bytes without control characters", r.topic);
        return std::nullopt;
    };
    // A string (text), base64 with "binary":true, or any other JSON value (sent as its JSON text).
    auto read_data = [&]() -> std::optional<relay_request_error> {
        auto it = j.find("data");
        if (it == j.end()) return refuse("missing \"data\"");
        auto b = j.find("binary");
        if (b != j.end() && !b->is_boolean()) return refuse("\"binary\" is true or false");
        r.binary = b != j.end() && b->get<bool>();
        if (!r.binary) {
            r.data = it->is_string() ? it->get<std::string>() : dump(*it);
            return std::nullopt;
        }
        if (!it->is_string()) return refuse("\"binary\": true needs \"data\" as a base64 string");
        auto d = base64_decode(it->get<std::string>());
        if (!d) return refuse("\"data\" is not valid base64");
        r.data = std::move(*d);
        return std::nullopt;
    };

    if (op == "subscribe") {
        if (auto bad = read_topic()) return std::move(*bad);
        if (!acl.may_subscribe(r.topic)) return refuse("not allowed to subscribe to this topic", r.topic, true);
        if (auto h = j.find("history"); h != j.end()) {
            if (h->is_boolean()) {
                if (h->get<bool>()) r.replay = replay_request{SIZE_MAX, std::nullopt};
            } else if (h->is_number_unsigned()) {
                r.replay = replay_request{h->get<std::size_t>(), std::nullopt};
            } else {
                return refuse("\"history\" is true or a count", r.topic);
            }
        }
        if (auto since = j.find("since"); since != j.end()) {
            if (!since->is_number_unsigned()) return refuse("\"since\" is a message id (a number)", r.topic);
            r.replay = replay_request{SIZE_MAX, since->get<std::uint64_t>()};
        }
        return r;
    }
    if (op == "unsubscribe") {
        if (auto bad = read_topic()) return std::move(*bad);
        return r;
    }
    if (op == "publish") {
        if (auto bad = read_topic()) return std::move(*bad);
        if (!acl.may_publish(r.topic)) return refuse("not allowed to publish to this topic", r.topic, true);
        if (auto bad = read_data()) return std::move(*bad);
        return r;
    }
    if (op == "presence") {
        if (auto bad = read_topic()) return std::move(*bad);
        if (!acl.may_subscribe(r.topic)) return refuse("not allowed to see this topic", r.topic, true);
        return r;
    }
    if (op == "send") {
        auto it = j.find("to");
        if (it == j.end() || !it->is_string() || !valid_name(it->get_ref<const std::string&>()))
            return refuse("missing \"to\" (the identity of a client)");
        r.to = it->get<std::string>();
        if (auto bad = read_data()) return std::move(*bad);
        return r;
    }
    if (op == "batch") {
        // {"op":"batch","max":N,"interval":"50ms"} turns batching on (or changes it);
        // {"op":"batch","off":true} turns it off.
        if (auto off = j.find("off"); off != j.end()) {
            if (!off->is_boolean() || !off->get<bool>()) return refuse("\"off\" is true (or leave it out and give \"max\" and \"interval\")");
            return r;
        }
        const std::string usage = fmt::format(
            "give \"max\" (messages per frame, 1 to {}) and \"interval\" (the longest wait, e.g. \"50ms\"), or \"off\": true",
            relay_batch_max);
        auto max = j.find("max");
        auto interval = j.find("interval");
        if (max == j.end() || interval == j.end()) return refuse(usage);
        if (!max->is_number_unsigned() || max->get<std::uint64_t>() < 1 || max->get<std::uint64_t>() > relay_batch_max)
            return refuse(fmt::format("\"max\" is a number from 1 to {}", relay_batch_max));
        std::optional<std::chrono::nanoseconds> d;
        if (interval->is_string()) d = parse_duration(interval->get_ref<const std::string&>());
        if (!d || d->count() <= 0 || *d > relay_batch_max_interval)
            return refuse(fmt::format("\"interval\" is a duration above 0 and at most {}, e.g. \"50ms\"",
                                      format_duration(relay_batch_max_interval)));
        r.batch = relay_batch{max->get<std::size_t>(), *d};
        return r;
    }
    return refuse(fmt::format("unknown op '{}'", op));
}

}  // namespace

std::variant<relay_request, relay_request_error> parse_relay_request(std::string_view payload, bool binary,
                                                                     const topic_acl& acl) {
    auto refuse = [](std::string what, std::string op = {}) { return relay_request_error{std::move(what), std::move(op), {}}; };
    if (binary) return refuse("binary frames are not part of the protocol: send JSON text");
    auto j = json::parse(payload, nullptr, false);
    if (j.is_discarded()) return refuse("malformed JSON");
    if (!j.is_object()) return refuse("expected a JSON object");
    auto op_it = j.find("op");
    if (op_it == j.end() || !op_it->is_string()) return refuse("missing \"op\" (subscribe, unsubscribe, publish, presence, send, batch)");
    const std::string op = op_it->get<std::string>();
    try {
        return read_request(j, op, acl);
    } catch (const std::exception& e) {
        // A field of an unexpected type that a check missed: an error reply, never a crash.
        return refuse(fmt::format("bad request: {}", e.what()), op);
    }
}

// The hub --------------------------------------------------------------------------------

struct relay_hub::topic_state {
    std::mutex m;
    std::uint64_t last_id = 0;
    std::deque<relay_message_ptr> history;
    std::vector<std::shared_ptr<relay_subscriber>> subs;
    std::shared_ptr<const by_worker> snap = std::make_shared<by_worker>();
    /// Per worker: messages waiting for that worker's drain, with the subscribers of their time.
    std::vector<std::vector<std::pair<std::shared_ptr<const by_worker>, relay_message_ptr>>> mailbox;
    std::vector<bool> drain_posted;
    bool dead = false;  ///< removed from the map; whoever holds it must look the topic up again
};

relay_hub::relay_hub(relay_options o) : o_(std::move(o)) {
    instance_ = fmt::format("{:08x}{:08x}", random_seed(), random_seed());
}

relay_hub::~relay_hub() { stop(); }

void relay_hub::log(const std::string& line) const {
    if (o_.log) o_.log(line);
}

std::string relay_hub::key(std::string_view kind, std::string_view name) const {
    return fmt::format("{}:{}:{}", o_.redis_prefix, kind, name);
}

// With a cluster a topic's keys and channel share a hash tag, so they are in one slot. The
// topic is escaped (% { } as %XX) so that no brace ends the tag early and distinct topics stay
// distinct.
std::string relay_hub::tkey(std::string_view kind, std::string_view topic) const {
    if (!cluster_) return key(kind, topic);
    std::string tag;
    for (const char c : topic) {
        if (c == '%' || c == '{' || c == '}') tag += fmt::format("%{:02X}", static_cast<unsigned char>(c));
        else tag += c;
    }
    return fmt::format("{}:{}:{{{}}}", o_.redis_prefix, kind, tag);
}

bool relay_hub::redis_ready() const { return cluster_ ? cluster_->connected() : cmd_ && cmd_->connected(); }

void relay_hub::redis_command(std::vector<std::string> args, std::size_t key_arg, redis_connection::reply_handler done) {
    if (cluster_) return cluster_->command(std::move(args), key_arg, std::move(done));
    cmd_->command(args, std::move(done));
}

std::string relay_hub::inst_channel(std::string_view instance) const {
    return cluster_ ? fmt::format("{}:inst:{{{}}}", o_.redis_prefix, instance) : key("inst", instance);
}

std::string relay_hub::ctl_channel() const { return cluster_ ? o_.redis_prefix + ":ctl:{all}" : key("ctl", "all"); }

bool relay_hub::redis_up() const { return redis_up_.load(std::memory_order_relaxed); }

void relay_hub::start(net::io_context& main) {
    main_ = &main;
    if (!o_.redis) return;
    if (o_.redis->cluster()) {
        cluster_ = std::make_shared<redis_cluster>(main, *o_.redis, "cluster");
        cluster_->set_timeout(o_.redis_timeout);
        cluster_->on_up = [this] { redis_went_up(); };
        cluster_->on_down = [this](const std::string& why) { redis_went_down(why); };
        cluster_->on_log = [this](const std::string& line) { log("relay: " + line); };
        cluster_->on_message = [this](const std::string& channel, std::string payload) { redis_received(channel, std::move(payload)); };
        cluster_->on_ssubscribed = [this](const std::string& channel) { channel_ready(channel); };
        cluster_->ssubscribe(inst_channel(instance_));
        if (o_.one_connection_per_user) cluster_->ssubscribe(ctl_channel());
        cluster_->start();
        heartbeat_timer_ = std::make_unique<net::steady_timer>(main);
        heartbeat();
        auto warn = std::make_shared<net::steady_timer>(main, std::chrono::seconds(2));
        warn->async_wait([this, warn](error_code ec) {
            if (!ec && cluster_ && !cluster_->connected() && !was_down_) {
                was_down_ = true;
                down_since_ = steady_clock::now();
                local_only_at_down_ = c_.redis_local_only;
                log(fmt::format("relay: redis cluster {} unreachable ({}): serving local subscribers only, retrying",
                                format_sentinels(*o_.redis), cluster_->last_error().empty() ? "no answer" : cluster_->last_error()));
            }
        });
        return;
    }
    cmd_ = std::make_shared<redis_connection>(main, *o_.redis, "commands");
    sub_ = std::make_shared<redis_connection>(main, *o_.redis, "subscriber");
    cmd_->set_timeout(o_.redis_timeout);
    cmd_->on_up = [this] { redis_went_up(); };
    cmd_->on_down = [this](const std::string& why) { redis_went_down(why); };
    cmd_->on_failover = [this](const std::string& from, const std::string& to) {
        log(fmt::format("relay: redis failover: master '{}' moved from {} to {}", o_.redis->master_name, from, to));
    };
    sub_->subscribe(key("msg", "all"));
    sub_->subscribe(key("inst", instance_));
    if (o_.one_connection_per_user) sub_->subscribe(key("ctl", "all"));
    sub_->on_message = [this](const std::string& channel, std::string payload) { redis_received(channel, std::move(payload)); };
    cmd_->start();
    sub_->start();
    if (o_.durable) start_stream(main);
    heartbeat_timer_ = std::make_unique<net::steady_timer>(main);
    heartbeat();
    // Startup is not held up by an unreachable Redis: say so once, keep serving locally.
    auto warn = std::make_shared<net::steady_timer>(main, std::chrono::seconds(2));
    warn->async_wait([this, warn](error_code ec) {
        if (!ec && cmd_ && !cmd_->connected() && !was_down_) {
            was_down_ = true;
            down_since_ = steady_clock::now();
            local_only_at_down_ = c_.redis_local_only;
            held_at_down_ = c_.durable_held;
            replayed_at_down_ = c_.redis_replayed;
            const auto where = o_.redis->sentinel()
                                   ? fmt::format("master '{}' via sentinel {}", o_.redis->master_name, format_sentinels(*o_.redis))
                                   : fmt::format("{}:{}", o_.redis->host, o_.redis->port);
            log(fmt::format("relay: redis {} unreachable ({}): {}, retrying", where,
                            cmd_->last_error().empty() ? "no answer" : cmd_->last_error(),
                            o_.durable ? "holding publishes until it answers" : "serving local subscribers only"));
        }
    });
}

void relay_hub::stop() {
    // Timers and connections go now: the io_context they use may not outlive this hub.
    stopping_ = true;  // the answers the connections give up as they stop are not acted on
    heartbeat_timer_.reset();
    stream_retry_.reset();
    if (stream_) stream_->stop();
    if (cmd_) cmd_->stop();
    if (sub_) sub_->stop();
    if (cluster_) cluster_->stop();
    redis_up_ = false;
}

void relay_hub::heartbeat() {
    if (!heartbeat_timer_) return;
    if (redis_ready()) {
        const auto ttl = std::to_string(o_.presence_ttl.count());
        redis_command({"SET", key("alive", instance_), "1", "PX", ttl}, 1);
        std::vector<std::string> ids;
        {
            std::lock_guard lock(ids_mutex_);
            for (auto& [id, w] : identities_)
                if (ids.empty() || ids.back() != id) ids.push_back(id);
        }
        for (const auto& id : ids) redis_command({"SET", key("user", id), instance_, "PX", ttl}, 1);
    }
    heartbeat_timer_->expires_after(o_.presence_ttl / 3);
    heartbeat_timer_->async_wait([this](error_code ec) {
        if (!ec) heartbeat();
    });
}

void relay_hub::redis_went_up() {
    redis_up_ = true;
    if (was_down_ && o_.durable) {
        // Said once the held publishes are in the stream and the stream is read up to its end.
        report_pending_ = true;
        report_seq_ = next_seq_ - 1;
        report_down_secs_ = std::chrono::duration<double>(steady_clock::now() - down_since_).count();
        stream_caught_up_ = false;
    } else if (was_down_) {
        const auto secs = std::chrono::duration<double>(steady_clock::now() - down_since_).count();
        // Unconfirmed: Redis did not answer. When it was gone they stayed here; when it was only
        // frozen, it may still have passed them on once it woke up.
        log(fmt::format("relay: redis reconnected after {:.1f}s; {} messages published here meanwhile were delivered to "
                        "local subscribers without reaching other instances through Redis (or unconfirmed); "
                        "messages published on other instances meanwhile were not received here",
                        secs, c_.redis_local_only - local_only_at_down_));
    } else if (!o_.quiet && cluster_) {
        log(fmt::format("relay: redis cluster connected ({} masters, {}instance {})", cluster_->node_count(),
                        o_.redis->tls ? "tls, " : "", instance_));
    } else if (!o_.quiet) {
        const auto via = o_.redis->sentinel()
                             ? fmt::format("master '{}' via sentinel {}, ", o_.redis->master_name, format_sentinels(*o_.redis))
                             : std::string();
        log(fmt::format("relay: redis {} connected ({}{}instance {})", cmd_->node(), via, o_.redis->tls ? "tls, " : "", instance_));
    }
    was_down_ = false;
    // Re-register everything this instance holds: the heartbeat key first, so that presence
    // queries see the entries that follow.
    if (heartbeat_timer_) heartbeat_timer_->cancel();
    heartbeat();
    std::vector<std::tuple<std::string, std::string, std::string>> entries;
    {
        std::lock_guard lock(topics_mutex_);
        for (auto& [name, t] : topics_) {
            std::lock_guard tl(t->m);
            for (auto& s : t->subs) entries.emplace_back(name, fmt::format("{}/{}", instance_, s->conn_id), s->identity);
        }
    }
    for (auto& [topic, field, id] : entries) redis_command({"HSET", tkey("pres", topic), field, id}, 1);
    if (o_.durable) {
        // What was held goes now, in order, once it is known whether Redis kept its data.
        cmd_ready_ = false;
        check_epoch(*cmd_, [this] {
            cmd_ready_ = true;
            outbox_pump();
        });
    }
}

void relay_hub::redis_went_down(const std::string& why) {
    redis_up_ = false;
    ++c_.redis_disconnects;
    if (!was_down_) {
        was_down_ = true;
        down_since_ = steady_clock::now();
        local_only_at_down_ = c_.redis_local_only;
        held_at_down_ = c_.durable_held;
        replayed_at_down_ = c_.redis_replayed;
        log(fmt::format("relay: redis connection lost ({}): {}, reconnecting", why,
                        o_.durable ? fmt::format("holding publishes (up to --durable-buffer {}) until it is back",
                                                 format_bytes(o_.durable_buffer))
                                   : std::string("serving local subscribers only")));
    }
}

std::shared_ptr<relay_hub::topic_state> relay_hub::topic(const std::string& name, bool create) {
    std::lock_guard lock(topics_mutex_);
    auto it = topics_.find(name);
    if (it != topics_.end()) return it->second;
    if (!create) return nullptr;
    auto t = std::make_shared<topic_state>();
    topics_.emplace(name, t);
    return t;
}

void relay_hub::rebuild(topic_state& t) {
    auto v = std::make_shared<by_worker>();
    for (auto& s : t.subs) {
        if (v->size() <= s->worker) v->resize(s->worker + 1);
        (*v)[s->worker].push_back(s);
    }
    t.snap = std::move(v);
}

void relay_hub::fan_out(const std::shared_ptr<topic_state>& t, const relay_message_ptr& m) {
    // Called under the topic's lock. Each worker thread has a mailbox per topic; one drain is
    // posted while it is non-empty, so under load one turn of a worker delivers many messages
    // and each subscriber's frames leave in one write instead of one write per message.
    const auto& snap = t->snap;
    if (t->mailbox.size() < snap->size()) {
        t->mailbox.resize(snap->size());
        t->drain_posted.resize(snap->size(), false);
    }
    for (std::size_t w = 0; w < snap->size(); ++w) {
        const auto& list = (*snap)[w];
        if (list.empty()) continue;
        t->mailbox[w].emplace_back(snap, m);
        if (t->drain_posted[w]) continue;
        t->drain_posted[w] = true;
        post_drain(t, w, list.front()->executor, SIZE_MAX);
    }
}

void relay_hub::post_drain(const std::shared_ptr<topic_state>& t, std::size_t w, net::any_io_executor ex, std::size_t seen) {
    net::post(ex, [this, t, w, ex, seen] { drain(t, w, ex, seen); });
}

void relay_hub::drain(const std::shared_ptr<topic_state>& tp, std::size_t w, net::any_io_executor ex, std::size_t seen) {
    auto& t = *tp;
    std::vector<std::pair<std::shared_ptr<const by_worker>, relay_message_ptr>> batch;
    {
        std::lock_guard lock(t.m);
        // A publisher whose messages are already in its read buffer adds one per turn: wait
        // while the mailbox keeps growing (up to a batch), then deliver everything at once.
        const std::size_t n = t.mailbox[w].size();
        if (n != seen && n < 512) return post_drain(tp, w, ex, n);
        batch.swap(t.mailbox[w]);
        t.drain_posted[w] = false;
    }
    std::uint64_t n = 0;
    for (const auto& [snap, m] : batch) {
        std::uint64_t k = 0;
        for (const auto& s : (*snap)[w]) k += s->deliver(m) ? 1 : 0;
        if (m->type == relay_message::kind::data) n += k;
    }
    c_.delivered.fetch_add(n, std::memory_order_relaxed);
}

std::vector<relay_message_ptr> relay_hub::local_history(topic_state& t, const replay_request& r) {
    std::vector<relay_message_ptr> out;
    for (const auto& m : t.history)
        if (!r.since || m->id > *r.since) out.push_back(m);
    if (!r.since && r.last < out.size()) out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(r.last));
    return out;
}

void relay_hub::attach(const std::shared_ptr<relay_subscriber>& s) {
    std::vector<std::shared_ptr<relay_subscriber>> older;
    {
        std::lock_guard lock(ids_mutex_);
        if (s->exclusive) {
            auto [b, e] = identities_.equal_range(s->identity);
            for (auto it = b; it != e; ++it)
                if (auto p = it->second.lock(); p && p->exclusive) older.push_back(std::move(p));
            // Posted under the lock: claims reach Redis in the order connections arrived here.
            if (main_ && o_.redis) {
                const auto at_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                                   std::chrono::system_clock::now().time_since_epoch())
                                                                   .count());
                net::post(*main_, [this, id = s->identity, conn = s->conn_id, at_us, w = std::weak_ptr<relay_subscriber>(s)] {
                    claim_identity(id, conn, at_us, w);
                });
            }
        }
        identities_.emplace(s->identity, s);
    }
    for (auto& p : older) net::post(p->executor, [p] { p->replace(); });
    if (main_ && o_.redis)
        net::post(*main_, [this, id = s->identity] {
            if (redis_ready()) redis_command({"SET", key("user", id), instance_, "PX", std::to_string(o_.presence_ttl.count())}, 1);
        });
}

void relay_hub::detach(relay_subscriber& s, const std::set<std::string>& topics) {
    for (const auto& t : topics) unsubscribe(t, s);
    bool last = true;
    {
        std::lock_guard lock(ids_mutex_);
        auto [b, e] = identities_.equal_range(s.identity);
        for (auto it = b; it != e;) {
            auto p = it->second.lock();
            if (!p || p.get() == &s)
                it = identities_.erase(it);
            else {
                last = false;
                ++it;
            }
        }
    }
    if (last && main_ && o_.redis)
        net::post(*main_, [this, id = s.identity, exclusive = s.exclusive] {
            if (exclusive) forget_claims(id);
            if (redis_ready()) redis_command({"EVAL", forget_script, "1", key("user", id), instance_}, 3);
        });
}

void relay_hub::claim_identity(const std::string& id, std::uint64_t conn, std::uint64_t at_us, std::weak_ptr<relay_subscriber> w) {
    auto& c = claims_[id];
    std::erase_if(c.conns, [](const claims::conn& x) { return x.sub.expired(); });
    if (w.expired()) {
        if (c.conns.empty()) claims_.erase(id);
        return;
    }
    c.conns.push_back({conn, at_us, 0, w});
    // Redis unreachable: only the connections of this instance were replaced (in attach).
    if (!redis_ready()) return;
    redis_command({"EVAL", cluster_ ? claim_script_cluster : claim_script, "1", cluster_ ? ctl_channel() + ":seq" : key("ctl", "seq"),
                   ctl_channel(), fmt::format("wsx1-claim\n{}\n", instance_), fmt::format("\n{}\n{}", at_us, id)},
                  3,
                  [this, id, conn, at_us](std::optional<redis_value> v) {
                      if (!v || v->type != redis_value::kind::integer || v->integer <= 0) return;
                      auto it = claims_.find(id);
                      if (it == claims_.end()) return;
                      const auto number = static_cast<std::uint64_t>(v->integer);
                      for (auto& x : it->second.conns) {
                          if (x.id != conn) continue;
                          x.number = number;
                          // A newer claim elsewhere arrived before our own number did.
                          if (claims::order{at_us, number} < it->second.latest)
                              if (auto p = x.sub.lock()) net::post(p->executor, [p] { p->replace(); });
                      }
                  });
}

void relay_hub::control_received(std::string_view payload) {
    // "wsx1-claim\n<instance>\n<number>\n<arrival, µs>\n<identity>"
    std::string_view f[4];
    for (auto& part : f) {
        auto nl = payload.find('\n');
        if (nl == std::string_view::npos) return log("relay: ignored a malformed control message from redis");
        part = payload.substr(0, nl);
        payload.remove_prefix(nl + 1);
    }
    const auto number = parse_u64(f[2]);
    const auto at_us = parse_u64(f[3]);
    if (f[0] != "wsx1-claim" || !number || !at_us) return log("relay: ignored a malformed control message from redis");
    const claims::order theirs{*at_us, *number};
    if (f[1] == instance_) return;  // ours: the older connections here were replaced already
    const std::string id(payload);
    auto it = claims_.find(id);
    if (it == claims_.end()) {
        // No claim of that user here yet; one may be on its way to the main context, and be
        // older than this one: its answer from Redis is then compared with what is kept here.
        std::lock_guard lock(ids_mutex_);
        auto [b, e] = identities_.equal_range(id);
        if (std::none_of(b, e, [](const auto& kv) {
                auto p = kv.second.lock();
                return p && p->exclusive;
            }))
            return;
        it = claims_.try_emplace(id).first;
    }
    auto& c = it->second;
    c.latest = std::max(c.latest, theirs);
    for (auto& x : c.conns)
        if (x.number != 0 && claims::order{x.at_us, x.number} < theirs)
            if (auto p = x.sub.lock()) net::post(p->executor, [p] { p->replace(); });
}

void relay_hub::forget_claims(const std::string& id) {
    auto it = claims_.find(id);
    if (it == claims_.end()) return;
    std::erase_if(it->second.conns, [](const claims::conn& x) { return x.sub.expired(); });
    if (it->second.conns.empty()) claims_.erase(it);
}

void relay_hub::subscribe(const std::string& name, const std::shared_ptr<relay_subscriber>& s, std::optional<replay_request> replay) {
    const bool from_redis = replay && o_.redis && redis_up();
    std::shared_ptr<topic_state> t;
    for (;;) {
        t = topic(name, true);
        std::lock_guard lock(t->m);
        if (t->dead) continue;  // forgotten meanwhile by its last subscriber: take the new one
        t->subs.push_back(s);
        rebuild(*t);
        if (replay && !from_redis)
            // Posted under the lock: no later delivery of this topic can overtake it.
            net::post(s->executor, [s, name, h = local_history(*t, *replay)]() mutable { s->replay_done(name, std::move(h)); });
        break;
    }
    ++c_.subscribers;
    // The presence entry first: whoever sees the join event finds the member in a query.
    if (main_ && o_.redis) {
        net::post(*main_, [this, name, field = fmt::format("{}/{}", instance_, s->conn_id), id = s->identity] {
            sync_channel(name);
            if (redis_ready()) redis_command({"HSET", tkey("pres", name), field, id}, 1);
        });
    }
    publish_event(relay_message::kind::join, name, s->identity, s->conn_id);
    if (from_redis) {
        net::post(*main_, [this, t, name, s, r = *replay] {
            redis_command({"LRANGE", tkey("hist", name), "0", "-1"}, 1, [this, t, name, s, r](std::optional<redis_value> v) {
                std::vector<relay_message_ptr> h;
                if (v && v->type == redis_value::kind::array) {
                    for (const auto& e : v->elements) {
                        std::string inst;
                        auto m = relay_wire_decode(e.str, inst);
                        if (!m || (r.since && m->id <= *r.since)) continue;
                        m->json = relay_envelope(*m);
                        h.push_back(std::make_shared<relay_message>(std::move(*m)));
                    }
                    if (!r.since && r.last < h.size()) h.erase(h.begin(), h.end() - static_cast<std::ptrdiff_t>(r.last));
                } else {
                    std::lock_guard lock(t->m);
                    h = local_history(*t, r);
                }
                net::post(s->executor, [s, name, h = std::move(h)]() mutable { s->replay_done(name, std::move(h)); });
            });
        });
    }
}

void relay_hub::unsubscribe(const std::string& name, relay_subscriber& s) {
    auto t = topic(name, false);
    if (!t) return;
    {
        std::lock_guard lock(t->m);
        auto it = std::find_if(t->subs.begin(), t->subs.end(), [&](const auto& p) { return p.get() == &s; });
        if (it == t->subs.end()) return;
        t->subs.erase(it);
        rebuild(*t);
    }
    if (o_.history == 0) {
        // Nobody left and nothing kept: forget the topic (lock order: the map, then the topic).
        std::lock_guard map_lock(topics_mutex_);
        std::lock_guard lock(t->m);
        if (t->subs.empty() && !t->dead) {
            t->dead = true;
            topics_.erase(name);
        }
    }
    --c_.subscribers;
    if (main_ && o_.redis)
        net::post(*main_, [this, name, field = fmt::format("{}/{}", instance_, s.conn_id)] {
            sync_channel(name);
            if (redis_ready()) redis_command({"HDEL", tkey("pres", name), field}, 1);
        });
    publish_event(relay_message::kind::leave, name, s.identity, s.conn_id);
}

void relay_hub::publish_local(std::shared_ptr<relay_message> m) {
    // Without history, a topic nobody subscribes to has nothing to do with a message.
    auto t = topic(m->topic, o_.history > 0 && m->type == relay_message::kind::data);
    if (!t) return;
    {
        std::lock_guard lock(t->m);
        if (t->dead) return;
        if (m->type == relay_message::kind::data) {
            if (m->id == 0)
                m->id = ++t->last_id;
            else if (m->id > t->last_id)
                t->last_id = m->id;
        }
        m->json = relay_envelope(*m);
        if (m->type == relay_message::kind::data && o_.history > 0) {
            t->history.push_back(m);
            while (t->history.size() > o_.history) t->history.pop_front();
        }
        // Under the lock: every subscriber sees a topic's messages in id order, so a client
        // resuming after the last id it saw loses nothing.
        fan_out(t, m);
    }
}

bool relay_hub::publish(const std::string& topic, const relay_subscriber& from, std::string data, bool binary) {
    auto m = std::make_shared<relay_message>();
    m->topic = topic;
    m->from = from.identity;
    m->data = std::move(data);
    m->binary = binary;
    m->origin = from.conn_id;
    if (o_.durable && o_.redis && main_) return publish_durable(std::move(m));
    ++c_.published;
    if (!o_.redis || !main_) {
        publish_local(std::move(m));
        return true;
    }
    net::post(*main_, [this, m]() mutable {
        if (!redis_ready()) {
            ++c_.redis_local_only;
            return publish_local(std::move(m));
        }
        std::uint64_t floor = 0;
        if (auto t = this->topic(m->topic, false)) {
            std::lock_guard lock(t->m);
            floor = t->last_id;
        }
        const auto [prefix, suffix] = relay_wire_around_id(*m, instance_);
        redis_command({"EVAL", cluster_ ? publish_script_cluster : publish_script, "2", tkey("id", m->topic), tkey("hist", m->topic),
                       prefix, suffix, std::to_string(o_.history), cluster_ ? tkey("msg", m->topic) : key("msg", "all"),
                       std::to_string(floor)},
                      3,
                      [this, m](std::optional<redis_value> v) mutable {
                          if (v && v->type == redis_value::kind::integer) {
                              m->id = static_cast<std::uint64_t>(v->integer);
                              ++c_.redis_out;
                              // With a cluster, a topic's messages reach subscribers here in id order.
                              if (cluster_) return cluster_deliver(std::move(m));
                          } else {
                              if (v && v->is_error()) log("relay: redis publish failed: " + v->str);
                              ++c_.redis_local_only;
                          }
                          publish_local(std::move(m));
                      });
    });
    return true;
}

void relay_hub::publish_event(relay_message::kind k, const std::string& topic, const std::string& member, std::uint64_t origin) {
    auto m = std::make_shared<relay_message>();
    m->type = k;
    m->origin = origin;
    m->topic = topic;
    m->from = member;
    if (main_ && o_.redis)
        net::post(*main_, [this, topic, wire = relay_wire_encode(*m, instance_)] {
            if (!redis_ready()) return;
            if (cluster_) cluster_->command({"SPUBLISH", tkey("msg", topic), wire}, 1);
            else cmd_->command({"PUBLISH", key("msg", "all"), wire});
        });
    publish_local(std::move(m));
}

void relay_hub::presence(const std::string& name, std::function<void(std::vector<std::string>)> done) {
    auto local = [this, name] {
        std::vector<std::string> ids;
        if (auto t = topic(name, false)) {
            std::lock_guard lock(t->m);
            for (auto& s : t->subs) ids.push_back(s->identity);
        }
        return ids;
    };
    auto finish = [](std::vector<std::string> ids, const std::function<void(std::vector<std::string>)>& done) {
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        done(std::move(ids));
    };
    if (!o_.redis || !main_ || !redis_up()) return finish(local(), done);
    if (cluster_) return net::post(*main_, [this, name, done = std::move(done), local, finish] { cluster_presence(name, done, local, finish); });
    net::post(*main_, [this, name, done = std::move(done), local, finish] {
        cmd_->command({"EVAL", presence_script, "1", key("pres", name), o_.redis_prefix + ":alive:"},
                      [done, local, finish](std::optional<redis_value> v) {
                          if (!v || v->type != redis_value::kind::array) return finish(local(), done);
                          std::vector<std::string> ids;
                          for (auto& e : v->elements) ids.push_back(e.str);
                          finish(std::move(ids), done);
                      });
    });
}

bool relay_hub::deliver_direct_local(const relay_message_ptr& m) {
    std::vector<std::shared_ptr<relay_subscriber>> to;
    {
        std::lock_guard lock(ids_mutex_);
        auto [b, e] = identities_.equal_range(m->topic);
        for (auto it = b; it != e; ++it)
            if (auto p = it->second.lock()) to.push_back(std::move(p));
    }
    for (auto& s : to) net::post(s->executor, [s, m] { s->deliver(m); });
    return !to.empty();
}

void relay_hub::send_direct(const relay_subscriber& from, const std::string& to, std::string data, bool binary,
                            std::function<void(std::string)> done) {
    auto m = std::make_shared<relay_message>();
    m->type = relay_message::kind::direct;
    m->topic = to;
    m->from = from.identity;
    m->data = std::move(data);
    m->binary = binary;
    m->json = relay_envelope(*m);
    if (deliver_direct_local(m)) {
        ++c_.direct_sent;
        return done({});
    }
    auto fail = [this, to](const std::function<void(std::string)>& done, std::string extra) {
        ++c_.direct_failed;
        done(fmt::format("no client with id '{}'{}", to, extra));
    };
    if (!o_.redis || !main_) return fail(done, "");
    if (!redis_up()) return fail(done, " on this instance (Redis is unreachable)");
    net::post(*main_, [this, m, to, done = std::move(done), fail] {
        redis_command({"GET", key("user", to)}, 1, [this, m, done, fail](std::optional<redis_value> v) {
            if (!v) return fail(done, " on this instance (Redis is unreachable)");
            if (v->type != redis_value::kind::string) return fail(done, "");
            redis_command({cluster_ ? "SPUBLISH" : "PUBLISH", inst_channel(v->str), relay_wire_encode(*m, instance_)}, 1,
                          [this, done, fail](std::optional<redis_value> n) {
                              if (n && n->type == redis_value::kind::integer && n->integer > 0) {
                                  ++c_.direct_sent;
                                  ++c_.redis_out;
                                  return done({});
                              }
                              fail(done, "");
                          });
        });
    });
}

void relay_hub::redis_received(const std::string& channel, std::string payload) {
    if (o_.one_connection_per_user && channel == ctl_channel()) return control_received(payload);
    std::string inst;
    auto m = relay_wire_decode(payload, inst);
    if (!m) {
        log("relay: ignored a malformed message from redis");
        return;
    }
    if (m->type == relay_message::kind::data && !cluster_) track_sequence(m->topic, m->id);
    if (inst == instance_) return;  // our own, already delivered here
    ++c_.redis_in;
    auto p = std::make_shared<relay_message>(std::move(*m));
    if (cluster_ && p->type == relay_message::kind::data) return cluster_deliver(std::move(p));
    if (p->type == relay_message::kind::direct) {
        p->json = relay_envelope(*p);
        deliver_direct_local(p);
        return;
    }
    publish_local(std::move(p));
}

void relay_hub::track_sequence(const std::string& topic, std::uint64_t id) {
    // Every data message of a topic passes through the Redis channel in id order (one script
    // assigns the id and publishes), our own included: a jump in the ids is what this instance
    // missed. Ids starting again below the last one mean Redis restarted without its data.
    auto [it, fresh] = redis_seen_.try_emplace(topic, 0);
    std::uint64_t& seen = it->second;
    std::uint64_t missed = 0, from = seen + 1;
    if (id > seen + 1 && !fresh)
        missed = id - seen - 1;
    else if (id <= seen && id > 1) {
        missed = id - 1;
        from = 1;
    }
    seen = id;
    if (missed == 0) return;
    c_.redis_missed += missed;
    log(fmt::format("relay: topic {}: {} messages published through redis did not arrive here (ids {}..{})",
                    nlohmann::json(topic).dump(-1, ' ', false, json::error_handler_t::replace), missed, from, id - 1));
}

// Redis Cluster: shard channels and in-order delivery ----------------------------------------

// A topic's shard channel is subscribed while the topic has subscribers here.
void relay_hub::sync_channel(const std::string& name) {
    if (!cluster_) return;
    bool wanted = false;
    if (auto t = topic(name, false)) {
        std::lock_guard lock(t->m);
        wanted = !t->subs.empty();
    }
    const auto channel = tkey("msg", name);
    if (wanted && !order_.count(name)) {
        order_.try_emplace(name);
        channel_topics_[channel] = name;
        cluster_->ssubscribe(channel);
    } else if (!wanted && order_.count(name)) {
        order_.erase(name);
        channel_topics_.erase(channel);
        cluster_->sunsubscribe(channel);
    }
}

// A topic's shard channel was (re)subscribed, on the slot's master: what was published while it
// was not is read from the history.
void relay_hub::channel_ready(const std::string& channel) {
    auto it = channel_topics_.find(channel);
    if (it == channel_topics_.end()) return;
    auto o = order_.find(it->second);
    if (o == order_.end()) return;
    if (o->second.based) {
        // Subscribed again (a reconnect, a slot move): what was missed meanwhile is read from the
        // history, unless the topic's ids went back (its master restarted without its data):
        // then delivery goes on from where they stand, or every id up to the old ones would be
        // taken for one already delivered. Messages wait until that is known.
        o->second.based = false;
        return recheck_base(it->second, 0);
    }
    // Subscribed afresh: where the topic's ids stand now is asked of its master (after the
    // subscription there, so every later id comes on the channel); messages wait meanwhile.
    cluster_->command({"GET", tkey("id", it->second)}, 1, [this, name = it->second](std::optional<redis_value> v) {
        auto it = order_.find(name);
        if (stopping_ || it == order_.end() || it->second.based) return;
        // No answer or an error: not "nothing published yet", which would replay the whole
        // history as new; the first id to arrive sets the start instead (see the timer).
        if (!v || (v->type != redis_value::kind::string && v->type != redis_value::kind::nil)) return;
        std::uint64_t now = 0;
        if (v->type == redis_value::kind::string) {
            auto parsed = parse_u64(v->str);
            if (!parsed) return;
            now = *parsed;
        }
        set_base(name, it->second, now);
    });
}

void relay_hub::recheck_base(const std::string& name, int tries) {
    cluster_->command({"GET", tkey("id", name)}, 1, [this, name, tries](std::optional<redis_value> v) {
        auto it = order_.find(name);
        if (stopping_ || it == order_.end() || it->second.based) return;
        auto& o = it->second;
        if (!v && tries < 5) {
            // Its master's command link is not back yet: asked again in a while.
            auto t = std::make_shared<net::steady_timer>(*main_, std::chrono::milliseconds(500));
            t->async_wait([this, t, name, tries](error_code ec) {
                if (!ec && !stopping_) recheck_base(name, tries + 1);
            });
            return;
        }
        std::optional<std::uint64_t> now;
        if (v && v->type == redis_value::kind::nil) now = 0;
        else if (v && v->type == redis_value::kind::string) now = parse_u64(v->str);
        if (now && *now < o.seen) {
            log(fmt::format("relay: topic {}: ids went back from {} to {} (its redis master lost them); delivery goes on "
                            "from there",
                            nlohmann::json(name).dump(-1, ' ', false, json::error_handler_t::replace), o.seen, *now));
            return set_base(name, o, *now);
        }
        o.based = true;
        flush_order(o);
        fill_gap(name);
    });
}

// The ids up to `base` were published before the channel was subscribed here: from now on, a
// topic's messages are delivered in id order after it.
void relay_hub::set_base(const std::string& name, topic_order& o, std::uint64_t base) {
    // The channel gives ids in order: the first one held from it is the first published since.
    for (const auto& [id, m] : o.held)
        if (m->origin == 0) {
            base = std::min(base, id - 1);
            break;
        }
    // Publishes from here the channel did not carry (before it was subscribed) go first.
    while (!o.held.empty() && o.held.begin()->first <= base) {
        auto m = std::move(o.held.begin()->second);
        o.held.erase(o.held.begin());
        publish_local(std::move(m));
    }
    o.based = true;
    o.seen = base;
    flush_order(o);
    if (!o.held.empty()) fill_gap(name);
}

// A data message with its id, from the topic's channel or the answer to a publish from here:
// delivered once, in id order. One ahead of the next expected id waits while the history is
// read for the ones between.
void relay_hub::cluster_deliver(std::shared_ptr<relay_message> m) {
    auto it = order_.find(m->topic);
    if (it == order_.end()) return publish_local(std::move(m));  // no subscriber here: the local history only
    auto& o = it->second;
    if (!o.based) {
        // Waiting for the channel: held, for a while at most.
        if (o.held.empty()) {
            auto t = std::make_shared<net::steady_timer>(*main_, std::chrono::seconds(2));
            t->async_wait([this, t, name = m->topic](error_code ec) {
                auto it = order_.find(name);
                if (ec || stopping_ || it == order_.end() || it->second.based || it->second.held.empty()) return;
                set_base(name, it->second, it->second.held.begin()->first - 1);
            });
        }
        o.held.emplace(m->id, std::move(m));
        return;
    }
    if (m->id <= o.seen || o.held.count(m->id)) return;  // had it already
    const auto topic = m->topic;
    o.held.emplace(m->id, std::move(m));
    flush_order(o);
    if (!o.held.empty()) fill_gap(topic);
}

void relay_hub::flush_order(topic_order& o) {
    while (!o.held.empty() && o.held.begin()->first <= o.seen + 1) {
        auto m = std::move(o.held.begin()->second);
        o.held.erase(o.held.begin());
        if (m->id <= o.seen) continue;
        o.seen = m->id;
        publish_local(std::move(m));
    }
    if (o.held.empty()) o.tries = 0;
}

void relay_hub::fill_gap(const std::string& name) {
    auto it = order_.find(name);
    if (it == order_.end() || !cluster_) return;
    if (it->second.filling) {
        it->second.refill = true;
        return;
    }
    it->second.filling = true;
    cluster_->command({"LRANGE", tkey("hist", name), "0", "-1"}, 1, [this, name](std::optional<redis_value> v) {
        auto it = order_.find(name);
        if (stopping_ || it == order_.end()) return;
        auto& o = it->second;
        o.filling = false;
        if (v && v->type == redis_value::kind::array)
            for (const auto& e : v->elements) {
                std::string inst;
                auto m = relay_wire_decode(e.str, inst);
                if (!m || m->type != relay_message::kind::data || m->id <= o.seen || o.held.count(m->id)) continue;
                if (inst != instance_) ++c_.redis_in;
                const auto id = m->id;
                o.held.emplace(id, std::make_shared<relay_message>(std::move(*m)));
            }
        const auto before = o.seen;
        flush_order(o);
        if (o.seen > before && o.held.empty() && !o.refill)
            log(fmt::format("relay: topic {}: ids {}..{} read from the history (not received on its channel)",
                            nlohmann::json(name).dump(-1, ' ', false, json::error_handler_t::replace), before + 1, o.seen));
        if (!o.held.empty()) {
            // The history does not hold the ones missing (gone from it, or --history 0): after a
            // few looks (one may still be on its way), they are counted lost and skipped.
            if (++o.tries >= 3) {
                const auto first = o.held.begin()->first;
                const auto missed = first - o.seen - 1;
                c_.redis_missed += missed;
                log(fmt::format("relay: topic {}: {} messages published through redis did not arrive here (ids {}..{})",
                                nlohmann::json(name).dump(-1, ' ', false, json::error_handler_t::replace), missed, o.seen + 1,
                                first - 1));
                o.seen = first - 1;
                flush_order(o);
            } else {
                o.refill = true;
            }
        }
        if (std::exchange(o.refill, false) && !o.held.empty()) {
            auto t = std::make_shared<net::steady_timer>(*main_, std::chrono::milliseconds(50));
            t->async_wait([this, t, name](error_code ec) {
                if (!ec && !stopping_) fill_gap(name);
            });
        }
    });
}

// Presence without a script: the hash, then each instance's heartbeat key (in other slots).
void relay_hub::cluster_presence(const std::string& name, std::function<void(std::vector<std::string>)> done,
                                 std::function<std::vector<std::string>()> local,
                                 std::function<void(std::vector<std::string>, const std::function<void(std::vector<std::string>)>&)> finish) {
    cluster_->command({"HGETALL", tkey("pres", name)}, 1, [this, name, done, local, finish](std::optional<redis_value> v) {
        if (!v || v->type != redis_value::kind::array) return finish(local(), done);
        struct entry {
            std::string field, id;
        };
        std::map<std::string, std::vector<entry>> by_instance;
        for (std::size_t i = 0; i + 1 < v->elements.size(); i += 2) {
            const auto& field = v->elements[i].str;
            const auto slash = field.find('/');
            by_instance[slash == std::string::npos ? std::string() : field.substr(0, slash)].push_back({field, v->elements[i + 1].str});
        }
        if (by_instance.empty()) return finish({}, done);
        struct state {
            std::size_t left;
            std::vector<std::string> ids;
        };
        auto st = std::make_shared<state>(state{by_instance.size(), {}});
        for (auto& by : by_instance) {
            const auto& inst = by.first;
            auto check = [this, name, st, entries = by.second, done, finish](std::optional<redis_value> e) {
                const bool alive = e && e->type == redis_value::kind::integer && e->integer == 1;
                if (alive) {
                    for (const auto& x : entries) st->ids.push_back(x.id);
                } else if (e) {
                    for (const auto& x : entries) cluster_->command({"HDEL", tkey("pres", name), x.field}, 1);
                }
                if (--st->left == 0) finish(std::move(st->ids), done);
            };
            if (inst.empty()) check(redis_value{});
            else cluster_->command({"EXISTS", key("alive", inst)}, 1, check);
        }
    });
}

// --durable: the outbox and the stream ------------------------------------------------------

bool relay_hub::publish_durable(std::shared_ptr<relay_message> m) {
    // Any thread. The outbox is bounded in bytes; a message larger than the whole buffer still
    // goes when nothing else is held.
    const std::size_t cost = m->data.size() + m->topic.size() + m->from.size() + 64;
    const std::size_t before = outbox_bytes_.fetch_add(cost);
    if (before != 0 && before + cost > o_.durable_buffer) {
        outbox_bytes_.fetch_sub(cost);
        ++c_.durable_refused;
        return false;
    }
    ++c_.published;
    ++outbox_count_;
    net::post(*main_, [this, m = std::move(m), cost]() mutable { outbox_push(std::move(m), cost); });
    return true;
}

void relay_hub::outbox_push(std::shared_ptr<relay_message> m, std::size_t cost) {
    if (stopping_) return;
    const bool held = !cmd_->connected() || stream_last_.empty();
    if (held) ++c_.durable_held;
    outbox_.push_back({next_seq_++, std::move(m), cost, wall_ms(), held});
    outbox_pump();
}

void relay_hub::outbox_pump() {
    // Entries go out in order on the one commands connection, so Redis adds them in order. Not
    // before the stream's position is known: an entry added before it would be skipped here.
    if (stopping_ || !cmd_ || !cmd_->connected() || !cmd_ready_ || stream_last_.empty()) return;
    while (outbox_sent_ < outbox_.size() && outbox_sent_ < outbox_window) {
        const auto& e = outbox_[outbox_sent_++];
        const auto& m = *e.m;
        std::uint64_t floor = 0;
        if (auto t = topic(m.topic, false)) {
            std::lock_guard lock(t->m);
            floor = t->last_id;
        }
        const auto [prefix, suffix] = relay_wire_around_id(m, instance_);
        cmd_->command({"EVAL", durable_publish_script, "4", key("id", m.topic), key("hist", m.topic), o_.redis_prefix + ":stream",
                       key("dseq", instance_), prefix, suffix, std::to_string(o_.history), std::to_string(floor),
                       std::to_string(o_.durable_maxlen), std::to_string(e.seq), std::to_string(m.origin),
                       std::to_string(e.at_ms), e.held ? "1" : "0", durable_seq_ttl_ms},
                      [this, seq = e.seq, generation = outbox_generation_](std::optional<redis_value> v) {
                          outbox_answered(seq, generation, std::move(v));
                      });
    }
}

void relay_hub::outbox_answered(std::uint64_t seq, std::uint64_t generation, std::optional<redis_value> v) {
    if (stopping_) return;
    if (!v) {
        // The connection was lost: everything sent on it goes again, in order, once it is back
        // (Redis skips what it had already taken).
        if (generation == outbox_generation_) {
            ++outbox_generation_;
            outbox_sent_ = 0;
        }
        return;
    }
    if (outbox_.empty() || outbox_.front().seq != seq) return;  // answered already
    auto e = std::move(outbox_.front());
    outbox_.pop_front();
    if (generation == outbox_generation_ && outbox_sent_ > 0) --outbox_sent_;
    if (v->type == redis_value::kind::integer) {
        // 0: Redis had it already (an answer lost with a connection). It stays counted until
        // read back: a Redis that loses its data before then gets it again.
        if (v->integer > 0) ++c_.redis_out;
        unread_.push_back(std::move(e));
        read_back(stream_seqs_[instance_]);  // the stream may have been faster than the answer
    } else {
        outbox_bytes_ -= e.cost;
        --outbox_count_;
        // Sending it again would put it after the ones that followed: it is dropped, and said.
        ++c_.durable_failed;
        log(fmt::format("relay: redis refused a message for topic {} ({}): dropped",
                        nlohmann::json(e.m->topic).dump(-1, ' ', false, json::error_handler_t::replace),
                        v->is_error() ? v->str : "unexpected reply"));
    }
    outbox_pump();
    durable_report();
}

void relay_hub::read_back(std::uint64_t seq) {
    const auto now = steady_clock::now();
    while (!unread_.empty() && unread_.front().seq <= seq) {
        auto& e = unread_.front();
        outbox_bytes_ -= e.cost;
        --outbox_count_;
        recent_bytes_ += e.cost;
        recent_.emplace_back(now, std::move(e));
        unread_.pop_front();
    }
    // While Redis is unreachable nothing ages: what was read just before the outage is kept.
    while (!recent_.empty() && (recent_bytes_ > o_.durable_buffer || (redis_up() && now - recent_.front().first > durable_resend_window))) {
        recent_bytes_ -= recent_.front().second.cost;
        recent_.pop_front();
    }
}

void relay_hub::check_epoch(redis_connection& link, std::function<void()> then) {
    link.command({"EVAL", epoch_script, "1", o_.redis_prefix + ":epoch", fmt::format("{}-{}", instance_, wall_ms())},
                 [this, then = std::move(then)](std::optional<redis_value> v) {
                     if (stopping_ || !v) return;  // lost: checked again on the next connection
                     if (v->type == redis_value::kind::string) {
                         if (epoch_.empty())
                             epoch_ = v->str;
                         else if (v->str != epoch_) {
                             epoch_ = v->str;
                             data_lost();
                         }
                     } else {
                         log(fmt::format("relay: redis: cannot read {}:epoch ({}): a Redis that lost its data goes unnoticed",
                                         o_.redis_prefix, v->is_error() ? v->str : "unexpected reply"));
                     }
                     then();
                 });
}

void relay_hub::data_lost() {
    // Redis restarted without its data: the stream holds nothing of before, and the per-topic
    // ids start again above each publisher's floor (gaps against the old ids are not losses).
    // What this relay published and may not have reached every relay goes to the stream again,
    // in its order and ahead of what waits; relays that have an entry already skip it by its seq.
    std::deque<outbox_entry> again;
    for (auto& [at, e] : recent_) {
        if (at + durable_resend_window < down_since_) continue;  // read well before the outage began
        outbox_bytes_ += e.cost;
        ++outbox_count_;
        again.push_back(std::move(e));
    }
    const std::size_t resent = again.size() + unread_.size();
    recent_.clear();
    recent_bytes_ = 0;
    for (auto& e : unread_) again.push_back(std::move(e));
    unread_.clear();
    for (auto& e : outbox_) again.push_back(std::move(e));
    outbox_ = std::move(again);
    outbox_sent_ = 0;
    ++outbox_generation_;
    redis_seen_.clear();
    // The new stream's ids may be below the last one read here (its clock behind the old
    // one's): it is read from its start, and what is there twice is skipped by its seq.
    stream_last_ = "0-0";
    log(fmt::format("relay: redis came back without its data (no persistence?): the last {} messages published here go to the "
                    "stream again (relays that have them skip them); messages of other relays that this one had not read "
                    "come again only from relays still running",
                    resent));
}

void relay_hub::start_stream(net::io_context& main) {
    stream_ = std::make_shared<redis_connection>(main, *o_.redis, "stream");
    stream_->set_timeout(o_.redis_timeout);
    stream_->on_up = [this] { stream_went_up(); };
    stream_->on_down = [this](const std::string& why) {
        stream_caught_up_ = false;
        // The commands connection may still be up: say that delivery between relays waits.
        if (cmd_ && cmd_->connected())
            log(fmt::format("relay: redis stream connection lost ({}): messages wait in the stream until it is back, "
                            "reconnecting", why));
    };
    stream_retry_ = std::make_unique<net::steady_timer>(main);
    stream_->start();
}

void relay_hub::stream_went_up() {
    // Reading from the last entry seen works on a stream made anew too (its ids are later), but
    // its ids must not count as gaps: whether Redis kept its data is checked first.
    check_epoch(*stream_, [this] { stream_position(); });
}

void relay_hub::stream_position() {
    if (!stream_last_.empty()) {
        // Back after an outage: read on from the last entry seen, so nothing added meanwhile is lost.
        stream_back_at_ms_ = wall_ms();
        return stream_read();
    }
    // The first connection starts at the stream's end.
    stream_->command({"XREVRANGE", o_.redis_prefix + ":stream", "+", "-", "COUNT", "1"}, [this](std::optional<redis_value> v) {
        if (stopping_ || !v || !stream_last_.empty()) return;  // lost again: the next connection asks again
        if (v->type != redis_value::kind::array) {
            log(fmt::format("relay: redis: cannot read the stream {}:stream ({}): reading it from its start",
                            o_.redis_prefix, v->is_error() ? v->str : "unexpected reply"));
            stream_last_ = "0-0";
        } else if (v->elements.empty() || v->elements[0].elements.empty()) {
            stream_last_ = "0-0";
        } else {
            stream_last_ = v->elements[0].elements[0].str;
        }
        outbox_pump();
        stream_read();
    });
}

void relay_hub::stream_read() {
    if (stopping_ || stream_reading_ || !stream_->connected() || stream_last_.empty()) return;
    stream_reading_ = true;
    // The block stays well under --redis-timeout: the watchdog takes a longer wait for a dead link.
    const auto block = std::clamp<std::int64_t>(o_.redis_timeout.count() / 2, 10, 1000);
    stream_->command({"XREAD", "COUNT", std::to_string(stream_batch), "BLOCK", std::to_string(block), "STREAMS",
                      o_.redis_prefix + ":stream", stream_last_},
                     [this](std::optional<redis_value> v) {
                         stream_reading_ = false;
                         if (stopping_ || !v) return;  // lost: read on when the link is back
                         if (v->is_error()) {
                             log(fmt::format("relay: redis: reading the stream failed ({}): retrying in 1s", v->str));
                             stream_retry_->expires_after(std::chrono::seconds(1));
                             stream_retry_->async_wait([this](error_code ec) {
                                 if (!ec) stream_read();
                             });
                             return;
                         }
                         std::size_t n = 0;
                         // [[key, [[id, [field, value, ...]], ...]]], or nil when the block ran out.
                         if (v->type == redis_value::kind::array)
                             for (const auto& s : v->elements)
                                 if (s.elements.size() == 2)
                                     for (const auto& e : s.elements[1].elements) {
                                         stream_entry(e);
                                         ++n;
                                     }
                         if (n < stream_batch) {
                             stream_caught_up_ = true;
                             durable_report();
                         }
                         stream_read();
                     });
}

void relay_hub::stream_entry(const redis_value& e) {
    if (e.elements.size() != 2 || e.elements[0].type != redis_value::kind::string || e.elements[0].str.empty())
        return log("relay: ignored a malformed stream entry from redis");
    stream_last_ = e.elements[0].str;
    const auto& f = e.elements[1].elements;
    std::string_view wire;
    std::optional<std::uint64_t> seq, conn, at_ms;
    bool held = false;
    for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
        const auto& k = f[i].str;
        const auto& v = f[i + 1].str;
        if (k == "m") wire = v;
        else if (k == "s") seq = parse_u64(v);
        else if (k == "c") conn = parse_u64(v);
        else if (k == "t") at_ms = parse_u64(v);
        else if (k == "h") held = v == "1";
    }
    std::string inst;
    auto m = relay_wire_decode(wire, inst);
    if (!m || m->type != relay_message::kind::data || !seq)
        return log("relay: ignored a malformed stream entry from redis");
    track_sequence(m->topic, m->id);
    // An instance's entries are added in its seq order: one seen again (sent twice to a Redis
    // that lost its data in between) is not delivered twice.
    auto& last = stream_seqs_[inst];
    if (*seq <= last) return;
    last = *seq;
    if (inst == instance_) {
        read_back(*seq);
        m->origin = conn.value_or(0);  // delivered here only now: one order for every subscriber
    } else {
        ++c_.redis_in;
        // What pub/sub would have lost: held by its publisher while Redis was unreachable, or
        // published before this instance's link came back.
        if (held || (stream_back_at_ms_ != 0 && at_ms && *at_ms < stream_back_at_ms_)) ++c_.redis_replayed;
    }
    publish_local(std::make_shared<relay_message>(std::move(*m)));
}

void relay_hub::durable_report() {
    // Held ones still waiting: in the outbox, or in the stream and not read back yet (both in seq order).
    const auto waiting = [this](const std::deque<outbox_entry>& q) { return !q.empty() && q.front().seq <= report_seq_; };
    if (!report_pending_ || waiting(outbox_) || waiting(unread_) || !stream_caught_up_ || !redis_up()) return;
    report_pending_ = false;
    log(fmt::format("relay: redis reconnected after {:.1f}s; {} messages published here meanwhile were held and are now in "
                    "the stream (delivered here and elsewhere); {} messages published elsewhere meanwhile were read from "
                    "the stream and delivered here so far",
                    report_down_secs_, c_.durable_held - held_at_down_, c_.redis_replayed - replayed_at_down_));
}

void relay_hub::render_metrics(std::string& out) {
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
    };
    metric("wsx_relay_published_total", "counter", "Messages published by clients of this instance.", c_.published.load());
    metric("wsx_relay_delivered_total", "counter", "Messages handed to subscribers of this instance.", c_.delivered.load());
    metric("wsx_relay_subscribers", "gauge", "Topic subscriptions on this instance.", c_.subscribers.load());
    std::size_t topics;
    {
        std::lock_guard lock(topics_mutex_);
        topics = topics_.size();
    }
    metric("wsx_relay_topics", "gauge", "Topics this instance holds (subscribed, or with history).", topics);
    metric("wsx_relay_slow_dropped_total", "counter", "Messages dropped for slow subscribers (drop-oldest).", c_.slow_dropped.load());
    metric("wsx_relay_slow_closed_total", "counter", "Slow subscribers closed with 1013.", c_.slow_closed.load());
    metric("wsx_relay_protocol_errors_total", "counter", "Malformed or refused protocol requests.", c_.protocol_errors.load());
    metric("wsx_relay_acl_refusals_total", "counter", "Subscribe/publish refused by token claims.", c_.acl_refusals.load());
    metric("wsx_relay_direct_sent_total", "counter", "Direct messages delivered.", c_.direct_sent.load());
    metric("wsx_relay_direct_failed_total", "counter", "Direct messages with no addressee.", c_.direct_failed.load());
    metric("wsx_relay_replaced_total", "counter", "Connections closed with 4001 for a newer one of the same user.", c_.replaced.load());
    metric("wsx_relay_batches_total", "counter", "Batch frames sent to subscribers that asked for batches.", c_.batches.load());
    if (o_.redis) {
        metric("wsx_relay_redis_up", "gauge", "Whether the Redis connection is up (1) or not (0).", redis_up() ? 1 : 0);
        metric("wsx_relay_redis_out_total", "counter", "Messages published through Redis to other instances.", c_.redis_out.load());
        metric("wsx_relay_redis_in_total", "counter", "Messages received from other instances.", c_.redis_in.load());
        metric("wsx_relay_redis_local_only_total", "counter",
               "Messages published while Redis was unreachable or silent: delivered on this instance, not confirmed elsewhere.", c_.redis_local_only.load());
        metric("wsx_relay_redis_disconnects_total", "counter", "Times the Redis connection was lost.", c_.redis_disconnects.load());
        metric("wsx_relay_redis_missed_total", "counter",
               "Messages published through Redis that never arrived here (gaps in a topic's ids).", c_.redis_missed.load());
        if (o_.durable) {
            metric("wsx_relay_redis_replayed_total", "counter",
                   "Messages of other instances read from the stream after an outage (what pub/sub would have lost).",
                   c_.redis_replayed.load());
            metric("wsx_relay_durable_pending", "gauge", "Publishes held or on their way to Redis (the outbox).", outbox_count_.load());
            metric("wsx_relay_durable_pending_bytes", "gauge", "Bytes of the outbox, counted against --durable-buffer.",
                   outbox_bytes_.load());
            metric("wsx_relay_durable_held_total", "counter", "Publishes held here while Redis was unreachable.",
                   c_.durable_held.load());
            metric("wsx_relay_durable_refused_total", "counter", "Publishes refused because the outbox was full.",
                   c_.durable_refused.load());
            metric("wsx_relay_durable_failed_total", "counter", "Publishes Redis refused with an error (dropped, logged).",
                   c_.durable_failed.load());
        }
        metric("wsx_relay_redis_failovers_total", "counter",
               "Times the Redis master was found at a new address (redis+sentinel://).", cmd_ ? cmd_->failovers() : 0);
        out += "# HELP wsx_relay_redis_node The Redis server connected to (the master, with sentinels; each master "
               "connected to, with a cluster).\n"
               "# TYPE wsx_relay_redis_node gauge\n";
        if (const auto node = cmd_ ? cmd_->node() : std::string(); !node.empty())
            out += fmt::format("wsx_relay_redis_node{{node=\"{}\"}} 1\n", node);
        if (cluster_) {
            for (const auto& node : cluster_->connected_nodes()) out += fmt::format("wsx_relay_redis_node{{node=\"{}\"}} 1\n", node);
            metric("wsx_relay_redis_cluster_nodes", "gauge", "Masters of the Redis Cluster (redis+cluster://).", cluster_->node_count());
            out += "# HELP wsx_relay_redis_redirections_total Redis Cluster redirections followed (a slot moved, or moving).\n"
                   "# TYPE wsx_relay_redis_redirections_total counter\n";
            out += fmt::format("wsx_relay_redis_redirections_total{{kind=\"moved\"}} {}\n", cluster_->moved());
            out += fmt::format("wsx_relay_redis_redirections_total{{kind=\"ask\"}} {}\n", cluster_->asked());
        }
    }
}

std::string relay_hub::summary() {
    std::string s = fmt::format("relay: published={} delivered={} slow_dropped={} slow_closed={}", c_.published.load(),
                                c_.delivered.load(), c_.slow_dropped.load(), c_.slow_closed.load());
    if (o_.redis)
        s += fmt::format(" redis_out={} redis_in={} redis_local_only={} redis_missed={} redis_disconnects={}",
                         c_.redis_out.load(), c_.redis_in.load(), c_.redis_local_only.load(), c_.redis_missed.load(),
                         c_.redis_disconnects.load());
    if (o_.durable)
        s += fmt::format(" redis_replayed={} durable_held={} durable_refused={} durable_pending={}", c_.redis_replayed.load(),
                         c_.durable_held.load(), c_.durable_refused.load(), outbox_count_.load());
    return s;
}

// One connection -------------------------------------------------------------------------

namespace {

class relay_conn final : public channel_events,
                         public relay_subscriber,
                         public holds_messages,
                         public std::enable_shared_from_this<relay_conn> {
public:
    relay_conn(std::shared_ptr<relay_hub> hub, std::shared_ptr<ws_session> s, std::string topic, topic_acl acl)
        : hub_(std::move(hub)), s_(s.get()), weak_(s), raw_topic_(std::move(topic)), acl_(std::move(acl)) {}

    void start(std::optional<replay_request> replay, std::optional<relay_batch> batch) {
        auto self = shared_from_this();
        if (batch) set_batch(batch);
        hub_->attach(self);
        if (!protocol()) {
            topics_.insert(raw_topic_);
            if (replay) replaying_[raw_topic_];
            hub_->subscribe(raw_topic_, self, replay);
            return;
        }
        // After the session has started: it must not be written to before.
        net::post(executor, [self] {
            if (!self->closed_)
                self->reply({{"type", "welcome"}, {"id", self->identity}, {"instance", self->hub_->instance()}});
        });
    }

    // channel_events ---------------------------------------------------------------------
    void on_message(std::string&& payload, bool binary) override {
        if (closed_) return;
        if (!protocol()) {
            if (!acl_.may_publish(raw_topic_)) {
                ++hub_->counters().acl_refusals;
                closed_ = true;
                s_->close(1008, "not allowed to publish to this topic");
                return;
            }
            if (!hub_->publish(raw_topic_, *this, std::move(payload), binary)) {
                // --durable with a full outbox: what is queued for this client leaves first.
                flush_held();
                closed_ = true;
                s_->close(1013, "redis unreachable: publish buffer full, retry later");
            }
            return;
        }
        auto parsed = parse_relay_request(payload, binary, acl_);
        if (auto* bad = std::get_if<relay_request_error>(&parsed)) {
            if (bad->acl) ++hub_->counters().acl_refusals;
            return error(bad->error, bad->op, bad->topic);
        }
        auto& r = std::get<relay_request>(parsed);
        try {
            if (r.op == "subscribe") return op_subscribe(r);
            if (r.op == "unsubscribe") return op_unsubscribe(r);
            if (r.op == "publish") {
                if (!hub_->publish(r.topic, *this, std::move(r.data), r.binary)) refuse_publish(r.topic);
                return;
            }
            if (r.op == "presence") return op_presence(r);
            if (r.op == "send") return op_send(r);
            if (r.op == "batch") return op_batch(r);
        } catch (const std::exception& e) {
            return error(fmt::format("bad request: {}", e.what()), r.op);
        }
    }

    void on_writable() override {
        // on_writable may run inside the session's write completion: feed it on the next turn,
        // not from inside its own handler.
        net::post(executor, [self = shared_from_this()] {
            self->waiting_ = false;
            self->flush();
        });
    }

    void on_close_received(int code, std::string_view) override {
        // Held (batching only): what waits here leaves before the answer to the client's Close.
        flush_held();
        closed_ = true;
        s_->close(code == 1005 || code == 1006 ? 1000 : static_cast<std::uint16_t>(code), {});
    }

    void on_close(const close_info&) override {
        closed_ = true;
        if (batch_timer_) batch_timer_->cancel();
        pending_.clear();
        queue_.clear();
        queue_bytes_ = 0;
        hub_->detach(*this, topics_);
        topics_.clear();
    }

    // relay_subscriber -------------------------------------------------------------------
    bool deliver(const relay_message_ptr& m) override {
        if (closed_) return false;
        if (m->type == relay_message::kind::data) {
            if (m->origin == conn_id && !hub_->options().echo_self) return false;
            if (auto it = replaying_.find(m->topic); it != replaying_.end()) {
                it->second.push_back(m);
                return true;
            }
            // After a replay: a message the history already gave (with --durable the history
            // runs ahead of what this instance has read back from the stream) is not given
            // again. A topic's ids arrive in order, so the first newer one ends the check.
            if (auto it = replayed_to_.find(m->topic); it != replayed_to_.end()) {
                if (m->id <= it->second) return false;
                replayed_to_.erase(it);
            }
        } else if (m->type != relay_message::kind::direct) {
            // Presence events are for protocol clients only, and not about themselves.
            if (!protocol() || m->origin == conn_id) return false;
        }
        enqueue(m, {});
        return true;
    }

    void replay_done(const std::string& topic, std::vector<relay_message_ptr> history) override {
        auto it = replaying_.find(topic);
        if (it == replaying_.end() || closed_) return;
        auto live = std::move(it->second);
        replaying_.erase(it);
        std::uint64_t seen = replay_since_.count(topic) ? replay_since_[topic] : 0;
        replay_since_.erase(topic);
        std::uint64_t given = 0;
        for (const auto& m : history) {
            seen = std::max(seen, m->id);
            given = std::max(given, m->id);
            enqueue(m, {});
        }
        for (const auto& m : live)
            if (m->id > seen) {
                enqueue(m, {});
                seen = given = m->id;
            }
        if (given > 0) replayed_to_[topic] = given;
    }

    void set_since(const std::string& topic, std::uint64_t since) { replay_since_[topic] = since; }

    void replace() override {
        if (closed_) return;
        ++hub_->counters().replaced;
        flush_held();
        closed_ = true;
        s_->close(relay_replaced_code, "replaced");
    }

    /// The batch being collected, then everything the relay still holds for this client, goes
    /// to the session now (its Close follows): a batch is never lost at a close.
    void flush_held() override {
        if (closed_) return;
        flush_batch();
        while (!queue_.empty()) {
            send_item(queue_.front());
            queue_.pop_front();
        }
        queue_bytes_ = 0;
    }

private:
    bool protocol() const { return raw_topic_.empty(); }

    struct item {
        relay_message_ptr m;
        std::string text;  // a reply of our own when m is null
        std::size_t size() const { return m ? payload(*m).size() : text.size(); }
        const std::string& payload(const relay_message& msg) const { return raw ? msg.data : msg.json; }
        bool raw = false;
        std::size_t messages = 1;  // a batch frame holds several
    };

    void send_item(const item& i) {
        if (!i.m) return s_->send(i.text, false);
        if (i.raw) return s_->send(i.m->data, i.m->binary);
        s_->send(i.m->json, false);
    }

    /// A delivery joins the batch (when batching); a reply of our own goes out after what was
    /// delivered before it, in its own frame and without waiting.
    void enqueue(const relay_message_ptr& m, std::string text) {
        if (closed_) return;
        if (batch_) {
            if (m) return add_to_batch(m);
            flush_batch();
        }
        push(m, std::move(text));
    }

    void set_batch(std::optional<relay_batch> b) {
        flush_batch();
        batch_ = b;
        // The client's Close is answered only after the batch being collected has left.
        if (batch_) s_->hold_close_reply();
    }

    void add_to_batch(const relay_message_ptr& m) {
        pending_.push_back(m);
        pending_bytes_ += protocol() ? m->json.size() : m->data.size();
        // A batch holds no more than --subscriber-queue: past it, it leaves now, and a client
        // that does not read meets the slow-consumer policy as it would without batches.
        if (pending_.size() >= batch_->max || pending_bytes_ >= hub_->options().subscriber_queue) return flush_batch();
        if (pending_.size() > 1) return;
        // The first message of a batch starts its clock.
        if (!batch_timer_) batch_timer_ = std::make_unique<net::steady_timer>(executor);
        batch_timer_->expires_after(batch_->interval);
        batch_timer_->async_wait([w = weak_from_this(), seq = batch_seq_](error_code ec) {
            auto self = w.lock();
            if (ec || !self || self->batch_seq_ != seq) return;
            self->flush_batch();
        });
    }

    /// The batch as one text frame: a JSON array of what would have been sent one by one
    /// (envelopes; raw mode: text payloads as strings, binary ones as {"data":BASE64,"binary":true}).
    void flush_batch() {
        if (pending_.empty()) return;
        ++batch_seq_;  // the timer of this batch is stale now
        std::string out = "[";
        for (const auto& m : pending_) {
            if (out.size() > 1) out += ',';
            if (protocol())
                out += m->json;
            else
                out += m->raw_batch_element();
        }
        out += ']';
        const auto messages = pending_.size();
        pending_.clear();
        pending_bytes_ = 0;
        ++hub_->counters().batches;
        push(nullptr, std::move(out), messages);
    }

    /// Sends at once while the session has room; else queues (bounded) and waits for room.
    void push(const relay_message_ptr& m, std::string text, std::size_t messages = 1) {
        if (closed_) return;
        item i{m, std::move(text)};
        i.raw = !protocol();
        i.messages = messages;
        const std::size_t hw = hub_->options().session_high_water;
        if (queue_.empty() && s_->queued_bytes() <= hw) return send_item(i);
        queue_bytes_ += i.size();
        queue_.push_back(std::move(i));
        const std::size_t limit = hub_->options().subscriber_queue;
        while (queue_bytes_ > limit && !queue_.empty()) {
            if (hub_->options().slow == slow_policy::close) {
                for (const auto& q : queue_) hub_->counters().slow_dropped += q.messages;
                ++hub_->counters().slow_closed;
                queue_.clear();
                queue_bytes_ = 0;
                closed_ = true;
                s_->close(1013, "subscriber too slow");
                return;
            }
            queue_bytes_ -= queue_.front().size();
            hub_->counters().slow_dropped += queue_.front().messages;
            queue_.pop_front();
        }
        if (!waiting_ && !queue_.empty()) {
            waiting_ = true;
            s_->want_writable();
        }
    }

    void flush() {
        if (closed_) return;
        const std::size_t hw = hub_->options().session_high_water;
        while (!queue_.empty() && s_->queued_bytes() <= hw) {
            queue_bytes_ -= queue_.front().size();
            send_item(queue_.front());
            queue_.pop_front();
        }
        if (!queue_.empty() && !waiting_) {
            waiting_ = true;
            s_->want_writable();
        }
    }

    void reply(const json& j) { enqueue(nullptr, dump(j)); }

    void error(const std::string& what, const std::string& op, const std::string& topic = {}) {
        ++hub_->counters().protocol_errors;
        json j = {{"type", "error"}, {"error", what}};
        if (!op.empty()) j["op"] = op;
        if (!topic.empty()) j["topic"] = topic;
        reply(j);
    }

    /// --durable with a full outbox: said to the client, which may retry later (not a protocol error).
    void refuse_publish(const std::string& topic) {
        reply({{"type", "error"},
               {"op", "publish"},
               {"topic", topic},
               {"error", fmt::format("publish refused: this relay already holds --durable-buffer ({}) of messages not yet "
                                     "accepted by Redis (unreachable or slow); retry later",
                                     format_bytes(hub_->options().durable_buffer))}});
    }

    void op_subscribe(const relay_request& r) {
        if (topics_.count(r.topic)) return reply({{"type", "subscribed"}, {"topic", r.topic}});
        topics_.insert(r.topic);
        reply({{"type", "subscribed"}, {"topic", r.topic}});
        if (r.replay) {
            replaying_[r.topic];
            if (r.replay->since) set_since(r.topic, *r.replay->since);
        }
        hub_->subscribe(r.topic, shared_from_this(), r.replay);
    }

    void op_unsubscribe(const relay_request& r) {
        if (!topics_.erase(r.topic)) return error("not subscribed", "unsubscribe", r.topic);
        replaying_.erase(r.topic);
        replayed_to_.erase(r.topic);
        hub_->unsubscribe(r.topic, *this);
        reply({{"type", "unsubscribed"}, {"topic", r.topic}});
    }

    void op_presence(const relay_request& r) {
        hub_->presence(r.topic, [w = weak_from_this(), ex = executor, t = r.topic](std::vector<std::string> ids) {
            net::post(ex, [w, t, ids = std::move(ids)] {
                auto self = w.lock();
                if (self && !self->closed_) self->reply({{"type", "presence"}, {"topic", t}, {"members", ids}});
            });
        });
    }

    void op_batch(const relay_request& r) {
        set_batch(r.batch);
        if (!r.batch) return reply({{"type", "batch"}, {"off", true}});
        reply({{"type", "batch"}, {"max", r.batch->max}, {"interval", format_duration(r.batch->interval)}});
    }

    void op_send(relay_request& r) {
        hub_->send_direct(*this, r.to, std::move(r.data), r.binary,
                          [w = weak_from_this(), ex = executor, to = r.to](std::string err) {
                              net::post(ex, [w, to, err = std::move(err)] {
                                  auto self = w.lock();
                                  if (!self || self->closed_) return;
                                  if (err.empty())
                                      self->reply({{"type", "sent"}, {"to", to}});
                                  else
                                      self->error(err, "send");
                              });
                          });
    }

    std::shared_ptr<relay_hub> hub_;
    ws_session* s_;  // the session owns this handler while open; after on_close it is not touched
    std::weak_ptr<ws_session> weak_;
    std::string raw_topic_;
    topic_acl acl_;
    std::set<std::string> topics_;
    std::unordered_map<std::string, std::vector<relay_message_ptr>> replaying_;
    std::unordered_map<std::string, std::uint64_t> replay_since_;
    std::unordered_map<std::string, std::uint64_t> replayed_to_;  // topic: the last id a replay gave
    std::deque<item> queue_;
    std::size_t queue_bytes_ = 0;
    bool waiting_ = false;
    bool closed_ = false;
    std::optional<relay_batch> batch_;
    std::vector<relay_message_ptr> pending_;  // the batch being collected
    std::size_t pending_bytes_ = 0;           // its payload bytes
    std::unique_ptr<net::steady_timer> batch_timer_;
    std::uint64_t batch_seq_ = 0;  // batches sent: tells a timer whether its batch is still open
};

}  // namespace

std::shared_ptr<channel_events> make_relay_connection(std::shared_ptr<relay_hub> hub, std::shared_ptr<ws_session> s,
                                                      std::size_t worker, std::string identity, std::string topic,
                                                      topic_acl acl, std::optional<replay_request> replay,
                                                      relay_conn_settings settings) {
    const bool raw_replay_since = replay && replay->since && !topic.empty();
    const std::string raw_topic = topic;
    const bool exclusive = settings.exclusive && !identity.empty();
    auto c = std::make_shared<relay_conn>(hub, s, std::move(topic), std::move(acl));
    c->conn_id = hub->next_conn_id();
    c->identity = identity.empty() ? fmt::format("anon-{}-{}", hub->instance().substr(0, 6), c->conn_id) : std::move(identity);
    c->worker = worker;
    c->executor = s->get_executor();
    c->exclusive = exclusive;
    if (raw_replay_since) c->set_since(raw_topic, *replay->since);
    c->start(replay, settings.batch);
    return c;
}

// The service ----------------------------------------------------------------------------

relay_service::relay_service(relay_options o) : hub_(std::make_shared<relay_hub>(std::move(o))) {}

void relay_service::start(net::io_context& main) { hub_->start(main); }

void relay_service::stop() {
    if (!hub_->options().quiet) hub_->log(hub_->summary());
    hub_->stop();
}

void relay_service::render_metrics(std::string& out) { hub_->render_metrics(out); }

namespace {
bool offers_subprotocol(const http_request& req) {
    auto v = req[http::field::sec_websocket_protocol];
    std::string_view s(v.data(), v.size());
    while (!s.empty()) {
        auto comma = s.find(',');
        auto item = s.substr(0, comma);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (item == relay_subprotocol) return true;
        if (comma == std::string_view::npos) break;
        s.remove_prefix(comma + 1);
    }
    return false;
}
}  // namespace

std::optional<http_response> relay_service::check_upgrade(const http_request& req, peer_info& peer, std::string& subprotocol) {
    auto u = boost::urls::parse_origin_form(std::string_view(req.target().data(), req.target().size()));
    if (!u) return make_response(http::status::bad_request, "bad request target");
    const std::string path = std::string(u->path());
    const bool offered = offers_subprotocol(req);
    const bool proto = offered || (!hub_->options().control_path.empty() && path == hub_->options().control_path);
    if (offered) subprotocol = relay_subprotocol;

    std::string error;
    auto acl = topic_acl::from_claims(peer.vars.count("claims") ? peer.vars["claims"] : std::string(), hub_->options().acl_claim, error);
    if (!acl) return make_response(http::status::forbidden, "token: " + error);

    std::string identity = peer.vars.count("sub") ? peer.vars["sub"] : std::string();
    if (!identity.empty() && !valid_name(identity))
        return make_response(http::status::forbidden, "the token's subject cannot be a relay identity (1 to 256 bytes, no control characters)");
    for (auto p : u->params()) {
        if (p.key == "id" && identity.empty()) {
            if (!valid_name(p.value)) return make_response(http::status::bad_request, "id: 1 to 256 bytes without control characters");
            identity = p.value;
        } else if (p.key == "history") {
            if (!p.has_value || p.value.empty() || p.value == "all")
                peer.vars["relay.history"] = "all";
            else if (parse_u64(p.value))
                peer.vars["relay.history"] = p.value;
            else
                return make_response(http::status::bad_request, "history: a count, or no value for all");
        } else if (p.key == "since") {
            if (!parse_u64(p.value)) return make_response(http::status::bad_request, "since: a message id (a number)");
            peer.vars["relay.since"] = p.value;
        } else if (p.key == "batch") {
            if (!parse_relay_batch(p.value, error)) return make_response(http::status::bad_request, error);
            peer.vars["relay.batch"] = p.value;
        }
    }
    peer.vars["relay.id"] = identity;
    // Only an authenticated user (JWT subject, basic-auth user) is held; ?id= names are anyone's.
    if (auto sub = peer.vars.find("sub"); hub_->options().one_connection_per_user && sub != peer.vars.end() && !sub->second.empty())
        peer.vars["relay.exclusive"] = "1";
    if (proto) {
        peer.vars["relay.mode"] = "protocol";
        return std::nullopt;
    }
    std::string topic = path.empty() ? std::string() : path.substr(1);
    if (!valid_name(topic))
        return make_response(http::status::not_found,
                             fmt::format("connect to /<topic> to publish and subscribe, or offer the subprotocol {}", relay_subprotocol));
    if (!acl->may_subscribe(topic)) {
        ++hub_->counters().acl_refusals;
        return make_response(http::status::forbidden, "this token may not subscribe to this topic");
    }
    peer.vars["relay.mode"] = "raw";
    peer.vars["relay.topic"] = topic;
    return std::nullopt;
}

std::shared_ptr<channel_events> relay_service::make_handler(std::shared_ptr<ws_session> s, const http_request&,
                                                            const peer_info& peer, std::uint64_t) {
    auto var = [&](const char* k) {
        auto it = peer.vars.find(k);
        return it == peer.vars.end() ? std::string() : it->second;
    };
    std::string error;
    auto acl = topic_acl::from_claims(var("claims"), hub_->options().acl_claim, error);
    std::string topic = var("relay.mode") == "raw" ? var("relay.topic") : std::string();
    std::optional<replay_request> replay;
    if (auto h = var("relay.history"); !h.empty()) replay = replay_request{h == "all" ? SIZE_MAX : *parse_u64(h), std::nullopt};
    if (auto since = var("relay.since"); !since.empty()) replay = replay_request{SIZE_MAX, *parse_u64(since)};
    if (topic.empty()) replay.reset();  // protocol clients ask per subscription
    relay_conn_settings settings;
    if (auto b = var("relay.batch"); !b.empty()) settings.batch = parse_relay_batch(b, error);
    settings.exclusive = var("relay.exclusive") == "1";
    return make_relay_connection(hub_, std::move(s), peer.worker, var("relay.id"), std::move(topic), acl ? *acl : topic_acl{},
                                 replay, settings);
}

}  // namespace wsx
