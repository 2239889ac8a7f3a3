// wsx bench: parse options → bench_options → validate (every problem at once) → run → reports.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench.hpp"
#include "bench_report.hpp"
#include "codec.hpp"
#include "client_options.hpp"
#include "commands.hpp"
#include "exit_code.hpp"
#include "load_model.hpp"
#include "proxy.hpp"
#include "units.hpp"
#include "version.hpp"

namespace wsx::cli {

namespace {
struct bench_args {
    std::string url;
    std::string scenario = "echo";
    std::string connections = "10", connect_rate, duration, messages, warmup, threads;
    std::string in_flight = "1", rate, rate_per_conn;
    std::string size, payload, payload_file;
    bool binary = false;
    std::string publishers = "1", publish_url, settle = "250ms";
    std::vector<std::string> subscribe_messages;
    bool unbatch = false;
    std::string reply_timeout = "10s", connect_timeout = "10s";
    client_args client;
    std::string json, html, hgrm, compare;
    std::vector<std::string> fail_if, targets;
    bool find_max = false, no_progress = false;
    bool allow_corrupt = false;
    // merge
    std::vector<std::string> merge_inputs;
};

double rate_arg(problems& p, const std::string& option, const std::string& value) {
    if (value.empty()) return 0;
    auto r = parse_rate(value);
    if (!r || *r <= 0) {
        p.add(fmt::format("{} '{}': expected a positive rate, e.g. 5000, 10k, 100/s", option, value));
        return 0;
    }
    return *r;
}

bool write_output(const std::string& path, const std::string& content, const char* option) {
    if (path == "-") {
        std::cout << content << std::flush;
        return true;
    }
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) {
        std::cerr << fmt::format("wsx: error: {} {}: cannot write the file\n", option, path);
        return false;
    }
    return true;
}

// The report files, checked before the run so that an unwritable path does not waste it.
void check_outputs(problems& p, const bench_args& a) {
    const std::pair<const char*, const std::string*> outputs[] = {{"--json", &a.json}, {"--html", &a.html}, {"--hgrm", &a.hgrm}};
    for (std::size_t i = 0; i < std::size(outputs); ++i) {
        const auto& [name, path] = outputs[i];
        if (path->empty()) continue;
        bool shared = false;
        for (std::size_t k = 0; k < i; ++k) {
            if (*outputs[k].second != *path) continue;
            shared = true;
            p.add(*path == "-" ? fmt::format("{} and {} both write to stdout (-): give one of them a file", outputs[k].first, name)
                               : fmt::format("{} and {} both write to {}: give each its own file", outputs[k].first, name, *path));
        }
        if (shared || *path == "-") continue;
        // Open it as the report will (without truncating what is there); a file made only
        // for this check is removed again.
        struct stat st {};
        const bool existed = ::stat(path->c_str(), &st) == 0;
        const int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) {
            p.add(fmt::format("{} {}: cannot write the file: {}; give a file in a writable directory, or - for stdout",
                              name, *path, std::strerror(errno)));
            continue;
        }
        ::close(fd);
        if (!existed) ::unlink(path->c_str());
    }
}

// True when a report goes to stdout, which then carries it alone.
bool report_on_stdout(const bench_args& a) { return a.json == "-" || a.html == "-" || a.hgrm == "-"; }

std::optional<bench_result> read_result(const std::string& path, std::string* error) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        *error = fmt::format("{}: cannot read the file", path);
        return std::nullopt;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    try {
        return bench_from_json(nlohmann::json::parse(ss.str()));
    } catch (const std::exception& e) {
        *error = fmt::format("{}: {}", path, e.what());
        return std::nullopt;
    }
}

