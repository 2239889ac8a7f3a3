#include "histogram.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace wsx {

namespace {

// Buckets needed so that highest_trackable still lands in the last one (HdrHistogram's
// getBucketsNeededToCoverValue with unit magnitude 0).
unsigned buckets_to_cover(std::uint64_t highest) {
    std::uint64_t smallest_untrackable = histogram::sub_bucket_count;
    unsigned buckets = 1;
    while (smallest_untrackable <= highest) {
        smallest_untrackable <<= 1;
        ++buckets;
    }
    return buckets;
}

std::uint64_t checked_highest(std::uint64_t highest) {
    if (highest < 2 || highest > histogram::max_highest_trackable)
        throw std::invalid_argument(fmt::format(
            "histogram: highest trackable value {} out of range (2..{})", highest,
            histogram::max_highest_trackable));
    return highest;
}

// Fixed-point text of a non-negative double the way java.util.Formatter's "%.Nf" produces it:
// start from the shortest decimal that round-trips, then round half up. printf rounds the
// exact binary value instead, which differs on ties such as 0.0625 -> "0.063" vs "0.062".
std::string java_fixed(double v, int decimals) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
    bool negative = std::signbit(v) && v != 0.0;
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(v), std::chars_format::scientific);
    std::string_view sci(buf, std::size_t(res.ptr - buf));  // "d.ddde±XX"
    auto e_pos = sci.find('e');
    std::string digits;
    for (char c : sci.substr(0, e_pos))
        if (c != '.') digits += c;
    int exponent = 0;
    std::from_chars(sci.data() + e_pos + 1 + (sci[e_pos + 1] == '+' ? 1 : 0), sci.data() + sci.size(),
                    exponent);
    // value = 0.digits * 10^(exponent + 1); point_pos = digits before the decimal point.
    int point_pos = exponent + 1;
    // Lay the digits out on a grid of integer digits + `decimals` fraction digits.
    int int_digits = std::max(point_pos, 1);
    std::string grid(std::size_t(int_digits + decimals), '0');
    int keep_from = int_digits - point_pos;  // grid position of digits[0]
    bool round_up = false;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        int pos = keep_from + int(i);
        if (pos < int(grid.size())) {
            if (pos >= 0) grid[std::size_t(pos)] = digits[i];
        } else {
            if (pos == int(grid.size())) round_up = digits[i] >= '5';
            break;
        }
    }
    if (round_up) {
        int i = int(grid.size()) - 1;
        for (; i >= 0; --i) {
            if (grid[std::size_t(i)] == '9') {
                grid[std::size_t(i)] = '0';
            } else {
                ++grid[std::size_t(i)];
                break;
            }
        }
        if (i < 0) {
            grid.insert(grid.begin(), '1');
            ++int_digits;
        }
    }
    std::string out = negative ? "-" : "";
    out.append(grid, 0, std::size_t(int_digits));
    if (decimals > 0) {
        out += '.';
        out.append(grid, std::size_t(int_digits), std::string::npos);
    }
    return out;
}

std::string pad_left(std::string s, std::size_t width) {
    if (s.size() < width) s.insert(0, width - s.size(), ' ');
    return s;
}

[[noreturn]] void bad_json(const std::string& what) {
    throw std::invalid_argument("histogram JSON: " + what);
}

std::uint64_t json_u64(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) bad_json(fmt::format("missing field \"{}\"", key));
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    if (it->is_number_integer() && it->get<std::int64_t>() >= 0)
        return std::uint64_t(it->get<std::int64_t>());
    bad_json(fmt::format("field \"{}\" must be a non-negative integer, got {}", key, it->dump()));
}

}  // namespace

histogram::histogram(std::uint64_t highest_trackable_ns)
    : highest_trackable_(checked_highest(highest_trackable_ns)),
      bucket_count_(buckets_to_cover(highest_trackable_ns)),
      counts_(std::size_t(bucket_count_ + 1) * sub_bucket_half_count, 0) {}

