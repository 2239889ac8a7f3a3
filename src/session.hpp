#pragma once
/// session<Layer>: one WebSocket connection after its handshake, client or server side.
/// Owns the read loop, a byte-capped write queue, pings and the closing handshake.
#include <list>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "channel.hpp"
#include "frame_reader.hpp"
#include "net.hpp"
#include "ws_layer.hpp"

namespace wsx {

using tcp_layer = ws_layer<beast::tcp_stream>;
using tls_layer = ws_layer<beast::ssl_stream<beast::tcp_stream>>;
using unix_stream = beast::basic_stream<net::local::stream_protocol>;
using unix_layer = ws_layer<unix_stream>;

/// What happens when a message is sent while the queue holds `send_queue_limit` bytes.
enum class overflow_policy { queue, drop, close };

struct session_options {
    std::uint64_t max_message_size = 64ull << 20;  ///< larger incoming messages close with 1009
    std::size_t send_queue_limit = 16u << 20;      ///< bytes queued before `overflow` applies
    overflow_policy overflow = overflow_policy::queue;
    std::chrono::nanoseconds ping_interval{0};     ///< 0: no pings
    std::chrono::nanoseconds ping_timeout{0};      ///< 0: pongs are not awaited
    std::chrono::nanoseconds idle_timeout{0};      ///< 0: no limit; else close 1001 when nothing arrives
    std::chrono::nanoseconds close_timeout{std::chrono::seconds(5)};  ///< wait for the peer's Close
    /// Sessions without compression: encode data frames directly into the stream's write
    /// buffer (queued messages leave in one write) instead of one Beast write each. Servers
    /// and clients set it unless compressing.
    bool direct_writes = false;
    /// Server sessions: false leaves the peer's pings unanswered (fault injection).
    bool answer_pings = true;
    /// Sessions with compression (Beast's stream): read the next message only once every
    /// message queued has been written. Beast answers a Close the moment it reads one, and a
    /// message still queued then is lost: an echo server sets it so that the answers to what
    /// came before a client's Close all go out first (sessions without compression write
    /// their answers before they read on anyway).
    bool replies_before_reading = false;
};

/// The type-erased face of a session.
class ws_session : public std::enable_shared_from_this<ws_session> {
public:
    virtual ~ws_session() = default;
    /// Starts reading; events go to `events` until on_close.
    virtual void start(std::shared_ptr<channel_events> events) = 0;
    /// Queues a message. Applies the overflow policy when the queue is full.
    virtual void send(std::string payload, bool binary) = 0;
    /// Queues a message given as bytes the caller keeps (copied only where they must be kept).
    virtual void send_view(std::string_view payload, bool binary) { send(std::string(payload), binary); }
    virtual void ping(std::string payload = {}) = 0;
    /// Sends a Ping (`ping`) or Pong frame as given, for a relay passing control frames on:
    /// no pong is awaited for it. Dropped while the connection is closing.
    virtual void send_control(bool ping, std::string_view payload) = 0;
    /// Sends Close after everything queued; keeps delivering messages until the peer's Close.
    virtual void close(std::uint16_t code = 1000, std::string reason = {}) = 0;
    /// Drops the connection now (no closing handshake); `what` explains why.
    virtual void abort(std::string what, error_code ec = {}) = 0;
    virtual std::size_t queued_bytes() const noexcept = 0;
    /// Asks for one on_writable() call once the send queue has drained to half its limit
    /// (lets a producer pause instead of overflowing the queue).
    virtual void want_writable() = 0;
    /// Stops reading from the peer (backpressure for whoever consumes the messages): nothing
    /// more is delivered, and the peer's sends back up in TCP, until resume_reading().
    virtual void pause_reading() {}
    /// Server sessions without compression: when the peer's Close arrives, report it with
    /// on_close_received() and answer only at close() (messages may still be sent until then),
    /// so that a proxy can pass the close on and return the far end's answer.
    virtual void hold_close_reply() {}
    virtual void resume_reading() {}
    /// Whether the connection negotiated compression: then a Beast stream carries it, which
    /// answers pings itself (or, told not to, drops every Pong it would write).
    virtual bool compressed() const noexcept { return false; }
    /// Before start(): whether the session answers pings itself (a relay may pass them on instead).
    virtual void set_answer_pings(bool on) = 0;
    virtual bool is_open() const noexcept = 0;
    virtual net::any_io_executor get_executor() = 0;
    const session_stats& stats() const noexcept { return stats_; }
    /// Keeps something the stream depends on (e.g. its TLS context) alive as long as the session.
    void hold(std::shared_ptr<const void> p) { held_.push_back(std::move(p)); }
    /// Keeps something (e.g. a connection slot) until the connection is over: released just
    /// before on_close, so whoever learns of the close finds the slot free.
    void hold_until_close(std::shared_ptr<const void> p) { held_until_close_.push_back(std::move(p)); }

protected:
    session_stats stats_;
    std::vector<std::shared_ptr<const void>> held_;
    std::vector<std::shared_ptr<const void>> held_until_close_;
};

/// Two ways of reading: a Beast websocket stream (connections with compression), or, without
/// extensions, the stream alone with frames parsed here (frame_reader):
/// every frame already received is handled in one pass, an idle connection holds no read
/// buffer, and Beast's per-connection state is gone after the handshake.
template <class Layer>
class session final : public ws_session {
public:
    session(websocket::stream<Layer>&& ws, beast::role_type role, session_options opts);
    /// No extensions, frames parsed here: `stream` is the upgraded connection, `early` any
    /// bytes that arrived behind the upgrade request or answer. Writes are direct (opts.direct_writes).
    session(typename Layer::next_layer_type&& stream, std::string early, session_options opts,
            beast::role_type role = beast::role_type::server);

