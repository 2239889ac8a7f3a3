#pragma once
/// wsx bench: many WebSocket clients driven by a load model, measured into a bench_result.
///
/// The engine runs one io_context per thread; connections are spread round-robin over the
/// threads and every thread keeps its own histograms and counters, merged once at the end,
/// so the hot path takes no lock and allocates nothing per message.
///
/// After the (Beast-parsed) HTTP upgrade, each connection speaks the WebSocket framing itself
/// over the socket: every frame already in the read buffer is parsed in one go and every frame
/// queued while a write is on the wire leaves in the next single write. That keeps the
/// generator near one syscall per batch instead of one per message, so it is not what limits
/// a result.
///
/// Every message carries a stamp (see message_stamp) with a sequence number and its intended
/// send time; echoes are matched and verified against it, and latency is measured from the
/// intended send time, which charges a stalled server for every message it delayed
/// (coordinated omission).
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client.hpp"
#include "histogram.hpp"

namespace wsx {

/// What the clients do.
enum class bench_scenario {
    echo,     ///< send and measure the round trip of each echoed message
    connect,  ///< open, upgrade and close connections as fast as allowed; measures handshakes
    send,     ///< send without waiting for replies (throughput into a sink)
    fanout,   ///< publishers send, subscribers receive every message; delivery latency
};

std::string_view scenario_name(bench_scenario s) noexcept;
std::optional<bench_scenario> parse_scenario(std::string_view s) noexcept;

/// Everything one run needs. Validated by the command line before it gets here.
struct bench_options {
    bench_scenario scenario = bench_scenario::echo;
    /// URL (ws://, wss:// or ws+unix://), headers, TLS, proxy, timeouts. With client.deflate
    /// enabled, permessage-deflate is required: a connection whose server declines it fails
    /// (reason "compression declined", exit code 6 when no connection could be made).
    client_options client;
    std::string publish_url;                      ///< fanout: where publishers connect (default: client.url)
    unsigned connections = 1;                     ///< echo/send/connect: clients; fanout: subscribers
    unsigned publishers = 1;                      ///< fanout only
    double connect_rate = 0;                      ///< new connections per second over all threads; 0: no limit
    std::chrono::nanoseconds duration{0};         ///< 0: until `messages` are done
    std::uint64_t messages = 0;                   ///< total measured messages (connect: handshakes); 0: no limit
    std::chrono::nanoseconds warmup{0};           ///< messages sent before this are not measured
    unsigned threads = 1;
    unsigned in_flight = 1;                       ///< closed loop: messages outstanding per connection
    double rate = 0;                              ///< open loop: messages per second (total); 0: closed loop
    bool rate_per_conn = false;                   ///< `rate` is per connection instead of total
    std::string body;                             ///< bytes that follow the stamp in every message
    bool binary = false;
    std::vector<std::string> subscribe_messages;  ///< fanout: sent by each subscriber after connecting
    /// fanout: every frame a subscriber receives is a JSON array of text messages (a relay's
    /// batches, `?batch=N,INTERVAL`); each element counts as one delivery.
    bool unbatch = false;
    std::chrono::nanoseconds settle = std::chrono::milliseconds(250);  ///< fanout: pause before publishing
    std::chrono::nanoseconds reply_timeout = std::chrono::seconds(10);  ///< unanswered this long: error
    std::uint64_t max_backlog = 16u << 20;        ///< open loop: bytes queued per connection before skipping sends
    /// Called about once a second from the controlling thread with a snapshot (progress line).
    std::function<void(const struct bench_progress&)> on_progress;
};

/// A live snapshot for the progress line.
struct bench_progress {
    double elapsed_s = 0;
    std::uint64_t established = 0, failed = 0;
    std::uint64_t sent = 0, received = 0, errors = 0;
    double rate = 0;            ///< messages received per second over the last interval
    std::uint64_t p99_ns = 0;   ///< p99 of the last interval
};

/// The configuration as reported (what was asked, in report units).
struct bench_config {
    std::string scenario = "echo";
    std::string url;
    std::string publish_url;
    unsigned connections = 0;
    unsigned publishers = 0;
    double connect_rate = 0;
    double duration_s = 0;
    std::uint64_t messages = 0;
    double warmup_s = 0;
    unsigned threads = 0;
    unsigned in_flight = 0;
    double rate = 0;             ///< total messages/s asked (open loop); 0: closed loop
    std::uint64_t message_size = 0;
    bool binary = false;
    bool compress = false;       ///< permessage-deflate required (--compress)
};

/// One second of the run.
struct bench_interval {
    double start_s = 0;          ///< seconds since the start of the run
    double length_s = 1;         ///< 1, but less for the last, partial second
    std::uint64_t sent = 0, received = 0, errors = 0;
    std::uint64_t bytes_sent = 0, bytes_received = 0;
    histogram latency;
};

/// One step of --find-max-rate.
struct rate_step {
    double rate = 0;            ///< asked
    double achieved = 0;        ///< received per second
    std::uint64_t p50_ns = 0, p99_ns = 0, max_ns = 0;
    std::uint64_t errors = 0;
    bool ok = false;            ///< met the target
};

/// Everything measured. Renderers (bench_report.hpp) are pure functions of this.
struct bench_result {
    bench_config config;
    std::string started_at;          ///< UTC, ISO 8601
    std::string generator = "wsx " WSX_VERSION;
    unsigned runs = 1;               ///< > 1 after merging
    double elapsed_s = 0;            ///< measured window (warmup excluded)
    bool interrupted = false;

