#pragma once
/// Reports of a bench_result: pure functions (same input, same bytes), so they are tested
/// against golden files. Also the JSON form, merging of runs, named figures and thresholds.
///
/// JSON schema "wsx.bench.v1" (what bench_to_json writes and bench_from_json reads):
///
///   {
///     "schema": "wsx.bench.v1",
///     "generator": "wsx 0.1.0",            // program and version that measured
///     "started_at": "2024-01-01T00:00:00Z",// UTC start of the (first) run
///     "runs": 1,                           // > 1 when several runs were merged
///     "interrupted": false,                // stopped early by SIGINT/SIGTERM
///     "config": {                          // what was asked
///       "scenario": "echo|connect|send|fanout", "url": "ws://...", "publish_url": "ws://...",
///       "connections": 100, "publishers": 0, "connect_rate": 0 (per s, 0 = unlimited),
///       "duration_s": 10, "messages": 0 (0 = unlimited), "warmup_s": 1, "threads": 2,
///       "in_flight": 1 (closed loop; 0 when open loop), "rate": 0 (msgs/s total; 0 = closed loop),
///       "message_size": 32 (bytes, stamp included), "binary": false,
///       "compress": false                  // permessage-deflate required (--compress)
///     },
///     "elapsed_s": 9.0,                    // measured window (warmup excluded)
///     "connections": {
///       "attempted": 100, "established": 100, "failed": 0,
///       "errors": {"refused": 0, ...},     // failure reason -> count
///       "extensions": "",                  // the server's Sec-WebSocket-Extensions answer (first connection)
///       "handshake": HISTOGRAM             // TCP connect start -> 101 Switching Protocols, ns
///     },
///     "messages": {
///       "sent": 0, "received": 0,          // measured messages (fanout: received = deliveries)
///       "expected": 0,                     // fanout: deliveries expected
///       "bytes_sent": 0, "bytes_received": 0,          // message payloads (uncompressed)
///       "wire_bytes_sent": 0, "wire_bytes_received": 0, // their frames, headers included, as sent
///                                                       // (compressed with --compress; no TLS overhead)
///       "send_rate": 0.0, "rate": 0.0      // per second (derived; ignored when read)
///     },
///     "latency": {                         // round trip (echo), delivery (fanout), handshake (connect)
///       "unit": "ns", "min": 0, "p50": 0, "p90": 0, "p99": 0, "p99.9": 0, "p99.99": 0, "max": 0,
///       "mean": 0.0, "stddev": 0.0,        // derived; ignored when read
///       "histogram": HISTOGRAM
///     },
///     "errors": {"corrupt": 0, ...},       // error kind -> count
///     "close_codes": {"1000": 100},        // close codes received from the server
///     "cpu": {"user_s": 0.0, "system_s": 0.0, "wall_s": 0.0,
///             "utilisation": 0.0, "per_message_ns": 0.0},  // last two derived
///     "series": [                          // one entry per second of the run, warmup included
///       {"t": 0, "length_s": 1,           // start (s since the run began); length: < 1 for the last
///        "sent": 0, "received": 0, "errors": 0, "bytes_sent": 0, "bytes_received": 0,   // counts in it
///        "p50": 0, "p99": 0, "max": 0,     // derived
///        "histogram": HISTOGRAM}
///     ],
///     "find_max_rate": {"max_rate": 0.0 or null, "steps": [{"rate", "achieved", "p50", "p99",
///                       "max", "errors", "ok"}]},   // present only for --find-max-rate
///     "warnings": ["..."]
///   }
///
/// HISTOGRAM is histogram::to_json() (layout, count/min/max/overflow and sparse
/// [index, count] pairs), so histograms of several runs merge exactly.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench.hpp"