std::string filler(std::size_t n, bool binary) {
    static constexpr char text[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = binary ? static_cast<char>((i * 31 + 7) & 0xff) : text[i % (sizeof text - 1)];
    return s;
}

// Writes the requested reports and evaluates --fail-if. Returns the exit code.
// `merged`: the result of bench merge, which was not interrupted itself even when an input was.
int report(const bench_args& a, const bench_result& r, const std::vector<threshold>& fail_if,
           const std::optional<bench_result>& baseline, bool human, bool merged = false) {
    if (human) std::cout << render_text(r);
    // With a report on stdout (e.g. --json -), stdout carries it alone; the comparison goes to stderr.
    if (baseline) {
        // Said before any figure is called better or worse: a run that asked for another load
        // (more connections, another rate) changes the figures by itself.
        for (const auto& d : config_differences(baseline->config, r.config))
            std::cerr << fmt::format("wsx: warning: --compare: the runs differ in {}: baseline {}, this run {}\n", d.field,
                                     d.baseline, d.current);
        std::cerr << std::flush;
        (human ? std::cout : std::cerr) << '\n' << render_compare(*baseline, r);
    }
    bool ok = true;
    if (!a.json.empty()) ok &= write_output(a.json, bench_to_json(r).dump(2) + "\n", "--json");
    if (!a.html.empty()) ok &= write_output(a.html, render_html(r), "--html");
    if (!a.hgrm.empty()) ok &= write_output(a.hgrm, render_hgrm(r), "--hgrm");
    std::cout << std::flush;
    int missed = 0;
    for (const auto& t : fail_if) {
        if (auto why = threshold_unmeasured(r, t)) {
            // A gate on a figure that has no sample fails: 0 would pass `p99>20ms` unseen.
            std::cerr << fmt::format("wsx: error: --fail-if {}: {}: {}\n", t.text, t.figure, *why);
            ++missed;
        } else if (threshold_holds(r, t)) {
            std::cerr << fmt::format("wsx: error: --fail-if {}: {} was {}\n", t.text, t.figure, threshold_actual(r, t));
            ++missed;
        }
    }
    // Answers that are not what was sent are a broken server, whatever the load: exit 9 unless
    // the run is meant to count them (a fault-injecting proxy in the path).
    if (!a.allow_corrupt) {
        std::vector<std::string> bad;
        for (const char* kind : {"corrupt", "duplicate"})
            if (auto it = r.errors.find(kind); it != r.errors.end() && it->second > 0)
                bad.push_back(fmt::format("{} {}", it->second, kind));
        if (!bad.empty()) {
            std::cerr << fmt::format("wsx: error: answers that are not what was sent: {} (--allow-corrupt to count "
                                     "them without failing)\n",
                                     fmt::join(bad, ", "));
            ++missed;
        }
    }
    if (r.interrupted && !merged) return static_cast<int>(exit_code::interrupted);
    if (missed) return static_cast<int>(exit_code::expectation);
    if (!ok) return static_cast<int>(exit_code::failure);
    return 0;
}

void add_client_options(CLI::App& app, bench_args& a) {
    add_handshake_options(app, a.client);
    add_compress_options(app, a.client,
                         "Require permessage-deflate and compress every message; a server that declines it fails "
                         "the connection (exit 6 when none could be made)");
    app.add_option("--connect-timeout", a.connect_timeout, "Deadline for each connection's TCP, TLS and upgrade")
        ->group("Handshake")->type_name("DURATION")->capture_default_str();
    add_client_tls_options(app, a.client);
    add_redirect_options(app, a.client,
                         "Follow redirects of the upgrade once, before the load: every connection then opens to "
                         "the URL they lead to, so no redirect is measured");
}

runner setup_merge(CLI::App& app, std::shared_ptr<bench_args> a) {
    app.add_option("files", a->merge_inputs, "JSON results written by wsx bench --json")->type_name("FILE");
    app.add_option("--json", a->json, "Write the merged result as JSON (- for stdout)")->type_name("FILE");
    app.add_option("--html", a->html, "Write the merged HTML report")->type_name("FILE");
    app.add_option("--hgrm", a->hgrm, "Write the merged latency distribution (HdrHistogram .hgrm, microseconds)")->type_name("FILE");
    app.add_option("--fail-if", a->fail_if, "Exit 9 when this holds for the merged result (repeatable)")->type_name("EXPR");
    app.add_flag("--allow-corrupt", a->allow_corrupt, "Exit 0 even when the runs counted corrupt or duplicated answers");
    app.footer("Merges runs made at the same time on several machines: histograms add up exactly, so the\n"
               "merged percentiles are those of all samples together.");
    return [a]() -> int {
        problems p;
        if (a->merge_inputs.empty())
            p.add("no result to merge: give the JSON files of the runs, e.g. wsx bench merge a.json b.json");
        std::vector<bench_result> runs;
        for (const auto& f : a->merge_inputs) {
            std::string err;
            if (auto r = read_result(f, &err)) runs.push_back(std::move(*r));
            else p.add(err);
        }
        std::vector<threshold> fail_if;
        for (const auto& e : a->fail_if) {
            std::string err;
            if (auto t = parse_threshold(e, &err)) fail_if.push_back(*t);
            else p.add("--fail-if " + err);
        }
        check_outputs(p, *a);
        if (p.report("bench merge")) return static_cast<int>(exit_code::usage);
        bench_result m;
        try {
            m = merge_results(runs);
        } catch (const std::invalid_argument& e) {
            throw failure(exit_code::usage, fmt::format("bench merge: {}", e.what()));
        }
        return report(*a, m, fail_if, std::nullopt, !report_on_stdout(*a), true);
    };
}

}  // namespace

