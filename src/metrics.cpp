#include "metrics.hpp"

#include <fmt/format.h>

namespace wsx {

server_metrics::server_metrics(std::size_t workers) {
    for (std::size_t i = 0; i < std::max<std::size_t>(workers, 1); ++i) workers_.push_back(std::make_unique<worker_counters>());
}

void server_metrics::count_close(int code) {
    std::lock_guard lock(mutex_);
    ++closes_[code];
}

void server_metrics::count_rejection(const std::string& reason) {
    std::lock_guard lock(mutex_);
    ++rejections_[reason];
}

std::uint64_t server_metrics::rejections(const std::string& reason) const {
    std::lock_guard lock(mutex_);
    auto it = rejections_.find(reason);
    return it == rejections_.end() ? 0 : it->second;
}

std::string server_metrics::render() const {
    std::uint64_t min = 0, mout = 0, bin = 0, bout = 0, dropped = 0;
    for (const auto& w : workers_) {
        min += w->messages_in.get();
        mout += w->messages_out.get();
        bin += w->bytes_in.get();
        bout += w->bytes_out.get();
        dropped += w->dropped_messages.get();
    }
    std::string out;
    auto metric = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
        out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, v);
    };
    metric("wsx_connections_current", "gauge", "WebSocket connections open now.", connections_current.load());
    metric("wsx_connections_total", "counter", "WebSocket connections accepted.", connections_total.load());
    out += "# HELP wsx_messages_total WebSocket messages by direction.\n# TYPE wsx_messages_total counter\n";
    out += fmt::format("wsx_messages_total{{direction=\"in\"}} {}\nwsx_messages_total{{direction=\"out\"}} {}\n", min, mout);
    out += "# HELP wsx_bytes_total WebSocket message payload bytes by direction.\n# TYPE wsx_bytes_total counter\n";
    out += fmt::format("wsx_bytes_total{{direction=\"in\"}} {}\nwsx_bytes_total{{direction=\"out\"}} {}\n", bin, bout);
    metric("wsx_dropped_messages_total", "counter", "Outgoing messages dropped because a send queue was full.", dropped);
    metric("wsx_ping_timeouts_total", "counter", "Connections ended because no pong came within the ping timeout.",
           ping_timeouts.load());
    metric("wsx_rate_limited_messages_total", "counter", "Incoming messages over --rate-limit (dropped, or the connection closed).",
           rate_limited.load());
    std::lock_guard lock(mutex_);
    out += "# HELP wsx_closes_total Closed connections by close code (1006: no closing handshake).\n"
           "# TYPE wsx_closes_total counter\n";
    for (const auto& [code, n] : closes_) out += fmt::format("wsx_closes_total{{code=\"{}\"}} {}\n", code, n);
    out += "# HELP wsx_rejections_total Upgrade requests refused, by reason.\n# TYPE wsx_rejections_total counter\n";
    for (const auto& [reason, n] : rejections_) out += fmt::format("wsx_rejections_total{{reason=\"{}\"}} {}\n", reason, n);
    return out;
}

}  // namespace wsx
