#pragma once
/// The one JSON event format of wsx: `connect --jsonl` and `proxy --tap-format ndjson` (and any
/// other stream of WebSocket events) write these objects, one a line. The field names live in this
/// module only; the man page's EVENT FORMAT section documents them.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsx {

/// The keys shared by the event format and the JSON lines of the server logs (serve, relay,
/// proxy with --log-format json, and --announce-json): when and what, and a close's code and reason.
namespace event_key {
inline constexpr const char* ts = "ts";
inline constexpr const char* type = "type";
inline constexpr const char* code = "code";
inline constexpr const char* reason = "reason";
}  // namespace event_key

/// One observable WebSocket event.
struct ws_event {
    /// "text", "binary", "ping", "pong", "close", "open" or "error".
    std::string_view type;
    /// The stream's own direction word ("in"/"out" for connect, "up"/"down" for the proxy tap);
    /// empty to leave out.
    std::string_view dir;
    /// The connection's number, for streams that carry several connections.
    std::optional<std::uint64_t> conn;
    /// Payload of text, binary, ping and pong (always written for those, even when empty).
    std::string_view data;
    /// Close only: the status code; none for a Close without one.
    std::optional<int> code;
    /// Close: the reason (always written for close, "" when none); error: the error text.
    std::string_view reason;
    /// When it happened, as rfc3339_utc() writes it.
    std::string_view ts;
};

/// `t` as RFC 3339 in UTC with microseconds: "2026-12-04T16:14:59.123456Z".
std::string rfc3339_utc(std::chrono::system_clock::time_point t);

/// rfc3339_utc of now: the "ts" of a record.
inline std::string rfc3339_now() { return rfc3339_utc(std::chrono::system_clock::now()); }

/// Encodes `e` as one JSON object and a '\n'. Keys come in this order, each only where it applies:
///   ts, conn, dir, type, code, reason, len, encoding, data
/// - len, encoding, data: text, binary, ping and pong. `len` is the payload size in bytes.
///   `encoding` is "utf8" (data is the payload as a JSON string) for a text message and for a
///   ping or pong payload that is valid UTF-8, otherwise "base64" (standard alphabet, padded):
///   every binary message, and any payload that is not valid UTF-8.
/// - code: close with a code; reason: close (always) and error (when not empty).
/// Example: {"ts":"2026-12-04T16:14:59.123456Z","dir":"in","type":"text","len":5,"encoding":"utf8","data":"hello"}
std::string to_event_json(const ws_event& e);

}  // namespace wsx
