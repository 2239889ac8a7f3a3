// wsx: one binary, five WebSocket tools. This file is the table of contents:
// the command table, parsing, dispatch, and exceptions turned into exit codes.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <regex>

#include <fmt/format.h>

#include "commands.hpp"
#include "generate.hpp"
#include "exit_code.hpp"
#include "help_format.hpp"
#include "secret_file.hpp"
#include "units.hpp"
#include "version.hpp"

namespace wsx::cli {

namespace {
const command commands[] = {
    {"connect", "Connect to a WebSocket server: interactive console, pipe, or scripted checks", setup_connect},
    {"serve", "Run a WebSocket server: echo, a process per connection, stdio or static files", setup_serve},
    {"bench", "Load-test a WebSocket server: latency percentiles, throughput, thresholds", setup_bench},
    {"relay", "Run a pub/sub hub: topics, history, presence, direct messages; Redis to scale out", setup_relay},
    {"proxy", "WebSocket front door: load balancing, TLS termination, ws/tcp bridges, tap and faults", setup_proxy},
};

// Each occurrence of a repeatable option takes exactly one value, as written. By default CLI11
// lets a vector option take the words after its value too (`--send hi URL` would send the URL),
// and splits a value written as `[a,b]` into a and b (`--send '["a","b"]'` would send two
// messages): both go with allow_extra_args, which vector options get by default. A documented
// delimiter (--passenv a,b) still splits; an option documented to take several words
// (serve --exec CMD [ARGS...]) sets its own bounds, and positionals keep collecting.
void one_value_per_occurrence(CLI::App& app) {
    for (CLI::Option* opt : app.get_options())
        if (opt->nonpositional() && opt->get_allow_extra_args()) opt->allow_extra_args(false);
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) one_value_per_occurrence(*sub);
}
}  // namespace

