#pragma once
/// Choosing an upstream for `wsx proxy`: balance modes, a consistent-hash ring for sticky
/// sessions, backend health (up/down) and per-backend counters. Thread-safe: connections
/// on every worker thread ask it for candidates and report what happened.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "random_seed.hpp"

namespace wsx {

enum class balance_mode { round_robin, least_conn, random };

/// Parses "round-robin", "least-conn" or "random".
std::optional<balance_mode> parse_balance_mode(std::string_view text);

/// Where a sticky session's key comes from.
struct sticky_source {
    enum class kind { none, ip, header, cookie, query };
    kind from = kind::none;
    std::string name;  ///< header, cookie or query parameter name
};

/// Parses "ip", "header:NAME", "cookie:NAME" or "query:NAME"; nullopt when malformed.
std::optional<sticky_source> parse_sticky(std::string_view text);

/// A 64-bit FNV-1a hash followed by a finaliser: stable across runs and machines.
std::uint64_t stable_hash(std::string_view s);

/// A consistent-hash ring: every member owns `replicas` points; a key belongs to the first
/// point clockwise from its hash whose member is eligible. Adding a member takes about
/// 1/(n+1) of the keys, all from others; removing one moves only its own keys.
class hash_ring {
public:
    explicit hash_ring(std::size_t replicas = 160) : replicas_(replicas) {}
    /// Adds a member known by `name` (its points derive from the name only) as index `id`.
    void add(std::size_t id, std::string_view name);
    void remove(std::size_t id);
    /// The owner of `key` among members for which eligible(id) is true; nullopt when none is.
    template <class Pred>
    std::optional<std::size_t> lookup(std::string_view key, Pred eligible) const;
    std::optional<std::size_t> lookup(std::string_view key) const {
        return lookup(key, [](std::size_t) { return true; });
    }
    bool empty() const noexcept { return points_.empty(); }

private:
    struct point {
        std::uint64_t hash;
        std::size_t id;
    };
    std::size_t replicas_;
    std::vector<point> points_;  // sorted by hash
};

/// Counters and state of one backend (updated from any thread).
struct backend_state {
    std::string name;  ///< the upstream URL as given
    std::atomic<bool> up{true};
    std::atomic<std::uint64_t> active{0}, total{0}, failures{0}, bytes_up{0}, bytes_down{0};
    std::atomic<std::int64_t> down_since_ms{0};  ///< steady clock ms when marked down
};

class balancer {
public:
    balancer(std::vector<std::string> names, balance_mode mode, std::uint64_t seed = random_seed());

    /// The backends to try, in order: the first choice, then the others (up ones first, in
    /// balance or ring order), so a failed connect moves on to the next. With a sticky key the
    /// first choice is the key's owner on the ring among up backends. Backends that are down are
    /// listed last, only when `include_down` (the last resort when every backend is down).
    std::vector<std::size_t> candidates(const std::string* sticky_key, bool include_down = true);

    /// A connection to backend i opened / closed (least-conn and the metrics count these).
    void opened(std::size_t i);
    void closed(std::size_t i);
    /// A connect or health check failed: the backend is down until a check or connect succeeds.
    void mark_down(std::size_t i);
    void mark_up(std::size_t i);
    /// Down backends whose mark is older than `cool_down` are up again (when no active checks run).
    void expire_down(std::chrono::milliseconds cool_down);

    std::size_t size() const noexcept { return backends_.size(); }
    backend_state& backend(std::size_t i) { return *backends_[i]; }
    const backend_state& backend(std::size_t i) const { return *backends_[i]; }
    balance_mode mode() const noexcept { return mode_; }

    /// Prometheus text lines for every backend (state, connections, bytes, failures).
    void render_metrics(std::string& out) const;

private:
    std::vector<std::unique_ptr<backend_state>> backends_;
    balance_mode mode_;
    hash_ring ring_;
    std::mutex mutex_;  // guards next_ and rng_
    std::size_t next_ = 0;
    std::mt19937_64 rng_;
};

template <class Pred>
std::optional<std::size_t> hash_ring::lookup(std::string_view key, Pred eligible) const {
    if (points_.empty()) return std::nullopt;
    const std::uint64_t h = stable_hash(key);
    std::size_t lo = 0, hi = points_.size();
    while (lo < hi) {
        const std::size_t mid = (lo + hi) / 2;
        if (points_[mid].hash < h) lo = mid + 1; else hi = mid;
    }
    for (std::size_t k = 0; k < points_.size(); ++k) {
        const auto& p = points_[(lo + k) % points_.size()];
        if (eligible(p.id)) return p.id;
    }
    return std::nullopt;
}

}  // namespace wsx
