#include "redis_cluster.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "one_line.hpp"

namespace wsx {

namespace {
std::uint16_t crc16_xmodem(std::string_view s) {
    std::uint16_t crc = 0;
    for (const unsigned char c : s) {
        crc ^= static_cast<std::uint16_t>(c << 8);
        for (int i = 0; i < 8; ++i) crc = static_cast<std::uint16_t>(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

// A command is tried this many times at most (sends, redirections followed, waits for a node):
// 3 s of retry_delay, longer than a connection's reconnect backoff (2 s at most).
constexpr int max_attempts = 30;
// Between tries of a command that found no usable node, or a slot being migrated (TRYAGAIN).
constexpr auto retry_delay = std::chrono::milliseconds(100);
// The layout is asked again this often, whatever happens.
constexpr auto refresh_every = std::chrono::seconds(5);
// A shard channel moved this many times in a row waits for the next tick.
constexpr int max_quick_moves = 3;
// The layout is asked at most this often: a refusal or redirection that repeats cannot make a
// loop of layout questions.
constexpr auto refresh_gap = std::chrono::milliseconds(250);
// A layout with more masters than this is refused (one connection each).
constexpr std::size_t max_masters = 1000;

// "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the node.
bool parse_redirect(const std::string& e, std::string_view verb, std::uint16_t& slot, std::string& addr) {
    if (e.size() <= verb.size() + 1 || e.compare(0, verb.size(), verb) != 0 || e[verb.size()] != ' ') return false;
    const auto rest = std::string_view(e).substr(verb.size() + 1);
    const auto sp = rest.find(' ');
    if (sp == std::string_view::npos) return false;
    unsigned s = 0;
    auto [p, ec] = std::from_chars(rest.data(), rest.data() + sp, s);
    if (ec != std::errc() || p != rest.data() + sp || s >= redis_cluster_slots) return false;
    addr = std::string(rest.substr(sp + 1));
    const auto colon = addr.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == addr.size()) return false;
    slot = static_cast<std::uint16_t>(s);
    return true;
}

bool split_addr(const std::string& addr, std::string& host, std::uint16_t& port) {
    const auto colon = addr.rfind(':');
    if (colon == std::string::npos) return false;
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(addr.data() + colon + 1, addr.data() + addr.size(), p);
    if (ec != std::errc() || ptr != addr.data() + addr.size() || p == 0 || p > 65535) return false;
    host = addr.substr(0, colon);
    port = static_cast<std::uint16_t>(p);
    return true;
}
}  // namespace

std::uint16_t redis_key_slot(std::string_view key) {
    if (const auto open = key.find('{'); open != std::string_view::npos) {
        const auto close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
    }
    return static_cast<std::uint16_t>(crc16_xmodem(key) % redis_cluster_slots);
}

std::optional<std::vector<redis_slot_range>> parse_cluster_slots(const redis_value& v, std::string& error) {
    if (v.is_error()) {
        error = "CLUSTER SLOTS: " + escape_one_line(v.str);
        return std::nullopt;
    }
    if (v.type != redis_value::kind::array) {
        error = "CLUSTER SLOTS: not an array (not a cluster node?)";
        return std::nullopt;
    }
    if (v.elements.size() > redis_cluster_slots) {
        error = "CLUSTER SLOTS: more ranges than slots";
        return std::nullopt;
    }
    std::vector<redis_slot_range> out;
    for (const auto& e : v.elements) {
        if (e.type != redis_value::kind::array || e.elements.size() < 3 || e.elements[0].type != redis_value::kind::integer ||
            e.elements[1].type != redis_value::kind::integer || e.elements[2].type != redis_value::kind::array ||
            e.elements[2].elements.size() < 2 || e.elements[2].elements[1].type != redis_value::kind::integer) {
            error = "CLUSTER SLOTS: unexpected reply";
            return std::nullopt;
        }
        const auto first = e.elements[0].integer, last = e.elements[1].integer, port = e.elements[2].elements[1].integer;
        const auto& host = e.elements[2].elements[0].str;
        if (first < 0 || last < first || last >= static_cast<long long>(redis_cluster_slots) || port <= 0 || port > 65535 ||
            host.size() > 255 ||
            host.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_:%") != std::string::npos) {
            error = "CLUSTER SLOTS: bad slot range or address";
            return std::nullopt;
        }
        out.push_back({static_cast<std::uint16_t>(first), static_cast<std::uint16_t>(last),
                       redis_node{.host = host, .port = static_cast<std::uint16_t>(port)}});
    }
    // A node that has not joined (or was reset) answers no ranges; ranges that overlap or name
    // more masters than a cluster has are not a layout to follow.
    std::vector<bool> taken(redis_cluster_slots);
    std::set<std::pair<std::string, std::uint16_t>> masters;
    for (const auto& r : out) {
        for (std::size_t s = r.first; s <= r.last; ++s) {
            if (taken[s]) {
                error = fmt::format("CLUSTER SLOTS: slot {} is given twice", s);
                return std::nullopt;
            }
            taken[s] = true;
        }
        masters.emplace(r.master.host, r.master.port);
        if (masters.size() > max_masters) {
            error = fmt::format("CLUSTER SLOTS: more than {} masters", max_masters);
            return std::nullopt;
        }
    }
    if (out.empty()) {
        error = "CLUSTER SLOTS: no slot is served (a node not joined to a cluster yet?)";
        return std::nullopt;
    }
    return out;
}

struct redis_cluster::op {
    std::vector<std::string> args;
    std::uint16_t slot = 0;
    reply_handler done;
    std::uint64_t seq = 0;
    int attempts = 0;
    std::optional<std::string> ask;  // -ASK: the node to try once, after ASKING
    bool head = false;               // the command of a held slot being tried
};

redis_cluster::redis_cluster(net::io_context& ioc, redis_url url, std::string name)
    : ioc_(ioc), url_(std::move(url)), name_(std::move(name)) {}

redis_cluster::~redis_cluster() { stop(); }

redis_url redis_cluster::node_url(const std::string& host, std::uint16_t port) const {
    auto u = url_;
    u.cluster_nodes.clear();
    u.host = host;
    u.port = port;
    u.db = 0;
    return u;
}

void redis_cluster::start() {
    stopped_ = false;
    tick_ = std::make_unique<net::steady_timer>(ioc_);
    probe_timer_ = std::make_unique<net::steady_timer>(ioc_);
    refresh();
    tick();
}

void redis_cluster::stop() {
    if (stopped_) return;
    stopped_ = true;
    tick_.reset();
    probe_timer_.reset();
    if (probe_) std::exchange(probe_, nullptr)->stop();
    auto nodes = std::move(nodes_);
    nodes_.clear();
    for (auto& [addr, n] : nodes) {
        if (n.cmd) n.cmd->stop();
        if (n.sub) n.sub->stop();
    }
    // Commands held for a retry learn that they will not be answered.
    auto serial = std::move(serial_);
    serial_.clear();
    for (auto& [slot, list] : serial)
        for (auto& o : list.list)
            if (o->done) std::exchange(o->done, nullptr)(std::nullopt);
    on_message = nullptr;
    on_ssubscribed = nullptr;
    on_up = nullptr;
    on_down = nullptr;
    on_log = nullptr;
    up_ = false;
}

void redis_cluster::tick() {
    if (!tick_) return;
    tick_->expires_after(std::chrono::seconds(1));
    tick_->async_wait([w = weak_from_this()](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        if (!self->known_ || std::chrono::steady_clock::now() - self->last_refresh_ >= refresh_every) self->refresh();
        for (auto& [channel, at] : self->channels_)
            if (at.empty()) self->place(channel);
        self->check_up();
        self->tick();
    });
}

std::string redis_cluster::owner(std::uint16_t slot) const {
    const auto i = slots_[slot];
    return i == 0 || i > masters_.size() ? std::string() : masters_[i - 1];
}

// Refresh ----------------------------------------------------------------------------------

void redis_cluster::refresh() {
    if (stopped_) return;
    if (refreshing_) {
        again_ = true;
        return;
    }
    const auto now = std::chrono::steady_clock::now();
    if (known_ && now - last_refresh_ < refresh_gap) {
        if (std::exchange(refresh_armed_, true)) return;
        auto t = std::make_shared<net::steady_timer>(ioc_, last_refresh_ + refresh_gap);
        t->async_wait([w = weak_from_this(), t](error_code ec) {
            auto self = w.lock();
            if (ec || !self || self->stopped_) return;
            self->refresh_armed_ = false;
            self->refresh();
        });
        return;
    }
    refreshing_ = true;
    last_refresh_ = now;
    // Each time another master is asked: one whose view lags does not decide every layout.
    std::vector<std::string> ready;
    for (auto& [addr, n] : nodes_)
        if (n.cmd && n.cmd->connected()) ready.push_back(addr);
    if (!ready.empty()) {
        const auto& addr = ready[refresh_turn_++ % ready.size()];
        auto& n = nodes_[addr];
        n.cmd->command({"CLUSTER", "SLOTS"}, [w = weak_from_this(), addr = addr](std::optional<redis_value> v) {
            auto self = w.lock();
            if (!self || self->stopped_) return;
            std::string error;
            std::optional<std::vector<redis_slot_range>> ranges;
            if (v) ranges = parse_cluster_slots(*v, error);
            if (!ranges) return self->ask_layout(0);  // ask the seeds instead
            std::string host;
            std::uint16_t port = 0;
            split_addr(addr, host, port);
            for (auto& r : *ranges)
                if (r.master.host.empty()) r.master.host = host;
            self->apply(*ranges);
        });
        return;
    }
    ask_layout(0);
}

// Asks seed `i` (of the URL's list) for the layout, on a connection of its own.
void redis_cluster::ask_layout(std::size_t i) {
    if (stopped_) return;
    const auto& seeds = url_.cluster_nodes;
    if (i >= seeds.size()) {
        refreshing_ = false;
        if (std::exchange(again_, false)) refresh();
        return;
    }
    if (probe_) probe_->stop();
    probe_ = std::make_shared<redis_connection>(ioc_, node_url(seeds[i].host, seeds[i].port), name_ + " layout");
    probe_->set_timeout(timeout_);
    probe_seed_ = i;
    auto p = probe_;
    const auto answered = [w = weak_from_this(), p, i](std::optional<redis_value> v) {
        auto self = w.lock();
        if (!self || self->stopped_ || self->probe_ != p) return;
        std::string error;
        std::optional<std::vector<redis_slot_range>> ranges;
        if (v) ranges = parse_cluster_slots(*v, error);
        else error = "no answer";
        // Stopped once its handler returned: it is the connection running this handler.
        net::post(self->ioc_, [p] { p->stop(); });
        self->probe_.reset();
        const auto& seed = self->url_.cluster_nodes[i];
        if (!ranges) {
            self->last_error_ = fmt::format("{}: {}", format_node(seed.host, seed.port), error);
            return self->ask_layout(i + 1);
        }
        for (auto& r : *ranges)
            if (r.master.host.empty()) r.master.host = seed.host;
        self->apply(*ranges);
    };
    probe_->on_up = [p, answered] { p->command({"CLUSTER", "SLOTS"}, answered); };
    probe_->start();
    probe_timer_->expires_after(timeout_.count() > 0 ? timeout_ : std::chrono::milliseconds(2000));
    probe_timer_->async_wait([w = weak_from_this(), p, i](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_ || self->probe_ != p) return;
        const auto& seed = self->url_.cluster_nodes[i];
        self->last_error_ = fmt::format("{}: {}", format_node(seed.host, seed.port),
                                        p->last_error().empty() ? std::string("no answer") : p->last_error());
        p->stop();
        self->probe_.reset();
        self->ask_layout(i + 1);
    });
}

redis_cluster::node& redis_cluster::ensure(const std::string& addr) {
    auto& n = nodes_[addr];
    if (n.cmd) return n;
    std::string host;
    std::uint16_t port = 0;
    split_addr(addr, host, port);
    n.cmd = std::make_shared<redis_connection>(ioc_, node_url(host, port), name_);
    n.cmd->set_timeout(timeout_);
    n.cmd->on_up = [w = weak_from_this()] {
        if (auto self = w.lock()) self->check_up();
    };
    n.cmd->on_down = [w = weak_from_this()](const std::string&) {
        if (auto self = w.lock()) {
            self->check_up();
            self->refresh();
        }
    };
    n.cmd->start();
    return n;
}

void redis_cluster::apply(const std::vector<redis_slot_range>& ranges) {
    refreshing_ = false;
    std::array<std::uint16_t, redis_cluster_slots> slots{};
    std::vector<std::string> masters;
    std::size_t covered = 0;
    for (const auto& r : ranges) {
        const auto addr = format_node(r.master.host, r.master.port);
        auto it = std::find(masters.begin(), masters.end(), addr);
        if (it == masters.end()) it = masters.insert(masters.end(), addr);
        const auto index = static_cast<std::uint16_t>(it - masters.begin() + 1);
        for (std::size_t s = r.first; s <= r.last; ++s) {
            if (slots[s] == 0) ++covered;
            slots[s] = index;
        }
    }
    std::sort(masters.begin(), masters.end());
    // Indexes again, in the sorted order.
    for (const auto& r : ranges) {
        const auto addr = format_node(r.master.host, r.master.port);
        const auto index = static_cast<std::uint16_t>(std::find(masters.begin(), masters.end(), addr) - masters.begin() + 1);
        for (std::size_t s = r.first; s <= r.last; ++s) slots[s] = index;
    }
    // Compared with the last layout read, not with slots_: a MOVED may have updated it already.
    std::size_t moved = 0;
    if (known_)
        for (std::size_t s = 0; s < redis_cluster_slots; ++s) {
            const auto i = layout_slots_[s];
            if ((i ? layout_masters_[i - 1] : std::string()) != (slots[s] ? masters[slots[s] - 1] : std::string())) ++moved;
        }
    const bool changed = !known_ || moved > 0 || masters != layout_masters_;
    std::string list;
    for (const auto& m : masters) list += (list.empty() ? "" : ", ") + m;
    if (changed && on_log) {
        const auto what = fmt::format("{} master{}, {} slots ({})", masters.size(), masters.size() == 1 ? "" : "s", covered, list);
        on_log(known_ ? fmt::format("redis cluster: layout changed, {} slot{} moved: {}", moved, moved == 1 ? "" : "s", what)
                      : fmt::format("redis cluster: {}", what));
    }
    slots_ = layout_slots_ = slots;
    masters_ = layout_masters_ = std::move(masters);
    known_ = true;
    // Connections to nodes that are no longer masters go; their commands are retried elsewhere.
    std::vector<node> gone;
    for (auto it = nodes_.begin(); it != nodes_.end();) {
        if (std::find(masters_.begin(), masters_.end(), it->first) == masters_.end()) {
            gone.push_back(std::move(it->second));
            for (auto& [channel, at] : channels_)
                if (at == it->first) at.clear();
            it = nodes_.erase(it);
        } else {
            ++it;
        }
    }
    for (const auto& m : masters_) ensure(m);
    for (auto& [channel, at] : channels_) place(channel);
    for (auto& n : gone) {
        if (n.cmd) n.cmd->stop();
        if (n.sub) n.sub->stop();
    }
    check_up();
    if (std::exchange(again_, false)) refresh();
}

void redis_cluster::check_up() {
    bool all = known_ && !masters_.empty();
    std::vector<std::string> up;
    std::string why;  // the first master not reached, and why
    for (const auto& m : masters_) {
        auto it = nodes_.find(m);
        if (it != nodes_.end() && it->second.cmd && it->second.cmd->connected()) {
            up.push_back(m);
            continue;
        }
        all = false;
        if (why.empty())
            why = fmt::format("master {} unreachable{}", m,
                              it != nodes_.end() && it->second.cmd && !it->second.cmd->last_error().empty()
                                  ? " (" + it->second.cmd->last_error() + ")"
                                  : std::string());
    }
    if (!why.empty()) last_error_ = why;
    {
        std::lock_guard lock(nodes_mutex_);
        up_nodes_ = std::move(up);
        node_count_ = masters_.size();
    }
    if (all == up_) return;
    up_ = all;
    if (all) {
        if (on_up) on_up();
    } else if (on_down) {
        on_down(last_error_.empty() ? std::string("the layout is not known") : last_error_);
    }
}

std::vector<std::string> redis_cluster::connected_nodes() const {
    std::lock_guard lock(nodes_mutex_);
    return up_nodes_;
}

std::size_t redis_cluster::node_count() const {
    std::lock_guard lock(nodes_mutex_);
    return node_count_;
}

// Commands ---------------------------------------------------------------------------------

void redis_cluster::command(std::vector<std::string> args, std::size_t key, reply_handler done) {
    auto o = std::make_shared<op>();
    o->slot = key < args.size() ? redis_key_slot(args[key]) : 0;
    o->args = std::move(args);
    o->done = std::move(done);
    o->seq = ++next_seq_;
    if (stopped_) return finish(o, std::nullopt);
    // While a command of this slot waits for a retry, the later ones wait behind it: the
    // commands of a slot run in the order they were given.
    if (auto it = serial_.find(o->slot); it != serial_.end()) {
        it->second.list.push_back(o);
        if (!it->second.head_out && !it->second.timer) arm_serial(o->slot, std::chrono::milliseconds(0));
        return;
    }
    dispatch(o);
}

void redis_cluster::dispatch(const op_ptr& o) {
    if (stopped_) return finish(o, std::nullopt);
    if (++o->attempts > max_attempts) {
        // Given up: the commands of its slot held behind it give up too, rather than each
        // waiting out its own tries one after the other while more arrive.
        if (o->head)
            if (auto it = serial_.find(o->slot); it != serial_.end()) {
                auto held = std::move(it->second.list);
                it->second.list.clear();
                for (auto& h : held) {
                    h->head = false;
                    if (h->done) std::exchange(h->done, nullptr)(std::nullopt);
                }
            }
        if (on_log) on_log(fmt::format("redis cluster: a command for slot {} got no usable answer after {} tries{}", o->slot,
                                       max_attempts, last_error_.empty() ? "" : " (" + last_error_ + ")"));
        return finish(o, std::nullopt);
    }
    const auto addr = o->ask ? *o->ask : owner(o->slot);
    if (addr.empty()) {
        refresh();
        return retry_later(o);
    }
    auto& n = ensure(addr);
    if (!n.cmd->connected()) return retry_later(o);
    if (o->ask) n.cmd->command({"ASKING"});
    n.cmd->command(o->args, [w = weak_from_this(), o](std::optional<redis_value> v) {
        auto self = w.lock();
        if (!self) return;
        self->answered(o, std::move(v));
    });
}

void redis_cluster::answered(const op_ptr& o, std::optional<redis_value> v) {
    if (stopped_) return finish(o, std::nullopt);
    if (!v) {
        // The node's connection was lost (or its answer was too late): its slots may have a new
        // master. The command may have run there, so it is not sent again (a publish would be
        // delivered twice); the caller sees it unanswered, as with a single Redis.
        refresh();
        return finish(o, std::nullopt);
    }
    if (v->is_error()) {
        std::uint16_t slot = 0;
        std::string to;
        if (parse_redirect(v->str, "MOVED", slot, to)) {
            moved_.fetch_add(1, std::memory_order_relaxed);
            // The slot's new master, until the refreshed layout says more.
            auto it = std::find(masters_.begin(), masters_.end(), to);
            if (it == masters_.end()) it = masters_.insert(masters_.end(), to);
            slots_[slot] = static_cast<std::uint16_t>(it - masters_.begin() + 1);
            ensure(to);
            refresh();
            o->ask.reset();
            if (o->head || !serial_.count(o->slot)) return dispatch(o);
            return retry_later(o);
        }
        if (parse_redirect(v->str, "ASK", slot, to)) {
            asked_.fetch_add(1, std::memory_order_relaxed);
            if (o->ask) {  // asked once already: try the owner again later
                o->ask.reset();
                return retry_later(o);
            }
            o->ask = to;
            if (o->head || !serial_.count(o->slot)) return dispatch(o);
            return retry_later(o);
        }
        if (v->str.rfind("TRYAGAIN", 0) == 0 || v->str.rfind("CLUSTERDOWN", 0) == 0 || v->str.rfind("LOADING", 0) == 0) {
            o->ask.reset();
            return retry_later(o);
        }
    }
    finish(o, std::move(v));
}

// Holds `o` (in order of the commands given) until a short delay has passed; the slot's later
// commands wait behind it and then go one at a time until none is held.
void redis_cluster::retry_later(const op_ptr& o) {
    if (stopped_) return finish(o, std::nullopt);
    auto& h = serial_[o->slot];
    if (std::exchange(o->head, false)) h.head_out = false;
    h.list.insert(std::upper_bound(h.list.begin(), h.list.end(), o, [](const op_ptr& a, const op_ptr& b) { return a->seq < b->seq; }),
                  o);
    if (!h.head_out && !h.timer) arm_serial(o->slot, retry_delay);
}

void redis_cluster::arm_serial(std::uint16_t slot, std::chrono::milliseconds delay) {
    serial_[slot].timer = true;
    auto t = std::make_shared<net::steady_timer>(ioc_, delay);
    t->async_wait([w = weak_from_this(), t, slot](error_code ec) {
        auto self = w.lock();
        if (ec || !self || self->stopped_) return;
        auto it = self->serial_.find(slot);
        if (it == self->serial_.end()) return;
        auto& h = it->second;
        h.timer = false;
        if (h.head_out) return;
        if (h.list.empty()) {
            self->serial_.erase(it);
            return;
        }
        auto head = h.list.front();
        h.list.erase(h.list.begin());
        head->head = true;
        h.head_out = true;
        self->dispatch(head);
    });
}

void redis_cluster::finish(const op_ptr& o, std::optional<redis_value> v) {
    if (std::exchange(o->head, false)) {
        if (auto it = serial_.find(o->slot); it != serial_.end()) {
            it->second.head_out = false;
            // The next held command goes now, alone.
            if (!it->second.timer) {
                if (it->second.list.empty()) serial_.erase(it);
                else arm_serial(o->slot, std::chrono::milliseconds(0));
            }
        }
    }
    if (o->done) std::exchange(o->done, nullptr)(std::move(v));
}

// Shard channels ---------------------------------------------------------------------------

void redis_cluster::ssubscribe(const std::string& channel) {
    if (channels_.count(channel)) return;
    channels_[channel];
    place(channel);
}

void redis_cluster::sunsubscribe(const std::string& channel) {
    auto it = channels_.find(channel);
    if (it == channels_.end()) return;
    if (auto n = nodes_.find(it->second); n != nodes_.end() && n->second.sub) n->second.sub->sunsubscribe(channel);
    channels_.erase(it);
    quick_moves_.erase(channel);
}

// Subscribes `channel` on the master of its slot, if it is not there yet.
void redis_cluster::place(const std::string& channel) {
    auto c = channels_.find(channel);
    if (c == channels_.end() || !known_ || stopped_) return;
    const auto want = owner(redis_key_slot(channel));
    if (want.empty()) return;  // nobody holds the slot: the next layout tells
    auto& at = c->second;
    if (!at.empty() && at != want)
        if (auto n = nodes_.find(at); n != nodes_.end() && n->second.sub) n->second.sub->sunsubscribe(channel);
    auto& n = ensure(want);
    if (!n.sub) {
        std::string host;
        std::uint16_t port = 0;
        split_addr(want, host, port);
        n.sub = std::make_shared<redis_connection>(ioc_, node_url(host, port), name_ + " subscriber");
        n.sub->set_timeout(timeout_);  // an unanswered SSUBSCRIBE drops the link, and it is made again
        n.sub->on_message = [w = weak_from_this()](const std::string& channel, std::string payload) {
            auto self = w.lock();
            if (self && self->on_message) self->on_message(channel, std::move(payload));
        };
        n.sub->on_ssubscribed = [w = weak_from_this()](const std::string& channel) {
            auto self = w.lock();
            if (!self) return;
            self->quick_moves_.erase(channel);
            if (self->on_ssubscribed) self->on_ssubscribed(channel);
        };
        n.sub->on_sunsubscribed = [w = weak_from_this(), addr = want](const std::string& channel, const std::string& why) {
            auto self = w.lock();
            if (!self || self->stopped_) return;
            auto c = self->channels_.find(channel);
            if (c == self->channels_.end() || c->second != addr) return;
            c->second.clear();
            std::uint16_t slot = 0;
            std::string to;
            if (parse_redirect(why, "MOVED", slot, to)) {
                self->moved_.fetch_add(1, std::memory_order_relaxed);
                auto it = std::find(self->masters_.begin(), self->masters_.end(), to);
                if (it == self->masters_.end()) it = self->masters_.insert(self->masters_.end(), to);
                self->slots_[slot] = static_cast<std::uint16_t>(it - self->masters_.begin() + 1);
            }
            const bool moved = why.empty() || why.rfind("MOVED ", 0) == 0;
            const int times = ++self->quick_moves_[channel];
            // A refusal (ACL, an error) is said once until the channel is subscribed again, and
            // tried again at the next tick: asking again at once would only be refused again.
            if (self->on_log && (moved || times == 1))
                self->on_log(why.empty() ? fmt::format("redis cluster: {} dropped shard channel {} (its slot moved)", addr,
                                                       escape_one_line(channel))
                                         : fmt::format("redis cluster: {} refused shard channel {}: {}", addr,
                                                       escape_one_line(channel), escape_one_line(why)));
            if (!moved) return;
            self->refresh();
            // Placed again at once a few times; then by the next tick.
            if (times <= max_quick_moves) self->place(channel);
        };
        n.sub->start();
    }
    at = want;
    n.sub->ssubscribe(channel);
}

}  // namespace wsx