std::uint64_t histogram::lowest_at_index(std::size_t index) noexcept {
    // Counters 0..255 form bucket 0 (unit width); after that every 128 counters are the
    // upper half of the next power-of-two bucket.
    if (index < sub_bucket_count) return index;
    unsigned bucket = unsigned(index >> sub_bucket_half_count_magnitude) - 1;
    std::uint64_t sub_bucket = (index & (sub_bucket_half_count - 1)) + sub_bucket_half_count;
    return sub_bucket << bucket;
}

std::uint64_t histogram::width_at_index(std::size_t index) noexcept {
    if (index < sub_bucket_count) return 1;
    return std::uint64_t(1) << (unsigned(index >> sub_bucket_half_count_magnitude) - 1);
}

void histogram::record_corrected(std::uint64_t value_ns, std::uint64_t expected_interval_ns) noexcept {
    record(value_ns);
    if (expected_interval_ns == 0 || value_ns <= expected_interval_ns) return;
    for (std::uint64_t missing = value_ns - expected_interval_ns; missing >= expected_interval_ns;
         missing -= expected_interval_ns)
        record(missing);
}

void histogram::merge(const histogram& other) {
    if (other.highest_trackable_ != highest_trackable_)
        throw std::invalid_argument(fmt::format(
            "histogram: cannot merge a histogram tracking up to {} ns into one tracking up to {} ns",
            other.highest_trackable_, highest_trackable_));
    if (other.total_ == 0) return;
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    overflow_ += other.overflow_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
}

void histogram::reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
    overflow_ = 0;
    min_ = UINT64_MAX;
    max_ = 0;
}

std::uint64_t histogram::representative(std::size_t index) const noexcept {
    // HdrHistogram uses the bucket midpoint; clamping into [min, max] makes single-valued
    // and narrow distributions exact.
    std::uint64_t mid = lowest_at_index(index) + width_at_index(index) / 2;
    return std::clamp(mid, min_, max_);
}

double histogram::mean() const noexcept {
    if (total_ == 0) return 0.0;
    double sum = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i)
        if (counts_[i]) sum += double(representative(i)) * double(counts_[i]);
    return sum / double(total_);
}

double histogram::stddev() const noexcept {
    if (total_ == 0) return 0.0;
    double m = mean();
    double sum = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (!counts_[i]) continue;
        double d = double(representative(i)) - m;
        sum += d * d * double(counts_[i]);
    }
    return std::sqrt(sum / double(total_));
}

std::uint64_t histogram::value_at_percentile(double p) const noexcept {
    if (total_ == 0) return 0;
    if (!(p > 0.0)) return min_;  // also catches NaN
    if (p >= 100.0) return max_;
    // Nearest rank, as HdrHistogram computes it: one ulp below p so that a product that
    // should be an integer does not round up into the next rank.
    double requested = std::nextafter(p, 0.0);
    double fp_rank = requested / 100.0 * double(total_);
    std::uint64_t rank = std::max<std::uint64_t>(std::uint64_t(std::ceil(fp_rank)), 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        running += counts_[i];
        if (running >= rank) {
            std::uint64_t highest = lowest_at_index(i) + width_at_index(i) - 1;
            return std::clamp(highest, min_, max_);
        }
    }
    return max_;
}

double histogram::percentile_of(std::uint64_t value_ns) const noexcept {
    if (total_ == 0 || value_ns < min_) return 0.0;
    if (value_ns >= max_) return 100.0;
    std::size_t last = index_of(std::min(value_ns, highest_trackable_));
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= last; ++i) running += counts_[i];
    return 100.0 * double(running) / double(total_);
}

histogram::percentile_iterator::percentile_iterator(const histogram& h, int ticks_per_half_distance) noexcept
    : h_(&h), ticks_(std::uint64_t(std::max(ticks_per_half_distance, 1))) {}

