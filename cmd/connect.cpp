// wsx connect: parse options → connect_options → validate (every problem at once) → run.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <fmt/format.h>

#include "client_options.hpp"
#include "commands.hpp"
#include "connect_app.hpp"
#include "units.hpp"

namespace wsx::cli {

namespace {
struct connect_args {
    std::string url;
    client_args client;
    std::vector<std::string> send, expect, expect_json;
    bool binary = false, null = false, hex = false, base64 = false, jsonl = false, timestamps = false;
    std::string count;
    std::string timeout, idle_timeout, connect_timeout = "10s", wait = "5s", ping_interval, ping_timeout;
    bool reconnect = false;
    std::string backoff_initial = "250ms", backoff_max = "30s", buffer_limit = "16MiB", max_message_size = "64MiB";
    double backoff_factor = 2.0;
    int max_retries = -1;
    bool stats = false, stats_json = false, verbose = false, no_color = false;
    bool interactive = false, no_interactive = false;
    std::string history_file;
    std::string script, linger, close_code, close_reason;
    bool then_stdin = false, send_only = false, receive_only = false;
};

/// A whole file (or stdin for "-") of at most `limit` bytes; nullopt with `error` set when it
/// cannot be read, is not a file, or is larger (reading stops there: /dev/zero ends too).
std::optional<std::string> read_all(const std::string& path, std::string* error, std::uint64_t limit) {
    const int fd = path == "-" ? 0 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error = std::strerror(errno);
        return std::nullopt;
    }
    struct closer {
        int fd;
        ~closer() {
            if (fd > 0) ::close(fd);
        }
    } guard{fd};
    struct stat st{};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        *error = "it is a directory";
        return std::nullopt;
    }
    std::string text;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            *error = std::strerror(errno);
            return std::nullopt;
        }
        if (n == 0) return text;
        if (text.size() + static_cast<std::size_t>(n) > limit) {
            *error = fmt::format("it is larger than {}", format_bytes(limit));
            return std::nullopt;
        }
        text.append(buf, static_cast<std::size_t>(n));
    }
}

/// A script of more than this is refused: large payloads belong in send-file.
constexpr std::uint64_t max_script_bytes = 16 << 20;

/// Reads and parses --script before anything connects: every bad line is a problem naming
/// FILE:LINE; regexes are compiled and send-file payloads read here.
std::optional<script_plan> load_script(problems& p, const std::string& path, std::uint64_t max_message_size) {
    std::string err;
    auto text = read_all(path, &err, max_script_bytes);
    if (!text) {
        p.add(fmt::format("--script {}: cannot read it: {} (give a readable file of at most {}, or - for stdin; "
                          "large payloads go in send-file)",
                          path, err, format_bytes(max_script_bytes)));
        return std::nullopt;
    }
    script_plan plan;
    plan.name = path == "-" ? "<stdin>" : path;
    std::vector<script_error> errors;
    auto steps = parse_script(*text, &errors);
    if (!steps) {
        for (const auto& e : errors) p.add(fmt::format("{}:{}: {}", plan.name, e.line, e.message));
        return std::nullopt;
    }
    bool ok = true;
    plan.steps = std::move(*steps);
    plan.matchers.resize(plan.steps.size());
    for (std::size_t i = 0; i < plan.steps.size(); ++i) {
        auto& st = plan.steps[i];
        const auto where = fmt::format("{}:{}", plan.name, st.line);
        if (st.op == script_step::kind::expect) {
            if (auto x = expectation::regex(st.text, &err)) plan.matchers[i] = std::move(*x);
            else {
                p.add(fmt::format("{}: expect: invalid regular expression ({})", where, err));
                ok = false;
            }
        } else if (st.op == script_step::kind::expect_json) {
            expectation x;
            x.text = st.text;
            x.is_json = true;
            x.json = *st.json;
            plan.matchers[i] = std::move(x);
        } else if (st.op == script_step::kind::send_file) {
            auto bytes = read_all(st.text, &err, max_message_size);
            if (!bytes) {
                p.add(fmt::format("{}: send-file {}: cannot read it: {} (--max-message-size {})", where, st.text, err,
                                  format_bytes(max_message_size)));
                ok = false;
            } else {
                st.text = std::move(*bytes);
            }
        }
    }
    if (!ok) return std::nullopt;
    return plan;
}
}  // namespace