    std::uint64_t conn_attempted = 0, conn_established = 0, conn_failed = 0;
    std::map<std::string, std::uint64_t> connect_errors;   ///< failure reason → count
    histogram handshake;                                   ///< TCP connect start → 101 received (ns)

    std::uint64_t sent = 0, received = 0;                  ///< measured messages
    std::uint64_t bytes_sent = 0, bytes_received = 0;      ///< payload bytes of measured messages
    /// Bytes of the measured messages' frames, headers included, as they crossed the wire
    /// (compressed with --compress; TLS records not counted).
    std::uint64_t wire_bytes_sent = 0, wire_bytes_received = 0;
    std::string extensions;                                ///< Sec-WebSocket-Extensions the server answered
    std::uint64_t expected = 0;                            ///< fanout: deliveries expected
    histogram latency;                                     ///< round trip (echo) or delivery (fanout), ns
    std::map<std::string, std::uint64_t> errors;           ///< kind → count
    std::map<int, std::uint64_t> close_codes;              ///< close codes received from the server

    double cpu_user_s = 0, cpu_system_s = 0;               ///< the generator's own CPU over the run
    double cpu_wall_s = 0;                                 ///< wall time those CPU figures cover

    std::vector<bench_interval> series;                    ///< per second, warmup included
    std::vector<rate_step> find_max_steps;                 ///< --find-max-rate only
    std::optional<double> max_rate;                        ///< --find-max-rate: highest rate meeting the target
    std::vector<std::string> warnings;

    std::uint64_t error_count() const noexcept;
    /// Measured messages received per second (fanout: deliveries per second).
    double receive_rate() const noexcept { return elapsed_s > 0 ? double(received) / elapsed_s : 0; }
    double send_rate() const noexcept { return elapsed_s > 0 ? double(sent) / elapsed_s : 0; }
    /// Generator CPU (user + system) per measured message, ns; 0 when nothing was measured.
    double cpu_per_message_ns() const noexcept;
    /// Generator CPU as a share of its threads' capacity, 0..1.
    double cpu_utilisation() const noexcept;
};

/// Runs one benchmark. Setup problems that no connection can get past (a name that does not
/// resolve) throw wsx::failure; per-connection failures are counted in the result.
/// When every connection failed, the result says so (conn_established == 0) and
/// `first_failure` (if given) receives the exit code and message of the first one.
bench_result run_bench(const bench_options& o, std::pair<int, std::string>* first_failure = nullptr);

/// With c.redirects.follow (-L): follows the redirects of the upgrade once, on one connection that
/// is closed at once, and returns the options they lead to, so that a run opens every connection
/// there and measures no redirect; `c` itself otherwise. Throws as async_open() does.
client_options settle_redirects(const client_options& c);

/// The message stamp: a sequence number and the intended send time, first in every payload.
/// Binary messages carry them as two little-endian 64-bit integers (16 bytes), text messages
/// as 32 lowercase hex digits (so the message stays valid UTF-8).
namespace message_stamp {
constexpr std::size_t binary_size = 16;
constexpr std::size_t text_size = 32;
inline constexpr std::size_t size(bool binary) noexcept { return binary ? binary_size : text_size; }
/// Writes the stamp into out[0, size(binary)).
void write(char* out, bool binary, std::uint64_t seq, std::uint64_t time_ns) noexcept;
/// Reads a stamp; false when the payload is too short or not a stamp.
bool read(std::string_view payload, bool binary, std::uint64_t& seq, std::uint64_t& time_ns) noexcept;
}  // namespace message_stamp

/// The bench hot path's one encoder of its own: a stamped message framed without a temporary
/// copy (every other frame is written with append_frame, and read with frame_reader).
namespace bench_frame {
/// Appends a masked frame (FIN set) whose payload is the stamp followed by `body`.
void append_stamped(std::string& out, bool binary, std::uint64_t seq, std::uint64_t time_ns, std::string_view body,
                    std::uint32_t key);
}  // namespace bench_frame

}  // namespace wsx
