#pragma once
/// Dialogue scripts for `wsx connect --script FILE`: one step a line, run in order.
///
///     # comment (blank lines are ignored too)
///     send MESSAGE               a text message: the rest of the line, blanks around it trimmed
///     send-json JSON             a text message that must be valid JSON (sent as written)
///     send-binary HEX            a binary message ("48 65 6c", blanks between digits allowed)
///     send-file PATH             a file's contents (text if valid UTF-8, else binary); read before connecting
///     expect REGEX               wait for a message the regex (ECMAScript) finds a match in
///     expect-json PATH=VALUE     wait for a JSON message with that value (see json_match.hpp)
///     expect-close [CODE]        wait for the server's Close (with that code, if given)
///     ping [DATA]                send a Ping (DATA up to 125 bytes)
///     wait DURATION              pause ("250ms", see units.hpp)
///     close [CODE [REASON]]      send Close (CODE one a client may send) and end the script
///
/// expect, expect-json and expect-close may end with ` timeout=DURATION`, the longest the
/// step waits. Nothing may follow close or expect-close: the connection is over by then.
/// Parsing is pure: no file is read, no regex compiled (the caller does both, naming the line).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "json_match.hpp"

namespace wsx {

struct script_step {
    enum class kind { send, send_json, send_binary, send_file, expect, expect_json, expect_close, ping, wait, close };
    kind op = kind::send;
    std::size_t line = 0;          ///< 1-based line number in the script
    std::string source;            ///< the line as written, blanks around it trimmed (for messages)
    /// send, send-json, ping, close: the payload or reason; send-binary: the decoded bytes;
    /// send-file: the path; expect: the regex.
    std::string text;
    std::optional<json_expectation> json;         ///< expect-json
    std::optional<int> code;                      ///< expect-close, close
    std::chrono::nanoseconds duration{0};         ///< wait
    std::optional<std::chrono::nanoseconds> timeout;  ///< expect*: timeout=DURATION
};

/// A problem on one line of a script, with the fix where one can be named.
struct script_error {
    std::size_t line = 0;
    std::string message;
};

/// Parses a whole script. Returns every step, or nullopt and every problem found (in line
/// order, at most `max_errors` of them) in `errors`.
std::optional<std::vector<script_step>> parse_script(std::string_view text, std::vector<script_error>* errors,
                                                     std::size_t max_errors = 20);

/// Empty when a client may send `code` in a Close frame (1000-1003, 1007-1011, 3000-4999),
/// otherwise why not: 1005, 1006 and 1015 are never sent, 1004 and 1012-2999 are reserved
/// or for servers only.
std::string close_code_problem(long long code);
/// Empty when `reason` fits a Close frame (valid UTF-8, at most 123 bytes), otherwise why not.
std::string close_reason_problem(std::string_view reason);

}  // namespace wsx
