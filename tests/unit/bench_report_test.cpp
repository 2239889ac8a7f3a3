// Renderers against golden files, the JSON form, merging and thresholds.
// Set WSX_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change: that run
// writes them and fails, so that only a second run without it (and a look at the diff) passes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "bench_report.hpp"

using namespace wsx;

namespace {

// The golden files live in the source tree. __FILE__ may be relative to wherever the compiler
// ran (ccache rewrites paths), so also look upwards from the working directory and the binary.
std::filesystem::path golden_dir() {
    namespace fs = std::filesystem;
    const fs::path rel = fs::path("tests") / "data" / "bench";
    std::vector<fs::path> starts;
    if (const char* src = std::getenv("WSX_SOURCE_DIR")) starts.emplace_back(src);
    if (fs::path f(__FILE__); f.is_absolute()) starts.push_back(f.parent_path().parent_path().parent_path());
    std::error_code ec;
    starts.push_back(fs::current_path(ec));
    starts.push_back(fs::read_symlink("/proc/self/exe", ec).parent_path());
    for (auto start : starts) {
        for (fs::path p = start; !p.empty(); p = p.parent_path()) {
            if (fs::is_directory(p / rel, ec)) return p / rel;
            if (p == p.root_path()) break;
        }
    }
    return rel;
}

void check_golden(const std::string& name, const std::string& actual) {
    const auto path = golden_dir() / name;
    if (std::getenv("WSX_UPDATE_GOLDEN")) {
        std::ofstream out(path, std::ios::binary);
        out << actual;
        out.close();
        REQUIRE(out.good());
        // An update proves nothing about the renderer: fail, so that passing takes a second
        // run that compares against what was written.
        FAIL("rewrote " << path.string() << " (WSX_UPDATE_GOLDEN is set): review the diff, then run again without it");
    }
    std::ifstream in(path, std::ios::binary);
    INFO("golden file " << path.string());
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    CHECK(actual == ss.str());
}

// One second's round-trip times, ns: the 40 quantiles at (k + 0.5) / 40 of a lognormal with
// median 50us and sigma 0.5, written out so that the golden files do not depend on how a
// standard library implements its random distributions.
constexpr std::uint64_t latency_table[] = {
    16'303, 20'528, 23'219, 25'378, 27'258, 28'969, 30'567, 32'087,
    33'553, 34'982, 36'386, 37'776, 39'159, 40'543, 41'935, 43'341,
    44'767, 46'218, 47'701, 49'223, 50'790, 52'410, 54'092, 55'845,
    57'682, 59'615, 61'662, 63'842, 66'180, 68'707, 71'465, 74'508,
    77'913, 81'789, 86'300, 91'716, 98'512, 107'671, 121'785, 153'350,
};
constexpr std::size_t latency_rows = sizeof latency_table / sizeof latency_table[0];

// A result with fixed figures: what a 3-second echo run could have measured.
bench_result sample_result() {
    bench_result r;
    r.config.scenario = "echo";
    r.config.url = "ws://127.0.0.1:8080/";
    r.config.connections = 4;
    r.config.duration_s = 3;
    r.config.warmup_s = 1;
    r.config.threads = 2;
    r.config.in_flight = 8;
    r.config.message_size = 32;
    r.started_at = "2024-05-01T12:00:00Z";
    r.generator = "wsx 0.0.0-test";
    r.elapsed_s = 2.0;
    r.conn_attempted = 5;
    r.conn_established = 4;
    r.conn_failed = 1;
    r.connect_errors["refused"] = 1;
    for (std::uint64_t v : {800'000u, 900'000u, 1'000'000u, 1'200'000u}) r.handshake.record(v);
    for (int s = 0; s < 3; ++s) {
        bench_interval iv;
        iv.start_s = s;
        // 1000 samples a second, cycling through the table; each second 5% slower than the
        // one before, and the first 30 samples of the last second 20ms late (a stall).
        for (int i = 0; i < 1000; ++i) {
            const std::uint64_t base = latency_table[std::size_t(i) % latency_rows] * std::uint64_t(20 + s) / 20;
            auto v = base + (s == 2 && i < 30 ? 20'000'000u : 0u);
            iv.latency.record(v);
            if (s > 0) r.latency.record(v);
        }
        iv.sent = iv.received = 1000;
        iv.bytes_sent = iv.bytes_received = 32'000;
        r.series.push_back(std::move(iv));
    }
    r.sent = 2001;
    r.received = 2000;
    r.bytes_sent = 2001 * 32;
    r.bytes_received = 2000 * 32;
    r.errors["timeout"] = 1;
    r.close_codes[1000] = 4;
    r.cpu_user_s = 0.5;
    r.cpu_system_s = 0.25;
    r.cpu_wall_s = 3.0;
    return r;
}

}  // namespace