    void start(std::shared_ptr<channel_events> events) override;
    void send(std::string payload, bool binary) override;
    void send_view(std::string_view payload, bool binary) override;
    void ping(std::string payload) override;
    void send_control(bool ping, std::string_view payload) override;
    void close(std::uint16_t code, std::string reason) override;
    void abort(std::string what, error_code ec) override;
    std::size_t queued_bytes() const noexcept override { return direct_ ? layer().buffered() : queued_bytes_; }
    void want_writable() override;
    void pause_reading() override;
    void hold_close_reply() override;
    void resume_reading() override;
    bool is_open() const noexcept override { return !finished_ && !close_requested_; }
    bool compressed() const noexcept override { return ws_.has_value(); }
    void set_answer_pings(bool on) override { opts_.answer_pings = on; }
    net::any_io_executor get_executor() override { return layer().get_executor(); }

private:
    static constexpr bool plain_socket = !std::is_same_v<Layer, tls_layer>;
    Layer& layer() noexcept { return ws_ ? ws_->next_layer() : *raw_; }
    const Layer& layer() const noexcept { return ws_ ? ws_->next_layer() : *raw_; }
    net::steady_timer& timer(std::optional<net::steady_timer>& t) {
        if (!t) t.emplace(layer().get_executor());
        return *t;
    }
    /// RFC 6455 5.3: what a client sends is masked, what a server sends is not.
    bool masks() const noexcept { return role_ == beast::role_type::client; }
    /// The idle timeout counts from here: a server's connection is idle while no data message
    /// passes either way (pings and pongs do not count); a client's while nothing arrives.
    steady_clock::time_point idle_since() const noexcept {
        return role_ == beast::role_type::server ? last_message_ : last_activity_;
    }
    // Frames parsed here (raw_ set):
    void pump();
    void read_plain();
    void on_plain_ready(error_code ec);
    void consume(char* buf, std::size_t total, bool more);
    void end_of_input(char* buf, std::size_t total, error_code ec);
    void read_tls();
    void on_tls_read(error_code ec, std::size_t n);
    std::size_t handle_frames(char* data, std::size_t n);
    void on_peer_close(std::uint16_t code, std::string_view reason);
    void fail_connection(websocket::error e, std::uint16_t code);
    void end_with_close(std::uint16_t code, std::string_view reason, close_info info);
    void arm_close_timer();
    void watch_drain(std::size_t unsent);
    void teardown_and_finish(close_info info);
    void note_pong(std::string_view payload);

    bool send_direct(std::string_view payload, bool binary);
    void do_read();
    void on_read(error_code ec, std::size_t n);
    void do_write();
    void on_write(error_code ec, std::size_t n);
    void do_close();
    void on_control(websocket::frame_type kind, beast::string_view payload);
    void arm_ping();
    void arm_idle();
    void finish(close_info info);
    std::shared_ptr<session> self() { return std::static_pointer_cast<session>(shared_from_this()); }

    struct queued {
        std::string payload;
        bool binary;
    };

    std::optional<websocket::stream<Layer>> ws_;
    std::optional<Layer> raw_;
    beast::role_type role_;
    session_options opts_;
    std::shared_ptr<channel_events> events_;
    beast::flat_buffer rbuf_;
    std::list<queued> queue_;  // not a deque: an empty deque already holds ~600 bytes per connection
    std::size_t queued_bytes_ = 0;
    bool writing_ = false;
    bool blocked_ = false;            // a send was refused or dropped: tell on_writable later
    bool close_requested_ = false;
    bool close_sent_ = false;
    bool finished_ = false;
    bool ping_in_flight_ = false;
    bool timed_out_ = false;
    bool ping_timed_out_ = false;
    bool direct_ = false;
    bool close_drained_ = false;      // a client's queued frames were flushed before its Close
    bool bad_close_code_ = false;     // the peer's Close carried a code above 4999
    bool read_paused_ = false;
    bool hold_close_ = false;
    bool read_parked_ = false;  // a read completed while paused: the next one waits for resume
    bool read_after_writes_ = false;  // replies_before_reading: the next read waits for the queue
    bool give_up_after_close_ = false;  // a client's idle timeout: end once our Close is out
    bool failing_ = false;            // a protocol error: our Close, then TCP ends at once
    bool paused_for_close_ = false;   // reading paused until our Close (send queue overflow) is out
    error_code failure_;              // the protocol error that failed the connection
    std::uint16_t close_code_ = 1000;
    std::string close_reason_;
    std::string abort_what_;
    std::string ping_payload_;
    steady_clock::time_point ping_sent_{};
    bool awaiting_pong_ = false;
    steady_clock::time_point last_activity_{};
    steady_clock::time_point last_message_{};  // servers' idle clock: a data message either way
    // Created when first needed: most connections never use most of them.
    std::optional<net::steady_timer> ping_timer_;
    std::optional<net::steady_timer> idle_timer_;
    std::optional<net::steady_timer> close_timer_;
    std::optional<net::steady_timer> pong_timer_;
    // Frames parsed here (raw_ set):
    frame_reader reader_;
    std::string partial_;                   // received bytes not yet handled (reading paused or stopped)
    std::unique_ptr<char[]> tls_buf_;       // TLS reads (a plain socket reads into a per-thread buffer)
    bool read_stopped_ = false;             // a Close or a protocol error ended reading
    bool peer_closed_ = false;              // the peer's Close arrived
    bool tearing_down_ = false;             // our Close is out and reading over: ending TCP
    std::uint16_t peer_code_ = 1005;
    std::string peer_reason_;
};

extern template class session<tcp_layer>;
extern template class session<tls_layer>;
extern template class session<unix_layer>;

}  // namespace wsx
