#pragma once
/// `wsx proxy --tap`: one line per message passing through the proxy, either way.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace wsx {

enum class tap_format { text, hex, ndjson };

/// Parses "text", "hex" or "ndjson".
std::optional<tap_format> parse_tap_format(std::string_view s);

/// Which way a message went: from the client to the upstream, or back.
enum class tap_direction { to_upstream, to_client };

/// Formats one tap line (with its newline).
/// text:   `TIMESTAMP #ID > OPCODE DATA` (`>` towards the upstream, `<` towards the client), DATA
///         with control characters escaped as \n, \r, \t, \\ and \xHH (and, except in text
///         messages, bytes from 0x80 too);
/// hex:    the same with DATA as lower-case hex;
/// ndjson: wsx's one event format (event_json.hpp) with "conn" ID and "dir" "up" (towards the
///         upstream) or "down" (towards the client); `timestamp` becomes "ts".
std::string format_tap_line(tap_format f, std::string_view timestamp, std::uint64_t id, tap_direction dir,
                            std::string_view opcode, std::string_view data);

/// Formats a close record: text shows `CODE REASON` (no code: an empty Close); hex shows the
/// Close frame's payload as sent, the code as two big-endian bytes and then the reason; ndjson
/// a "close" event with "code" (none for a Close without one) and "reason".
std::string format_tap_close(tap_format f, std::string_view timestamp, std::uint64_t id, tap_direction dir, int code,
                             std::string_view reason);

/// Writes tap lines to a file or stdout from any thread; each line is flushed at once.
class tap_writer {
public:
    /// `path` "-" is standard output. Throws wsx::failure(usage) when the file cannot be opened.
    tap_writer(const std::string& path, tap_format f);
    ~tap_writer();
    tap_writer(const tap_writer&) = delete;
    tap_writer& operator=(const tap_writer&) = delete;

    void write(std::uint64_t id, tap_direction dir, std::string_view opcode, std::string_view data);
    /// A Close frame: `code` 1005 (or 0) is a Close without a code.
    void write_close(std::uint64_t id, tap_direction dir, int code, std::string_view reason);

private:
    std::FILE* out_;
    bool owned_;
    tap_format format_;
    void put(const std::string& line);
    std::mutex mutex_;
};

}  // namespace wsx
