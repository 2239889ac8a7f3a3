#pragma once
/// The pumps of `wsx proxy`: WebSocket ↔ WebSocket (faithful: opcodes, pings, close codes),
/// WebSocket ↔ TCP (websockify and the tunnel entrance). Both ends run on one executor, so
/// the pump calls each side directly. Backpressure: when the side being written to has more
/// than `pause_bytes` queued, the other side stops reading until it drains.
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <random>

#include "balancer.hpp"
#include "random_seed.hpp"
#include "session.hpp"
#include "tap.hpp"

namespace wsx {

/// Faults injected on purpose, to harden clients (see `wsx proxy --fault-*`).
struct fault_options {
    std::chrono::nanoseconds delay{0};   ///< every message waits this long (order kept)
    std::chrono::nanoseconds jitter{0};  ///< plus a uniform random 0..jitter
    double drop = 0;                     ///< fraction of messages silently dropped (0..1)
    std::uint64_t close_after_messages = 0;      ///< 0: never; else close the client after N messages (both ways)
    std::chrono::nanoseconds close_after_time{0};  ///< 0: never; else close the client this long after it opened
    std::uint16_t close_code = 1011;
    bool stall_pongs = false;            ///< the client's pings are neither answered nor passed on

    bool any() const noexcept {
        return delay.count() > 0 || jitter.count() > 0 || drop > 0 || close_after_messages > 0 ||
               close_after_time.count() > 0 || stall_pongs;
    }
};

/// What a pump needs besides its two ends.
struct bridge_config {
    std::uint64_t id = 0;                  ///< connection id (tap, access log)
    backend_state* backend = nullptr;      ///< counts bytes both ways; may be null
    std::shared_ptr<tap_writer> tap;       ///< may be null
    fault_options fault;
    std::size_t pause_bytes = 1u << 20;    ///< queued bytes on one side that pause reading the other
    /// ws <-> tcp: the WebSocket session does not answer pings itself; the bridge does.
    bool answer_pings = false;
    /// ws <-> tcp with the WebSocket end as the client: how long its Close waits for the TCP
    /// peer's EOF before it is answered anyway (and the TCP connection dropped).
    std::chrono::nanoseconds close_timeout = session_options{}.close_timeout;
    /// Where the ws <-> ws bridge reports an upstream that failed (protocol error, lost).
    std::function<void(const std::string& line)> log;
    /// Called once, when both ends are closed; `client` describes how the client's end closed.
    std::function<void(const close_info& client)> on_end;
};

/// Joins a client session (the proxy's server side) and an upstream session (its client side).
class ws_ws_bridge : public std::enable_shared_from_this<ws_ws_bridge> {
public:
    ws_ws_bridge(std::shared_ptr<ws_session> client, std::shared_ptr<ws_session> upstream, bridge_config cfg);
    ~ws_ws_bridge();
    /// The events handler for the client session (give it to the server).
    std::shared_ptr<channel_events> client_handler();
    /// Starts reading the upstream; call on the executor after the client session has started.
    void start();

    struct side;

private:
    friend struct side;
    /// A message from one side; `owned`, when set, holds `payload` and may be taken.
    void message(bool from_client, std::string_view payload, std::string* owned, bool binary);
    void pass_on(bool to_client, std::string_view payload, std::string* owned, bool binary);
    void after_send(bool to_client);
    void ping(bool from_client, std::string_view payload);
    void pong(bool from_client, std::string_view payload, std::chrono::nanoseconds rtt);
    void closed(bool from_client, const close_info& info);
    void close_received(int code, std::string_view reason);
    void writable(bool client_side);
    void deliver(bool to_client, int kind, std::string payload, bool binary, std::uint16_t code);
    void pump_delayed(bool to_client);
    void close_client_for_fault(const char* why);

    std::shared_ptr<ws_session> client_, upstream_;
    bridge_config cfg_;
    bool client_done_ = false, upstream_done_ = false, ended_ = false, started_ = false;
    bool client_paused_ = false, upstream_paused_ = false;  // reading paused on that side
    bool client_closing_ = false;  // the client's Close arrived; its answer waits for the upstream's
    int client_close_code_ = 0;
    std::string client_close_reason_;
    close_info client_close_;
    std::uint64_t messages_ = 0;
    std::mt19937_64 rng_{random_seed()};
    struct delayed;
    struct delay_line;
    std::unique_ptr<delay_line> to_client_line_, to_upstream_line_;
    std::unique_ptr<net::steady_timer> close_timer_;
};

/// Joins a WebSocket session and a TCP socket on the same executor: messages become bytes,
/// bytes become binary messages. `ws_is_client`: the WebSocket end is the proxy's client
/// (websockify); otherwise the TCP end is (the tunnel entrance).
class ws_tcp_bridge : public std::enable_shared_from_this<ws_tcp_bridge> {
public:
    ws_tcp_bridge(std::shared_ptr<ws_session> ws, tcp::socket sock, bool ws_is_client, bridge_config cfg);
    /// The events handler for the WebSocket session.
    std::shared_ptr<channel_events> ws_handler();
    /// Starts reading the TCP socket; call on the executor after the session has started.
    void start();

    struct side;

private:
    friend struct side;
    void ws_message(std::string&& payload, bool binary);
    void ws_ping(std::string_view payload);
    void ws_close_received(int code);
    void ws_closed(const close_info& info);
    void ws_writable();
    void do_tcp_read();
    void do_tcp_write();
    void tcp_finished();
    void maybe_end();

    std::shared_ptr<ws_session> ws_;
    tcp::socket sock_;
    bool ws_is_client_;
    bridge_config cfg_;
    std::vector<char> rbuf_;
    std::list<std::string> wqueue_;
    std::size_t wqueued_ = 0;
    bool writing_ = false, reading_ = false, read_paused_ = false, ws_paused_ = false;
    bool ws_done_ = false, tcp_eof_ = false, tcp_closed_ = false, ended_ = false;
    bool ws_closing_ = false;  // the client's Close arrived; its answer waits for the TCP peer's EOF
    bool tcp_shut_ = false;    // our sending half of TCP is shut
    int ws_close_code_ = 1000; // the answer to the held Close (0: a Close without a code)
    close_info ws_close_;
    std::unique_ptr<net::steady_timer> close_timer_;
};

}  // namespace wsx
