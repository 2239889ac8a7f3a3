#include "histogram.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using wsx::histogram;

namespace {

// Nearest-rank percentile of a sorted sample, with the rank rule the histogram documents.
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
    if (p <= 0) return sorted.front();
    if (p >= 100) return sorted.back();
    double fp_rank = std::nextafter(p, 0.0) / 100.0 * double(sorted.size());
    auto rank = std::max<std::uint64_t>(std::uint64_t(std::ceil(fp_rank)), 1);
    return sorted[rank - 1];
}

std::vector<double> percentiles_to_check() {
    std::vector<double> ps;
    for (double p = 0; p <= 100.0; p += 0.5) ps.push_back(p);
    for (double p : {0.1, 1.0, 99.9, 99.99, 99.999, 99.9999}) ps.push_back(p);
    return ps;
}

histogram from_samples(const std::vector<std::uint64_t>& samples) {
    histogram h;
    for (auto v : samples) h.record(v);
    return h;
}

// Every reported percentile is within 1 % of the exact one (and never below it, since the
// histogram reports a bucket's highest equivalent value); min, max, count are exact.
void check_against_exact(std::vector<std::uint64_t> samples) {
    histogram h = from_samples(samples);
    std::sort(samples.begin(), samples.end());
    REQUIRE(h.count() == samples.size());
    CHECK(h.min() == samples.front());
    CHECK(h.max() == samples.back());
    CHECK(h.overflow() == 0);
    for (double p : percentiles_to_check()) {
        INFO("p = " << p);
        auto exact = exact_percentile(samples, p);
        auto got = h.value_at_percentile(p);
        CHECK(got >= exact);
        CHECK(double(got - exact) <= 0.01 * double(exact));
    }
    double exact_mean = 0;
    for (auto v : samples) exact_mean += double(v);
    exact_mean /= double(samples.size());
    CHECK(std::abs(h.mean() - exact_mean) <= 0.01 * exact_mean);
}

struct hgrm_row {
    double value;
    double percentile;
    std::uint64_t total;
    bool has_inverse;
};

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> lines;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

}  // namespace

TEST_CASE("layout: 1 ns resolution to one hour, < 0.79 % bucket width", "[histogram]") {
    histogram h;
    CHECK(h.highest_trackable() == 3'600'000'000'000ULL);
    CHECK(h.bucket_count() == 35);
    CHECK(h.counts_length() == 36 * 128);
    for (std::uint64_t v : {0ULL, 1ULL, 127ULL, 128ULL, 255ULL, 256ULL, 257ULL, 511ULL, 512ULL, 1000ULL,
                            123456789ULL, 3'600'000'000'000ULL}) {
        INFO("v = " << v);
        auto i = histogram::index_of(v);
        REQUIRE(i < h.counts_length());
        auto lo = histogram::lowest_at_index(i);
        auto width = histogram::width_at_index(i);
        CHECK(lo <= v);
        CHECK(v < lo + width);
        if (v < 256)
            CHECK(width == 1);
        else
            CHECK(width * 128 <= lo);
    }
    // Counters are contiguous: each one starts where the previous one ends.
    for (std::size_t i = 1; i < h.counts_length(); ++i)
        REQUIRE(histogram::lowest_at_index(i) ==
                histogram::lowest_at_index(i - 1) + histogram::width_at_index(i - 1));
    CHECK_THROWS_AS(histogram(1), std::invalid_argument);
    CHECK_THROWS_AS(histogram((1ULL << 62) + 1), std::invalid_argument);
}