namespace wsx {

inline constexpr std::string_view bench_schema = "wsx.bench.v1";

/// The JSON form described above.
nlohmann::json bench_to_json(const bench_result& r);
/// Reads the JSON form. Throws std::invalid_argument naming the first problem.
bench_result bench_from_json(const nlohmann::json& j);

/// One result from several runs (e.g. on several machines against one server): counts and
/// histograms add up exactly, so percentiles of the merge are those of all samples together;
/// the window is the longest run's. `interrupted` holds when any run was. Throws
/// std::invalid_argument when given nothing or runs of different scenarios.
bench_result merge_results(const std::vector<bench_result>& runs);

/// How a figure's value reads and compares.
enum class figure_kind { duration_ns, count, rate, bytes_rate, percent };

/// A named figure of a result (the names --fail-if, --target and --compare use).
struct figure {
    std::string name;
    double value = 0;
    figure_kind kind = figure_kind::count;
    bool lower_is_better = true;
    /// Why the figure has no value (e.g. "no message was answered"); empty when it was measured.
    /// A latency figure of an empty histogram would otherwise read as 0 and pass every gate.
    std::string missing;
};

/// Every figure of a result, in report order. `rate` is messages received per second (fanout:
/// deliveries; connect: handshakes completed), except in the send scenario, where it is the send rate. Names: min p50 p90 p99 p99.9 p99.99 max mean
/// handshake_p50 handshake_p99 handshake_max rate send_rate rx_bytes tx_bytes errors
/// connect_fail connections delivery cpu cpu_per_msg.
std::vector<figure> figures(const bench_result& r);
/// Names accepted in thresholds, for error messages.
std::string figure_names();

/// A condition on one figure, e.g. "p99>20ms", "errors>0", "rate<50k", "connect_fail>1%".
struct threshold {
    std::string text;      ///< as written
    std::string figure;    ///< figure name
    std::string op;        ///< < <= > >= == !=
    double value = 0;      ///< in the figure's unit (ns for durations, per second for rates)
    bool percent = false;  ///< errors/connect_fail as a percentage of sent/attempted
};

/// Parses a condition. Durations need a unit ("20ms"), rates accept "50k" or "50k/s",
/// errors and connect_fail accept a percentage ("1%"). On failure sets *error.
std::optional<threshold> parse_threshold(std::string_view text, std::string* error);

/// The value a threshold compares, formatted for people ("31.2ms", "0.4%").
std::string threshold_actual(const bench_result& r, const threshold& t);
/// True when the condition holds for r. Says nothing of figures without a value: ask
/// threshold_unmeasured first.
bool threshold_holds(const bench_result& r, const threshold& t);
/// Why the threshold's figure has no value in r (e.g. "no message was answered"), or nothing
/// when it was measured. A gate on a figure without a value fails.
std::optional<std::string> threshold_unmeasured(const bench_result& r, const threshold& t);

/// Options of the human report.
struct text_report_options {
    int bar_width = 40;   ///< widest bar of the latency distribution
};

/// The human report: configuration, connections, throughput table, latency percentiles,
/// an ASCII latency distribution, errors, close codes, generator CPU and warnings.
std::string render_text(const bench_result& r, const text_report_options& o = {});

/// The latency distribution in HdrHistogram's .hgrm text format, values in microseconds.
std::string render_hgrm(const bench_result& r);

/// A second with fewer latency samples than this has no point on the HTML report's latency
/// over time plot (a percentile of a handful of samples is one of them, read as a spike).
inline constexpr std::uint64_t min_latency_samples = 10;

/// One self-contained HTML page (inline SVG and a little inline script, no network access)
/// with a summary, the latency percentile curve, the latency histogram, messages and payload
/// bytes per second over time (sent dashed, received solid) and p50/p99 over time. The time
/// plots leave out a run's last, partial second unless it is the only one (then scaled to its
/// length), and a second with fewer than min_latency_samples samples breaks the latency lines.
std::string render_html(const bench_result& r);

/// A configuration field in which two runs differ, with both values as reports show them.
struct config_difference {
    std::string field;     ///< the JSON name under "config", e.g. "connections"
    std::string baseline;  ///< e.g. "10"
    std::string current;   ///< e.g. "100"
};

/// Every field of `config` (the JSON report's "config", as recorded) that differs between the
/// runs, in JSON order. Figures of runs that asked for different loads do not compare.
std::vector<config_difference> config_differences(const bench_config& baseline, const bench_config& current);

/// The change of every figure from `baseline` to `current`, marked better or worse. When the
/// configurations differ it says so first, naming the fields (config_differences).
std::string render_compare(const bench_result& baseline, const bench_result& current);

}  // namespace wsx
