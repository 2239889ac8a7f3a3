#pragma once
/// The channel interface: what a WebSocket session reports to whoever drives it.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "net.hpp"

namespace wsx {

using steady_clock = std::chrono::steady_clock;

/// How a connection ended.
struct close_info {
    int code = 1006;           ///< close code received (1005 when the Close frame had none, 1006 when none arrived)
    std::string reason;        ///< close reason received
    bool clean = false;        ///< the closing handshake completed
    bool by_peer = false;      ///< the peer sent Close first
    int sent_code = 0;         ///< close code we sent (0 when none)
    std::string sent_reason;
    error_code error;          ///< transport or protocol error, if any
    std::string what;          ///< a short description of why it ended abnormally ("ping timeout", ...)
    bool timed_out = false;    ///< ended by a ping, idle or close timeout
    bool ping_timeout = false; ///< ended because no pong answered a ping within the ping timeout

    /// True when the peer's close counts as a normal end (1000 or 1001).
    bool normal() const noexcept { return clean && (code == 1000 || code == 1001); }
};

/// Counters kept by every session.
struct session_stats {
    std::uint64_t messages_in = 0, messages_out = 0;
    std::uint64_t bytes_in = 0, bytes_out = 0;
    std::uint64_t pings_sent = 0, pongs_received = 0;
    std::uint64_t dropped_messages = 0, dropped_bytes = 0;
    std::chrono::nanoseconds rtt_min{0}, rtt_max{0}, rtt_sum{0}, rtt_last{0};
    steady_clock::time_point opened{}, first_message{};
};

/// Receives a session's events, always on the session's executor.
class channel_events {
public:
    virtual ~channel_events() = default;
    virtual void on_message(std::string&& payload, bool binary) = 0;
    /// A message whose bytes stay valid only during the call (read in place). Handlers that
    /// can use it without keeping it (echo, relaying to another session) save a copy.
    virtual void on_message_view(std::string_view payload, bool binary) { on_message(std::string(payload), binary); }
    virtual void on_ping(std::string_view /*payload*/) {}
    /// A pong arrived; rtt is set when it answered one of our pings.
    virtual void on_pong(std::string_view /*payload*/, std::chrono::nanoseconds /*rtt*/) {}
    /// The send queue has room again after send() refused or dropped a message.
    virtual void on_writable() {}
    /// The peer's Close arrived on a session asked to hold its answer (hold_close_reply()):
    /// nothing is answered until close() is called (or the connection is dropped).
    virtual void on_close_received(int /*code*/, std::string_view /*reason*/) {}
    /// The connection is over; called exactly once.
    virtual void on_close(const close_info& info) = 0;
};

}  // namespace wsx