TEST_CASE("uniform 1..1,000,000 ns: percentiles within 1 %", "[histogram]") {
    std::vector<std::uint64_t> samples;
    for (std::uint64_t v = 1; v <= 1'000'000; ++v) samples.push_back(v);
    check_against_exact(samples);
    histogram h = from_samples(samples);
    CHECK(h.value_at_percentile(0) == 1);
    CHECK(h.value_at_percentile(100) == 1'000'000);
    CHECK(h.percentile_of(0) == 0.0);
    CHECK(h.percentile_of(1'000'000) == 100.0);
    CHECK(std::abs(h.percentile_of(500'000) - 50.0) <= 0.5);
    CHECK(std::abs(h.percentile_of(100) - 0.01) < 1e-12);  // exact in the unit-width range
}

TEST_CASE("exponential distribution: percentiles within 1 %", "[histogram]") {
    std::mt19937_64 rng(20240601);
    std::exponential_distribution<double> dist(1.0 / 50'000.0);  // mean 50 µs
    std::vector<std::uint64_t> samples;
    for (int i = 0; i < 200'000; ++i) samples.push_back(std::uint64_t(dist(rng)));
    check_against_exact(samples);
}

TEST_CASE("bimodal distribution: percentiles within 1 %", "[histogram]") {
    std::mt19937_64 rng(7);
    std::normal_distribution<double> fast(100'000.0, 10'000.0);     // 100 µs
    std::normal_distribution<double> slow(20'000'000.0, 2'000'000.0);  // 20 ms
    std::bernoulli_distribution is_slow(0.1);
    std::vector<std::uint64_t> samples;
    for (int i = 0; i < 200'000; ++i) {
        double v = is_slow(rng) ? slow(rng) : fast(rng);
        samples.push_back(std::uint64_t(std::max(v, 1.0)));
    }
    check_against_exact(samples);
}

TEST_CASE("constant distribution: every statistic exact", "[histogram]") {
    std::vector<std::uint64_t> samples(1000, 123'456);
    check_against_exact(samples);
    histogram h = from_samples(samples);
    for (double p : percentiles_to_check()) CHECK(h.value_at_percentile(p) == 123'456);
    CHECK(h.mean() == 123'456.0);
    CHECK(h.stddev() == 0.0);
    CHECK(h.percentile_of(123'455) == 0.0);
    CHECK(h.percentile_of(123'456) == 100.0);
}

TEST_CASE("record of 0 and record_n", "[histogram]") {
    histogram h;
    h.record(0);
    CHECK(h.count() == 1);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.value_at_percentile(50) == 0);
    CHECK(h.mean() == 0.0);
    int buckets = 0;
    h.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
        ++buckets;
        CHECK(lo == 0);
        CHECK(hi == 0);
        CHECK(n == 1);
    });
    CHECK(buckets == 1);

    h.record_n(1000, 9);
    h.record_n(5, 0);  // records nothing, not even min
    CHECK(h.count() == 10);
    CHECK(h.min() == 0);
    CHECK(h.max() == 1000);
    CHECK(h.value_at_percentile(10) == 0);
    CHECK(h.value_at_percentile(11) == 1000);
}

TEST_CASE("empty histogram", "[histogram]") {
    histogram h;
    CHECK(h.count() == 0);
    CHECK(h.min() == 0);
    CHECK(h.max() == 0);
    CHECK(h.mean() == 0.0);
    CHECK(h.stddev() == 0.0);
    CHECK(h.value_at_percentile(50) == 0);
    CHECK(h.percentile_of(10) == 0.0);
    CHECK(h.percentile_distribution().empty());
}

TEST_CASE("values above the range are clamped and counted as overflow", "[histogram]") {
    histogram h;
    const std::uint64_t two_hours = 7'200'000'000'000ULL;
    h.record(1000);
    h.record(two_hours);
    h.record_n(h.highest_trackable(), 2);  // exactly at the limit is not overflow
    CHECK(h.count() == 4);
    CHECK(h.overflow() == 1);
    CHECK(h.max() == two_hours);  // the true value, not the clamped one
    CHECK(h.value_at_percentile(100) == two_hours);
    CHECK(h.value_at_percentile(99) <= two_hours);
    CHECK(h.value_at_percentile(99) >= h.highest_trackable());
    CHECK(h.percentile_of(h.highest_trackable() + 1) == 100.0);

    histogram small(1000);
    small.record(5000);
    CHECK(small.overflow() == 1);
    CHECK(small.min() == 5000);
    CHECK(small.value_at_percentile(50) == 5000);
    std::uint64_t seen = 0;
    small.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
        CHECK(lo <= 1000);
        CHECK(1000 <= hi);
        seen += n;
    });
    CHECK(seen == 1);
}

TEST_CASE("for_each_bucket visits non-empty buckets in order", "[histogram]") {
    histogram h;
    std::vector<std::uint64_t> values{3, 3, 700, 701, 1'000'000, 5'000'000'000ULL};
    for (auto v : values) h.record(v);
    std::uint64_t total = 0, previous_hi = 0;
    bool first = true;
    h.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
        CHECK(n > 0);
        CHECK(lo <= hi);
        if (!first) CHECK(lo > previous_hi);
        first = false;
        previous_hi = hi;
        total += n;
        std::uint64_t inside = 0;
        for (auto v : values) inside += (lo <= v && v <= hi);
        CHECK(inside == n);
    });
    CHECK(total == values.size());
}

TEST_CASE("merge of two halves equals the histogram of the whole", "[histogram]") {
    std::mt19937_64 rng(99);
    std::lognormal_distribution<double> dist(11.0, 1.5);
    histogram whole, a, b;
    for (int i = 0; i < 100'000; ++i) {
        auto v = std::uint64_t(dist(rng));
        whole.record(v);
        (i % 2 ? a : b).record(v);
    }
    whole.record(9'000'000'000'000ULL);  // overflow travels through merges too
    b.record(9'000'000'000'000ULL);
    histogram merged = a;
    merged.merge(b);
    CHECK(merged == whole);
    CHECK(merged.count() == whole.count());
    CHECK(merged.overflow() == 1);
    CHECK(merged.min() == whole.min());
    CHECK(merged.max() == whole.max());
    for (double p : percentiles_to_check()) CHECK(merged.value_at_percentile(p) == whole.value_at_percentile(p));
    CHECK(merged.to_hgrm(1e3) == whole.to_hgrm(1e3));

    histogram empty;
    merged.merge(empty);
    CHECK(merged == whole);
    empty.merge(whole);
    CHECK(empty == whole);

    histogram other_layout(1'000'000);
    CHECK_THROWS_AS(merged.merge(other_layout), std::invalid_argument);
}

TEST_CASE("reset forgets everything but keeps the layout", "[histogram]") {
    histogram h(10'000'000);
    h.record(5);
    h.record(20'000'000);
    h.reset();
    CHECK(h == histogram(10'000'000));
    CHECK(h.count() == 0);
    CHECK(h.overflow() == 0);
    h.record(7);
    CHECK(h.min() == 7);
    CHECK(h.max() == 7);
}

TEST_CASE("coordinated omission back-fill", "[histogram]") {
    histogram h;
    h.record_corrected(1000, 100);  // 1000, 900, ..., 100
    CHECK(h.count() == 10);
    CHECK(h.min() == 100);
    CHECK(h.max() == 1000);
    CHECK(h.value_at_percentile(50) == 501);  // rank 5 is 500, in the 2-wide bucket [500, 501]

    histogram h2;
    h2.record_corrected(90, 30);  // 90, 60, 30
    CHECK(h2.count() == 3);
    CHECK(h2.min() == 30);
    h2.record_corrected(100, 30);  // 100, 70, 40
    CHECK(h2.count() == 6);
    h2.record_corrected(20, 30);  // below the interval: no back-fill
    h2.record_corrected(30, 30);  // equal: no back-fill
    h2.record_corrected(5000, 0); // interval 0 disables it
    CHECK(h2.count() == 9);
    CHECK(h2.min() == 20);
}

TEST_CASE("JSON round trip is exact", "[histogram]") {
    std::mt19937_64 rng(1234);
    std::exponential_distribution<double> dist(1.0 / 2'000'000.0);
    histogram h;
    for (int i = 0; i < 50'000; ++i) h.record(std::uint64_t(dist(rng)));
    h.record(0);
    h.record(10'000'000'000'000ULL);  // overflow

    auto text = h.to_json().dump();
    histogram back = histogram::from_json(nlohmann::json::parse(text));
    CHECK(back == h);
    CHECK(back.to_json() == h.to_json());
    CHECK(back.to_hgrm(1e6) == h.to_hgrm(1e6));

    auto j = h.to_json();
    CHECK(j["unit"] == "ns");
    CHECK(j["sub_bucket_count"] == 256);
    CHECK(j["count"] == 50'002);
    CHECK(j["overflow"] == 1);
    CHECK(j["min"] == 0);
    CHECK(j["max"] == 10'000'000'000'000ULL);
    CHECK(j["buckets"].is_array());
    CHECK(j["buckets"][0] == nlohmann::json::array({0, 1}));

    histogram empty(1'000'000);
    CHECK(histogram::from_json(empty.to_json()) == empty);
}

TEST_CASE("from_json rejects corrupted input", "[histogram]") {
    histogram h;
    h.record(100);
    h.record(5000);
    h.record(5001);
    const nlohmann::json good = h.to_json();
    REQUIRE_NOTHROW(histogram::from_json(good));

    auto rejects = [&](const nlohmann::json& bad, const std::string& needle) {
        INFO(bad.dump());
        try {
            histogram::from_json(bad);
            FAIL("accepted corrupted input");
        } catch (const std::invalid_argument& e) {
            std::string what = e.what();
            CHECK(what.rfind("histogram JSON: ", 0) == 0);
            CHECK(what.find(needle) != std::string::npos);
        }
    };
    auto with = [&](const char* key, nlohmann::json value) {
        auto j = good;
        j[key] = std::move(value);
        return j;
    };
    auto without = [&](const char* key) {
        auto j = good;
        j.erase(key);
        return j;
    };

    rejects(nlohmann::json::array(), "expected an object");
    rejects(without("buckets"), "missing field \"buckets\"");
    rejects(without("count"), "missing field \"count\"");
    rejects(without("unit"), "missing field \"unit\"");
    rejects(with("unit", "ms"), "unsupported unit");
    rejects(with("count", "3"), "\"count\" must be a non-negative integer");
    rejects(with("count", -3), "\"count\" must be a non-negative integer");
    rejects(with("min", 1.5), "\"min\" must be a non-negative integer");
    rejects(with("sub_bucket_count", 2048), "layout mismatch: sub_bucket_count");
    rejects(with("significant_digits", 3), "layout mismatch: significant_digits");
    rejects(with("bucket_count", 20), "layout mismatch: bucket_count");
    rejects(with("highest_trackable", 1), "highest_trackable 1 out of range");
    rejects(with("count", 4), "add up to 3");
    rejects(with("buckets", "nope"), "must be an array");
    rejects(with("buckets", {{1, 2, 3}}), "buckets[0] must be a pair");
    rejects(with("buckets", {{100, 1}, {99999, 2}}), "out of range");
    rejects(with("buckets", {{1000, 2}, {100, 1}}), "not above the previous index");
    rejects(with("buckets", {{100, 1}, {1000, 0}, {1001, 2}}), "zero count");
    rejects(with("min", 50), "min 50 does not fall in the lowest non-empty bucket");
    rejects(with("max", 9000), "max 9000 does not fall in the highest non-empty bucket");
    rejects(with("min", 6000), "min 6000 above max");
    rejects(with("overflow", 4), "overflow 4 exceeds count");
    rejects(with("overflow", 1), "overflow 1 inconsistent");
    rejects(with("buckets", {{100, 1}, {1000, 1}, {1000, 1}}), "not above the previous index");

    auto empty = histogram().to_json();
    empty["max"] = 5;
    rejects(empty, "empty histogram must have min and max 0");
}

TEST_CASE("hgrm text of a small histogram", "[histogram]") {
    histogram h;
    for (std::uint64_t v : {1, 2, 3, 4}) h.record(v);
    // Levels advance in fifths of each half-distance to 100 %: 0, 10, ..., 50, 55, ..., 75, 77.5;
    // a level is reported at the first value whose cumulative share reaches it.
    const std::string expected =
        "       Value     Percentile TotalCount 1/(1-Percentile)\n"
        "\n"
        "       1.000 0.000000000000          1           1.00\n"
        "       1.000 0.100000000000          1           1.11\n"
        "       1.000 0.200000000000          1           1.25\n"
        "       2.000 0.300000000000          2           1.43\n"
        "       2.000 0.400000000000          2           1.67\n"
        "       2.000 0.500000000000          2           2.00\n"
        "       3.000 0.550000000000          3           2.22\n"
        "       3.000 0.600000000000          3           2.50\n"
        "       3.000 0.650000000000          3           2.86\n"
        "       3.000 0.700000000000          3           3.33\n"
        "       3.000 0.750000000000          3           4.00\n"
        "       4.000 0.775000000000          4           4.44\n"
        "       4.000 1.000000000000          4\n"
        "#[Mean    =        2.500, StdDeviation   =        1.118]\n"
        "#[Max     =        4.000, Total count    =            4]\n"
        "#[Buckets =           35, SubBuckets     =          256]\n";
    CHECK(h.to_hgrm(1.0) == expected);

    auto rows = h.percentile_distribution(5);
    REQUIRE(rows.size() == 13);
    CHECK(rows.front().value == 1);
    CHECK(rows.back().value == 4);
    CHECK(rows.back().percentile == 100.0);
    CHECK(rows.back().total_count == 4);
}

TEST_CASE("hgrm text rounds half up and scales units", "[histogram]") {
    histogram h;
    h.record(62'500);  // 0.0625 ms: "%.3f" in HdrHistogram's formatter gives 0.063
    auto lines = split_lines(h.to_hgrm(1e6));
    REQUIRE(lines.size() >= 5);
    CHECK(lines[2] == "       0.063 0.000000000000          1           1.00");
    CHECK(lines[3] == "       0.063 1.000000000000          1");
    CHECK(lines[lines.size() - 3] == "#[Mean    =        0.063, StdDeviation   =        0.000]");
    CHECK(lines[lines.size() - 2] == "#[Max     =        0.063, Total count    =            1]");

    histogram empty;
    CHECK(empty.to_hgrm(1.0) ==
          "       Value     Percentile TotalCount 1/(1-Percentile)\n\n"
          "#[Mean    =        0.000, StdDeviation   =        0.000]\n"
          "#[Max     =        0.000, Total count    =            0]\n"
          "#[Buckets =           35, SubBuckets     =          256]\n");
}

TEST_CASE("hgrm output of a large histogram parses back", "[histogram]") {
    std::mt19937_64 rng(42);
    std::exponential_distribution<double> dist(1.0 / 80'000.0);
    histogram h;
    for (int i = 0; i < 100'000; ++i) h.record(1000 + std::uint64_t(dist(rng)));
    const double scale = 1e3;  // microseconds
    auto lines = split_lines(h.to_hgrm(scale, 5));
    REQUIRE(lines.size() > 6);
    CHECK(lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)");
    CHECK(lines[1].empty());

    std::vector<hgrm_row> rows;
    std::size_t i = 2;
    for (; i < lines.size() && lines[i].rfind("#[", 0) != 0; ++i) {
        std::istringstream in(lines[i]);
        hgrm_row r{};
        REQUIRE(in >> r.value >> r.percentile >> r.total);
        double inverse = 0;
        r.has_inverse = bool(in >> inverse);
        if (r.has_inverse) CHECK(std::abs(inverse - 1.0 / (1.0 - r.percentile)) <= 0.005 + 1e-9 * inverse);
        rows.push_back(r);
    }
    REQUIRE(rows.size() > 20);
    for (std::size_t k = 1; k < rows.size(); ++k) {
        CHECK(rows[k].value >= rows[k - 1].value);
        CHECK(rows[k].percentile > rows[k - 1].percentile);
        CHECK(rows[k].total >= rows[k - 1].total);
    }
    CHECK(rows.front().percentile == 0.0);
    CHECK(rows.back().percentile == 1.0);
    CHECK_FALSE(rows.back().has_inverse);
    for (std::size_t k = 0; k + 1 < rows.size(); ++k) CHECK(rows[k].has_inverse);
    CHECK(rows.back().total == h.count());
    CHECK(std::abs(rows.back().value - double(h.max()) / scale) <= 0.0005);
    // Each row agrees with value_at_percentile at its level, to the printed precision.
    auto dist_rows = h.percentile_distribution(5);
    REQUIRE(dist_rows.size() == rows.size());
    for (std::size_t k = 0; k < rows.size(); ++k) {
        CHECK(std::abs(rows[k].value - double(dist_rows[k].value) / scale) <= 0.0005);
        // (The 0 % row shows the first bucket's highest value, value_at_percentile(0) the min.)
        if (k > 0) CHECK(dist_rows[k].value == h.value_at_percentile(dist_rows[k].percentile));
    }

    // Footer.
    REQUIRE(lines.size() == i + 3);
    double mean = 0, sd = 0, max = 0;
    unsigned long long total = 0, buckets = 0, sub_buckets = 0;
    REQUIRE(std::sscanf(lines[i].c_str(), "#[Mean    = %lf, StdDeviation   = %lf]", &mean, &sd) == 2);
    REQUIRE(std::sscanf(lines[i + 1].c_str(), "#[Max     = %lf, Total count    = %llu]", &max, &total) == 2);
    REQUIRE(std::sscanf(lines[i + 2].c_str(), "#[Buckets = %llu, SubBuckets     = %llu]", &buckets,
                        &sub_buckets) == 2);
    CHECK(lines[i].size() == std::string("#[Mean    = 12345678.123, StdDeviation   = 12345678.123]").size());
    CHECK(std::abs(mean - h.mean() / scale) <= 0.0005);
    CHECK(std::abs(sd - h.stddev() / scale) <= 0.0005);
    CHECK(std::abs(max - double(h.max()) / scale) <= 0.0005);
    CHECK(total == h.count());
    CHECK(buckets == h.bucket_count());
    CHECK(sub_buckets == 256);

    // Finer ticks give more rows, same end point.
    auto fine = h.percentile_distribution(20);
    CHECK(fine.size() > rows.size());
    CHECK(fine.back().percentile == 100.0);
    CHECK(fine.back().total_count == h.count());
}
