#include "load_model.hpp"

#include <cmath>

namespace wsx {

bool rate_step_ok(const bench_result& r, double asked, const std::vector<threshold>& targets,
                  const rate_search_options& s) {
    if (r.conn_established == 0 || r.interrupted) return false;
    if (r.receive_rate() < asked * s.min_achieved) return false;
    for (const auto& t : targets)
        if (!threshold_holds(r, t)) return false;
    return true;
}

bench_result find_max_rate(bench_options o, const std::vector<threshold>& targets, const rate_search_options& s,
                           const std::function<void(const rate_step&)>& on_step,
                           std::pair<int, std::string>* first_failure) {
    std::vector<rate_step> steps;
    std::optional<bench_result> best, last;
    double good = 0, bad = 0;
    o.rate_per_conn = false;
    auto run_at = [&](double rate) -> bool {
        o.rate = rate;
        bench_result r = run_bench(o, first_failure);
        rate_step st;
        st.rate = rate;
        st.achieved = r.receive_rate();
        st.p50_ns = r.latency.value_at_percentile(50);
        st.p99_ns = r.latency.value_at_percentile(99);
        st.max_ns = r.latency.max();
        st.errors = r.error_count();
        st.ok = rate_step_ok(r, rate, targets, s);
        steps.push_back(st);
        if (on_step) on_step(st);
        if (st.ok && rate > good) {
            good = rate;
            best = r;
        }
        if (!st.ok && (bad == 0 || rate < bad)) bad = rate;
        const bool stop = r.interrupted || r.conn_established == 0;
        last = std::move(r);
        return !stop;
    };
    double rate = s.start_rate;
    int n = 0;
    // Grow while the target holds, shrink while it does not, until the knee is bracketed.
    while (n < s.max_steps && (good == 0 || bad == 0)) {
        if (!run_at(rate)) break;
        ++n;
        rate = bad == 0 ? rate * 2 : (good == 0 ? rate / 2 : rate);
        if (rate < 1) break;
    }
    while (n < s.max_steps && good > 0 && bad > 0 && (bad - good) / good > s.precision) {
        if (!run_at(std::round((good + bad) / 2))) break;
        ++n;
    }
    bench_result out = best ? *best : *last;
    out.find_max_steps = std::move(steps);
    if (good > 0) out.max_rate = good;
    else out.max_rate.reset();
    if (last && last->interrupted) out.interrupted = true;
    return out;
}

}  // namespace wsx