TEST_CASE("text report matches the golden file", "[bench][bench_report]") {
    check_golden("report.txt", render_text(sample_result()));
}

TEST_CASE("text report of a handshake storm and a rate search", "[bench][bench_report]") {
    bench_result r = sample_result();
    r.config.scenario = "connect";
    r.config.connect_rate = 500;
    r.errors.clear();
    r.find_max_steps = {{1000, 999.5, 40'000, 90'000, 120'000, 0, true}, {2000, 1500, 40'000, 30'000'000, 50'000'000, 0, false}};
    r.max_rate = 1000;
    r.warnings.push_back("the generator used 95% of its 2 thread(s)");
    check_golden("report_connect.txt", render_text(r));
}

TEST_CASE("HTML report matches the golden file and holds every plot", "[bench][bench_report]") {
    const std::string html = render_html(sample_result());
    check_golden("report.html", html);
    for (const char* id : {"plot-percentiles", "plot-histogram", "plot-throughput", "plot-bytes", "plot-p99"})
        CHECK(html.find(std::string("id=\"") + id + "\"") != std::string::npos);
    CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));  // no other URL: no network
    CHECK(html.find("<polyline") != std::string::npos);
}

TEST_CASE("compare report matches the golden file", "[bench][bench_report]") {
    bench_result base = sample_result();
    bench_result cur = sample_result();
    cur.received = 2400;
    cur.errors.clear();
    for (int i = 0; i < 500; ++i) cur.latency.record(10'000'000);
    check_golden("compare.txt", render_compare(base, cur));
}

TEST_CASE("hgrm output is the latency histogram's, in microseconds", "[bench][bench_report]") {
    bench_result r = sample_result();
    CHECK(render_hgrm(r) == r.latency.to_hgrm(1e3));
    check_golden("latency.hgrm", render_hgrm(r));
}

