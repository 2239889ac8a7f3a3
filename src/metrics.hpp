#pragma once
/// Counters of a running server and their Prometheus text rendering (`serve --metrics`).
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace wsx {

/// A counter written by one thread only and read by any: no locked instruction per update.
class single_writer_counter {
public:
    void add(std::uint64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

/// Traffic counters of one worker thread (each on its own cache line).
struct alignas(64) worker_counters {
    single_writer_counter messages_in, messages_out, bytes_in, bytes_out, dropped_messages;
};

/// Everything `GET /metrics` reports. Safe to update from every thread.
class server_metrics {
public:
    explicit server_metrics(std::size_t workers);
    worker_counters& worker(std::size_t i) { return *workers_[i]; }

    std::atomic<std::uint64_t> connections_current{0}, connections_total{0}, ping_timeouts{0}, rate_limited{0};
    void count_close(int code);
    void count_rejection(const std::string& reason);
    std::uint64_t rejections(const std::string& reason) const;

    /// The Prometheus text exposition format (version 0.0.4).
    std::string render() const;

private:
    std::vector<std::unique_ptr<worker_counters>> workers_;
    mutable std::mutex mutex_;
    std::map<int, std::uint64_t> closes_;
    std::map<std::string, std::uint64_t> rejections_;
};

}  // namespace wsx
