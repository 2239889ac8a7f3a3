#include "rate_limit.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "units.hpp"

namespace wsx {
namespace {

// Allowance for the rounding in rate * elapsed: without it a bucket could refuse at
// the exact instant a token is due (e.g. 0.999999999999 of 1).
constexpr double epsilon = 1e-9;

// The reference instant is moved at least this often, keeping the elapsed time (and
// so the product rate * elapsed) small enough to be exact in a double.
constexpr auto max_span = std::chrono::hours(1);

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

// ---------------------------------------------------------------- token_bucket

token_bucket::token_bucket(double rate_per_sec, double burst) : rate_(rate_per_sec), burst_(burst) {
    if (!std::isfinite(rate_) || rate_ <= 0) throw std::invalid_argument("token_bucket: rate must be positive and finite");
    if (!std::isfinite(burst_) || burst_ < 1) throw std::invalid_argument("token_bucket: burst must be at least 1 and finite");
}

double token_bucket::level_at(clock::time_point now) const {
    if (!started_) return burst_;
    const auto elapsed = std::max(clock::duration::zero(), now - epoch_);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
    return base_ + rate_ * static_cast<double>(ns) / 1e9;
}

double token_bucket::tokens(clock::time_point now) const { return std::min(burst_, level_at(now)); }

bool token_bucket::try_take(clock::time_point now, double n) {
    if (!started_) {
        started_ = true;
        epoch_ = now;
        base_ = burst_;
    }
    now = std::max(now, epoch_);   // an older time point than one already seen: no time passed
    double level = level_at(now);
    if (level >= burst_) {
        // Full: whatever accrued beyond the burst is discarded anyway, so restarting
        // the reference here loses nothing.
        epoch_ = now;
        base_ = level = burst_;
    } else if (now - epoch_ > max_span) {
        epoch_ = now;
        base_ = level;
    }
    if (level + epsilon < n) return false;
    base_ -= n;
    return true;
}

// ---------------------------------------------------------------- ip_rate_limiter

ip_rate_limiter::ip_rate_limiter(double rate, double burst, std::size_t max_tracked, unsigned ipv6_prefix_bits)
    : rate_(rate), burst_(burst), max_tracked_(max_tracked), ipv6_prefix_bits_(std::min(ipv6_prefix_bits, 128u)) {
    token_bucket check(rate, burst);   // same validation as every bucket
    (void)check;
    if (max_tracked_ == 0) throw std::invalid_argument("ip_rate_limiter: max_tracked must be at least 1");
}

std::size_t ip_rate_limiter::key_hash::operator()(const key& k) const noexcept {
    // FNV-1a: keys are short and fixed-size; an attacker choosing addresses to collide
    // buckets gains little since the table never exceeds max_tracked entries.
    std::uint64_t h = 1469598103934665603ull;
    for (auto b : k) {
        h ^= b;
        h *= 1099511628211ull;
    }
    return static_cast<std::size_t>(h);
}

ip_rate_limiter::key ip_rate_limiter::make_key(const std::string& ip) const {
    key k{};
    std::string_view text = ip;
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
    if (const auto zone = text.find('%'); zone != std::string_view::npos) text = text.substr(0, zone);
    const std::string s(text);
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        k[10] = k[11] = 0xff;
        std::memcpy(&k[12], &v4, 4);
        k[16] = 4;
    } else if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
        std::memcpy(k.data(), &v6, 16);
        static constexpr std::uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (std::memcmp(k.data(), mapped_prefix, 12) == 0) {
            k[16] = 4;
        } else {
            for (unsigned bit = ipv6_prefix_bits_; bit < 128; ++bit) k[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
            k[16] = 6;
        }
    }
    return k;   // not an address: all zeros, one shared bucket
}

bool ip_rate_limiter::allow(const std::string& ip, clock::time_point now) {
    const key k = make_key(ip);
    std::lock_guard lock(mutex_);
    if (auto it = index_.find(k); it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
    } else {
        if (index_.size() >= max_tracked_) {
            index_.erase(lru_.back().addr);
            lru_.pop_back();
        }
        lru_.push_front(entry{k, token_bucket(rate_, burst_)});
        index_.emplace(k, lru_.begin());
    }
    const bool ok = lru_.front().bucket.try_take(now);
    // Forget the oldest entries once refilled: two per call outpaces the one a call can
    // add, so idle addresses do not pile up toward the bound.
    for (int i = 0; i < 2 && lru_.size() > 1; ++i) {
        auto& oldest = lru_.back();
        if (oldest.bucket.tokens(now) < burst_) break;
        index_.erase(oldest.addr);
        lru_.pop_back();
    }
    return ok;
}

std::size_t ip_rate_limiter::tracked() const {
    std::lock_guard lock(mutex_);
    return index_.size();
}

// ---------------------------------------------------------------- parse_rate_limit

std::optional<std::pair<double, double>> parse_rate_limit(std::string_view spec, std::string* why) {
    const auto fail = [&](std::string message) -> std::optional<std::pair<double, double>> {
        if (why) *why = std::move(message);
        return std::nullopt;
    };
    const auto comma = spec.find(',');
    const auto rate_text = trim(spec.substr(0, comma));
    const auto rate = parse_rate(rate_text);
    if (!rate) return fail(fmt::format("bad rate limit '{}': expected N/s, N/m or N/h, optionally with ,burst=B (e.g. 100/s,burst=200)", spec));
    if (*rate <= 0) return fail(fmt::format("bad rate limit '{}': the rate must be above zero", spec));
    double burst = std::max(1.0, *rate);
    if (comma != std::string_view::npos) {
        const auto option = trim(spec.substr(comma + 1));
        const auto eq = option.find('=');
        if (eq == std::string_view::npos || trim(option.substr(0, eq)) != "burst")
            return fail(fmt::format("bad rate limit '{}': unknown option '{}' (expected burst=B)", spec, option));
        const auto value = trim(option.substr(eq + 1));
        double b = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), b);
        if (value.empty() || ec != std::errc{} || end != value.data() + value.size() || !std::isfinite(b))
            return fail(fmt::format("bad rate limit '{}': burst '{}' is not a number", spec, value));
        if (b < 1) return fail(fmt::format("bad rate limit '{}': the burst must be at least 1", spec));
        burst = b;
    }
    return std::pair{*rate, burst};
}

}  // namespace wsx