std::vector<doc_section> manual_sections() {
    return {
        {"EXIT STATUS",
         "Every command uses the same exit codes, so scripts can tell failures apart.\n\n"
         "  0    success\n"
         "  1    other runtime failure\n"
         "  2    usage error (bad option or argument)\n"
         "  3    name resolution failed\n"
         "  4    TCP connection failed (refused, unreachable, proxy refused)\n"
         "  5    TLS failed (handshake, certificate verification)\n"
         "  6    HTTP upgrade rejected (status line and body are printed), a redirect -L cannot follow,\n"
         "       or bench --compress declined\n"
         "  7    connection closed abnormally (1006, or a close code other than 1000/1001)\n"
         "  8    timeout (connect, idle, ping, expect, a script step, overall)\n"
         "  9    expectation or threshold not met (--expect, -n, a connect --script step)\n"
         "  130  interrupted (SIGINT)"},
        {"ENVIRONMENT",
         "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (and lower-case forms) choose a proxy for the wss:// and ws:// "
         "URLs of connect and bench when --proxy is not given; NO_PROXY lists hosts reached directly.\n\n"
         "NO_COLOR, when set, turns colours off (as --no-color does).\n\n"
         "XDG_STATE_HOME locates the console history: $XDG_STATE_HOME/wsx/history, else "
         "~/.local/state/wsx/history. HOME is that ~, also in --history-file and the console's /file.\n\n"
         "PATH is where serve --exec finds its command, and is passed on to it (other variables of the "
         "server only with --passenv).\n\n"
         "SSL_CERT_FILE and SSL_CERT_DIR replace the system's trusted certificates (OpenSSL's default "
         "store) when --cacert is not given.\n\n"
         "SSLKEYLOGFILE names a file to which every TLS connection of every command (client and server "
         "side) appends its secrets in the NSS key log format, so that a capture can be decrypted (e.g. "
         "by Wireshark). The file is created with mode 600 (an existing one others can read gets a "
         "warning); one that cannot be opened (a FIFO with no reader included) gets a warning and "
         "nothing is logged, and lines a full disk or a stalled FIFO cannot take are dropped, with a "
         "warning: wsx never waits for the file. Anyone who reads the file can read the traffic: unset it when done.\n\n"
         "WSX_TOKEN (a bearer token) or WSX_AUTH (USER:PASS for Basic authentication) gives connect and "
         "bench their credentials when the command line has none (--token, --token-file, --auth, "
         "--auth-file, user:pass@ in the URL, --header Authorization); setting both is an error.\n\n"
         "WSX_SERVER_TOKEN, WSX_JWT_SECRET and WSX_BASIC_AUTH (USER:PASS) give serve, relay and proxy "
         "the secrets of --token, --jwt-secret and --basic-auth when the command line has no "
         "authentication option at all; each one set is required as its option would be. Unset or "
         "empty variables are not used.\n\n"
         "Unlike options, the environment and the --*-file options keep secrets out of sight of other "
         "users, who can read every process's arguments (ps). A secret file holds the secret on one "
         "line (one trailing newline is dropped); an unreadable or empty file is a usage error (exit 2), "
         "and a file that other users may read (mode & 0044) is used with a warning: chmod 600 it."},
        {"DIAGNOSTICS",
         "Data goes to standard output; everything else (errors, progress, the listening address) goes to "
         "standard error. Errors are one line: wsx: error: WHAT: DETAIL, with a hint on how to fix it "
         "where there is one."},
        {"CONNECT SCRIPTS",
         "wsx connect URL --script FILE (- for standard input) runs a dialogue, one step a line, in order; "
         "blank lines and lines starting with # are skipped. The whole script is checked before connecting: "
         "a bad line is exit 2, named FILE:LINE.\n\n"
         "  send MESSAGE            a text message (the rest of the line)\n"
         "  send-json JSON          a text message that must be valid JSON\n"
         "  send-binary HEX         a binary message (blanks between hex bytes allowed)\n"
         "  send-file PATH          a file (text if UTF-8, else binary), read before connecting\n"
         "  expect REGEX            wait for a message the regex finds a match in\n"
         "  expect-json PATH=VALUE  wait for a JSON message with that value (as --expect-json)\n"
         "  expect-close [CODE]     wait for the server's Close (with that code)\n"
         "  ping [DATA]             send a Ping\n"
         "  wait DURATION           pause\n"
         "  close [CODE [REASON]]   send Close; nothing may follow\n\n"
         "expect, expect-json and expect-close may end with timeout=DURATION (default 10s). An expect step "
         "reads the messages no earlier step has read, passing over those that do not match; the next step "
         "starts only once it has matched. Every message received is written to standard output. "
         "A connection that closes before the script is done is exit 9, a step that times out exit 8; "
         "the error names the line and the messages that arrived instead. At the script's end, without "
         "close, the client closes with --close-code and --close-reason (after --linger, if given)."},
        {"EVENT FORMAT",
         "connect --jsonl and proxy --tap-format ndjson write one JSON object a line, in one format. "
         "Keys come in this order, each only where it applies:\n\n"
         "  ts        when: RFC 3339 in UTC with microseconds, 2026-12-04T16:14:59.123456Z\n"
         "  conn      the connection's number, from 1 (proxy tap: it carries many connections)\n"
         "  dir       which way: in or out (connect); up or down (proxy tap)\n"
         "  type      text, binary, ping, pong, close or open\n"
         "  code      close: the status code (absent for a Close that carried none)\n"
         "  reason    close: the reason, \"\" when none\n"
         "  len       text, binary, ping, pong: the payload's size in bytes\n"
         "  encoding  utf8 or base64: how data holds the payload\n"
         "  data      the payload: a JSON string (utf8), or standard padded base64\n\n"
         "A binary message is always base64. Text messages, pings and pongs are utf8, unless their "
         "bytes are not valid UTF-8: then they are base64 too. Decoding data as encoding says gives "
         "the payload byte for byte, len bytes long.\n\n"
         "connect: dir is seen from wsx: out for what it sends, in for what it receives. open (dir in) "
         "starts each connection; close events are the Close wsx sends to end a connection itself (out; "
         "its answer to the server's Close is not reported) and the one that ends the connection (in; "
         "code 1006 when it ended without a Close frame). "
         "Received messages are events like the rest, in the order they arrived.\n\n"
         "proxy tap: up is from the client towards the upstream, down from the upstream towards the "
         "client; every message, ping, pong and Close passed on is an event. Messages dropped by "
         "--fault-drop, and pings held by --fault-stall-pongs, were not passed on and are not events.\n\n"
         "ts is text rather than a number of seconds: it reads at a glance, sorts as text, has the "
         "same shape as the time of the tap's text lines, and parses anywhere (jq: "
         "sub(\"\\\\.[0-9]+Z$\"; \"Z\") | fromdate; Python: datetime.fromisoformat).\n\n"
         "The JSON lines of serve, relay and proxy with --log-format json, and --announce-json, are "
         "records of the server rather than events, but start the same way: ts, then type (close for an "
         "access line, which also has code and reason; stderr, error, shutdown, listening).\n\n"
         "Example (connect):\n\n"
         "  {\"ts\":\"2026-12-04T16:14:59.123456Z\",\"dir\":\"out\",\"type\":\"text\",\"len\":5,\"encoding\":\"utf8\",\"data\":\"hello\"}\n"
         "  {\"ts\":\"2026-12-04T16:14:59.123512Z\",\"dir\":\"in\",\"type\":\"binary\",\"len\":2,\"encoding\":\"base64\",\"data\":\"AP8=\"}\n"
         "  {\"ts\":\"2026-12-04T16:14:59.123580Z\",\"dir\":\"in\",\"type\":\"close\",\"code\":1000,\"reason\":\"\"}"},
        {"SEE ALSO",
         "websocat(1), curl(1)\n\n"
         // URLs on lines of their own: filled text would hyphenate them.
         "RFC 6455, The WebSocket Protocol:\n"
         "  https://www.rfc-editor.org/rfc/rfc6455\n\n"
         "RFC 7692, Compression Extensions for WebSocket (permessage-deflate):\n"
         "  https://www.rfc-editor.org/rfc/rfc7692"},
    };
}

