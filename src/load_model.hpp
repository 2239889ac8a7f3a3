#pragma once
/// Load models built from repeated bench runs: the search for the highest open-loop rate
/// that still meets a target (tcpkali's and wrk2's "find the knee").
#include <functional>
#include <utility>
#include <vector>

#include "bench.hpp"
#include "bench_report.hpp"

namespace wsx {

struct rate_search_options {
    double start_rate = 1000;   ///< first rate tried (messages/s, total)
    int max_steps = 12;         ///< runs at most
    double precision = 0.05;    ///< stop bisecting when the bracket is this narrow (relative)
    double min_achieved = 0.95; ///< a step must deliver at least this share of the asked rate
};

/// True when a run at `asked` messages/s met every target and kept up with the rate.
bool rate_step_ok(const bench_result& r, double asked, const std::vector<threshold>& targets,
                  const rate_search_options& s);

/// Runs `o` open loop at increasing rates (doubling from start_rate while the targets hold),
/// then bisects between the last rate that met them and the first that did not.
/// Returns the result of the best step (or of the last one when none met the targets) with
/// every step in find_max_steps and the highest good rate in max_rate. Stops early when a run
/// is interrupted. `on_step` is told about each finished step.
bench_result find_max_rate(bench_options o, const std::vector<threshold>& targets, const rate_search_options& s,
                           const std::function<void(const rate_step&)>& on_step,
                           std::pair<int, std::string>* first_failure = nullptr);

}  // namespace wsx
