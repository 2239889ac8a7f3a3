#pragma once
/// Latency histogram with HdrHistogram's log-linear layout: fixed memory, O(1) recording,
/// bounded relative error, exact merges, and exporters (.hgrm text, JSON).
///
/// Layout (identical to an HdrHistogram with 2 significant digits and a lowest discernible
/// value of 1): values 0..255 each get their own slot; above that, every power-of-two range
/// [2^k, 2^(k+1)) is split into 128 equal sub-buckets. A recorded value is therefore
/// reported to within 1/128 (< 0.79 %) of itself.
///
/// One instance is meant for one thread: record on a per-thread histogram and merge()
/// the results afterwards (merging is exact because every instance of the same range
/// shares the same bucket boundaries).
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace wsx {

/// One row of the percentile distribution (the rows of HdrHistogram's .hgrm output).
struct percentile_row {
    std::uint64_t value = 0;        ///< value at this percentile level (ns)
    double percentile = 0;          ///< level iterated to, in [0, 100]
    std::uint64_t total_count = 0;  ///< number of recorded values at or below `value`'s bucket
};

/// HDR-style latency histogram over nanosecond values.
class histogram {
public:
    /// Sub-buckets per bucket, as HdrHistogram counts them (the lower half of every bucket
    /// but the first overlaps the previous bucket, so 128 distinct steps per power of two).
    static constexpr unsigned sub_bucket_count = 256;
    static constexpr unsigned sub_bucket_half_count = sub_bucket_count / 2;
    static constexpr unsigned sub_bucket_half_count_magnitude = 7;  // log2(sub_bucket_half_count)
    /// Significant decimal digits this layout guarantees (HdrHistogram's parameter).
    static constexpr int significant_digits = 2;
    /// One hour in nanoseconds: the default highest value recorded without clamping.
    static constexpr std::uint64_t default_highest_trackable = 3'600'000'000'000ULL;
    /// Largest accepted highest-trackable value (keeps every shift within 64 bits).
    static constexpr std::uint64_t max_highest_trackable = 1ULL << 62;

    /// A histogram covering 0..highest_trackable_ns. Allocates its counts once, here.
    /// Throws std::invalid_argument unless 2 <= highest_trackable_ns <= max_highest_trackable.
    explicit histogram(std::uint64_t highest_trackable_ns = default_highest_trackable);

    /// Records one value. Values above highest_trackable() are clamped into the top bucket and
    /// counted in overflow(); min()/max() still see the true value. No allocation, no lock.
    void record(std::uint64_t value_ns) noexcept { record_n(value_ns, 1); }

    /// Records `count` occurrences of one value (count 0 records nothing).
    void record_n(std::uint64_t value_ns, std::uint64_t count) noexcept {
        if (count == 0) return;
        if (value_ns < min_) min_ = value_ns;
        if (value_ns > max_) max_ = value_ns;
        if (value_ns > highest_trackable_) {
            value_ns = highest_trackable_;
            overflow_ += count;
        }
        counts_[index_of(value_ns)] += count;
        total_ += count;
    }

    /// Records `value_ns` and back-fills the samples a stalled closed-loop sender never got to
    /// take (HdrHistogram's coordinated-omission correction): value - interval,
    /// value - 2*interval, ... while the back-filled value is >= interval.
    ///
    /// The bench's open-loop mode needs none of this: it measures every latency from the
    /// moment the message was *scheduled* to be sent, which already charges a stall to every
    /// message it delays. This is for closed-loop runs with a known expected interval.
    /// An interval of 0 disables the back-fill. Runs in O(value / interval).
    void record_corrected(std::uint64_t value_ns, std::uint64_t expected_interval_ns) noexcept;

    /// Adds every count of `other`. Exact: the result equals one histogram that recorded both
    /// streams. Throws std::invalid_argument if the layouts (highest_trackable) differ.
    void merge(const histogram& other);

    /// Forgets every recorded value; keeps the layout and the allocation.
    void reset() noexcept;

    /// Number of recorded values (overflowed ones included).
    std::uint64_t count() const noexcept { return total_; }
    /// Number of recorded values that were above highest_trackable() and clamped.
    std::uint64_t overflow() const noexcept { return overflow_; }
    /// Exact smallest recorded value, 0 when empty.
    std::uint64_t min() const noexcept { return total_ ? min_ : 0; }
    /// Exact largest recorded value (unclamped), 0 when empty.
    std::uint64_t max() const noexcept { return total_ ? max_ : 0; }
    /// Mean from bucket midpoints (each clamped into [min, max]); 0 when empty.
    double mean() const noexcept;
    /// Population standard deviation from bucket midpoints; 0 when empty.
    double stddev() const noexcept;

    /// Value at percentile p (0..100, clamped; nearest-rank like HdrHistogram): the highest
    /// value equivalent to the bucket holding rank ceil(p/100 * count), never above max() and
    /// never below min(). p = 0 gives min(), p = 100 gives max(). 0 when empty.
    std::uint64_t value_at_percentile(double p) const noexcept;

    /// Percentage (0..100) of recorded values at or below `value_ns`, to bucket resolution
    /// (exact below min() and at or above max()). 0 when empty.
    double percentile_of(std::uint64_t value_ns) const noexcept;

    /// Calls f(lowest_ns, highest_ns, count) for every non-empty bucket, lowest first.
    template <class F>
    void for_each_bucket(F&& f) const {
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            if (counts_[i] == 0) continue;
            std::uint64_t lo = lowest_at_index(i);
            f(lo, lo + width_at_index(i) - 1, counts_[i]);
        }
    }

    /// Walks the percentile distribution exactly as HdrHistogram's PercentileIterator does:
    /// levels start at 0 % and each half of the remaining distance to 100 % gets
    /// `ticks_per_half_distance` equal steps; a final row at 100 % ends the walk.
    /// Row values are bucket highest-equivalents clamped into [min(), max()].
    class percentile_iterator {
    public:
        percentile_iterator(const histogram& h, int ticks_per_half_distance) noexcept;
        /// Fills `row` with the next row; false once the distribution is exhausted.
        bool next(percentile_row& row) noexcept;

    private:
        const histogram* h_;
        std::uint64_t ticks_;
        std::size_t index_ = 0;        // counts index being looked at
        std::uint64_t cumulative_ = 0; // counts up to and including index_
        bool started_ = false;
        bool seen_last_ = false;
        double level_ = 0.0;           // next percentile level to report
    };

    /// All rows of the percentile distribution (see percentile_iterator).
    std::vector<percentile_row> percentile_distribution(int ticks_per_half_distance = 5) const;

    /// HdrHistogram's percentile distribution text (.hgrm), as outputPercentileDistribution
    /// prints it: header, one "%12.3f %2.12f %10d %14.2f" row per level (the 100 % row without
    /// the last column), then the Mean/StdDeviation, Max/Total count and Buckets/SubBuckets
    /// footer. Values are divided by `value_unit_scaling` (1e3 for µs, 1e6 for ms).
    /// Rows, percentiles and counts are HdrHistogram's; the only numeric difference is that
    /// values are clamped into [min(), max()], so the last rows and "Max" show the exact max
    /// rather than its bucket's upper edge.
    std::string to_hgrm(double value_unit_scaling, int ticks_per_half_distance = 5) const;

    /// JSON form for reports and cross-machine merges: layout parameters, count/min/max/
    /// overflow and a sparse list of [counts_index, count] pairs. from_json(to_json()) == *this.
    nlohmann::json to_json() const;
    /// Rebuilds a histogram from to_json() output. Throws std::invalid_argument naming the
    /// first problem (wrong type, missing field, foreign layout, inconsistent counts).
    static histogram from_json(const nlohmann::json& j);

    /// Configured highest value recorded without clamping.
    std::uint64_t highest_trackable() const noexcept { return highest_trackable_; }
    /// Number of power-of-two buckets (HdrHistogram's bucketCount).
    unsigned bucket_count() const noexcept { return bucket_count_; }
    /// Number of counters (HdrHistogram's countsArrayLength).
    std::size_t counts_length() const noexcept { return counts_.size(); }

    /// Same layout and identical recorded state (counts, min, max, overflow).
    bool operator==(const histogram&) const = default;

    /// Counter index holding `value_ns` (value must be <= highest_trackable()).
    static std::size_t index_of(std::uint64_t value_ns) noexcept {
        // Bucket = position of the highest set bit above the first 256-value range; the OR
        // keeps small values (and 0) in bucket 0 without a branch.
        unsigned bucket = 64U - unsigned(std::countl_zero(value_ns | (sub_bucket_count - 1))) -
                          (sub_bucket_half_count_magnitude + 1);
        std::uint64_t sub_bucket = value_ns >> bucket;  // in [128, 256) except in bucket 0
        return (std::size_t(bucket) << sub_bucket_half_count_magnitude) + std::size_t(sub_bucket);
    }
    /// Lowest value that lands in counter `index`.
    static std::uint64_t lowest_at_index(std::size_t index) noexcept;
    /// Number of distinct values that land in counter `index` (a power of two).
    static std::uint64_t width_at_index(std::size_t index) noexcept;

private:
    std::uint64_t representative(std::size_t index) const noexcept;

    std::uint64_t highest_trackable_;
    unsigned bucket_count_;
    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t overflow_ = 0;
    std::uint64_t min_ = UINT64_MAX;  // valid only when total_ > 0
    std::uint64_t max_ = 0;
};

}  // namespace wsx