bool problems::report(const std::string& command) const {
    for (const auto& p : list_) std::cerr << "wsx: error: " << p << '\n';
    if (!list_.empty()) std::cerr << fmt::format("Run 'wsx {} --help' for usage.\n", command);
    return !list_.empty();
}

std::optional<std::pair<std::string, std::string>> header_arg(problems& p, const std::string& hv) {
    auto colon = hv.find(':');
    if (colon == std::string::npos || colon == 0) {
        p.add(fmt::format("--header '{}': expected 'Name: value'", hv));
        return std::nullopt;
    }
    std::string name = hv.substr(0, colon), value = hv.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    // A field name is an RFC 9110 token; a peer would refuse the message over anything else.
    const auto token = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    if (!std::all_of(name.begin(), name.end(), token)) {
        p.add(fmt::format("--header '{}': '{}' is not a header name (letters, digits and !#$%&'*+-.^_`|~)", hv, name));
        return std::nullopt;
    }
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        p.add(fmt::format("--header {}: the value contains a line break or NUL; give it on one line", name));
        return std::nullopt;
    }
    return std::pair{std::move(name), std::move(value)};
}

std::string secret_arg(problems& p, const std::string& option, const std::string& value, const std::string& file_option,
                       const std::string& file) {
    if (file.empty()) return value;
    if (!value.empty()) {
        p.add(fmt::format("{} and {} cannot be combined: give the secret one way ({} keeps it out of ps)", option,
                          file_option, file_option));
        return {};
    }
    auto r = read_secret_file(file);
    if (!r.secret) {
        p.add(fmt::format("{} '{}': {}", file_option, file, r.error));
        return {};
    }
    if (r.others_can_read)
        std::cerr << fmt::format("wsx: warning: {} '{}': other users can read it (mode {:04o}): chmod 600 '{}'\n", file_option,
                                 file, r.mode, file);
    return std::move(*r.secret);
}

