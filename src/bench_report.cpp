#include "bench_report.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "codec.hpp"
#include "units.hpp"

namespace wsx {

namespace {

struct level {
    const char* name;
    double percentile;
};
constexpr level levels[] = {{"min", 0}, {"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}, {"max", 100}};

// ---------------------------------------------------------------------------------------------
// Formatting helpers

std::string group(std::uint64_t v) {
    std::string s = std::to_string(v);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(std::size_t(i), ",");
    return s;
}

std::string dur(double ns) {
    if (ns < 0) ns = 0;
    return format_duration(std::chrono::nanoseconds(std::llround(ns)));
}

std::string per_second(double v) {
    if (v >= 100) return group(std::uint64_t(std::llround(v)));
    return fmt::format("{:.2f}", v);
}

// Drops the blanks that padding leaves at the end of lines.
std::string rstrip_lines(const std::string& text) {
    std::string out;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t nl = text.find('\n', start);
        std::size_t end = nl == std::string::npos ? text.size() : nl;
        std::size_t last = end;
        while (last > start && text[last - 1] == ' ') --last;
        out.append(text, start, last - start);
        if (nl == std::string::npos) break;
        out += '\n';
        start = nl + 1;
    }
    return out;
}

// "1 message", "2 messages".
std::string count_of(std::uint64_t n, std::string_view one, std::string_view many) {
    return fmt::format("{} {}", group(n), n == 1 ? one : many);
}

std::string mb(double bytes_per_s) { return fmt::format("{:.2f}", bytes_per_s / 1e6); }

std::string pct(double v) {
    if (v == 0) return "0%";
    if (v < 0.01) return fmt::format("{:.4f}%", v);
    if (v < 10) return fmt::format("{:.2f}%", v);
    return fmt::format("{:.1f}%", v);
}

std::string escape_html(std::string_view s) {
    std::string out;
    for (char c : s) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string describe_load(const bench_config& c) {
    std::string s;
    if (c.scenario == "connect") {
        s = fmt::format("{} concurrent connection{}", c.connections, c.connections == 1 ? "" : "s");
        if (c.connect_rate > 0) s += fmt::format(", at most {}/s", per_second(c.connect_rate));
    } else if (c.scenario == "fanout") {
        s = fmt::format("{} publisher{} → {} subscriber{}, {} msgs/s", c.publishers, c.publishers == 1 ? "" : "s",
                        c.connections, c.connections == 1 ? "" : "s", per_second(c.rate));
    } else {
        s = fmt::format("{} connection{}", c.connections, c.connections == 1 ? "" : "s");
        if (c.rate > 0) s += fmt::format(", open loop {} msgs/s", per_second(c.rate));
        else if (c.scenario == "echo") s += fmt::format(", closed loop {} in flight", c.in_flight);
        else s += ", as fast as possible";
        if (c.connect_rate > 0) s += fmt::format(", connecting {}/s", per_second(c.connect_rate));
    }
    s += fmt::format(", {} thread{}", c.threads, c.threads == 1 ? "" : "s");
    if (c.message_size > 0) s += fmt::format(", {}-byte {} messages", c.message_size, c.binary ? "binary" : "text");
    if (c.compress) s += ", permessage-deflate";
    if (c.duration_s > 0) s += ", " + dur(c.duration_s * 1e9);
    if (c.messages > 0)
        s += ", " + (c.scenario == "connect" ? count_of(c.messages, "handshake", "handshakes")
                                             : count_of(c.messages, "message", "messages"));
    if (c.warmup_s > 0) s += " (warmup " + dur(c.warmup_s * 1e9) + ")";
    return s;
}

// Log-spaced bins between the smallest and largest recorded value.
struct bin {
    double lo, hi;
    std::uint64_t count;
};
std::vector<bin> log_bins(const histogram& h, int n) {
    std::vector<bin> bins;
    if (h.count() == 0) return bins;
    if (h.min() == h.max()) {
        // One value: one row, not n rows with the same bounds.
        bins.push_back({double(h.min()), double(h.max()), h.count()});
        return bins;
    }
    double lo = std::max<double>(1, double(h.min()));
    double hi = std::max<double>(lo * 1.0001, double(h.max()) + 1);
    const double step = std::pow(hi / lo, 1.0 / n);
    for (int i = 0; i < n; ++i) bins.push_back({lo * std::pow(step, i), lo * std::pow(step, i + 1), 0});
    h.for_each_bucket([&](std::uint64_t blo, std::uint64_t bhi, std::uint64_t c) {
        // A histogram bucket is placed by its midpoint, clamped into the recorded range.
        double mid = std::clamp((double(blo) + double(bhi)) / 2, lo, hi * 0.999999);
        int k = int(std::floor(std::log(mid / lo) / std::log(step)));
        bins[std::size_t(std::clamp(k, 0, n - 1))].count += c;
    });
    return bins;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument("bench JSON: " + what); }

const nlohmann::json& member(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) bad(fmt::format("missing field \"{}\"", key));
    return *it;
}
template <class T>
T get(const nlohmann::json& j, const char* key) {
    const auto& v = member(j, key);
    try {
        return v.get<T>();
    } catch (const nlohmann::json::exception&) {
        bad(fmt::format("field \"{}\" has the wrong type ({})", key, v.dump()));
    }
}
template <class T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    return get<T>(j, key);
}
histogram hist(const nlohmann::json& j, const char* key) {
    try {
        return histogram::from_json(member(j, key));
    } catch (const std::invalid_argument& e) {
        bad(fmt::format("\"{}\": {}", key, e.what()));
    }
}

nlohmann::json latency_json(const histogram& h) {
    nlohmann::json j = {{"unit", "ns"}};
    for (const auto& l : levels) j[l.name] = h.value_at_percentile(l.percentile);
    j["mean"] = h.mean();
    j["stddev"] = h.stddev();
    j["histogram"] = h.to_json();
    return j;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// JSON

nlohmann::json bench_to_json(const bench_result& r) {
    const auto& c = r.config;
    nlohmann::json config = {
        {"scenario", c.scenario}, {"url", c.url}, {"connections", c.connections}, {"publishers", c.publishers},
        {"connect_rate", c.connect_rate}, {"duration_s", c.duration_s}, {"messages", c.messages},
        {"warmup_s", c.warmup_s}, {"threads", c.threads}, {"in_flight", c.in_flight}, {"rate", c.rate},
        {"message_size", c.message_size}, {"binary", c.binary}, {"compress", c.compress},
    };
    if (!c.publish_url.empty()) config["publish_url"] = c.publish_url;
    nlohmann::json series = nlohmann::json::array();
    for (const auto& i : r.series) {
        series.push_back({{"t", i.start_s},
                          {"length_s", i.length_s},
                          {"sent", i.sent},
                          {"received", i.received},
                          {"errors", i.errors},
                          {"bytes_sent", i.bytes_sent},
                          {"bytes_received", i.bytes_received},
                          {"p50", i.latency.value_at_percentile(50)},
                          {"p99", i.latency.value_at_percentile(99)},
                          {"max", i.latency.max()},
                          {"histogram", i.latency.to_json()}});
    }
    nlohmann::json close_codes = nlohmann::json::object();
    for (const auto& [k, v] : r.close_codes) close_codes[std::to_string(k)] = v;
    nlohmann::json j = {
        {"schema", bench_schema},
        {"generator", r.generator},
        {"started_at", r.started_at},
        {"runs", r.runs},
        {"interrupted", r.interrupted},
        {"config", std::move(config)},
        {"elapsed_s", r.elapsed_s},
        {"connections",
         {{"attempted", r.conn_attempted},
          {"established", r.conn_established},
          {"failed", r.conn_failed},
          {"errors", r.connect_errors},
          {"extensions", r.extensions},
          {"handshake", r.handshake.to_json()}}},
        {"messages",
         {{"sent", r.sent},
          {"received", r.received},
          {"expected", r.expected},
          {"bytes_sent", r.bytes_sent},
          {"bytes_received", r.bytes_received},
          {"wire_bytes_sent", r.wire_bytes_sent},
          {"wire_bytes_received", r.wire_bytes_received},
          {"send_rate", r.send_rate()},
          {"rate", r.receive_rate()}}},
        {"latency", latency_json(r.latency)},
        {"errors", r.errors},
        {"close_codes", std::move(close_codes)},
        {"cpu",
         {{"user_s", r.cpu_user_s},
          {"system_s", r.cpu_system_s},
          {"wall_s", r.cpu_wall_s},
          {"utilisation", r.cpu_utilisation()},
          {"per_message_ns", r.cpu_per_message_ns()}}},
        {"series", std::move(series)},
        {"warnings", r.warnings},
    };
    if (!r.find_max_steps.empty() || r.max_rate) {
        nlohmann::json steps = nlohmann::json::array();
        for (const auto& s : r.find_max_steps)
            steps.push_back({{"rate", s.rate}, {"achieved", s.achieved}, {"p50", s.p50_ns}, {"p99", s.p99_ns},
                             {"max", s.max_ns}, {"errors", s.errors}, {"ok", s.ok}});
        j["find_max_rate"] = {{"max_rate", r.max_rate ? nlohmann::json(*r.max_rate) : nlohmann::json(nullptr)},
                              {"steps", std::move(steps)}};
    }
    return j;
}

bench_result bench_from_json(const nlohmann::json& j) {
    if (!j.is_object()) bad("expected an object");
    const auto schema = get<std::string>(j, "schema");
    if (schema != bench_schema) bad(fmt::format("unsupported schema \"{}\" (expected \"{}\")", schema, bench_schema));
    bench_result r;
    r.generator = get<std::string>(j, "generator");
    r.started_at = get<std::string>(j, "started_at");
    r.runs = get<unsigned>(j, "runs");
    r.interrupted = get<bool>(j, "interrupted");
    const auto& c = member(j, "config");
    r.config.scenario = get<std::string>(c, "scenario");
    r.config.url = get<std::string>(c, "url");
    r.config.publish_url = get_or<std::string>(c, "publish_url", "");
    r.config.connections = get<unsigned>(c, "connections");
    r.config.publishers = get<unsigned>(c, "publishers");
    r.config.connect_rate = get<double>(c, "connect_rate");
    r.config.duration_s = get<double>(c, "duration_s");
    r.config.messages = get<std::uint64_t>(c, "messages");
    r.config.warmup_s = get<double>(c, "warmup_s");
    r.config.threads = get<unsigned>(c, "threads");
    r.config.in_flight = get<unsigned>(c, "in_flight");
    r.config.rate = get<double>(c, "rate");
    r.config.message_size = get<std::uint64_t>(c, "message_size");
    r.config.binary = get<bool>(c, "binary");
    r.config.compress = get_or<bool>(c, "compress", false);
    r.elapsed_s = get<double>(j, "elapsed_s");
    const auto& conn = member(j, "connections");
    r.conn_attempted = get<std::uint64_t>(conn, "attempted");
    r.conn_established = get<std::uint64_t>(conn, "established");
    r.conn_failed = get<std::uint64_t>(conn, "failed");
    r.connect_errors = get<std::map<std::string, std::uint64_t>>(conn, "errors");
    r.extensions = get_or<std::string>(conn, "extensions", "");
    r.handshake = hist(conn, "handshake");
    const auto& m = member(j, "messages");
    r.sent = get<std::uint64_t>(m, "sent");
    r.received = get<std::uint64_t>(m, "received");
    r.expected = get<std::uint64_t>(m, "expected");
    r.bytes_sent = get<std::uint64_t>(m, "bytes_sent");
    r.bytes_received = get<std::uint64_t>(m, "bytes_received");
    r.wire_bytes_sent = get_or<std::uint64_t>(m, "wire_bytes_sent", 0);
    r.wire_bytes_received = get_or<std::uint64_t>(m, "wire_bytes_received", 0);
    r.latency = hist(member(j, "latency"), "histogram");
    r.errors = get<std::map<std::string, std::uint64_t>>(j, "errors");
    for (const auto& [k, v] : member(j, "close_codes").items()) {
        int code = 0;
        try {
            code = std::stoi(k);
        } catch (const std::exception&) {
            bad(fmt::format("close_codes: \"{}\" is not a number", k));
        }
        if (!v.is_number_unsigned()) bad(fmt::format("close_codes: \"{}\" needs a count", k));
        r.close_codes[code] = v.get<std::uint64_t>();
    }
    const auto& cpu = member(j, "cpu");
    r.cpu_user_s = get<double>(cpu, "user_s");
    r.cpu_system_s = get<double>(cpu, "system_s");
    r.cpu_wall_s = get<double>(cpu, "wall_s");
    const auto& series = member(j, "series");
    if (!series.is_array()) bad("\"series\" must be an array");
    for (const auto& s : series) {
        bench_interval i;
        i.start_s = get<double>(s, "t");
        i.length_s = get_or<double>(s, "length_s", 1.0);
        if (!(i.length_s > 0 && i.length_s <= 1)) bad("series: \"length_s\" must be in (0, 1]");
        i.sent = get<std::uint64_t>(s, "sent");
        i.received = get<std::uint64_t>(s, "received");
        i.errors = get<std::uint64_t>(s, "errors");
        i.bytes_sent = get<std::uint64_t>(s, "bytes_sent");
        i.bytes_received = get<std::uint64_t>(s, "bytes_received");
        i.latency = hist(s, "histogram");
        r.series.push_back(std::move(i));
    }
    if (auto f = j.find("find_max_rate"); f != j.end()) {
        if (auto mr = f->find("max_rate"); mr != f->end() && !mr->is_null()) r.max_rate = mr->get<double>();
        for (const auto& s : member(*f, "steps")) {
            rate_step st;
            st.rate = get<double>(s, "rate");
            st.achieved = get<double>(s, "achieved");
            st.p50_ns = get<std::uint64_t>(s, "p50");
            st.p99_ns = get<std::uint64_t>(s, "p99");
            st.max_ns = get<std::uint64_t>(s, "max");
            st.errors = get<std::uint64_t>(s, "errors");
            st.ok = get<bool>(s, "ok");
            r.find_max_steps.push_back(st);
        }
    }
    r.warnings = get_or<std::vector<std::string>>(j, "warnings", {});
    return r;
}

bench_result merge_results(const std::vector<bench_result>& runs) {
    if (runs.empty()) throw std::invalid_argument("nothing to merge");
    for (const auto& r : runs)
        if (r.config.scenario != runs.front().config.scenario)
            throw std::invalid_argument(fmt::format(
                "cannot merge runs of different scenarios ({} and {}): their figures measure different things; "
                "merge the runs of one scenario",
                runs.front().config.scenario, r.config.scenario));
    bench_result m = runs.front();
    for (std::size_t k = 1; k < runs.size(); ++k) {
        const auto& r = runs[k];
        m.runs += r.runs;
        m.interrupted = m.interrupted || r.interrupted;
        m.started_at = std::min(m.started_at, r.started_at);
        m.config.connections += r.config.connections;
        m.config.publishers += r.config.publishers;
        m.config.threads += r.config.threads;
        m.config.rate += r.config.rate;
        m.config.messages += r.config.messages;
        m.config.connect_rate += r.config.connect_rate;
        m.config.duration_s = std::max(m.config.duration_s, r.config.duration_s);
        m.elapsed_s = std::max(m.elapsed_s, r.elapsed_s);
        m.conn_attempted += r.conn_attempted;
        m.conn_established += r.conn_established;
        m.conn_failed += r.conn_failed;
        for (const auto& [key, v] : r.connect_errors) m.connect_errors[key] += v;
        m.handshake.merge(r.handshake);
        m.sent += r.sent;
        m.received += r.received;
        m.expected += r.expected;
        m.bytes_sent += r.bytes_sent;
        m.bytes_received += r.bytes_received;
        m.wire_bytes_sent += r.wire_bytes_sent;
        m.wire_bytes_received += r.wire_bytes_received;
        if (m.extensions.empty()) m.extensions = r.extensions;
        m.config.compress = m.config.compress || r.config.compress;
        m.latency.merge(r.latency);
        for (const auto& [key, v] : r.errors) m.errors[key] += v;
        for (const auto& [key, v] : r.close_codes) m.close_codes[key] += v;
        m.cpu_user_s += r.cpu_user_s;
        m.cpu_system_s += r.cpu_system_s;
        m.cpu_wall_s = std::max(m.cpu_wall_s, r.cpu_wall_s);
        for (std::size_t i = 0; i < r.series.size(); ++i) {
            while (m.series.size() <= i) {
                bench_interval e;
                e.start_s = double(m.series.size());
                e.length_s = 0;  // the longest of the runs' intervals
                m.series.push_back(std::move(e));
            }
            auto& d = m.series[i];
            const auto& s = r.series[i];
            d.length_s = std::max(d.length_s, s.length_s);
            d.sent += s.sent;
            d.received += s.received;
            d.errors += s.errors;
            d.bytes_sent += s.bytes_sent;
            d.bytes_received += s.bytes_received;
            d.latency.merge(s.latency);
        }
        for (const auto& w : r.warnings)
            if (std::find(m.warnings.begin(), m.warnings.end(), w) == m.warnings.end()) m.warnings.push_back(w);
    }
    if (runs.size() > 1) {
        // A search's steps belong to one run; they do not add up.
        m.find_max_steps.clear();
        m.max_rate.reset();
    }
    return m;
}

// ---------------------------------------------------------------------------------------------
// Figures and thresholds

std::vector<figure> figures(const bench_result& r) {
    std::vector<figure> f;
    // Percentiles of an empty histogram read as 0: say instead that there was no sample.
    const std::string no_latency =
        r.latency.count() > 0              ? ""
        : r.config.scenario == "connect"   ? "no handshake completed"
        : r.config.scenario == "fanout"    ? "no message was delivered"
        : r.config.scenario == "send"      ? "the send scenario measures no latency"
                                           : "no message was answered";
    const std::string no_handshake = r.handshake.count() > 0 ? "" : "no handshake completed";
    for (const auto& l : levels)
        f.push_back({l.name, double(r.latency.value_at_percentile(l.percentile)), figure_kind::duration_ns, true, no_latency});
    f.push_back({"mean", r.latency.mean(), figure_kind::duration_ns, true, no_latency});
    f.push_back({"handshake_p50", double(r.handshake.value_at_percentile(50)), figure_kind::duration_ns, true, no_handshake});
    f.push_back({"handshake_p99", double(r.handshake.value_at_percentile(99)), figure_kind::duration_ns, true, no_handshake});
    f.push_back({"handshake_max", double(r.handshake.max()), figure_kind::duration_ns, true, no_handshake});
    // The send scenario expects no replies: its rate is what was sent.
    f.push_back({"rate", r.config.scenario == "send" ? r.send_rate() : r.receive_rate(), figure_kind::rate, false, {}});
    f.push_back({"send_rate", r.send_rate(), figure_kind::rate, false, {}});
    f.push_back({"rx_bytes", r.elapsed_s > 0 ? double(r.bytes_received) / r.elapsed_s : 0, figure_kind::bytes_rate, false, {}});
    f.push_back({"tx_bytes", r.elapsed_s > 0 ? double(r.bytes_sent) / r.elapsed_s : 0, figure_kind::bytes_rate, false, {}});
    f.push_back({"errors", double(r.error_count()), figure_kind::count, true, {}});
    f.push_back({"connect_fail", double(r.conn_failed), figure_kind::count, true, {}});
    f.push_back({"connections", double(r.conn_established), figure_kind::count, false, {}});
    f.push_back({"delivery", r.expected ? 100.0 * double(r.received) / double(r.expected) : 100.0, figure_kind::percent, false, {}});
    f.push_back({"cpu", 100.0 * r.cpu_utilisation(), figure_kind::percent, true, {}});
    f.push_back({"cpu_per_msg", r.cpu_per_message_ns(), figure_kind::duration_ns, true,
                 r.cpu_per_message_ns() > 0 ? "" : "no message was measured"});
    return f;
}

std::string figure_names() {
    std::string s;
    static const bench_result empty;
    for (const auto& f : figures(empty)) s += (s.empty() ? "" : ", ") + f.name;
    return s;
}

namespace {
std::optional<figure> find_figure(const bench_result& r, std::string_view name) {
    for (auto& f : figures(r))
        if (f.name == name) return f;
    return std::nullopt;
}

double threshold_value(const bench_result& r, const threshold& t) {
    if (t.percent) {
        if (t.figure == "errors") {
            const double base = double(std::max(r.sent, r.received));
            return base > 0 ? 100.0 * double(r.error_count()) / base : (r.error_count() ? 100.0 : 0.0);
        }
        if (t.figure == "connect_fail")
            return r.conn_attempted ? 100.0 * double(r.conn_failed) / double(r.conn_attempted) : 0.0;
    }
    auto f = find_figure(r, t.figure);
    return f ? f->value : 0;
}

std::string format_value(double v, figure_kind k) {
    switch (k) {
        case figure_kind::duration_ns: return dur(v);
        case figure_kind::count: return group(std::uint64_t(std::llround(v)));
        case figure_kind::rate: return per_second(v) + "/s";
        case figure_kind::bytes_rate: return mb(v) + " MB/s";
        case figure_kind::percent: return pct(v);
    }
    return std::to_string(v);
}
}  // namespace

std::optional<threshold> parse_threshold(std::string_view text, std::string* error) {
    auto fail = [&](const std::string& why) -> std::optional<threshold> {
        if (error) *error = fmt::format("'{}': {}", text, why);
        return std::nullopt;
    };
    std::string s;
    for (char c : text)
        if (c != ' ' && c != '\t') s += c;
    const auto op_at = s.find_first_of("<>=!");
    if (op_at == std::string::npos || op_at == 0)
        return fail("expected FIGURE OP VALUE, e.g. p99>20ms, errors>0, rate<50k, connect_fail>1%");
    threshold t;
    t.text = std::string(text);
    t.figure = s.substr(0, op_at);
    std::size_t op_len = (op_at + 1 < s.size() && s[op_at + 1] == '=') ? 2 : 1;
    t.op = s.substr(op_at, op_len);
    if (t.op == "=") t.op = "==";
    if (t.op == "!") return fail("unknown operator '!' (use <, <=, >, >=, == or !=)");
    std::string v = s.substr(op_at + op_len);
    if (v.empty()) return fail("missing value after " + t.op);
    static const bench_result empty;
    auto f = find_figure(empty, t.figure);
    if (!f) return fail(fmt::format("unknown figure '{}' (known: {})", t.figure, figure_names()));
    if (v.back() == '%') {
        if (t.figure != "errors" && t.figure != "connect_fail" && f->kind != figure_kind::percent)
            return fail("a percentage works only with errors, connect_fail, delivery and cpu");
        v.pop_back();
        auto d = parse_rate(v);  // plain non-negative number
        if (!d || v.find('/') != std::string::npos) return fail("expected a percentage such as 1%");
        t.value = *d;
        t.percent = f->kind != figure_kind::percent;
        return t;
    }
    switch (f->kind) {
        case figure_kind::duration_ns: {
            if (v.find_first_not_of("0123456789.") == std::string::npos)
                return fail(fmt::format("give a unit, e.g. {}ms", v));
            auto d = parse_duration(v);
            if (!d) return fail(fmt::format("'{}' is not a duration (e.g. 500us, 20ms, 1s)", v));
            t.value = double(d->count());
            return t;
        }
        case figure_kind::bytes_rate: {
            auto b = parse_size(v.size() > 2 && v.substr(v.size() - 2) == "/s" ? v.substr(0, v.size() - 2) : v);
            if (!b) return fail(fmt::format("'{}' is not a byte rate (e.g. 10MB/s)", v));
            t.value = double(*b);
            return t;
        }
        case figure_kind::percent:
            return fail("give a percentage, e.g. 99%");
        default: {
            auto d = parse_rate(v);
            if (!d) return fail(fmt::format("'{}' is not a number", v));
            t.value = *d;
            return t;
        }
    }
}

bool threshold_holds(const bench_result& r, const threshold& t) {
    const double v = threshold_value(r, t);
    if (t.op == "<") return v < t.value;
    if (t.op == "<=") return v <= t.value;
    if (t.op == ">") return v > t.value;
    if (t.op == ">=") return v >= t.value;
    if (t.op == "==") return v == t.value;
    if (t.op == "!=") return v != t.value;
    return false;
}

std::optional<std::string> threshold_unmeasured(const bench_result& r, const threshold& t) {
    if (t.percent) return std::nullopt;
    auto f = find_figure(r, t.figure);
    if (!f || f->missing.empty()) return std::nullopt;
    return f->missing;
}

std::string threshold_actual(const bench_result& r, const threshold& t) {
    const double v = threshold_value(r, t);
    if (t.percent) return pct(v);
    auto f = find_figure(r, t.figure);
    return format_value(v, f ? f->kind : figure_kind::count);
}

// ---------------------------------------------------------------------------------------------
// Text

std::string render_text(const bench_result& r, const text_report_options& o) {
    std::string out;
    const auto& c = r.config;
    out += fmt::format("wsx bench: {} {}\n", c.scenario, c.url);
    if (!c.publish_url.empty() && c.publish_url != c.url) out += fmt::format("publishing to {}\n", c.publish_url);
    out += "  " + describe_load(c) + "\n";
    if (r.runs > 1) out += fmt::format("  merged from {} runs\n", r.runs);
    if (r.interrupted)
        out += r.runs > 1 ? "  an input run was interrupted: its figures cover the part that ran\n"
                          : "  interrupted: figures cover the part that ran\n";
    out += fmt::format("  measured {:.2f}s, started {}\n\n", r.elapsed_s, r.started_at);

    out += fmt::format("{:<14}{:>12}{:>13}{:>9}\n", "Connections", "attempted", "established", "failed");
    out += fmt::format("{:<14}{:>12}{:>13}{:>9}\n", "", group(r.conn_attempted), group(r.conn_established), group(r.conn_failed));
    if (!r.connect_errors.empty()) {
        std::string why;
        for (const auto& [k, v] : r.connect_errors) why += fmt::format("{}{} {}", why.empty() ? "" : ", ", k, group(v));
        out += "  failures: " + why + "\n";
    }
    if (!r.extensions.empty()) out += "  extensions: " + escape_for_terminal(r.extensions) + "\n";
    if (r.handshake.count() > 0)
        out += fmt::format("  handshake: p50 {}  p99 {}  max {}\n", dur(double(r.handshake.value_at_percentile(50))),
                           dur(double(r.handshake.value_at_percentile(99))), dur(double(r.handshake.max())));
    out += "\n";

    const bool storm = c.scenario == "connect";
    const bool fanout = c.scenario == "fanout";
    if (storm) {
        out += fmt::format("{:<14}{:>14}{:>14}\n", "Handshakes", "attempted", "completed");
        out += fmt::format("{:<14}{:>14}{:>14}\n", "  count", group(r.sent), group(r.received));
        out += fmt::format("{:<14}{:>14}{:>14}\n", "  per second", per_second(r.send_rate()), per_second(r.receive_rate()));
    } else {
        out += fmt::format("{:<14}{:>14}{:>14}{:>12}\n", "Messages", fanout ? "published" : "sent",
                           fanout ? "delivered" : "received", "errors");
        out += fmt::format("{:<14}{:>14}{:>14}{:>12}\n", "  count", group(r.sent), group(r.received), group(r.error_count()));
        out += fmt::format("{:<14}{:>14}{:>14}\n", "  per second", per_second(r.send_rate()), per_second(r.receive_rate()));
        out += fmt::format("{:<14}{:>14}{:>14}\n", "  MB/s", mb(r.elapsed_s > 0 ? double(r.bytes_sent) / r.elapsed_s : 0),
                           mb(r.elapsed_s > 0 ? double(r.bytes_received) / r.elapsed_s : 0));
        if (c.compress) {
            // What permessage-deflate saved: frames on the wire against the messages they carry.
            auto share = [](std::uint64_t wire, std::uint64_t payload) {
                return payload > 0 ? pct(100.0 * double(wire) / double(payload)) : std::string("-");
            };
            out += fmt::format("{:<14}{:>14}{:>14}\n", "  wire MB/s", mb(r.elapsed_s > 0 ? double(r.wire_bytes_sent) / r.elapsed_s : 0),
                               mb(r.elapsed_s > 0 ? double(r.wire_bytes_received) / r.elapsed_s : 0));
            out += fmt::format("{:<14}{:>14}{:>14}\n", "  wire/payload", share(r.wire_bytes_sent, r.bytes_sent),
                               share(r.wire_bytes_received, r.bytes_received));
        }
        if (fanout && r.expected > 0)
            out += fmt::format("  delivered {} of {} expected ({})\n", group(r.received), group(r.expected),
                               pct(100.0 * double(r.received) / double(r.expected)));
    }
    out += "\n";

    if (r.latency.count() > 0) {
        const char* what = storm ? "Handshake latency" : fanout ? "Delivery latency" : "Round-trip latency";
        out += fmt::format("{} ({})\n", what, count_of(r.latency.count(), "sample", "samples"));
        std::string names, values;
        for (const auto& l : levels) {
            names += fmt::format("{:>9}", l.name);
            values += fmt::format("{:>9}", dur(double(r.latency.value_at_percentile(l.percentile))));
        }
        names += fmt::format("{:>9}", "mean");
        values += fmt::format("{:>9}", dur(r.latency.mean()));
        out += names + "\n" + values + "\n\n";

        out += "Latency distribution\n";
        auto bins = log_bins(r.latency, 12);
        std::uint64_t top = 0;
        for (const auto& b : bins) top = std::max(top, b.count);
        for (const auto& b : bins) {
            int w = top ? int(std::llround(double(b.count) * o.bar_width / double(top))) : 0;
            if (b.count > 0 && w == 0) w = 1;
            std::string line = fmt::format("  {:>9} - {:<9} {:>12}  {}", dur(b.lo), dur(b.hi), group(b.count), std::string(std::size_t(w), '#'));
            while (line.back() == ' ') line.pop_back();
            out += line + "\n";
        }
        out += "\n";
    }

    if (!r.errors.empty()) {
        out += "Errors\n";
        for (const auto& [k, v] : r.errors) out += fmt::format("  {:<18}{:>12}\n", k, group(v));
        out += "\n";
    }
    if (!r.close_codes.empty()) {
        std::string codes;
        for (const auto& [k, v] : r.close_codes) codes += fmt::format("{}{} ({})", codes.empty() ? "" : ", ", k, group(v));
        out += "Close codes received: " + codes + "\n\n";
    }

    if (!r.find_max_steps.empty()) {
        out += "Rate search\n";
        out += fmt::format("  {:>12} {:>12} {:>9} {:>9} {:>9} {:>8}  {}\n", "asked/s", "achieved/s", "p50", "p99", "max", "errors", "");
        for (const auto& s : r.find_max_steps)
            out += fmt::format("  {:>12} {:>12} {:>9} {:>9} {:>9} {:>8}  {}\n", per_second(s.rate), per_second(s.achieved),
                               dur(double(s.p50_ns)), dur(double(s.p99_ns)), dur(double(s.max_ns)), group(s.errors),
                               s.ok ? "ok" : "missed");
        if (r.max_rate) out += fmt::format("  highest rate meeting the target: {} msgs/s\n", per_second(*r.max_rate));
        else out += "  no rate tried met the target\n";
        out += "\n";
    }

    const double cpu = r.cpu_user_s + r.cpu_system_s;
    out += fmt::format("Generator CPU: {:.2f}s user + {:.2f}s system = {} of {} thread{}", r.cpu_user_s, r.cpu_system_s,
                       pct(100.0 * r.cpu_utilisation()), c.threads, c.threads == 1 ? "" : "s");
    if (cpu > 0 && r.cpu_per_message_ns() > 0) out += fmt::format(", {} per message", dur(r.cpu_per_message_ns()));
    out += "\n";
    for (const auto& w : r.warnings) out += "warning: " + w + "\n";
    return rstrip_lines(out);
}

std::string render_hgrm(const bench_result& r) { return r.latency.to_hgrm(1e3); }

// ---------------------------------------------------------------------------------------------
// HTML

namespace {

struct chart {
    double w = 640, h = 300, left = 70, right = 40, top = 20, bottom = 45;
    double x0, x1, y0, y1;
    bool logx = false;
    double px(double x) const {
        double a = logx ? std::log10(std::max(x, 1e-12)) : x;
        double b0 = logx ? std::log10(x0) : x0, b1 = logx ? std::log10(x1) : x1;
        return left + (b1 > b0 ? (a - b0) / (b1 - b0) : 0) * (w - left - right);
    }
    double py(double y) const { return top + (1 - (y1 > y0 ? (y - y0) / (y1 - y0) : 0)) * (h - top - bottom); }
};

double nice_ceiling(double v) {
    if (v <= 0) return 1;
    double p = std::pow(10, std::floor(std::log10(v)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * p >= v) return m * p;
    return 10 * p;
}

std::string svg_open(const chart& c, const std::string& id, const std::string& title) {
    return fmt::format(
        "<figure><figcaption>{}</figcaption>\n<svg id=\"{}\" class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" "
        "viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\n",
        escape_html(title), id, c.w, c.h, c.w, c.h, escape_html(title));
}

std::string axes(const chart& c, const std::vector<std::pair<double, std::string>>& xticks, const std::string& ylabel,
                 const std::function<std::string(double)>& yfmt, const std::string& xlabel) {
    std::string s;
    s += fmt::format("<line class=\"axis\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", c.left, c.h - c.bottom,
                     c.w - c.right, c.h - c.bottom);
    s += fmt::format("<line class=\"axis\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>\n", c.left, c.top, c.left,
                     c.h - c.bottom);
    for (int i = 0; i <= 4; ++i) {
        double v = c.y0 + (c.y1 - c.y0) * i / 4;
        double y = c.py(v);
        s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>", c.left, y, c.w - c.right, y);
        s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", c.left - 6, y + 4,
                         escape_html(yfmt(v)));
    }
    for (const auto& [x, label] : xticks)
        s += fmt::format("<text class=\"tick\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", c.px(x),
                         c.h - c.bottom + 16, escape_html(label));
    s += fmt::format("<text class=\"label\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", (c.left + c.w - c.right) / 2,
                     c.h - 6, escape_html(xlabel));
    s += fmt::format("<text class=\"label\" x=\"14\" y=\"{:.1f}\" transform=\"rotate(-90 14 {:.1f})\" text-anchor=\"middle\">{}</text>\n",
                     (c.top + c.h - c.bottom) / 2, (c.top + c.h - c.bottom) / 2, escape_html(ylabel));
    return s;
}

std::string polyline(const chart& c, const std::vector<std::pair<double, double>>& pts, const std::string& cls) {
    std::string d;
    for (const auto& [x, y] : pts) d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "" : " ", c.px(x), c.py(y));
    std::string out = fmt::format("<polyline class=\"{}\" fill=\"none\" points=\"{}\"/>\n", cls, d);
    // A line through one point draws nothing: mark the point.
    if (pts.size() == 1)
        out += fmt::format("<circle class=\"point {}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", cls, c.px(pts[0].first),
                           c.py(pts[0].second));
    return out;
}

// The intervals the time plots draw. A run's last interval is partial: it ends when the last
// connection has finished, after the replies have drained and the closing handshakes, so even
// scaled to its length its rate reads as a drop that the load never had. It is left out, unless
// it is the only one (a run shorter than a second), which is drawn scaled to its length.
std::vector<const bench_interval*> plotted_intervals(const bench_result& r) {
    std::vector<const bench_interval*> v;
    for (const auto& i : r.series) v.push_back(&i);
    if (v.size() > 1 && v.back()->length_s < 1.0 - 1e-9) v.pop_back();
    return v;
}

// Where the time plots put an interval, and its count per second (a lone partial interval
// counts for its real length, not as a whole second).
double mid_s(const bench_interval& i) { return i.start_s + i.length_s / 2; }
double per_s(const bench_interval& i, std::uint64_t n) { return double(n) / (i.length_s > 0 ? i.length_s : 1.0); }
double series_end(const std::vector<const bench_interval*>& v) {
    return v.empty() ? 1.0 : std::max(1.0, v.back()->start_s + v.back()->length_s);
}

std::string empty_note(const chart& c) {
    return fmt::format("<text class=\"empty\" x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">no samples</text>\n", c.w / 2, c.h / 2);
}

std::string percentile_plot(const histogram& h) {
    chart c;
    c.logx = true;
    c.x0 = 1;
    c.x1 = 1e5;  // up to 99.999 %
    c.y0 = 0;
    c.y1 = nice_ceiling(double(h.max()) / 1e6);
    std::string s = svg_open(c, "plot-percentiles", "Latency by percentile");
    s += axes(c, {{1, "0%"}, {10, "90%"}, {100, "99%"}, {1e3, "99.9%"}, {1e4, "99.99%"}, {1e5, "99.999%"}}, "latency (ms)",
              [](double v) { return fmt::format("{:g}", v); }, "percentile");
    if (h.count() == 0) return s + empty_note(c) + "</svg></figure>\n";
    std::vector<std::pair<double, double>> pts;
    for (const auto& row : h.percentile_distribution(5)) {
        double inv = row.percentile >= 100 ? c.x1 : std::min(c.x1, 1.0 / (1.0 - row.percentile / 100.0));
        pts.emplace_back(inv, double(row.value) / 1e6);
    }
    s += polyline(c, pts, "line latency");
    for (const auto& l : levels) {
        if (l.percentile <= 0 || l.percentile >= 100) continue;
        double x = 1.0 / (1.0 - l.percentile / 100.0);
        double y = double(h.value_at_percentile(l.percentile)) / 1e6;
        s += fmt::format("<circle class=\"mark\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" data-label=\"{} {}\"/>\n", c.px(x), c.py(y),
                         l.name, escape_html(dur(y * 1e6)));
    }
    return s + "</svg></figure>\n";
}

std::string histogram_plot(const histogram& h) {
    chart c;
    auto bins = log_bins(h, 40);
    const double columns = double(std::max<std::size_t>(1, bins.size()));
    c.x0 = 0;
    c.x1 = columns;
    c.y0 = 0;
    std::uint64_t top = 0;
    for (const auto& b : bins) top = std::max(top, b.count);
    c.y1 = nice_ceiling(double(top));
    std::vector<std::pair<double, std::string>> ticks;
    for (std::size_t i = 0; i < bins.size(); i += 8) ticks.emplace_back(double(i), dur(bins[i].lo));
    if (!bins.empty()) ticks.emplace_back(columns, dur(bins.back().hi));
    std::string s = svg_open(c, "plot-histogram", "Latency histogram");
    s += axes(c, ticks, "messages", [](double v) { return group(std::uint64_t(std::llround(v))); }, "latency (log scale)");
    if (bins.empty()) return s + empty_note(c) + "</svg></figure>\n";
    for (std::size_t i = 0; i < bins.size(); ++i) {
        const auto& b = bins[i];
        double x = c.px(double(i)), w = c.px(double(i + 1)) - x - 1;
        double y = c.py(double(b.count));
        s += fmt::format("<rect class=\"bar\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" data-label=\"{} - {}: {}\"/>\n",
                         x, y, std::max(w, 0.5), c.py(0) - y, escape_html(dur(b.lo)), escape_html(dur(b.hi)), group(b.count));
    }
    return s + "</svg></figure>\n";
}

std::vector<std::pair<double, std::string>> time_ticks(double end) {
    std::vector<std::pair<double, std::string>> t;
    double step = nice_ceiling(std::max(1.0, end / 6));
    for (double x = 0; x <= end + 1e-9; x += step) t.emplace_back(x, fmt::format("{:g}s", x));
    return t;
}

// How a series is drawn. Two series of a plot differ in colour, width and dash, and the wider,
// solid one is drawn first, so that both stay visible where they coincide (sent = received).
struct series_style {
    const char* cls;
    const char* label;
    const char* colour;
    double width;
    const char* dash;  // empty: solid
};
constexpr series_style received_style{"received", "received", "#c0392b", 3.5, ""};
constexpr series_style sent_style{"sent", "sent", "#2471a3", 2, "6 4"};
constexpr series_style p99_style{"p99", "p99", "#c0392b", 2.5, ""};
constexpr series_style p50_style{"p50", "p50", "#2471a3", 2, "6 4"};

std::string stroke_attributes(const series_style& st) {
    std::string s = fmt::format("stroke=\"{}\" stroke-width=\"{:g}\"", st.colour, st.width);
    if (*st.dash) s += fmt::format(" stroke-dasharray=\"{}\"", st.dash);
    return s;
}

// Lines through runs of points; a point that is nullopt breaks the line (a gap, not a dip).
std::string series_lines(const chart& c, const std::vector<std::pair<double, std::optional<double>>>& pts,
                         const series_style& st) {
    std::string out;
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
        if (run.empty()) return;
        std::string d;
        for (const auto& [x, y] : run) d += fmt::format("{}{:.1f},{:.1f}", d.empty() ? "" : " ", c.px(x), c.py(y));
        out += fmt::format("<polyline class=\"line {}\" fill=\"none\" {} points=\"{}\"/>\n", st.cls, stroke_attributes(st), d);
        // A line through one point draws nothing: mark the point.
        if (run.size() == 1)
            out += fmt::format("<circle class=\"point line {}\" fill=\"#fff\" {} cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n", st.cls,
                               stroke_attributes(st), c.px(run[0].first), c.py(run[0].second));
        run.clear();
    };
    for (const auto& [x, y] : pts) {
        if (y) run.emplace_back(x, *y);
        else flush();
    }
    flush();
    return out;
}

// A key above the plot area (where no line can hide it): a stretch of each series' line and its name.
std::string legend(const chart& c, std::initializer_list<const series_style*> styles) {
    std::string out;
    double x = c.left + 10;
    const double y = 10;
    for (const auto* st : styles) {
        out += fmt::format("<line class=\"key {}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" {}/>", st->cls, x, y,
                           x + 28, y, stroke_attributes(*st));
        out += fmt::format("<text class=\"legend {}\" x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", st->cls, x + 34, y + 4,
                           escape_html(st->label));
        x += 100;
    }
    return out;
}

// Sent and received per second over time: messages, or payload bytes in MB/s (10^6 bytes).
std::string rate_plot(const bench_result& r, bool bytes) {
    const auto v = plotted_intervals(r);
    const double scale = bytes ? 1e6 : 1;
    auto sent_of = [&](const bench_interval& i) { return per_s(i, bytes ? i.bytes_sent : i.sent) / scale; };
    auto received_of = [&](const bench_interval& i) { return per_s(i, bytes ? i.bytes_received : i.received) / scale; };
    chart c;
    c.x0 = 0;
    c.x1 = series_end(v);
    c.y0 = 0;
    double top = 0;
    for (const auto* i : v) top = std::max({top, sent_of(*i), received_of(*i)});
    c.y1 = nice_ceiling(top);
    std::string s = bytes ? svg_open(c, "plot-bytes", "Payload bytes over time (MB/s)")
                          : svg_open(c, "plot-throughput", "Throughput over time (messages/s)");
    s += bytes ? axes(c, time_ticks(c.x1), "MB/s", [](double y) { return fmt::format("{:g}", y); }, "time")
               : axes(c, time_ticks(c.x1), "messages/s", [](double y) { return group(std::uint64_t(std::llround(y))); }, "time");
    if (v.empty()) return s + empty_note(c) + "</svg></figure>\n";
    std::vector<std::pair<double, std::optional<double>>> sent, recv;
    for (const auto* i : v) {
        sent.emplace_back(mid_s(*i), sent_of(*i));
        recv.emplace_back(mid_s(*i), received_of(*i));
    }
    s += series_lines(c, recv, received_style);
    s += series_lines(c, sent, sent_style);
    s += legend(c, {&sent_style, &received_style});
    return s + "</svg></figure>\n";
}

std::string p99_plot(const bench_result& r) {
    const auto v = plotted_intervals(r);
    chart c;
    c.x0 = 0;
    c.x1 = series_end(v);
    c.y0 = 0;
    double top = 0;
    std::vector<std::pair<double, std::optional<double>>> p50, p99;
    for (const auto* i : v) {
        // A percentile of a handful of samples is one of them: a second with too few gets no
        // point, and the lines break there.
        if (i->latency.count() < min_latency_samples) {
            p50.emplace_back(mid_s(*i), std::nullopt);
            p99.emplace_back(mid_s(*i), std::nullopt);
            continue;
        }
        p50.emplace_back(mid_s(*i), double(i->latency.value_at_percentile(50)) / 1e6);
        p99.emplace_back(mid_s(*i), double(i->latency.value_at_percentile(99)) / 1e6);
        top = std::max(top, *p99.back().second);
    }
    c.y1 = nice_ceiling(top);
    std::string s = svg_open(c, "plot-p99", "Latency p50 and p99 over time");
    s += axes(c, time_ticks(c.x1), "latency (ms)", [](double y) { return fmt::format("{:g}", y); }, "time");
    if (std::none_of(p99.begin(), p99.end(), [](const auto& p) { return p.second.has_value(); }))
        return s + empty_note(c) + "</svg></figure>\n";
    s += series_lines(c, p99, p99_style);
    s += series_lines(c, p50, p50_style);
    s += legend(c, {&p50_style, &p99_style});
    return s + "</svg></figure>\n";
}

// What the time plots leave out, and the units, said where the plots are read.
std::string plot_notes() {
    return fmt::format(
        "<p id=\"notes\" class=\"notes\">Time plots: one point per second of the run, warmup included. The last, "
        "partial second (the end of the run: replies draining, connections closing) is left out, unless the run "
        "was shorter than a second, when its counts are scaled to its length. A second with fewer than {} latency "
        "samples has no latency point: the lines break there. Bytes are message payloads, in MB/s "
        "(10<sup>6</sup> bytes per second), as in the summary.</p>\n",
        min_latency_samples);
}

}  // namespace

std::string render_html(const bench_result& r) {
    std::string out;
    const auto& c = r.config;
    out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    out += fmt::format("<title>wsx bench: {} {}</title>\n", escape_html(c.scenario), escape_html(c.url));
    out += R"(<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1340px;color:#222;padding:0 1em}
h1{font-size:1.3em}table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 12px;text-align:right}
th{text-align:left;font-weight:600}.plots{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0}
figcaption{font-weight:600;margin:4px 0}.axis{stroke:#333}.grid{stroke:#ddd}.tick,.label,.legend{font-size:11px;fill:#444}
.latency{stroke:#c0392b;stroke-width:2}.legend.sent,.legend.p50{fill:#2471a3}
.legend.received,.legend.p99{fill:#c0392b}.bar{fill:#5d8aa8}.bar:hover,.mark:hover{fill:#c0392b}.mark{fill:#333}
.point{fill:#fff}.empty{fill:#999}#readout{min-height:1.4em;color:#555}.warn{color:#a04000}.notes{color:#555;max-width:1300px}
</style>
</head>
<body>
)";
    out += fmt::format("<h1>wsx bench: {} {}</h1>\n<p>{}</p>\n", escape_html(c.scenario), escape_html(c.url), escape_html(describe_load(c)));
    out += fmt::format("<p>Started {}, measured {:.2f}s{}{}. {}.</p>\n", escape_html(r.started_at), r.elapsed_s,
                       r.runs > 1 ? fmt::format(", merged from {} runs", r.runs) : "", r.interrupted ? ", interrupted" : "",
                       escape_html(r.generator));
    out += "<table id=\"summary\">\n<tr><th>figure</th><th>value</th></tr>\n";
    for (const auto& f : figures(r))
        out += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", f.name,
                           escape_html(f.missing.empty() ? format_value(f.value, f.kind) : "- (" + f.missing + ")"));
    out += "</table>\n";
    if (!r.errors.empty()) {
        out += "<p>Errors: ";
        bool first = true;
        for (const auto& [k, v] : r.errors) {
            out += fmt::format("{}{} {}", first ? "" : ", ", escape_html(k), group(v));
            first = false;
        }
        out += "</p>\n";
    }
    for (const auto& w : r.warnings) out += "<p class=\"warn\">warning: " + escape_html(w) + "</p>\n";
    out += "<p id=\"readout\"></p>\n<div class=\"plots\">\n";
    out += percentile_plot(r.latency);
    out += histogram_plot(r.latency);
    out += rate_plot(r, false);
    out += rate_plot(r, true);
    out += p99_plot(r);
    out += "</div>\n";
    out += plot_notes();
    out += R"(<script>
(function () {
  var readout = document.getElementById('readout');
  var marks = document.querySelectorAll('[data-label]');
  for (var i = 0; i < marks.length; i++) {
    var t = document.createElementNS('http://www.w3.org/2000/svg', 'title');
    t.textContent = marks[i].getAttribute('data-label');
    marks[i].appendChild(t);
    marks[i].addEventListener('mouseenter', function (e) { readout.textContent = e.target.getAttribute('data-label'); });
  }
  document.documentElement.setAttribute('data-plots', String(document.querySelectorAll('svg.plot').length));
})();
</script>
</body>
</html>
)";
    return out;
}

// ---------------------------------------------------------------------------------------------
// Compare

std::vector<config_difference> config_differences(const bench_config& b, const bench_config& c) {
    std::vector<config_difference> d;
    auto text = [&](const char* field, const std::string& x, const std::string& y) {
        if (x != y) d.push_back({field, x.empty() ? "(none)" : x, y.empty() ? "(none)" : y});
    };
    // `zero`: what 0 means for the field, e.g. "closed loop" for rate.
    auto number = [&](const char* field, double x, double y, const char* unit, const char* zero = "") {
        auto show = [&](double v) { return fmt::format("{:g}{}{}", v, unit, v == 0 && *zero ? fmt::format(" ({})", zero) : ""); };
        if (x != y) d.push_back({field, show(x), show(y)});
    };
    auto integer = [&](const char* field, std::uint64_t x, std::uint64_t y, const char* unit = "") {
        if (x != y) d.push_back({field, fmt::format("{}{}", x, unit), fmt::format("{}{}", y, unit)});
    };
    auto flag = [&](const char* field, bool x, bool y) {
        if (x != y) d.push_back({field, x ? "true" : "false", y ? "true" : "false"});
    };
    // In the order of bench_to_json's "config".
    text("scenario", b.scenario, c.scenario);
    text("url", b.url, c.url);
    text("publish_url", b.publish_url, c.publish_url);
    integer("connections", b.connections, c.connections);
    integer("publishers", b.publishers, c.publishers);
    number("connect_rate", b.connect_rate, c.connect_rate, "/s", "no limit");
    number("duration_s", b.duration_s, c.duration_s, "s", "until -n");
    integer("messages", b.messages, c.messages);
    number("warmup_s", b.warmup_s, c.warmup_s, "s");
    integer("threads", b.threads, c.threads);
    integer("in_flight", b.in_flight, c.in_flight);
    number("rate", b.rate, c.rate, "/s", "closed loop");
    integer("message_size", b.message_size, c.message_size, " B");
    flag("binary", b.binary, c.binary);
    flag("compress", b.compress, c.compress);
    return d;
}

std::string render_compare(const bench_result& baseline, const bench_result& current) {
    std::string out = fmt::format("Compared with the baseline ({} {}, {})\n", baseline.config.scenario, baseline.config.url,
                                  baseline.started_at);
    if (const auto diff = config_differences(baseline.config, current.config); !diff.empty()) {
        std::string fields;
        for (const auto& f : diff) fields += (fields.empty() ? "" : ", ") + f.field;
        out += fmt::format("  the configurations differ ({}): a change may come from the load asked, not the server\n",
                           fields);
    }
    out += fmt::format("  {:<14}{:>14}{:>14}{:>10}  {}\n", "figure", "baseline", "current", "change", "");
    auto b = figures(baseline);
    auto c = figures(current);
    for (std::size_t i = 0; i < b.size() && i < c.size(); ++i) {
        const auto& fb = b[i];
        const auto& fc = c[i];
        std::string change = "", verdict = "";
        if (!fb.missing.empty() || !fc.missing.empty()) {
            // A figure without a sample reads as 0, which would compare as a great improvement.
            change = "-";
            if (!fc.missing.empty()) verdict = "no sample";
        } else if (fb.value == fc.value) {
            change = "=";
        } else if (fb.value != 0) {
            double d = (fc.value - fb.value) / std::abs(fb.value) * 100.0;
            change = fmt::format("{:+.1f}%", d);
            if (std::abs(d) >= 1.0) verdict = (fc.value < fb.value) == fb.lower_is_better ? "better" : "worse";
        } else {
            change = "new";
            verdict = fb.lower_is_better ? "worse" : "better";
        }
        auto shown = [](const figure& f) { return f.missing.empty() ? format_value(f.value, f.kind) : std::string("-"); };
        out += fmt::format("  {:<14}{:>14}{:>14}{:>10}  {}\n", fb.name, shown(fb), shown(fc), change, verdict);
    }
    return rstrip_lines(out);
}

}  // namespace wsx