bool histogram::percentile_iterator::next(percentile_row& row) noexcept {
    const auto& counts = h_->counts_;
    const std::uint64_t total = h_->total_;
    auto value_at = [&](std::size_t i) {
        std::uint64_t highest = lowest_at_index(i) + width_at_index(i) - 1;
        return std::clamp(highest, h_->min_, h_->max_);
    };
    if (total == 0) return false;
    if (started_ && cumulative_ >= total) {
        // Every count has been passed: one last row at exactly 100 %.
        if (seen_last_) return false;
        seen_last_ = true;
        row = {value_at(index_), 100.0, cumulative_};
        return true;
    }
    if (!started_) {
        started_ = true;
        index_ = 0;
        cumulative_ = counts[0];
    }
    for (;;) {
        double current = 100.0 * double(cumulative_) / double(total);
        if (counts[index_] != 0 && level_ <= current) {
            row = {value_at(index_), level_, cumulative_};
            // Fixed-size ticks within each half of the remaining distance to 100 %, halving
            // at every crossing (HdrHistogram's arithmetic, kept bit for bit).
            double remaining = 100.0 - level_;
            double halvings = remaining > 0.0 ? std::log(100.0 / remaining) / std::log(2.0) : 62.0;
            auto exponent = std::int64_t(std::min(halvings, 61.0)) + 1;
            double reporting_ticks = double(ticks_) * std::pow(2.0, double(exponent));
            level_ += 100.0 / reporting_ticks;
            return true;
        }
        if (++index_ >= counts.size()) {
            index_ = counts.size() - 1;  // unreachable while counts sum to total
            cumulative_ = total;
            return next(row);
        }
        cumulative_ += counts[index_];
    }
}

std::vector<percentile_row> histogram::percentile_distribution(int ticks_per_half_distance) const {
    std::vector<percentile_row> rows;
    percentile_iterator it(*this, ticks_per_half_distance);
    percentile_row row;
    while (it.next(row)) rows.push_back(row);
    return rows;
}

std::string histogram::to_hgrm(double value_unit_scaling, int ticks_per_half_distance) const {
    // The value columns use three decimals (HdrHistogram prints as many as its
    // significant-digits setting; three keeps sub-unit detail when scaling ns to µs or ms).
    constexpr int value_decimals = 3;
    std::string out = fmt::format("{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount",
                                  "1/(1-Percentile)");
    percentile_iterator it(*this, ticks_per_half_distance);
    percentile_row row;
    while (it.next(row)) {
        double fraction = row.percentile / 100.0;
        out += pad_left(java_fixed(double(row.value) / value_unit_scaling, value_decimals), 12);
        out += ' ';
        out += pad_left(java_fixed(fraction, 12), 2);
        out += fmt::format(" {:10d}", row.total_count);
        if (row.percentile != 100.0) {
            out += ' ';
            out += pad_left(java_fixed(1.0 / (1.0 - fraction), 2), 14);
        }
        out += '\n';
    }
    out += "#[Mean    = " + pad_left(java_fixed(mean() / value_unit_scaling, value_decimals), 12) +
           ", StdDeviation   = " + pad_left(java_fixed(stddev() / value_unit_scaling, value_decimals), 12) +
           "]\n";
    out += "#[Max     = " + pad_left(java_fixed(double(max()) / value_unit_scaling, value_decimals), 12) +
           fmt::format(", Total count    = {:12d}]\n", total_);
    out += fmt::format("#[Buckets = {:12d}, SubBuckets     = {:12d}]\n", bucket_count_, sub_bucket_count);
    return out;
}

nlohmann::json histogram::to_json() const {
    nlohmann::json buckets = nlohmann::json::array();
    for (std::size_t i = 0; i < counts_.size(); ++i)
        if (counts_[i]) buckets.push_back({std::uint64_t(i), counts_[i]});
    return {
        {"unit", "ns"},
        {"significant_digits", significant_digits},
        {"sub_bucket_count", sub_bucket_count},
        {"bucket_count", bucket_count_},
        {"highest_trackable", highest_trackable_},
        {"count", total_},
        {"min", min()},
        {"max", max()},
        {"overflow", overflow_},
        {"buckets", std::move(buckets)},
    };
}