std::string env_secret(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

bool readable_file(problems& p, const std::string& option, const std::string& path) {
    std::ifstream f(path);
    if (f) return true;
    p.add(fmt::format("{} '{}': cannot read the file ({})", option, path, std::strerror(errno)));
    return false;
}

std::chrono::nanoseconds duration_arg(problems& p, const std::string& option, const std::string& value) {
    if (value.empty()) return {};
    if (auto d = parse_duration(value)) return *d;
    p.add(fmt::format("{} '{}': not a duration (use e.g. 500ms, 2s, 1.5m)", option, value));
    return {};
}

std::uint64_t count_arg(problems& p, const std::string& option, const std::string& value, std::uint64_t lo,
                        std::uint64_t hi, std::string_view unset) {
    if (value.empty()) return 0;
    std::uint64_t n = 0;
    const bool digits = value.size() <= 19 && value.find_first_not_of("0123456789") == std::string::npos;
    if (digits) n = std::stoull(value);
    if (!digits || n < lo || n > hi) {
        p.add(fmt::format("{} '{}': give a whole number from {} to {} (leave it out for {})", option, value, lo, hi, unset));
        return 0;
    }
    return n;
}

std::uint64_t size_arg(problems& p, const std::string& option, const std::string& value) {
    if (value.empty()) return 0;
    if (auto s = parse_size(value)) return *s;
    p.add(fmt::format("{} '{}': not a size (use e.g. 65536, 64KiB, 16MiB)", option, value));
    return 0;
}

namespace {
/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i)
        for (std::size_t j = 1; j <= b.size(); ++j) {
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    return d[a.size()][b.size()];
}

/// " (did you mean X?)" when one of `names` is close enough to `typed` to be what was meant,
/// else "", each name shown after `prefix`. Short words allow one edit, longer ones two: more
/// would suggest unrelated names.
std::string did_you_mean(std::string_view typed, const std::vector<std::string>& names, std::string_view prefix = "") {
    const std::size_t limit = typed.size() <= 4 ? 1 : 2;
    std::size_t best = limit + 1;
    std::vector<std::string> closest;
    for (const auto& n : names) {
        const auto d = edit_distance(typed, n);
        if (d > limit) continue;
        if (d < best) best = d, closest.clear();
        if (d == best && std::find(closest.begin(), closest.end(), n) == closest.end()) closest.push_back(n);
    }
    if (closest.empty()) return {};
    std::string list;
    for (std::size_t i = 0; i < closest.size(); ++i)
        list += fmt::format("{}{}{}", i == 0 ? "" : i + 1 == closest.size() ? " or " : ", ", prefix, closest[i]);
    return fmt::format(" (did you mean {}?)", list);
}

/// A word CLI11 left over that was meant as an option ("--tokn", "--tokn=x", "-z"); "-" (stdin)
/// and "--" are not.
bool looks_like_option(const std::string& w) { return w.size() > 1 && w[0] == '-' && w != "--"; }

/// "unknown option --tokn (did you mean --token?)", suggesting among the options of `app`.
std::string unknown_option(const CLI::App& app, const std::string& word) {
    const std::string name = word.substr(0, word.find('='));
    const std::string_view typed = std::string_view(name).substr(name.find_first_not_of('-'));
    std::vector<std::string> longs;
    for (const auto* o : app.get_options())
        for (const auto& l : o->get_lnames()) longs.push_back(l);
    // A single letter is too short to guess from; "-token" is likely --token with one dash.
    return fmt::format("unknown option {}{}", name, typed.size() > 1 ? did_you_mean(typed, longs, "--") : "");
}

/// True when `v` is a number as a person would write it ("12", "-1.5", "1e3").
bool is_number(const std::string& v) {
    if (v.empty() || std::isspace(static_cast<unsigned char>(v[0]))) return false;
    char* end = nullptr;
    std::strtod(v.c_str(), &end);
    return end == v.c_str() + v.size();
}

/// "1.000000" (std::to_string in CLI::Range's message) as "1".
std::string trim_number(std::string n) {
    if (n.find('.') == std::string::npos) return n;
    while (n.back() == '0') n.pop_back();
    if (n.back() == '.') n.pop_back();
    return n;
}

/// CLI11's text for a value it could not take, in wsx's words: "--count: 'abc' is not a number".
/// Texts of CLI11 2.1 (Error.hpp, Validators.hpp); anything else is passed on as it is.
std::string value_error(const CLI::ParseError& e) {
    const std::string what = e.what();
    std::smatch m;
    if (dynamic_cast<const CLI::ConversionError*>(&e)) {
        // "Could not convert: --count = abc": an option of a numeric type.
        if (!std::regex_match(what, m, std::regex("Could not convert: (\\S+) = (.*)"))) return what;
        const std::string v = m[2];
        if (!is_number(v)) return fmt::format("{}: '{}' is not a number", m[1].str(), v);
        if (v.find_first_not_of("0123456789") == std::string::npos)
            return fmt::format("{}: '{}' is too large", m[1].str(), v);
        return fmt::format("{}: '{}' is not a whole number", m[1].str(), v);
    }
    if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
        // "--overflow: 1 required POLICY:{close,drop} missing": the option ended the line.
        if (!std::regex_match(what, m, std::regex("(\\S+): \\d+ required (.*) missing"))) return what;
        std::smatch c;
        const std::string type = m[2];
        if (std::regex_search(type, c, std::regex(":\\{(.*)\\}")))
            return fmt::format("{}: a value is missing (one of {})", m[1].str(),
                               std::regex_replace(c[1].str(), std::regex(","), ", "));
        return fmt::format("{}: a value is missing ({})", m[1].str(), type.substr(0, type.find_first_of(":=")));
    }
    if (!dynamic_cast<const CLI::ValidationError*>(&e)) return what;
    const auto colon = what.find(": ");
    if (colon == std::string::npos) return what;
    const std::string option = what.substr(0, colon), detail = what.substr(colon + 2);
    // CLI::Range: "Value abc not in range 1.000000 to 100.000000"
    if (std::regex_match(detail, m, std::regex("Value (.*) not in range (\\S+) to (\\S+)"))) {
        if (!is_number(m[1])) return fmt::format("{}: '{}' is not a number", option, m[1].str());
        return fmt::format("{}: '{}' is out of range: give a number from {} to {}", option, m[1].str(),
                           trim_number(m[2]), trim_number(m[3]));
    }
    // CLI::IsMember: "foo not in {close,drop}"
    if (std::regex_match(detail, m, std::regex("(.*) not in \\{(.*)\\}"))) {
        return fmt::format("{}: '{}' is not one of {}", option, m[1].str(),
                           std::regex_replace(m[2].str(), std::regex(","), ", "));
    }
    return what;
}

