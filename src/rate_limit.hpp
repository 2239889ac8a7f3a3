#pragma once
/// Rate limiting: a token bucket (per connection message limits) and a per-client-IP
/// limiter for connection attempts, plus the parser for the "--rate-limit" syntax.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace wsx {

/// A token bucket holding at most `burst` tokens, refilled continuously at
/// `rate_per_sec`; it starts full. Allocation-free, not thread-safe (one per connection).
///
/// Exactness: the refill since a reference instant is computed in one step from the
/// integer nanoseconds elapsed, not by summing small increments, so calling often or
/// rarely grants the same number of tokens (no drift). The reference instant moves only
/// when the bucket is full (nothing is lost then) or after an hour (one rounding of
/// about 1e-16 relative). Time points earlier than one already seen count as no time
/// passing.
class token_bucket {
public:
    using clock = std::chrono::steady_clock;

    /// Requires rate_per_sec > 0 and burst >= 1, both finite (std::invalid_argument).
    token_bucket(double rate_per_sec, double burst);

    /// Takes `n` tokens when at least that many are available at `now`; otherwise
    /// takes nothing and returns false.
    bool try_take(clock::time_point now, double n = 1);

    /// Tokens available at `now` (between -inf and burst; never negative in practice
    /// as try_take does not overdraw).
    double tokens(clock::time_point now) const;

    double rate() const { return rate_; }
    double burst() const { return burst_; }

private:
    double level_at(clock::time_point now) const;

    double rate_;
    double burst_;
    bool started_ = false;
    clock::time_point epoch_{};   ///< reference instant
    double base_ = 0;              ///< tokens at epoch_ minus tokens taken since
};

/// Connection-attempt limits per client address: one token bucket per IPv4 address,
/// per IPv6 /64 prefix by default (one host usually owns a whole /64, so per-address
/// buckets would be trivial to sidestep), IPv4-mapped IPv6 counted as IPv4. Text that
/// is not an IP address (e.g. a Unix socket peer) shares one bucket.
///
/// Memory is bounded by `max_tracked` buckets, kept in least-recently-seen order:
///  - a bucket that has refilled to full is forgotten (it is then no different from a
///    new one), checked on the oldest few entries at every call;
///  - at the bound, the least recently seen address is forgotten even if not full. This
///    can only make the limiter more lenient toward that address, never refuse one
///    wrongly; a spoofing flood thus costs at most max_tracked entries (about 150 bytes
///    each).
///
/// Thread-safe: allow() takes an internal mutex (it runs once per connection attempt,
/// not per message).
class ip_rate_limiter {
public:
    using clock = std::chrono::steady_clock;

    ip_rate_limiter(double rate, double burst, std::size_t max_tracked = 100000, unsigned ipv6_prefix_bits = 64);

    /// Takes one token from the bucket of `ip` ("192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1").
    bool allow(const std::string& ip, clock::time_point now);

    /// Addresses currently tracked.
    std::size_t tracked() const;

private:
    /// 16 address bytes (IPv4 as v4-mapped, IPv6 masked to the prefix) + a family tag.
    using key = std::array<std::uint8_t, 17>;
    struct key_hash {
        std::size_t operator()(const key& k) const noexcept;
    };
    struct entry {
        key addr;
        token_bucket bucket;
    };

    key make_key(const std::string& ip) const;

    double rate_;
    double burst_;
    std::size_t max_tracked_;
    unsigned ipv6_prefix_bits_;
    mutable std::mutex mutex_;
    std::list<entry> lru_;   ///< most recently seen first
    std::unordered_map<key, std::list<entry>::iterator, key_hash> index_;
};

/// Parses a rate limit: a rate as parse_rate reads it ("100/s", "6000/m", "10/h",
/// "1k/s"; a bare number is per second), optionally followed by ",burst=B".
/// The default burst is one second's worth of the rate, at least 1 ("100/s" → 100,
/// "30/m" → 1). Returns {rate per second, burst}, or nullopt with a one-line reason
/// in `*why` (when given) for: an unreadable rate, a rate of zero, a burst below 1,
/// an unknown suffix.
std::optional<std::pair<double, double>> parse_rate_limit(std::string_view spec, std::string* why = nullptr);

}  // namespace wsx
