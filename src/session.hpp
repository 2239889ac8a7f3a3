#pragma once
/// session<Layer>: one WebSocket connection after its handshake, client or server side.
/// Owns the read loop, a byte-capped write queue, pings and the closing handshake.
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "channel.hpp"
#include "frame_reader.hpp"
#include "net.hpp"
#include "permessage_deflate.hpp"
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
    /// Server sessions: false leaves the peer's pings unanswered (fault injection).
    bool answer_pings = true;
    /// Data messages go out as frames of at most this many payload bytes (compressed payload,
    /// with permessage-deflate); 0: one frame each.
    std::size_t fragment_size = 0;
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
    /// Fails the connection on purpose (RFC 6455 7.1.7), for a client let in only to be told
    /// why it is refused: Close with `code` and `reason` at once, then TCP ends without waiting
    /// for the answer; what the peer sends meanwhile is discarded unread, never delivered.
    virtual void refuse(std::uint16_t code, std::string reason) = 0;
    /// Drops the connection now (no closing handshake); `what` explains why.
    virtual void abort(std::string what, error_code ec = {}) = 0;
    virtual std::size_t queued_bytes() const noexcept = 0;
    /// Asks for one on_writable() call once the send queue has drained to half its limit
    /// (lets a producer pause instead of overflowing the queue).
    virtual void want_writable() = 0;
    /// Stops reading from the peer (backpressure for whoever consumes the messages): nothing
    /// more is delivered, and the peer's sends back up in TCP, until resume_reading().
    virtual void pause_reading() {}
    /// Server sessions: when the peer's Close arrives, report it with
    /// on_close_received() and answer only at close() (messages may still be sent until then),
    /// so that a proxy can pass the close on and return the far end's answer.
    virtual void hold_close_reply() {}
    virtual void resume_reading() {}
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

/// The one session engine: the stream alone after the upgrade, frames parsed by the frame
/// codec (frame_reader) and encoded straight into the stream's write buffer, with
/// permessage-deflate when it was agreed. Every frame already received is handled in one
/// pass, queued messages leave in one write, and an idle connection holds no read buffer.
template <class Layer>
class session final : public ws_session {
public:
    /// `stream` is the upgraded connection, `early` any bytes that arrived behind the upgrade
    /// request or answer, `deflate` the permessage-deflate agreement, if any.
    session(typename Layer::next_layer_type&& stream, std::string early, session_options opts,
            beast::role_type role = beast::role_type::server, std::optional<pmd::agreement> deflate = std::nullopt);

    void start(std::shared_ptr<channel_events> events) override;
    void send(std::string payload, bool binary) override;
    void send_view(std::string_view payload, bool binary) override;
    void ping(std::string payload) override;
    void send_control(bool ping, std::string_view payload) override;
    void close(std::uint16_t code, std::string reason) override;
    void refuse(std::uint16_t code, std::string reason) override;
    void abort(std::string what, error_code ec) override;
    std::size_t queued_bytes() const noexcept override { return layer().buffered(); }
    void want_writable() override;
    void pause_reading() override;
    void hold_close_reply() override;
    void resume_reading() override;
    bool is_open() const noexcept override { return state_ == conn_state::open; }
    void set_answer_pings(bool on) override { opts_.answer_pings = on; }
    net::any_io_executor get_executor() override { return layer().get_executor(); }

private:
    static constexpr bool plain_socket = !std::is_same_v<Layer, tls_layer>;
    Layer& layer() noexcept { return layer_; }
    const Layer& layer() const noexcept { return layer_; }
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
    void close_after_failing(std::vector<std::shared_ptr<const void>> keep);
    void discard_until_eof(std::shared_ptr<std::vector<std::shared_ptr<const void>>> keep);
    void watch_drain(std::size_t unsent);
    void teardown_and_finish(close_info info);
    void note_pong(std::string_view payload);

    void do_close();
    void arm_ping();
    void arm_idle();
    void finish(close_info info);
    std::shared_ptr<session> self() { return std::static_pointer_cast<session>(shared_from_this()); }

    Layer layer_;
    beast::role_type role_;
    session_options opts_;
    std::shared_ptr<channel_events> events_;
    /// Where the connection is in its life (RFC 6455 section 7). It only moves forward, and a
    /// connection can finish from any state (a lost connection, an abort).
    enum class conn_state : std::uint8_t {
        open,          ///< data both ways (also while the peer's Close is held for close() to answer)
        closing,       ///< close() was called: queued data leaves, then our Close; nothing new is taken
        close_sent,    ///< our Close (or our answer to the peer's) is sealed into the write queue
        tearing_down,  ///< the closing handshake is over: TCP is ending
        finished,      ///< the end was reported to the channel
    };
    conn_state state_ = conn_state::open;
    bool finished() const noexcept { return state_ == conn_state::finished; }
    bool close_sent() const noexcept { return state_ >= conn_state::close_sent; }
    bool timed_out_ = false;
    bool ping_timed_out_ = false;
    bool close_drained_ = false;      // a client's queued frames were flushed before its Close
    bool read_paused_ = false;
    bool hold_close_ = false;
    bool read_parked_ = false;  // a read completed while paused: the next one waits for resume
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
    frame_reader reader_;
    // permessage-deflate, when agreed: the compressor of what we send (and its output), the
    // decompressor of what arrives (the reader uses it).
    std::unique_ptr<pmd::deflater> deflate_;
    std::unique_ptr<pmd::inflater> inflate_;
    std::string zbuf_;
    std::string partial_;                   // received bytes not yet handled (reading paused or stopped)
    std::unique_ptr<char[]> tls_buf_;       // TLS reads (a plain socket reads into a per-thread buffer)
    bool read_stopped_ = false;             // a Close or a protocol error ended reading
    bool peer_closed_ = false;              // the peer's Close arrived
    std::uint16_t peer_code_ = 1005;
    std::string peer_reason_;
};

extern template class session<tcp_layer>;
extern template class session<tls_layer>;
extern template class session<unix_layer>;

}  // namespace wsx
