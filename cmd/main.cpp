// wsx: one binary, five WebSocket tools. This file is the table of contents:
// the command table, parsing, dispatch, and exceptions turned into exit codes.
#include <algorithm>
#include <csignal>
#include <iostream>

#include <fmt/format.h>

#include "commands.hpp"
#include "generate.hpp"
#include "exit_code.hpp"
#include "units.hpp"

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
         "  6    HTTP upgrade rejected (status line and body are printed), or bench --compress declined\n"
         "  7    connection closed abnormally (1006, or a close code other than 1000/1001)\n"
         "  8    timeout (connect, idle, ping, expect, overall)\n"
         "  9    expectation or threshold not met (--expect, -n)\n"
         "  130  interrupted (SIGINT)"},
        {"ENVIRONMENT",
         "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY (and lower-case forms) choose a proxy for wss:// and ws:// "
         "URLs; NO_PROXY lists hosts reached directly. NO_COLOR turns colours off. XDG_STATE_HOME "
         "locates the console history (wsx/history)."},
        {"DIAGNOSTICS",
         "Data goes to standard output; everything else (errors, progress, the listening address) goes to "
         "standard error. Errors are one line: wsx: error: WHAT: DETAIL, with a hint on how to fix it "
         "where there is one."},
    };
}

bool problems::report(const std::string& command) const {
    for (const auto& p : list_) std::cerr << "wsx: error: " << p << '\n';
    if (!list_.empty()) std::cerr << fmt::format("Run 'wsx {} --help' for usage.\n", command);
    return !list_.empty();
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

}  // namespace wsx::cli

int main(int argc, char** argv) {
    using namespace wsx;
    std::signal(SIGPIPE, SIG_IGN);
    CLI::App app{"wsx: WebSocket toolkit: client, server, load generator, pub/sub relay and proxy", "wsx"};
    app.set_version_flag("-V,--version", "wsx " WSX_VERSION);
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
        if (!everything && std::find(args.begin(), args.end(), c.name) == args.end()) continue;
        auto r = c.setup(*sub);
        cli::one_value_per_occurrence(*sub);
        sub->callback([&run, r] { run = r; });
    }
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
        std::string which, hint;
        for (auto* sub : app.get_subcommands()) {
            which = sub->get_name();
            // `--exec sh -c 'cat'`: CLI11 takes -c for an option of wsx and leaves the rest over.
            auto* exec = sub->get_option_no_throw("--exec");
            if (exec && exec->count() > 0 && dynamic_cast<const CLI::ExtrasError*>(&e))
                hint = ": for a command with options, write --exec -- CMD ARGS... (every word after '--exec --' is "
                       "the command's) or quote it as one word: --exec 'sh -c \"cat -n\"'";
        }
        std::cerr << "wsx: error: " << e.what() << hint << '\n'
                  << (which.empty() ? std::string("Run 'wsx --help' for usage.\n")
                                    : fmt::format("Run 'wsx {} --help' for usage.\n", which));
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