histogram histogram::from_json(const nlohmann::json& j) {
    if (!j.is_object()) bad_json(fmt::format("expected an object, got {}", j.type_name()));

    auto unit = j.find("unit");
    if (unit == j.end()) bad_json("missing field \"unit\"");
    if (!unit->is_string() || unit->get<std::string>() != "ns")
        bad_json(fmt::format("unsupported unit {} (expected \"ns\")", unit->dump()));
    if (auto d = json_u64(j, "significant_digits"); d != std::uint64_t(significant_digits))
        bad_json(fmt::format("layout mismatch: significant_digits {} (expected {})", d, significant_digits));
    if (auto s = json_u64(j, "sub_bucket_count"); s != sub_bucket_count)
        bad_json(fmt::format("layout mismatch: sub_bucket_count {} (expected {})", s, sub_bucket_count));
    std::uint64_t highest = json_u64(j, "highest_trackable");
    if (highest < 2 || highest > max_highest_trackable)
        bad_json(fmt::format("highest_trackable {} out of range (2..{})", highest, max_highest_trackable));
    histogram h(highest);
    if (auto b = json_u64(j, "bucket_count"); b != h.bucket_count_)
        bad_json(fmt::format("layout mismatch: bucket_count {} (expected {} for highest_trackable {})", b,
                             h.bucket_count_, highest));

    const std::uint64_t count = json_u64(j, "count");
    const std::uint64_t min = json_u64(j, "min");
    const std::uint64_t max = json_u64(j, "max");
    const std::uint64_t overflow = json_u64(j, "overflow");

    auto buckets = j.find("buckets");
    if (buckets == j.end()) bad_json("missing field \"buckets\"");
    if (!buckets->is_array()) bad_json("field \"buckets\" must be an array of [index, count] pairs");
    std::uint64_t sum = 0;
    std::size_t first = 0, last = 0;
    bool any = false;
    for (std::size_t n = 0; n < buckets->size(); ++n) {
        const auto& pair = (*buckets)[n];
        auto is_u64 = [](const nlohmann::json& v) {
            return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
        };
        if (!pair.is_array() || pair.size() != 2 || !is_u64(pair[0]) || !is_u64(pair[1]))
            bad_json(fmt::format("buckets[{}] must be a pair of non-negative integers, got {}", n, pair.dump()));
        std::uint64_t index = pair[0].get<std::uint64_t>();
        std::uint64_t c = pair[1].get<std::uint64_t>();
        if (index >= h.counts_.size())
            bad_json(fmt::format("buckets[{}]: index {} out of range (layout has {} counters)", n, index,
                                 h.counts_.size()));
        if (any && index <= last)
            bad_json(fmt::format("buckets[{}]: index {} not above the previous index {}", n, index, last));
        if (c == 0) bad_json(fmt::format("buckets[{}]: zero count (empty buckets are not listed)", n));
        if (sum > UINT64_MAX - c) bad_json("bucket counts overflow 64 bits");
        sum += c;
        h.counts_[index] = c;
        if (!any) first = index;
        last = index;
        any = true;
    }
    if (sum != count)
        bad_json(fmt::format("bucket counts add up to {} but \"count\" is {}", sum, count));
    if (overflow > count) bad_json(fmt::format("overflow {} exceeds count {}", overflow, count));
    if (count == 0) {
        if (min != 0 || max != 0) bad_json("an empty histogram must have min and max 0");
    } else {
        if (min > max) bad_json(fmt::format("min {} above max {}", min, max));
        if (index_of(std::min(min, highest)) != first)
            bad_json(fmt::format("min {} does not fall in the lowest non-empty bucket", min));
        if (index_of(std::min(max, highest)) != last)
            bad_json(fmt::format("max {} does not fall in the highest non-empty bucket", max));
        if ((overflow > 0) != (max > highest))
            bad_json(fmt::format("overflow {} inconsistent with max {} and highest_trackable {}", overflow, max,
                                 highest));
        if (overflow > h.counts_[last])
            bad_json(fmt::format("overflow {} exceeds the top bucket's count {}", overflow, h.counts_[last]));
        h.min_ = min;
        h.max_ = max;
    }
    h.total_ = count;
    h.overflow_ = overflow;
    return h;
}

}  // namespace wsx