runner setup_connect(CLI::App& app) {
    auto a = std::make_shared<connect_args>();
    app.add_option("url", a->url, "ws://, wss:// or ws+unix:///path.sock:/resource URL")->required()->type_name("URL");

    add_handshake_options(app, a->client);
    add_compress_options(app, a->client);

    add_client_tls_options(app, a->client);
    add_redirect_options(app, a->client,
                         "Follow redirects of the upgrade (301, 302, 303, 307, 308 with a Location); credentials "
                         "go only to the original scheme, host and port");

    const char* io = "Input and output";
    app.add_flag("-b,--binary", a->binary, "Send stdin chunks as binary messages; write received messages raw")->group(io);
    app.add_flag("-0,--null", a->null, "NUL-separated records instead of lines, both ways")->group(io);
    app.add_flag("--hex", a->hex, "Print received binary messages as hex")->group(io);
    app.add_flag("--base64", a->base64, "Print received binary messages as base64")->group(io);
    app.add_flag("--jsonl", a->jsonl, "Print every event (message, ping, pong, close) as a JSON line (pipe mode, also on a terminal; fields: man wsx, EVENT FORMAT)")->group(io);
    add_fragment_option(app, a->client, io);
    app.add_flag("-t,--timestamps", a->timestamps, "Prefix received messages with the time")->group(io);
    app.add_flag("-i,--interactive", a->interactive, "Use the interactive console even if stdin or stdout is not a terminal")->group(io);
    app.add_flag("--no-interactive", a->no_interactive, "Pipe mode even on a terminal")->group(io);
    app.add_flag("--no-color", a->no_color, "No colours (also when NO_COLOR is set)")->group(io);
    app.add_option("--history-file", a->history_file, "Console history file (default ~/.local/state/wsx/history)")
        ->group(io)->type_name("PATH");

    const char* s = "Scripting";
    app.add_option("--script", a->script, "Run a dialogue script (send, expect, wait, close... a step a line; - for stdin)")
        ->group(s)->type_name("FILE");
    app.add_option("--send", a->send, "Send MSG after connecting (repeatable); stdin is then not read, unless --then-stdin")
        ->group(s)->type_name("MSG");
    app.add_flag("--then-stdin", a->then_stdin, "After the --send messages, send stdin too (as without --send)")->group(s);
    app.add_option("--expect", a->expect, "Wait for a message matching REGEX (repeatable, in order)")->group(s)->type_name("REGEX");
    app.add_option("--expect-json", a->expect_json, "Wait for a JSON message with path=value, e.g. user.id=7 (repeatable)")
        ->group(s)->type_name("PATH=VALUE");
    app.add_option("-n,--count", a->count, "Exit after N received messages")->group(s)->type_name("N");
    app.add_option("--timeout", a->timeout, "Overall deadline (default 10s with --expect or -n)")->group(s)->type_name("DURATION");
    app.add_option("--idle-timeout", a->idle_timeout, "Give up when nothing arrives for this long")->group(s)->type_name("DURATION");
    app.add_option("--connect-timeout", a->connect_timeout, "Deadline for DNS, TCP, TLS and upgrade")
        ->group(s)->type_name("DURATION")->capture_default_str();
    app.add_option("--wait", a->wait, "After stdin ends, wait this long for the server's Close")
        ->group(s)->type_name("DURATION")->capture_default_str();
    app.add_option("--linger", a->linger, "After stdin or the script ends, keep reading until nothing arrives for this long, then close")
        ->group(s)->type_name("DURATION");
    app.add_option("--close-code", a->close_code, "Close code sent when stdin or the script ends (default 1000)")
        ->group(s)->type_name("CODE");
    app.add_option("--close-reason", a->close_reason, "Close reason sent with it (up to 123 bytes)")->group(s)->type_name("REASON");
    app.add_flag("--send-only", a->send_only, "Never print received messages")->group(s);
    app.add_flag("--receive-only", a->receive_only, "Never read stdin; stay until the server closes, -n or --timeout")->group(s);
    app.add_option("--max-message-size", a->max_message_size, "Largest message accepted")
        ->group(s)->type_name("SIZE")->capture_default_str();

    const char* k = "Keepalive and reconnect";
    app.add_option("--ping-interval", a->ping_interval, "Send a ping this often")->group(k)->type_name("DURATION");
    app.add_option("--ping-timeout", a->ping_timeout, "A pong missing this long is a timeout (or a reconnect)")
        ->group(k)->type_name("DURATION");
    app.add_flag("--reconnect", a->reconnect, "Reconnect with exponential backoff when the connection drops or fails (not after an HTTP 4xx other than 408/429, nor a certificate that does not verify)")->group(k);
    app.add_option("--backoff-initial", a->backoff_initial, "First reconnect delay")->group(k)->type_name("DURATION")->capture_default_str();
    app.add_option("--backoff-max", a->backoff_max, "Longest reconnect delay")->group(k)->type_name("DURATION")->capture_default_str();
    app.add_option("--backoff-factor", a->backoff_factor, "Delay multiplier per attempt")
        ->group(k)->check(CLI::Range(1.0, 100.0))->type_name("FACTOR")->capture_default_str();
    app.add_option("--max-retries", a->max_retries, "Give up after N failed attempts in a row (-1: never)")
        ->group(k)->type_name("N")->capture_default_str();
    app.add_option("--buffer-limit", a->buffer_limit, "Stdin held while disconnected before input pauses")
        ->group(k)->type_name("SIZE")->capture_default_str();

    const char* r = "Reporting";
    app.add_flag("--stats", a->stats, "On exit, print timings and counters to stderr")->group(r);
    app.add_flag("--stats-json", a->stats_json, "On exit, print timings and counters as JSON to stderr")->group(r);
    app.add_flag("-v,--verbose", a->verbose, "Print the handshake request and response headers to stderr; the console also shows keepalive pongs")->group(r);

    app.footer(
        "Examples:\n"
        "  wsx connect ws://127.0.0.1:8080/                      # interactive console\n"
        "  seq 100 | wsx connect ws://127.0.0.1:8080/            # pipe: a message per line\n"
        "  wsx connect wss://example.test/ws --send ping --expect pong   # CI check\n"
        "  wsx connect ws://127.0.0.1:8080/ --send '{\"op\":\"hi\"}' --expect-json op=hi -n 1\n"
        "  wsx connect ws://127.0.0.1:8080/ --reconnect --ping-interval 10s --ping-timeout 5s\n"
        "  wsx connect ws://127.0.0.1:8080/ --script dialogue.txt   # send hi / expect ^hello / close\n"
        "  wsx connect ws://127.0.0.1:8080/ --send '{\"op\":\"sub\"}' --then-stdin < events.jsonl\n"
        "\nThe console starts when stdin and stdout are both terminals and none of --send, --expect,\n"
        "--expect-json, -n, --jsonl, --script, --receive-only is given; otherwise pipe mode: each\n"
        "stdin line is a text message (a binary one when the line is not valid UTF-8), each received\n"
        "message a line on stdout.\n"
        "\nExit status: 0 ok, 1 failure, 2 usage, 3 resolve, 4 connect, 5 TLS, 6 upgrade rejected (or a\n"
        "redirect -L cannot follow), 7 abnormal close, 8 timeout, 9 expectation not met, 130 interrupted.");

    return [a]() -> int {
        problems p;
        connect_options o;
        std::string err;
        if (auto ep = parse_ws_url(a->url, &err)) o.client.url = *ep;
        else p.add(err);
        apply_client_options(p, a->client, o.client);
        o.client.connect_timeout = duration_arg(p, "--connect-timeout", a->connect_timeout);
        if (auto d = parse_duration(a->connect_timeout); d && d->count() == 0)
            p.add("--connect-timeout must be greater than 0");
        o.client.session.max_message_size = size_arg(p, "--max-message-size", a->max_message_size);
        o.client.session.send_queue_limit = 4u << 20;
        o.ping_interval = duration_arg(p, "--ping-interval", a->ping_interval);
        o.client.session.ping_timeout = duration_arg(p, "--ping-timeout", a->ping_timeout);
        if (o.client.session.ping_timeout.count() > 0 && o.ping_interval.count() == 0)
            p.add("--ping-timeout needs --ping-interval");
        o.idle_timeout = duration_arg(p, "--idle-timeout", a->idle_timeout);
        o.client.session.idle_timeout = o.idle_timeout;
        o.wait = duration_arg(p, "--wait", a->wait);
        o.client.session.close_timeout = o.wait.count() > 0 ? o.wait : std::chrono::milliseconds(1);
        o.timeout = duration_arg(p, "--timeout", a->timeout);

        int modes = a->binary + a->null;
        if (modes > 1) p.add("--binary and --null cannot be combined");
        o.framing = a->binary ? input_framing::binary : a->null ? input_framing::nul : input_framing::lines;
        if (a->hex && a->base64) p.add("--hex and --base64 cannot be combined");
        o.display = a->hex ? binary_display::hex : a->base64 ? binary_display::base64 : binary_display::raw;
        o.jsonl = a->jsonl;
        o.timestamps = a->timestamps;
        o.send = a->send;
        for (const auto& e : a->expect) {
            if (auto x = expectation::regex(e, &err)) o.expects.push_back(std::move(*x));
            else p.add(fmt::format("--expect '{}': invalid regular expression ({})", e, err));
        }
        for (const auto& e : a->expect_json) {
            auto j = json_expectation::parse(e, &err);
            if (!j) {
                p.add(fmt::format("--expect-json '{}': {}", e, err));
                continue;
            }
            expectation x;
            x.text = e;
            x.is_json = true;
            x.json = *j;
            o.expects.push_back(std::move(x));
        }
        o.count = count_arg(p, "-n/--count", a->count, 1, 1'000'000'000'000'000'000, "no count");
        o.reconnect = a->reconnect;
        o.backoff_initial = duration_arg(p, "--backoff-initial", a->backoff_initial);
        o.backoff_max = duration_arg(p, "--backoff-max", a->backoff_max);
        o.backoff_factor = a->backoff_factor;
        if (a->max_retries < -1) p.add("--max-retries: use -1 (never give up) or a count >= 0");
        o.max_retries = a->max_retries;
        o.buffer_limit = size_arg(p, "--buffer-limit", a->buffer_limit);
        o.stats = a->stats;
        o.stats_json = a->stats_json;
        o.verbose = a->verbose;
        o.colour = !a->no_color && std::getenv("NO_COLOR") == nullptr && ::isatty(1) == 1;
        o.history_file = a->history_file;
        if (a->interactive && a->no_interactive) p.add("--interactive and --no-interactive cannot be combined");
        if (a->interactive && a->jsonl) p.add("--interactive and --jsonl cannot be combined (--jsonl is pipe mode)");
        o.interactive = a->interactive ? interactive_mode::always
                        : a->no_interactive ? interactive_mode::never
                                            : interactive_mode::automatic;
        o.send_only = a->send_only;
        o.receive_only = a->receive_only;
        o.then_stdin = a->then_stdin;
        if (a->then_stdin && a->send.empty()) p.add("--then-stdin needs --send (without --send, stdin is sent anyway)");
        if (a->send_only && a->receive_only) p.add("--send-only and --receive-only cannot be combined");
        if (a->receive_only && a->then_stdin) p.add("--receive-only and --then-stdin cannot be combined (--receive-only never reads stdin)");
        if (a->receive_only && a->interactive) p.add("--receive-only and --interactive cannot be combined (the console reads the terminal)");
        o.linger = duration_arg(p, "--linger", a->linger);
        if (a->receive_only && o.linger.count() > 0)
            p.add("--linger applies when stdin or a script ends, which --receive-only never has: drop one of them");
        if (!a->close_code.empty()) {
            // 0 comes back for a value count_arg has already reported.
            if (const auto code = count_arg(p, "--close-code", a->close_code, 1, 65535, "1000"); code != 0) {
                if (auto why = close_code_problem(static_cast<long long>(code)); !why.empty()) p.add("--close-code: " + why);
                else o.close_code = static_cast<std::uint16_t>(code);
            }
        }
        if (auto why = close_reason_problem(a->close_reason); !why.empty()) p.add("--close-reason: " + why);
        o.close_reason = a->close_reason;
        if (!a->script.empty()) {
            for (const auto& [given, name] :
                 {std::pair{!a->send.empty(), "--send"}, std::pair{!a->expect.empty(), "--expect"},
                  std::pair{!a->expect_json.empty(), "--expect-json"}, std::pair{!a->count.empty(), "-n/--count"}})
                if (given) p.add(fmt::format("--script cannot be combined with {} (write it as a script step)", name));
            for (const auto& [given, name] :
                 {std::pair{a->receive_only, "--receive-only"}, std::pair{a->interactive, "--interactive"},
                  std::pair{a->reconnect, "--reconnect"}})
                if (given) p.add(fmt::format("--script cannot be combined with {}", name));
            if (a->script == "-" && ::isatty(0) == 1)
                p.add("--script -: stdin is a terminal (pipe the script in, or give its file)");
            else
                o.script = load_script(p, a->script, o.client.session.max_message_size);
        }
        if (p.report("connect")) return static_cast<int>(exit_code::usage);
        return run_connect(o);
    };
}

}  // namespace wsx::cli
