// wsx serve: parse options → serve_options → validate (every problem at once) → run.
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>


#include "commands.hpp"
#include "exec.hpp"
#include "serve_app.hpp"
#include "server_options.hpp"

namespace wsx::cli {

namespace {
struct serve_args {
    std::string address = "127.0.0.1:8080";
    bool echo = false, stdio = false, oneshot = false;
    std::vector<std::string> exec, passenv;
    bool binary = false, pass_stderr = false;
    std::string close_grace = "250ms", kill_grace = "5s";
    std::string max_forks;
    std::string static_dir;
    std::vector<std::string> subprotocols;
    bool require_subprotocol = false;
    listener_args listener;
};
}  // namespace

runner setup_serve(CLI::App& app) {
    auto a = std::make_shared<serve_args>();
    app.add_option("address", a->address, "Where to listen: PORT, HOST:PORT, [V6]:PORT (port 0 picks a free one) or unix:PATH (a unix "
                   "socket; clients connect to ws+unix://PATH:/)")
        ->type_name("ADDR")->capture_default_str();

    const char* m = "Modes";
    app.add_flag("--echo", a->echo, "Send every message back to its sender, same opcode (the default)")->group(m);
    app.add_option("--exec", a->exec,
                   "Run CMD for each connection (websocketd-style): client lines to its stdin, its stdout lines to the "
                   "client (as text; a line that is not UTF-8 as binary), exit status as close code; for arguments that start with '-', end the options with "
                   "--exec -- CMD ARGS... or give one quoted string: --exec 'sh -c \"cat -n\"'")
        // Several words, each as written: a bound instead of allow_extra_args, which would also
        // split an argument written as [a,b] (`--exec jq -c '[.a,.b]'`).
        ->group(m)->type_name("CMD [ARGS...]")->expected(1, 1 << 20)->allow_extra_args(false);
    app.add_flag("--binary", a->binary, "With --exec: raw output chunks as binary messages, messages written raw")->group(m);
    app.add_flag("--pass-stderr", a->pass_stderr, "With --exec: child stderr lines go to the client instead of the log")
        ->group(m);
    app.add_option("--close-grace", a->close_grace, "With --exec: time a child may run on after the client's Close (its EOF) to write its "
                   "last lines, before SIGTERM; then the Close is answered")
        ->group(m)->type_name("DURATION")->capture_default_str();
    app.add_option("--kill-grace", a->kill_grace, "With --exec: time between SIGTERM and SIGKILL when a child is stopped (its client "
                   "closed or left)")
        ->group(m)->type_name("DURATION")->capture_default_str();
    app.add_option("--passenv", a->passenv, "With --exec: also pass these server variables (comma-separated; PATH always is)")
        ->group(m)->type_name("NAMES")->delimiter(',');
    app.add_option("--max-forks", a->max_forks, "With --exec: at most N children at once; further upgrades get HTTP 503 with Retry-After: 1")
        ->group(m)->type_name("N");
    app.add_flag("--stdio", a->stdio,
                 "Server stdin lines go to every client (as text; a line that is not UTF-8 as binary), client messages "
                 "to stdout; stdin EOF closes clients and exits")
        ->group(m);
    app.add_flag("--oneshot", a->oneshot, "Serve a single client, then exit (others get HTTP 503 meanwhile)")->group(m);
    app.add_option("--static", a->static_dir, "Serve files from DIR to plain HTTP GET on the same port")
        ->group(m)->type_name("DIR");

    add_listener_options(app, a->listener);
    const char* l = "Protocol and limits";
    app.add_option("--subprotocol", a->subprotocols,
                   "Speak this subprotocol (repeatable, in order of preference): the first of these the client offers "
                   "is chosen (--exec: WSX_SUBPROTOCOL); none offered: no subprotocol")
        ->group(l)->type_name("NAME");
    app.add_flag("--require-subprotocol", a->require_subprotocol,
                 "Refuse (HTTP 400 naming the supported list) an upgrade that offers none of --subprotocol")
        ->group(l);
    // What the shared options mean for a child process or the terminal.
    app.get_option("--max-message-size")
        ->description("Largest message accepted; larger ones close with 1009 (--exec/--stdio: also the longest line "
                      "sent as one message; longer ones are split)");
    app.get_option("--jwt-secret")
        ->description("Require a JWT signed with this HMAC secret (HS256; WSX_JWT_SECRET); its 'sub' is WSX_SUB for --exec");
    app.get_option("--log-format")
        ->description("Log format on stderr: text or json (an access line per closed connection; with json, other "
                      "log lines such as a child's stderr are JSON objects too)");

    app.footer(
        "Examples:\n"
        "  wsx serve                                  # echo on ws://127.0.0.1:8080\n"
        "  wsx serve 127.0.0.1:0                      # any free port, printed on stderr\n"
        "  wsx serve 0.0.0.0:8443 --tls-cert c.pem --tls-key k.pem\n"
        "  wsx serve 8080 --exec ./count.sh 10        # one process per connection\n"
        "  wsx serve 8080 --exec 'stdbuf -oL tr a-z A-Z'  # stdbuf: tr answers each line at once\n"
        "  wsx serve 8080 --exec -- grep --line-buffered -v '^#'\n"
        "  wsx serve 8080 --stdio                     # chat with clients from the terminal\n"
        "  wsx serve 8080 --static ./public --path /ws --metrics\n"
        "  wsx serve 8080 --token s3cret --rate-limit 100/s,burst=200\n"
        "  wsx serve unix:/tmp/wsx.sock --unix-mode 600  # clients: wsx connect ws+unix:///tmp/wsx.sock:/\n"
        "\nPrints 'listening on ws://HOST:PORT' (ws+unix://PATH:/ for a unix socket) on stderr once\n"
        "ready. Put ADDR before --exec: the words after --exec are the command; after '--exec --'\n"
        "every word is, options included. A child's output goes out as soon as it writes it:\n"
        "commands that buffer output to a pipe (tr, sed, awk, python) need line buffering\n"
        "(stdbuf -oL, sed -u, grep --line-buffered, python -u) to answer each line at once.\n"
        "A client's Close is answered when the child has ended: it gets EOF after the messages\n"
        "sent before the Close, and its answers to them still go out; a child still running\n"
        "--close-grace (250ms) after its EOF, such as one that streams and never reads its stdin,\n"
        "gets SIGTERM (SIGKILL after --kill-grace), and the Close is answered with the client's\n"
        "code once its last output is sent; after 5 s it is answered anyway. A client that leaves\n"
        "without a Close: SIGTERM at once. A compressed client's Close is handled the same way.\n"
        "On unix:PATH, a socket file left by a dead process is replaced; a live socket or a file\n"
        "that is not a socket is refused (exit 1) and left alone; the file is removed when the\n"
        "server stops.\n"
        "The child of --exec gets REMOTE_ADDR, REMOTE_PORT, SERVER_NAME, SERVER_PORT, SCRIPT_NAME,\n"
        "PATH_INFO, QUERY_STRING, REQUEST_URI, HTTPS, HTTP_* (request headers but Proxy, which\n"
        "would set HTTP_PROXY), WSX_CONNECTION_ID, WSX_SCHEME, WSX_SUB (JWT subject or basic user),\n"
        "WSX_SUBPROTOCOL (the --subprotocol chosen) and PATH; its exit status becomes the close code (0: 1000, else 1011 'exit N' or\n"
        "'signal N'). On a unix socket, REMOTE_ADDR is unix:PATH, the ports are empty and\n"
        "WSX_PEER_PID/UID/GID name the connecting process.");

    // Its default is shown in the help, so only the count tells whether it was given.
    const CLI::Option* close_grace = app.get_option("--close-grace");

    return [a, close_grace]() -> int {
        problems p;
        serve_options o;
        std::string err;
        if (auto la = parse_listen_address(a->address, &err)) o.server.listen = *la;
        else p.add(err);

        int modes = (a->echo ? 1 : 0) + (!a->exec.empty() ? 1 : 0) + (a->stdio ? 1 : 0);
        if (modes > 1) p.add("--echo, --exec and --stdio are alternatives: choose one");
        if (!a->exec.empty()) {
            o.mode = serve_mode::exec;
            if (a->exec.size() == 1 && a->exec[0].find_first_of(" \t'\"") != std::string::npos) {
                if (auto words = split_command_line(a->exec[0]); words && !words->empty()) o.exec.argv = *words;
                else p.add(fmt::format("--exec '{}': unbalanced quotes", a->exec[0]));
            } else {
                o.exec.argv = a->exec;
            }
            if (o.exec.argv.empty() || o.exec.argv[0].empty())
                p.add("--exec: no command given (after '--exec --', name the command and its arguments)");
            else if (!find_program(o.exec.argv[0]))
                p.add(fmt::format("--exec: '{}' is not an executable file{}", o.exec.argv[0],
                                  o.exec.argv[0].find('/') == std::string::npos ? " in PATH" : ""));
        } else if (a->stdio) {
            o.mode = serve_mode::stdio;
        }
        if (o.mode != serve_mode::exec) {
            if (a->binary) p.add("--binary only applies to --exec");
            if (a->pass_stderr) p.add("--pass-stderr only applies to --exec");
            if (!a->max_forks.empty()) p.add("--max-forks only applies to --exec");
            if (!a->passenv.empty()) p.add("--passenv only applies to --exec");
            if (close_grace->count() > 0) p.add("--close-grace only applies to --exec");
        }
        o.exec.binary = a->binary;
        o.exec.pass_stderr = a->pass_stderr;
        o.exec.close_grace = duration_arg(p, "--close-grace", a->close_grace);
        o.exec.kill_grace = duration_arg(p, "--kill-grace", a->kill_grace);
        o.exec.passenv = a->passenv;
        o.exec.max_forks = count_arg(p, "--max-forks", a->max_forks, 1, 10'000'000, "no limit");
        o.oneshot = a->oneshot;
        o.static_dir = a->static_dir;
        if (!a->static_dir.empty() && ::access(a->static_dir.c_str(), R_OK | X_OK) != 0)
            p.add(fmt::format("--static '{}': not a readable directory", a->static_dir));
        apply_listener_options(p, a->listener, o);
        for (const auto& name : a->subprotocols)
            if (name.empty() || name.find_first_of(" \t,;\"()<>@:/[]?={}\\") != std::string::npos ||
                std::any_of(name.begin(), name.end(), [](char c) { return c < 0x21 || c > 0x7e; }))
                p.add(fmt::format("--subprotocol '{}': a subprotocol name is one token (letters, digits and "
                                  "!#$%&'*+-.^_`|~), e.g. chat.v1",
                                  name));
        if (a->require_subprotocol && a->subprotocols.empty())
            p.add("--require-subprotocol needs the list it requires: add --subprotocol NAME");
        if (!a->subprotocols.empty()) {
            // After the authentication filters: a client is told the list only once it may connect.
            o.filters.push_back([ours = a->subprotocols, require = a->require_subprotocol](
                                    const http_request& req, peer_info& peer, std::string& subprotocol) -> std::optional<http_response> {
                // A client refused after its upgrade (--auth-failure close) learns nothing of it.
                if (peer.vars.count("auth.refused")) return std::nullopt;
                if (auto chosen = choose_subprotocol(req, ours)) {
                    subprotocol = *chosen;
                    peer.vars["subprotocol"] = *chosen;
                    return std::nullopt;
                }
                if (!require) return std::nullopt;
                return make_response(http::status::bad_request,
                                     fmt::format("no supported subprotocol offered: this server speaks {} (offer one in "
                                                 "Sec-WebSocket-Protocol)",
                                                 fmt::join(ours, ", ")));
            });
        }
        if (p.report("serve")) return static_cast<int>(exit_code::usage);
        return run_serve(std::move(o));
    };
}

}  // namespace wsx::cli
