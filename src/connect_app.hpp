#pragma once
/// `wsx connect`: stdio (pipe codec or interactive console) bridged to a WebSocket client.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client.hpp"
#include "exit_code.hpp"
#include "json_match.hpp"
#include "script.hpp"

namespace wsx {

/// A compiled --expect pattern (Boost.Regex, kept out of this header).
struct expect_regex;

/// One --expect / --expect-json, matched in order against incoming messages.
struct expectation {
    std::string text;                        ///< as given, for messages
    bool is_json = false;
    std::shared_ptr<const expect_regex> re;  ///< --expect (ECMAScript, searched in the message)
    json_expectation json;                   ///< --expect-json

    /// An --expect REGEX (ECMAScript syntax); nullopt with `error` set when it does not compile.
    static std::optional<expectation> regex(std::string text, std::string* error);
    /// Whether `message` matches. A pattern too costly to evaluate on this message (the
    /// matcher's complexity or memory bound) does not match, and `error` says why.
    bool matches(std::string_view message, std::string* error = nullptr) const;
};

/// A parsed --script with what its steps need ready before connecting.
struct script_plan {
    std::string name;                                  ///< the file as given, for messages ("<stdin>" for -)
    std::vector<script_step> steps;                    ///< send-file steps hold the file's bytes in `text`
    std::vector<std::optional<expectation>> matchers;  ///< per step: set for expect and expect-json
};

/// How long an expect, expect-json or expect-close step waits without its own timeout=.
inline constexpr std::chrono::seconds default_step_timeout{10};

enum class input_framing { lines, nul, binary };
enum class binary_display { raw, hex, base64 };
enum class interactive_mode { automatic, always, never };

struct connect_options {
    client_options client;
    input_framing framing = input_framing::lines;
    binary_display display = binary_display::raw;
    bool jsonl = false;
    bool timestamps = false;
    std::vector<std::string> send;
    bool then_stdin = false;                          ///< after the --send messages, read stdin too
    bool send_only = false;                           ///< never print received messages
    bool receive_only = false;                        ///< never read stdin; stay until the server closes
    std::optional<script_plan> script;
    /// After input ends: keep reading until nothing has arrived for this long, then close (0: close at once).
    std::chrono::nanoseconds linger{0};
    std::uint16_t close_code = 1000;                  ///< the Close sent when input or the script ends
    std::string close_reason;
    std::vector<expectation> expects;
    std::uint64_t count = 0;                          ///< 0: unlimited
    std::chrono::nanoseconds timeout{0};              ///< overall deadline; 0: none
    std::chrono::nanoseconds idle_timeout{0};
    std::chrono::nanoseconds wait{std::chrono::seconds(5)};
    /// Keepalive pings (0: none). Sent by connect_app rather than by the session so that each
    /// one is an event (--jsonl); client.session.ping_timeout still bounds the wait for a pong.
    std::chrono::nanoseconds ping_interval{0};
    bool reconnect = false;
    std::chrono::nanoseconds backoff_initial{std::chrono::milliseconds(250)};
    std::chrono::nanoseconds backoff_max{std::chrono::seconds(30)};
    double backoff_factor = 2.0;
    int max_retries = -1;                             ///< -1: unlimited
    std::uint64_t buffer_limit = 16ull << 20;         ///< stdin bytes held while disconnected
    bool stats = false, stats_json = false;
    bool verbose = false;
    bool colour = true;
    std::string history_file;
    interactive_mode interactive = interactive_mode::automatic;
};

/// Runs the client to completion and returns the process exit code.
int run_connect(const connect_options& o);

}  // namespace wsx
