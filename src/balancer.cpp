#include "balancer.hpp"

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

namespace wsx {

std::optional<balance_mode> parse_balance_mode(std::string_view text) {
    if (text == "round-robin" || text == "rr") return balance_mode::round_robin;
    if (text == "least-conn") return balance_mode::least_conn;
    if (text == "random") return balance_mode::random;
    return std::nullopt;
}

std::optional<sticky_source> parse_sticky(std::string_view text) {
    sticky_source s;
    if (text == "ip") {
        s.from = sticky_source::kind::ip;
        return s;
    }
    const auto colon = text.find(':');
    if (colon == std::string_view::npos || colon + 1 == text.size()) return std::nullopt;
    const auto what = text.substr(0, colon);
    s.name = std::string(text.substr(colon + 1));
    if (what == "header") s.from = sticky_source::kind::header;
    else if (what == "cookie") s.from = sticky_source::kind::cookie;
    else if (what == "query") s.from = sticky_source::kind::query;
    else return std::nullopt;
    return s;
}

std::uint64_t stable_hash(std::string_view s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    // FNV-1a alone clusters similar short strings ("a#1", "a#2"): mix the bits (splitmix64).
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

void hash_ring::add(std::size_t id, std::string_view name) {
    for (std::size_t r = 0; r < replicas_; ++r) points_.push_back({stable_hash(fmt::format("{}#{}", name, r)), id});
    std::sort(points_.begin(), points_.end(), [](const point& a, const point& b) {
        return a.hash != b.hash ? a.hash < b.hash : a.id < b.id;
    });
}

void hash_ring::remove(std::size_t id) {
    std::erase_if(points_, [id](const point& p) { return p.id == id; });
}

balancer::balancer(std::vector<std::string> names, balance_mode mode, std::uint64_t seed) : mode_(mode), rng_(seed) {
    for (std::size_t i = 0; i < names.size(); ++i) {
        auto b = std::make_unique<backend_state>();
        b->name = names[i];
        ring_.add(i, names[i]);
        backends_.push_back(std::move(b));
    }
}

std::vector<std::size_t> balancer::candidates(const std::string* sticky_key, bool include_down) {
    const std::size_t n = backends_.size();
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    {
        std::lock_guard lock(mutex_);
        switch (mode_) {
        case balance_mode::round_robin: {
            const std::size_t start = n ? next_++ % n : 0;
            std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(start), order.end());
            break;
        }
        case balance_mode::random:
            std::shuffle(order.begin(), order.end(), rng_);
            break;
        case balance_mode::least_conn: {
            // Ties go round-robin so that idle backends share new connections evenly.
            const std::size_t start = n ? next_++ % n : 0;
            std::rotate(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(start), order.end());
            std::stable_sort(order.begin(), order.end(), [this](std::size_t a, std::size_t b) {
                return backends_[a]->active.load() < backends_[b]->active.load();
            });
            break;
        }
        }
    }
    if (sticky_key) {
        auto owner = ring_.lookup(*sticky_key, [this](std::size_t id) { return backends_[id]->up.load(); });
        if (!owner) owner = ring_.lookup(*sticky_key);
        if (owner) {
            auto it = std::find(order.begin(), order.end(), *owner);
            std::rotate(order.begin(), it, it + 1);
        }
    }
    // Up backends first, keeping the order chosen above.
    std::stable_partition(order.begin(), order.end(), [this](std::size_t i) { return backends_[i]->up.load(); });
    if (!include_down) std::erase_if(order, [this](std::size_t i) { return !backends_[i]->up.load(); });
    return order;
}

void balancer::opened(std::size_t i) {
    ++backends_[i]->active;
    ++backends_[i]->total;
}

void balancer::closed(std::size_t i) { --backends_[i]->active; }

namespace {
std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void balancer::mark_down(std::size_t i) {
    if (backends_[i]->up.exchange(false)) backends_[i]->down_since_ms = now_ms();
}

void balancer::mark_up(std::size_t i) { backends_[i]->up = true; }

void balancer::expire_down(std::chrono::milliseconds cool_down) {
    const auto now = now_ms();
    for (auto& b : backends_)
        if (!b->up.load() && now - b->down_since_ms.load() >= cool_down.count()) b->up = true;
}

void balancer::render_metrics(std::string& out) const {
    auto label = [](const std::string& s) {
        std::string r;
        for (char c : s) {
            if (c == '\\' || c == '"') r += '\\';
            if (c == '\n') { r += "\\n"; continue; }
            r += c;
        }
        return r;
    };
    auto family = [&](const char* name, const char* type, const char* help, auto value) {
        out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
        for (const auto& b : backends_) out += fmt::format("{}{{backend=\"{}\"}} {}\n", name, label(b->name), value(*b));
    };
    family("wsx_proxy_backend_up", "gauge", "1 when the backend takes new connections, 0 when it is down",
           [](const backend_state& b) { return b.up.load() ? 1 : 0; });
    family("wsx_proxy_backend_connections", "gauge", "Connections open to the backend",
           [](const backend_state& b) { return b.active.load(); });
    family("wsx_proxy_backend_connections_total", "counter", "Connections made to the backend",
           [](const backend_state& b) { return b.total.load(); });
    family("wsx_proxy_backend_failures_total", "counter", "Failed connects and health checks",
           [](const backend_state& b) { return b.failures.load(); });
    family("wsx_proxy_backend_bytes_sent_total", "counter", "Payload bytes sent to the backend",
           [](const backend_state& b) { return b.bytes_up.load(); });
    family("wsx_proxy_backend_bytes_received_total", "counter", "Payload bytes received from the backend",
           [](const backend_state& b) { return b.bytes_down.load(); });
}

}  // namespace wsx