/// What went wrong when no command was recognised: nothing given, an unknown word, or an
/// option before the command. One line that also says how to find the right one.
std::string command_error(const CLI::App& app) {
    std::vector<std::string> names;
    std::string list;
    for (const auto& c : commands) {
        names.push_back(c.name);
        list += (list.empty() ? "" : &c == std::end(commands) - 1 ? " or " : ", ") + std::string(c.name);
    }
    const auto left = app.remaining();
    const auto first = std::find_if(left.begin(), left.end(), [](const std::string& w) { return w != "--"; });
    if (first == left.end()) return fmt::format("no command given: use {}; run 'wsx --help' for the commands", list);
    if (looks_like_option(*first))
        return fmt::format("{}; run 'wsx --help' for usage (a command's options go after its name)",
                           unknown_option(app, *first));
    return fmt::format("unknown command '{}'{}; run 'wsx --help' for the commands", *first, did_you_mean(*first, names));
}

/// "unknown command 'conect' (did you mean connect?); run 'wsx --help' for the commands".
std::string unknown_topic(const std::string& word) {
    std::vector<std::string> names;
    for (const auto& c : commands) names.emplace_back(c.name);
    return fmt::format("unknown command '{}'{}; run 'wsx --help' for the commands", word, did_you_mean(word, names));
}

/// The message for a parse error inside command `sub`: an unknown option first (it likely
/// shifted every word after it), then a stray argument, then a value CLI11 refused.
std::string command_parse_error(const CLI::App& sub, const CLI::ParseError& e) {
    const auto left = sub.remaining();
    for (const auto& w : left)
        if (looks_like_option(w)) return unknown_option(sub, w);
    if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
        for (const auto& w : left)
            if (w != "--") return fmt::format("unexpected argument '{}'", w);
    }
    return value_error(e);
}
}  // namespace

}  // namespace wsx::cli