TEST_CASE("JSON round trip keeps every field", "[bench][bench_report]") {
    bench_result r = sample_result();
    r.find_max_steps = {{1000, 999.5, 40'000, 90'000, 120'000, 0, true}};
    r.max_rate = 1000;
    r.warnings = {"w"};
    const auto j = bench_to_json(r);
    CHECK(j["schema"] == "wsx.bench.v1");
    CHECK(j["latency"]["p99"] == r.latency.value_at_percentile(99));
    bench_result back = bench_from_json(nlohmann::json::parse(j.dump()));
    CHECK(bench_to_json(back) == j);
    CHECK(back.latency == r.latency);
    CHECK(back.handshake == r.handshake);
    CHECK(back.series.size() == 3);
    CHECK(back.series[2].latency == r.series[2].latency);
    CHECK(back.close_codes == r.close_codes);
    CHECK(back.connect_errors == r.connect_errors);
    CHECK(back.max_rate == r.max_rate);
    check_golden("result.json", j.dump() + "\n");
}

TEST_CASE("JSON reader names the problem", "[bench][bench_report]") {
    auto j = bench_to_json(sample_result());
    auto wrong = j;
    wrong["schema"] = "wsx.bench.v0";
    CHECK_THROWS_WITH(bench_from_json(wrong), Catch::Contains("unsupported schema"));
    auto missing = j;
    missing["messages"].erase("sent");
    CHECK_THROWS_WITH(bench_from_json(missing), Catch::Contains("\"sent\""));
    auto bad_hist = j;
    bad_hist["latency"]["histogram"]["sub_bucket_count"] = 3;
    CHECK_THROWS_WITH(bench_from_json(bad_hist), Catch::Contains("histogram"));
}

TEST_CASE("merging runs gives the percentiles of one combined run", "[bench][bench_report]") {
    std::mt19937_64 rng(11);
    std::exponential_distribution<double> fast(1.0 / 40'000), slow(1.0 / 3'000'000);
    bench_result a = sample_result(), b = sample_result();
    a.latency.reset();
    b.latency.reset();
    histogram combined;
    for (int i = 0; i < 20000; ++i) {
        auto v = std::uint64_t(fast(rng)) + 1;
        a.latency.record(v);
        combined.record(v);
    }
    for (int i = 0; i < 5000; ++i) {
        auto v = std::uint64_t(slow(rng)) + 1;
        b.latency.record(v);
        combined.record(v);
    }
    b.elapsed_s = 2.5;
    b.errors["corrupt"] = 2;
    // Through JSON, as `wsx bench merge` does.
    auto m = merge_results({bench_from_json(bench_to_json(a)), bench_from_json(bench_to_json(b))});
    CHECK(m.latency == combined);
    for (double p : {50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) CHECK(m.latency.value_at_percentile(p) == combined.value_at_percentile(p));
    CHECK(m.runs == 2);
    CHECK(m.sent == a.sent + b.sent);
    CHECK(m.received == a.received + b.received);
    CHECK(m.conn_established == 8);
    CHECK(m.config.connections == 8);
    CHECK(m.elapsed_s == 2.5);
    CHECK(m.errors.at("timeout") == 2);
    CHECK(m.errors.at("corrupt") == 2);
    CHECK(m.series[1].latency.count() == 2000);
    CHECK_THROWS(merge_results({}));
    b.config.scenario = "connect";
    CHECK_THROWS_WITH(merge_results({a, b}), Catch::Contains("cannot merge runs of different scenarios (echo and connect)"));
}

TEST_CASE("one latency value gives one distribution row; one message is singular", "[bench][bench_report]") {
    bench_result r = sample_result();
    r.config.messages = 1;
    r.config.duration_s = 0;
    r.latency.reset();
    r.latency.record(2'000'000);
    const std::string text = render_text(r);
    CHECK_THAT(text, Catch::Contains(", 1 message (warmup"));
    CHECK_THAT(text, Catch::Contains("Round-trip latency (1 sample)\n"));
    const auto at = text.find("Latency distribution\n");
    REQUIRE(at != std::string::npos);
    const auto rows = text.substr(at, text.find("\n\n", at) - at);
    CHECK(std::count(rows.begin(), rows.end(), '\n') == 1);  // the title, then one row
    CHECK_THAT(rows, Catch::Contains("2ms - 2ms"));
    r.config.scenario = "connect";
    CHECK_THAT(render_text(r), Catch::Contains(", 1 handshake (warmup"));
    CHECK_THAT(render_html(r), Catch::Contains("class=\"bar\""));
}

namespace {
// The points="..." of the first polyline with class `cls` inside the plot `id`.
std::vector<std::pair<double, double>> plot_points(const std::string& html, const std::string& id, const std::string& cls) {
    const auto plot = html.find("id=\"" + id + "\"");
    const auto line = html.find("<polyline class=\"" + cls + "\"", plot);
    const auto from = html.find("points=\"", line) + 8;
    std::istringstream in(html.substr(from, html.find('"', from) - from));
    std::vector<std::pair<double, double>> pts;
    double x, y;
    char comma;
    while (in >> x >> comma >> y) pts.emplace_back(x, y);
    return pts;
}

// Every point of the lines (and lone points) with class `cls` inside the plot `id`, in order.
std::vector<std::pair<double, double>> all_points(const std::string& html, const std::string& id, const std::string& cls) {
    const auto plot = html.find("id=\"" + id + "\"");
    const auto end = html.find("</svg>", plot);
    std::vector<std::pair<double, double>> pts;
    for (auto at = html.find("<polyline class=\"" + cls + "\"", plot); at < end;
         at = html.find("<polyline class=\"" + cls + "\"", at + 1)) {
        const auto from = html.find("points=\"", at) + 8;
        std::istringstream in(html.substr(from, html.find('"', from) - from));
        double x, y;
        char comma;
        while (in >> x >> comma >> y) pts.emplace_back(x, y);
    }
    return pts;
}

// The value of attribute `name` of the first element that starts with `tag` inside the plot `id`.
std::string attribute(const std::string& html, const std::string& id, const std::string& tag, const std::string& name) {
    const auto plot = html.find("id=\"" + id + "\"");
    const auto at = html.find(tag, plot);
    if (at == std::string::npos || at > html.find("</svg>", plot)) return "(no " + tag + ")";
    const auto close = html.find('>', at);
    const auto attr = html.find(" " + name + "=\"", at);
    if (attr == std::string::npos || attr > close) return "";
    const auto from = attr + name.size() + 3;
    return html.substr(from, html.find('"', from) - from);
}
}  // namespace

TEST_CASE("time plots leave out the last partial second; a run shorter than one is scaled", "[bench][bench_report]") {
    bench_result r = sample_result();
    r.series.resize(3);
    for (auto& i : r.series) i.sent = i.received = 1000;
    r.series[2].sent = r.series[2].received = 20;  // the end of the run: a few replies drained
    r.series[2].length_s = 0.1;
    const std::string html = render_html(r);
    for (const char* id : {"plot-throughput", "plot-bytes"}) {
        auto pts = plot_points(html, id, "line received");
        REQUIRE(pts.size() == 2);  // not three, the last a drop to a fifth
        CHECK(pts[0].second == pts[1].second);
        CHECK(all_points(html, id, "line sent").size() == 2);
    }
    CHECK(all_points(html, "plot-p99", "line p99").size() == 2);
    CHECK_THAT(html, Catch::Contains("The last, partial second"));
    CHECK(bench_from_json(bench_to_json(r)).series[2].length_s == 0.1);
    CHECK(merge_results({r, r}).series[2].length_s == 0.1);

    // A run shorter than a second: one interval, scaled to its length and drawn as a point.
    r.series.resize(1);
    r.series[0].length_s = 0.4;
    r.series[0].sent = r.series[0].received = 400;
    const std::string short_run = render_html(r);
    const auto plot = short_run.find("id=\"plot-throughput\"");
    CHECK(short_run.find("<circle class=\"point line received\"", plot) < short_run.find("</svg>", plot));
    r.series[0].length_s = 1;
    r.series[0].sent = r.series[0].received = 1000;
    const auto scaled = plot_points(short_run, "plot-throughput", "line received");
    const auto whole = plot_points(render_html(r), "plot-throughput", "line received");
    REQUIRE(scaled.size() == 1);
    REQUIRE(whole.size() == 1);
    CHECK(scaled[0].second == whole[0].second);  // 400 in 0.4s: 1000/s, as 1000 in a second
}

TEST_CASE("sent and received are drawn so that both show where they coincide", "[bench][bench_report]") {
    const std::string html = render_html(sample_result());  // sent = received every second
    for (const char* id : {"plot-throughput", "plot-bytes"}) {
        INFO(id);
        REQUIRE(plot_points(html, id, "line sent") == plot_points(html, id, "line received"));
        const auto sent = "<polyline class=\"line sent\"", received = "<polyline class=\"line received\"";
        CHECK(attribute(html, id, sent, "stroke") != attribute(html, id, received, "stroke"));
        CHECK(attribute(html, id, sent, "stroke-dasharray") != "");
        CHECK(attribute(html, id, received, "stroke-dasharray") == "");
        // The solid line is wider and drawn first: the dashed one on top leaves it visible.
        CHECK(std::stod(attribute(html, id, received, "stroke-width")) > std::stod(attribute(html, id, sent, "stroke-width")));
        const auto plot = html.find(std::string("id=\"") + id + "\"");
        CHECK(html.find(received, plot) < html.find(sent, plot));
        // A legend whose keys are drawn as the lines are.
        CHECK(attribute(html, id, "<line class=\"key sent\"", "stroke-dasharray") == attribute(html, id, sent, "stroke-dasharray"));
        CHECK(attribute(html, id, "<line class=\"key received\"", "stroke") == attribute(html, id, received, "stroke"));
        CHECK(attribute(html, id, "<text class=\"legend sent\"", "x") != "(no <text class=\"legend sent\")");
    }
    // The CSS does not override the lines' own attributes.
    const auto style = html.substr(html.find("<style>"), html.find("</style>") - html.find("<style>"));
    CHECK(style.find(".sent{") == std::string::npos);
    CHECK(style.find(".received{") == std::string::npos);
    CHECK(style.find(".line{") == std::string::npos);
}

TEST_CASE("sent and received are each drawn from their own series", "[bench][bench_report]") {
    bench_result r = sample_result();
    for (auto& i : r.series) {
        i.sent = 1000;
        i.received = 600;
        i.bytes_sent = 32'000;
        i.bytes_received = 19'200;
    }
    const std::string html = render_html(r);
    const double bottom = 300 - 45;  // the x axis: the plots' y of the value 0
    for (const char* id : {"plot-throughput", "plot-bytes"}) {
        INFO(id);
        const auto sent = plot_points(html, id, "line sent");
        const auto received = plot_points(html, id, "line received");
        REQUIRE(sent.size() == 3);
        REQUIRE(received.size() == 3);
        for (std::size_t k = 0; k < 3; ++k) {
            CHECK(sent[k].first == received[k].first);
            CHECK(sent[k].second >= 20);
            CHECK(sent[k].second < received[k].second);  // sent above received (y grows downwards)
            // Heights above the axis stand as the values do: 600 / 1000, 19200 / 32000.
            CHECK((bottom - received[k].second) / (bottom - sent[k].second) == Approx(0.6).margin(0.002));
        }
    }
}

TEST_CASE("byte figures and series carry their unit", "[bench][bench_report]") {
    const std::string html = render_html(sample_result());
    CHECK_THAT(html, Catch::Contains("<tr><th>rx_bytes</th><td>0.03 MB/s</td></tr>"));
    CHECK_THAT(html, Catch::Contains("<tr><th>tx_bytes</th><td>0.03 MB/s</td></tr>"));
    CHECK_THAT(html, Catch::Contains("<figcaption>Payload bytes over time (MB/s)</figcaption>"));
    const auto plot = html.find("id=\"plot-bytes\"");
    CHECK(html.find(">MB/s</text>", plot) < html.find("</svg>", plot));  // the y axis
    CHECK_THAT(html, Catch::Contains("in MB/s (10<sup>6</sup> bytes per second)"));
    // 32,000 bytes a second: the line stands at 0.032 on an axis that ends at 0.05.
    const auto pts = plot_points(html, "plot-bytes", "line received");
    REQUIRE(pts.size() == 3);
    CHECK(pts[0].second == Approx(20 + (1 - 0.032 / 0.05) * (300 - 20 - 45)).margin(0.06));
}

TEST_CASE("a second with too few latency samples has no latency point", "[bench][bench_report]") {
    bench_result r = sample_result();
    r.series.resize(3);
    bench_interval sparse;  // a second between two busy ones: a handful of slow answers
    sparse.start_s = 3;
    for (std::uint64_t k = 0; k + 1 < min_latency_samples; ++k) sparse.latency.record(50'000'000);
    bench_interval enough = sparse;
    enough.start_s = 4;
    enough.latency.record(50'000'000);  // exactly the minimum
    bench_interval last = r.series[0];
    last.start_s = 5;
    r.series.push_back(sparse);
    r.series.push_back(enough);
    r.series.push_back(last);
    r.series[1].latency.reset();  // no sample at all
    const std::string html = render_html(r);
    const auto p99 = all_points(html, "plot-p99", "line p99");
    // Seconds 0, 2, 4 and 5: not 1 (none) nor 3 (too few); the line breaks at each.
    REQUIRE(p99.size() == 4);
    CHECK(all_points(html, "plot-p99", "line p50").size() == 4);
    const auto plot = html.find("id=\"plot-p99\"");
    std::size_t lines = 0;
    for (auto at = html.find("<polyline class=\"line p99\"", plot); at < html.find("</svg>", plot);
         at = html.find("<polyline class=\"line p99\"", at + 1))
        ++lines;
    CHECK(lines == 3);  // [0], [2], [4 5]
    // Second 4's point is there, at 50ms: the axis reaches it.
    CHECK(p99[2].second < p99[0].second);
    CHECK_THAT(html, Catch::Contains(fmt::format("fewer than {} latency samples", min_latency_samples)));

    // Only sparse seconds: no line at all, and the plot says so.
    r.series = {sparse};
    r.series[0].start_s = 0;
    r.series[0].length_s = 1;
    const std::string empty = render_html(r);
    CHECK(all_points(empty, "plot-p99", "line p99").empty());
    const auto e = empty.find("id=\"plot-p99\"");
    CHECK(empty.find("no samples", e) < empty.find("</svg>", e));
}

TEST_CASE("compare names every configuration field in which the runs differ", "[bench][bench_report]") {
    bench_result base = sample_result(), cur = sample_result();
    CHECK(config_differences(base.config, cur.config).empty());
    CHECK(render_compare(base, cur).find("differ") == std::string::npos);
    cur.config.connections = 40;
    cur.config.rate = 5000;
    cur.config.in_flight = 0;
    cur.config.message_size = 1024;
    cur.config.compress = true;
    cur.config.url = "ws://127.0.0.1:9090/";
    const auto d = config_differences(base.config, cur.config);
    REQUIRE(d.size() == 6);
    auto has = [&](const char* f, const char* b, const char* c) {
        for (const auto& x : d)
            if (x.field == f) return x.baseline == b && x.current == c;
        return false;
    };
    CHECK(has("url", "ws://127.0.0.1:8080/", "ws://127.0.0.1:9090/"));
    CHECK(has("connections", "4", "40"));
    CHECK(has("in_flight", "8", "0"));
    CHECK(has("rate", "0/s (closed loop)", "5000/s"));
    CHECK(has("message_size", "32 B", "1024 B"));
    CHECK(has("compress", "false", "true"));
    CHECK(d.front().field == "url");  // in the JSON's order
    const std::string cmp = render_compare(base, cur);
    CHECK_THAT(cmp, Catch::StartsWith("Compared with the baseline (echo ws://127.0.0.1:8080/, 2024-05-01T12:00:00Z)\n"
                                      "  the configurations differ (url, connections, in_flight, rate, message_size, "
                                      "compress): a change may come from the load asked, not the server\n"
                                      "  figure "));
    // Every field of the JSON's config is compared.
    const auto fields = bench_to_json(base)["config"];
    for (const auto& [key, value] : fields.items()) {
        auto j = bench_to_json(base);
        if (value.is_string()) j["config"][key] = value.get<std::string>() + "x";
        else if (value.is_boolean()) j["config"][key] = !value.get<bool>();
        else if (value.is_number_integer()) j["config"][key] = value.get<std::uint64_t>() + 1;
        else j["config"][key] = value.get<double>() + 0.5;
        const auto changed = config_differences(base.config, bench_from_json(j).config);
        INFO(key);
        REQUIRE(changed.size() == 1);
        CHECK(changed[0].field == key);
    }
}

TEST_CASE("a merge with an interrupted input says so", "[bench][bench_report]") {
    bench_result a = sample_result(), b = sample_result();
    b.interrupted = true;
    auto m = merge_results({a, b});
    CHECK(m.interrupted);
    CHECK_THAT(render_text(m), Catch::Contains("an input run was interrupted: its figures cover the part that ran"));
}

TEST_CASE("thresholds parse and evaluate", "[bench][bench_report]") {
    std::string err;
    auto t = parse_threshold("p99>20ms", &err);
    REQUIRE(t);
    CHECK(t->figure == "p99");
    CHECK(t->op == ">");
    CHECK(t->value == 20e6);
    t = parse_threshold("rate < 50k", &err);
    REQUIRE(t);
    CHECK(t->value == 50000);
    t = parse_threshold("connect_fail>1%", &err);
    REQUIRE(t);
    CHECK(t->percent);
    CHECK(parse_threshold("errors>=0", &err));

    CHECK_FALSE(parse_threshold("p99>20", &err));
    CHECK_THAT(err, Catch::Contains("give a unit"));
    CHECK_FALSE(parse_threshold("p98>20ms", &err));
    CHECK_THAT(err, Catch::Contains("unknown figure"));
    CHECK_FALSE(parse_threshold("p99", &err));
    CHECK_FALSE(parse_threshold("p99>", &err));
    CHECK_FALSE(parse_threshold("p99>5%", &err));
    CHECK_FALSE(parse_threshold("rate<fast", &err));

    bench_result r = sample_result();
    auto holds = [&](const char* e) {
        auto th = parse_threshold(e, &err);
        REQUIRE(th);
        return threshold_holds(r, *th);
    };
    CHECK(holds("errors>0"));
    CHECK_FALSE(holds("errors>1"));
    CHECK(holds("connect_fail>10%"));   // 1 of 5
    CHECK_FALSE(holds("connect_fail>25%"));
    CHECK(holds("rate>=1000"));         // 2000 in 2 s
    CHECK_FALSE(holds("rate<1000"));
    CHECK(holds("p99>10ms"));           // 30 of 2000 samples at 20 ms+
    CHECK(holds("p50<1ms"));
    auto th = parse_threshold("connect_fail>1%", &err);
    CHECK(threshold_actual(r, *th) == "20.0%");
}

TEST_CASE("a threshold on a figure without a sample names why", "[bench][bench_report]") {
    std::string err;
    bench_result r = sample_result();
    auto t = parse_threshold("p99>20ms", &err);
    REQUIRE(t);
    CHECK_FALSE(threshold_unmeasured(r, *t));
    r.latency.reset();
    r.received = 0;
    CHECK(threshold_unmeasured(r, *t) == std::optional<std::string>("no message was answered"));
    r.config.scenario = "connect";
    CHECK(*threshold_unmeasured(r, *t) == "no handshake completed");
    r.config.scenario = "fanout";
    CHECK(*threshold_unmeasured(r, *t) == "no message was delivered");
    auto h = parse_threshold("handshake_max>1s", &err);
    REQUIRE(h);
    CHECK_FALSE(threshold_unmeasured(r, *h));
    r.handshake.reset();
    CHECK(*threshold_unmeasured(r, *h) == "no handshake completed");
    // Reports do not show the missing figure as 0 (which compares as a great improvement).
    const std::string cmp = render_compare(sample_result(), r);
    CHECK_THAT(cmp, Catch::Contains("\n  p99                   20.1ms             -         -  no sample\n"));
    CHECK_THAT(cmp, Catch::Contains("\n  handshake_max          1.2ms             -         -  no sample\n"));
    CHECK_THAT(render_html(r), Catch::Contains("<tr><th>p99</th><td>- (no message was delivered)</td></tr>"));
    // Counts and rates are measured even when they are 0.
    for (const char* e : {"errors>0", "rate<10", "connect_fail>1%"}) {
        auto c = parse_threshold(e, &err);
        REQUIRE(c);
        CHECK_FALSE(threshold_unmeasured(r, *c));
    }
}

TEST_CASE("compression shows in the text report and survives JSON and merging", "[report][bench_report]") {
    bench_result r = sample_result();
    r.config.compress = true;
    r.extensions = "permessage-deflate; client_max_window_bits=12";
    r.wire_bytes_sent = 16008;     // a quarter of the 64,032 payload bytes sent
    r.wire_bytes_received = 6400;  // a tenth of the 64,000 received
    const std::string text = render_text(r);
    CHECK(text.find("8 in flight, 2 threads, 32-byte text messages, permessage-deflate") != std::string::npos);
    CHECK(text.find("  extensions: permessage-deflate; client_max_window_bits=12\n") != std::string::npos);
    CHECK(text.find("  wire/payload         25.0%         10.0%\n") != std::string::npos);

    const bench_result back = bench_from_json(bench_to_json(r));
    CHECK(back.config.compress);
    CHECK(back.extensions == r.extensions);
    CHECK(back.wire_bytes_sent == 16008);
    CHECK(back.wire_bytes_received == 6400);

    const bench_result m = merge_results({r, sample_result()});
    CHECK(m.config.compress);
    CHECK(m.extensions == r.extensions);
    CHECK(m.wire_bytes_sent == 16008);

    // Results written before these fields existed still read.
    auto old = bench_to_json(sample_result());
    old["config"].erase("compress");
    old["connections"].erase("extensions");
    old["messages"].erase("wire_bytes_sent");
    old["messages"].erase("wire_bytes_received");
    const bench_result o = bench_from_json(old);
    CHECK_FALSE(o.config.compress);
    CHECK(o.wire_bytes_sent == 0);
}