runner setup_bench(CLI::App& app) {
    auto a = std::make_shared<bench_args>();
    app.add_option("url", a->url, "ws://, wss:// or ws+unix:///path.sock:/resource URL of the server under test")
        ->type_name("URL");

    const char* l = "Load";
    app.add_option("-s,--scenario", a->scenario,
                   "echo (round trips), connect (handshake storm), send (fire and forget), fanout (publish/subscribe)")
        ->group(l)->type_name("NAME")->check(CLI::IsMember({"echo", "connect", "send", "fanout"}))->capture_default_str();
    app.add_option("-c,--connections", a->connections, "Connections (fanout: subscribers)")
        ->group(l)->type_name("N")->capture_default_str();
    app.add_option("--connect-rate", a->connect_rate, "Open at most this many connections per second (ramp-up)")
        ->group(l)->type_name("RATE");
    app.add_option("-d,--duration", a->duration, "Run this long (default 10s unless -n is given)")->group(l)->type_name("DURATION");
    app.add_option("-n,--messages", a->messages, "Stop after N measured messages in total (connect: handshakes)")
        ->group(l)->type_name("N");
    app.add_option("--warmup", a->warmup, "Leave out of the results what is sent during this first part of the run")
        ->group(l)->type_name("DURATION");
    app.add_option("--threads", a->threads, "Event-loop threads (default: one per core)")->group(l)->type_name("N");
    app.add_option("--in-flight", a->in_flight, "Closed loop: messages outstanding per connection (1 = ping-pong)")
        ->group(l)->type_name("N")->capture_default_str();
    app.add_option("--rate", a->rate,
                   "Open loop: send this many messages per second in total, whether or not replies have "
                   "arrived; latency counts from the intended send time (fanout: publications, default 1000)")
        ->group(l)->type_name("RATE");
    app.add_option("--rate-per-conn", a->rate_per_conn, "Open loop: messages per second per connection")
        ->group(l)->type_name("RATE");
    app.add_option("--reply-timeout", a->reply_timeout, "A connection waiting this long for a reply gives up (errors: timeout)")
        ->group(l)->type_name("DURATION")->capture_default_str();

    const char* m = "Messages";
    app.add_option("--size", a->size,
                   "Message size, stamp included (default 32; at least 32 for text, 16 for binary)")
        ->group(m)->type_name("SIZE");
    app.add_option("--payload", a->payload, "Send this text after the stamp instead of filler")->group(m)->type_name("STRING");
    app.add_option("--payload-file", a->payload_file, "Send this file's bytes after the stamp")->group(m)->type_name("FILE");
    app.add_flag("-b,--binary", a->binary, "Send binary messages (text by default)")->group(m);
    add_fragment_option(app, a->client, m);

    const char* f = "Fanout";
    app.add_option("--publishers", a->publishers, "Publishing connections")->group(f)->type_name("N")->capture_default_str();
    app.add_option("--publish-url", a->publish_url, "Where publishers connect (default: the URL)")->group(f)->type_name("URL");
    app.add_option("--subscribe-message", a->subscribe_messages, "Sent by each subscriber once connected (repeatable)")
        ->group(f)->type_name("MSG");
    app.add_flag("--unbatch", a->unbatch,
                 "Each frame a subscriber receives is a JSON array of text messages (a relay's ?batch=N,INTERVAL): "
                 "every element counts as one delivery")
        ->group(f);
    app.add_option("--settle", a->settle, "Pause between the last subscriber connecting and the first publication")
        ->group(f)->type_name("DURATION")->capture_default_str();

    add_client_options(app, *a);

    const char* r = "Reports";
    app.add_option("--json", a->json, "Write the result as JSON, schema wsx.bench.v1 (- for stdout)")->group(r)->type_name("FILE");
    app.add_option("--html", a->html, "Write a self-contained HTML report with plots")->group(r)->type_name("FILE");
    app.add_option("--hgrm", a->hgrm, "Write the latency distribution in HdrHistogram's .hgrm format (microseconds)")
        ->group(r)->type_name("FILE");
    app.add_option("--compare", a->compare, "Print the change of every figure against a JSON result")->group(r)->type_name("FILE");
    app.add_option("--fail-if", a->fail_if,
                   "Exit 9 when this holds, e.g. p99>20ms, errors>0, rate<50k, connect_fail>1% (repeatable)")
        ->group(r)->type_name("EXPR");
    app.add_flag("--allow-corrupt", a->allow_corrupt,
                 "Exit 0 even when echoes or deliveries were corrupt or duplicated (counted either way; without "
                 "this they exit 9)")
        ->group(r);
    app.add_flag("--no-progress", a->no_progress, "No live progress line on a terminal")->group(r);

    const char* s = "Rate search";
    app.add_flag("--find-max-rate", a->find_max, "Search the highest open-loop rate meeting --target (starts at --rate)")->group(s);
    app.add_option("--target", a->targets, "Condition each rate must meet, e.g. 'p99<10ms' (repeatable)")->group(s)->type_name("EXPR");

    app.footer(
        "Examples:\n"
        "  wsx bench ws://127.0.0.1:8080/ -c 100 -d 10s                 # ping-pong, 100 connections\n"
        "  wsx bench ws://127.0.0.1:8080/ -c 100 --in-flight 32         # pipelined: maximum rate\n"
        "  wsx bench ws://127.0.0.1:8080/ --rate 20k --fail-if 'p99>5ms' # open loop, CI gate\n"
        "  wsx bench ws://127.0.0.1:8080/ -s connect -c 50 -n 5000      # handshake storm\n"
        "  wsx bench ws://127.0.0.1:8080/ --compress --size 4KiB        # deflate: needs serve --compress\n"
        "  wsx bench ws+unix:///run/app.sock:/ws -c 10                  # over a unix socket\n"
        "  wsx bench ws://127.0.0.1:8080/ --find-max-rate --target 'p99<10ms' -d 5s\n"
        "  wsx bench merge a.json b.json --html all.html                # runs from several machines\n"
        "\nFigures for --fail-if, --target and --compare: min p50 p90 p99 p99.9 p99.99 max mean\n"
        "handshake_p50 handshake_p99 handshake_max rate send_rate rx_bytes tx_bytes errors connect_fail\n"
        "connections delivery cpu cpu_per_msg. rate is messages received per second (fanout: deliveries,\n"
        "connect: handshakes completed); in the send scenario it is messages sent per second, a message\n"
        "counting as sent once written to the socket. A threshold on a latency or handshake figure that\n"
        "has no sample fails, e.g. 'p99: no message was answered'.\n"
        "\nError kinds: timeout (no echo within --reply-timeout), corrupt (stamp or body not as sent),\n"
        "out_of_order (an echo that came after later ones; still received and measured), duplicate\n"
        "(one answered already), lost (fanout: a delivery that never came), backlog (open loop: a send\n"
        "skipped, 16MiB being queued already), stalled (a write took no data for --reply-timeout or was\n"
        "stuck when -d ended; once per connection), closed_by_server, unanswered (outstanding when the\n"
        "connection ended), disconnected, read, write, protocol, inflate.\n"
        "\nJSON (--json, schema wsx.bench.v1): schema, generator, started_at, runs, interrupted, config\n"
        "(what was asked: scenario, url, publish_url, connections, publishers, connect_rate, duration_s,\n"
        "messages, warmup_s, threads, in_flight, rate, message_size, binary, compress), elapsed_s (the\n"
        "measured window), connections {attempted, established, failed, errors, extensions, handshake},\n"
        "messages {sent, received, expected, bytes_sent, bytes_received,\n"
        "wire_bytes_sent, wire_bytes_received, send_rate, rate}, latency {unit, min, p50, p90, p99, p99.9,\n"
        "p99.99, max, mean, stddev, histogram}, errors, close_codes, cpu {user_s, system_s, wall_s,\n"
        "utilisation, per_message_ns}, series (per second: t, length_s, sent, received, errors,\n"
        "bytes_sent, bytes_received, p50, p99, max, histogram), find_max_rate, warnings. Times in ns.\n"
        "\nExit status: 0 ok, 1 other failure (e.g. a report file could not be written), 2 usage,\n"
        "3 resolve, 4 connect, 5 TLS, 6 upgrade rejected or, with --compress, permessage-deflate declined\n"
        "(when no connection could be made), 8 timeout, 9 a --fail-if threshold held, an answer was corrupt\n"
        "or duplicated (unless --allow-corrupt), or no rate met --target, 130 interrupted (bench merge never exits 130: it says when an input was).");

    CLI::App* merge = app.add_subcommand("merge", "Merge JSON results of several runs into one report");
    runner merge_run = setup_merge(*merge, a);
    auto merge_chosen = std::make_shared<bool>(false);
    merge->callback([merge_chosen] { *merge_chosen = true; });

    return [a, merge_run, merge_chosen]() -> int {
        if (*merge_chosen) return merge_run();
        problems p;
        bench_options o;
        std::string err;
        if (a->url.empty()) p.add("bench needs a URL, e.g. wsx bench ws://127.0.0.1:8080/");
        else if (auto ep = parse_ws_url(a->url, &err)) o.client.url = *ep;
        else p.add(err);
        if (o.client.url.is_unix() && o.client.url.tls) p.add("wss+unix:// is not supported: use ws+unix://");

        if (auto sc = parse_scenario(a->scenario)) o.scenario = *sc;
        else p.add(fmt::format("--scenario '{}': expected echo, connect, send or fanout", a->scenario));
        o.connections = unsigned(count_arg(p, "-c/--connections", a->connections, 1, 10'000'000, "10"));
        o.connect_rate = rate_arg(p, "--connect-rate", a->connect_rate);
        o.duration = duration_arg(p, "--duration", a->duration);
        if (!a->duration.empty() && o.duration.count() == 0 && parse_duration(a->duration))
            p.add("--duration must be greater than 0");
        o.messages = count_arg(p, "-n/--messages", a->messages, 1, 1'000'000'000'000'000'000, "a run of --duration");
        if (a->duration.empty() && a->messages.empty()) o.duration = std::chrono::seconds(a->find_max ? 5 : 10);
        o.warmup = duration_arg(p, "--warmup", a->warmup);
        if (o.duration.count() > 0 && o.warmup >= o.duration) p.add("--warmup must be shorter than --duration");
        unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        o.threads = a->threads.empty() ? cores : unsigned(count_arg(p, "--threads", a->threads, 1, 1024, "one per core"));
        o.in_flight = unsigned(count_arg(p, "--in-flight", a->in_flight, 1, 1'000'000, "1"));
        if (!a->rate.empty() && !a->rate_per_conn.empty()) p.add("--rate and --rate-per-conn cannot be combined");
        o.rate = rate_arg(p, "--rate", a->rate);
        if (!a->rate_per_conn.empty()) {
            o.rate = rate_arg(p, "--rate-per-conn", a->rate_per_conn);
            o.rate_per_conn = true;
        }
        if (o.rate > 0 && a->in_flight != "1") p.add("--in-flight is for the closed loop; it cannot be combined with --rate");
        if (o.scenario == bench_scenario::connect && o.rate > 0)
            p.add("--rate does not apply to the connect scenario; use --connect-rate");
        // Options a scenario has no use for are refused rather than ignored.
        if (a->in_flight != "1" && o.scenario == bench_scenario::fanout)
            p.add("--in-flight does not apply to -s fanout: publishers send at --rate (1000/s in total by default)");
        if (a->in_flight != "1" && o.scenario == bench_scenario::send)
            p.add("--in-flight does not apply to -s send: it sends as fast as the server takes data, or at --rate");
        if (a->in_flight != "1" && o.scenario == bench_scenario::connect)
            p.add("--in-flight does not apply to -s connect: it sends no messages; -c sets the handshakes in progress");
        if (o.scenario == bench_scenario::connect) {
            for (const auto& [given, name] : {std::pair{!a->size.empty(), "--size"}, std::pair{a->binary, "--binary"},
                                              std::pair{!a->payload.empty(), "--payload"},
                                              std::pair{!a->payload_file.empty(), "--payload-file"},
                                              std::pair{!a->client.fragment.empty(), "--fragment"}})
                if (given) p.add(fmt::format("{} does not apply to -s connect: it sends no messages", name));
        }
        o.reply_timeout = duration_arg(p, "--reply-timeout", a->reply_timeout);
        if (o.reply_timeout.count() == 0) p.add("--reply-timeout must be greater than 0");

        o.binary = a->binary;
        const std::size_t stamp = message_stamp::size(o.binary);
        int payload_sources = !a->size.empty() + !a->payload.empty() + !a->payload_file.empty();
        if (payload_sources > 1) p.add("--size, --payload and --payload-file cannot be combined");
        if (!a->payload.empty()) {
            o.body = a->payload;
        } else if (!a->payload_file.empty()) {
            std::ifstream in(a->payload_file, std::ios::binary);
            if (!in) p.add(fmt::format("--payload-file {}: cannot read the file", a->payload_file));
            std::stringstream ss;
            ss << in.rdbuf();
            o.body = ss.str();
        } else {
            std::uint64_t size = a->size.empty() ? 32 : size_arg(p, "--size", a->size);
            if (!a->size.empty() && parse_size(a->size) && size < stamp)
                p.add(fmt::format("--size must be at least {} bytes for {} messages: each carries a sequence number and "
                                  "a timestamp",
                                  stamp, o.binary ? "binary" : "text"));
            else if (size > (64u << 20))
                p.add("--size is limited to 64MiB");
            else if (size >= stamp)
                o.body = filler(std::size_t(size - stamp), o.binary);
        }
        if (!o.binary && !is_valid_utf8(o.body)) p.add("the payload is not valid UTF-8: add --binary");

        o.publishers = unsigned(count_arg(p, "--publishers", a->publishers, 1, 10'000'000, "1"));
        o.publish_url = a->publish_url;
        if (!a->publish_url.empty()) {
            if (auto pu = parse_ws_url(a->publish_url, &err); !pu) p.add("--publish-url: " + err);
            else if (pu->is_unix() && pu->tls) p.add("--publish-url: wss+unix:// is not supported: use ws+unix://");
        }
        o.subscribe_messages = a->subscribe_messages;
        o.unbatch = a->unbatch;
        o.settle = duration_arg(p, "--settle", a->settle);
        if (o.scenario == bench_scenario::fanout && o.duration.count() > 0 && o.settle >= o.duration)
            p.add("--settle must be shorter than --duration: publishing starts only after it");
        if (o.scenario == bench_scenario::fanout && o.rate == 0) o.rate = 1000;
        if (o.scenario != bench_scenario::fanout &&
            (!a->publish_url.empty() || !a->subscribe_messages.empty() || a->publishers != "1" || a->unbatch))
            p.add("--publishers, --publish-url, --subscribe-message and --unbatch need --scenario fanout");
        if (a->unbatch && a->binary)
            p.add("--unbatch reads batches of text messages: drop --binary (a batch holds binary messages as base64 objects)");

        apply_client_options(p, a->client, o.client);
        if (o.client.url.is_unix() && !a->client.proxy.empty())
            p.add("--proxy cannot be used with a ws+unix:// URL: a unix socket is reached directly");
        o.client.connect_timeout = duration_arg(p, "--connect-timeout", a->connect_timeout);
        if (o.client.connect_timeout.count() == 0) p.add("--connect-timeout must be greater than 0");

        std::vector<threshold> fail_if, targets;
        for (const auto& e : a->fail_if) {
            if (auto t = parse_threshold(e, &err)) fail_if.push_back(*t);
            else p.add("--fail-if " + err);
        }
        for (const auto& e : a->targets) {
            if (auto t = parse_threshold(e, &err)) targets.push_back(*t);
            else p.add("--target " + err);
        }
        if (a->find_max) {
            if (targets.empty()) p.add("--find-max-rate needs --target, e.g. --target 'p99<10ms'");
            if (o.scenario != bench_scenario::echo) p.add("--find-max-rate works with the echo scenario");
            if (o.duration.count() == 0) p.add("--find-max-rate runs each step for --duration; -n cannot be used");
        } else if (!targets.empty()) {
            p.add("--target is for --find-max-rate; use --fail-if to gate a single run");
        }
        std::optional<bench_result> baseline;
        if (!a->compare.empty()) {
            if (auto b = read_result(a->compare, &err)) baseline = std::move(*b);
            else p.add("--compare " + err);
        }
        check_outputs(p, *a);
        if (p.report("bench")) return static_cast<int>(exit_code::usage);

        const bool tty = ::isatty(2) == 1 && !a->no_progress;
        if (tty) {
            o.on_progress = [](const bench_progress& pr) {
                std::cerr << fmt::format("\r\x1b[K{:6.1f}s  conns {}{}  sent {}  received {}  {:.0f} msg/s  p99 {}  errors {}",
                                         pr.elapsed_s, pr.established, pr.failed ? fmt::format(" ({} failed)", pr.failed) : "",
                                         pr.sent, pr.received, pr.rate,
                                         format_duration(std::chrono::nanoseconds(pr.p99_ns)), pr.errors)
                          << std::flush;
            };
        }
        if (o.client.redirects.follow) {
            const std::string given = o.client.url.to_string();
            o.client = settle_redirects(o.client);
            if (o.client.url.to_string() != given)
                std::cerr << fmt::format("wsx: {} redirects to {}: every connection opens there\n", given,
                                         o.client.url.to_string());
        }
        std::pair<int, std::string> first_failure{0, {}};
        bench_result result;
        if (a->find_max) {
            rate_search_options rs;
            if (o.rate > 0) rs.start_rate = o.rate_per_conn ? o.rate * o.connections : o.rate;
            result = find_max_rate(o, targets, rs, [tty](const rate_step& st) {
                if (tty) std::cerr << "\r\x1b[K";
                std::cerr << fmt::format("rate {:.0f}/s: achieved {:.0f}/s, p99 {}, errors {} → {}\n", st.rate, st.achieved,
                                         format_duration(std::chrono::nanoseconds(st.p99_ns)), st.errors,
                                         st.ok ? "ok" : "missed");
            }, &first_failure);
        } else {
            result = run_bench(o, &first_failure);
        }
        if (tty) std::cerr << "\r\x1b[K" << std::flush;
        result.generator = "wsx " + build_identity();
        if (result.conn_established == 0 && first_failure.first != 0 && !result.interrupted) {
            std::cerr << fmt::format("wsx: error: no connection could be made ({} attempted): {}\n", result.conn_attempted,
                                     first_failure.second);
            return first_failure.first;
        }
        for (const auto& w : result.warnings) std::cerr << "wsx: warning: " << w << '\n';
        int rc = report(*a, result, fail_if, baseline, !report_on_stdout(*a));
        if (a->find_max && !result.max_rate && rc == 0) {
            std::cerr << "wsx: error: --find-max-rate: no rate tried met the target\n";
            rc = static_cast<int>(exit_code::expectation);
        }
        return rc;
    };
}

}  // namespace wsx::cli