int main(int argc, char** argv) {
    using namespace wsx;
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"wsx: WebSocket toolkit: client, server, load generator, pub/sub relay and proxy", "wsx"};
    // Set before the commands are added: each copies the formatter and the help flag.
    app.formatter(cli::help_formatter());
    app.set_help_flag("-h,--help", "Show this help and exit");
    app.set_version_flag("-V,--version", "wsx " + cli::build_identity(), "Show the version and build (commit, build type) and exit");
    app.require_subcommand(1);
    app.fallthrough(false);
    app.footer(
        "Examples:\n"
        "  wsx serve 127.0.0.1:8080                 # echo server\n"
        "  wsx connect ws://127.0.0.1:8080/         # interactive console\n"
        "  seq 3 | wsx connect ws://127.0.0.1:8080/ # pipe: one message per line\n"
        "\nRun 'wsx COMMAND --help' for the options of a command.");

    // `serve --exec -- CMD ARGS...`: every word after `--` belongs to the command, also those
    // that look like options; they reach --exec as one shell-quoted string.
    std::vector<std::string> args(argv + 1, argv + argc);
    // `wsx help [COMMAND]` is what many tools accept for `wsx [COMMAND] --help`; a topic that is
    // no command is an error, as is `wsx TOPIC --help` (CLI11 would show the general help).
    const auto is_command = [](const std::string& w) {
        return std::any_of(std::begin(cli::commands), std::end(cli::commands), [&](const auto& c) { return w == c.name; });
    };
    const bool asks_help_of_help =
        args.size() > 1 && args[0] == "help" && (args[1] == "-h" || args[1] == "--help" || args[1] == "help");
    if (asks_help_of_help) args = {"help", "--help"};
    if (!args.empty() && args[0] == "help" && !asks_help_of_help) {
        if (args.size() > 1 && !is_command(args[1])) {
            std::cerr << "wsx: error: " << cli::unknown_topic(args[1]) << '\n';
            return static_cast<int>(exit_code::usage);
        }
        args = args.size() > 1 ? std::vector<std::string>{args[1], "--help"} : std::vector<std::string>{"--help"};
    }
    if (!args.empty() && !cli::looks_like_option(args[0]) && args[0] != "--" && !is_command(args[0]) &&
        args[0] != "help" && args[0] != "generate") {
        std::cerr << "wsx: error: " << cli::unknown_topic(args[0]) << '\n';
        return static_cast<int>(exit_code::usage);
    }
    for (std::size_t i = 0; i + 1 < args.size(); ++i) {
        if (args[i] != "--exec" || args[i + 1] != "--") continue;
        std::string command;
        for (std::size_t j = i + 2; j < args.size(); ++j) {
            if (!command.empty()) command += ' ';
            command += '\'';
            for (char c : args[j]) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
            command += '\'';
        }
        args.resize(i + 1);
        args.push_back(command);
        break;
    }
    // Defining a command's options (hundreds of them over all commands, each with its strings,
    // checks and callbacks) costs more than the rest of start-up, so a command gets its options
    // only when its name is among the arguments; `generate` walks the whole tree and gets them
    // all. Every command is still listed, so `wsx --help` and the errors read the same.
    const bool everything = std::find(args.begin(), args.end(), "generate") != args.end();
    cli::runner run;
    for (const auto& c : cli::commands) {
        CLI::App* sub = app.add_subcommand(c.name, c.summary);
        sub->group("Commands");
        if (!everything && std::find(args.begin(), args.end(), c.name) == args.end()) continue;
        auto r = c.setup(*sub);
        cli::one_value_per_occurrence(*sub);
        sub->callback([&run, r] { run = r; });
    }
    // Listed like a command so that help, the man page and completions (`wsx help <TAB>`) know
    // it; main turns it into `COMMAND --help` before parsing.
    CLI::App* help = app.add_subcommand("help", "Show the help of a command (the same as wsx COMMAND --help)");
    help->group("Commands");
    help->footer("Examples:\n  wsx help connect   # the same as wsx connect --help");
    std::string help_topic;
    std::vector<std::string> names;
    for (const auto& c : cli::commands) names.emplace_back(c.name);
    help->add_option("command", help_topic, "The command to show the help of")->type_name("COMMAND")->check(CLI::IsMember(names));
    auto gen = cli::add_generate_command(app, everything ? cli::manual_sections() : std::vector<cli::doc_section>{});
    gen.app->callback([&run, r = gen.run] { run = r; });
    std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
    try {
        app.parse(args);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // An unknown word before the command leaves CLI11 with no command at all.
        if (app.get_subcommands().empty() || !app.remaining().empty()) {
            std::cerr << "wsx: error: " << cli::command_error(app) << '\n';
            return static_cast<int>(exit_code::usage);
        }
        // The innermost command given (bench merge): the error is in its words.
        CLI::App* sub = app.get_subcommands().front();
        std::string which = sub->get_name();
        while (!sub->get_subcommands().empty()) {
            sub = sub->get_subcommands().front();
            which += ' ' + sub->get_name();
        }
        std::string hint;
        // `--exec sh -c 'cat'`: CLI11 takes -c for an option of wsx and leaves the rest over.
        auto* exec = sub->get_option_no_throw("--exec");
        if (exec && exec->count() > 0 && dynamic_cast<const CLI::ExtrasError*>(&e))
            hint = ": for a command with options, write --exec -- CMD ARGS... (every word after '--exec --' is "
                   "the command's) or quote it as one word: --exec 'sh -c \"cat -n\"'";
        std::cerr << fmt::format("wsx: error: {}: {}{}\nRun 'wsx {} --help' for usage.\n", which,
                                 cli::command_parse_error(*sub, e), hint, which);
        return static_cast<int>(exit_code::usage);
    }
    if (!run) return static_cast<int>(exit_code::usage);
    try {
        return run();
    } catch (const failure& f) {
        std::cerr << "wsx: error: " << f.what() << '\n';
        return static_cast<int>(f.code());
    } catch (const std::exception& e) {
        std::cerr << "wsx: error: " << e.what() << '\n';
        return static_cast<int>(exit_code::failure);
    }
}
