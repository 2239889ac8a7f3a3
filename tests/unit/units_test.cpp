#include <catch2/catch.hpp>

#include <limits>

#include "units.hpp"

using namespace std::chrono_literals;
using wsx::format_bytes;
using wsx::format_duration;
using wsx::parse_duration;
using wsx::parse_rate;
using wsx::parse_size;

namespace {
std::optional<std::int64_t> ns(std::string_view s) {
    auto d = parse_duration(s);
    if (!d) return std::nullopt;
    return d->count();
}
}  // namespace

TEST_CASE("parse_duration reads every unit", "[units]") {
    CHECK(parse_duration("250ms") == 250ms);
    CHECK(parse_duration("2s") == 2s);
    CHECK(parse_duration("1.5s") == 1500ms);
    CHECK(parse_duration("1m") == 60s);
    CHECK(parse_duration("1h") == 3600s);
    CHECK(parse_duration("100us") == 100us);
    CHECK(parse_duration("100\xC2\xB5s") == 100us);  // micro sign
    CHECK(parse_duration("100\xCE\xBCs") == 100us);  // Greek mu
    CHECK(parse_duration("500ns") == 500ns);
    CHECK(parse_duration("0") == 0ns);
    CHECK(parse_duration("0s") == 0ns);
    CHECK(parse_duration(".5s") == 500ms);
}

TEST_CASE("parse_duration: a bare number means seconds", "[units]") {
    CHECK(parse_duration("5") == 5s);
    CHECK(parse_duration("1.25") == 1250ms);
    CHECK(parse_duration("0.000001") == 1us);
    CHECK(parse_duration("007") == 7s);
}

TEST_CASE("parse_duration: fractions are exact, sub-nanosecond parts dropped", "[units]") {
    CHECK(ns("0.1s") == 100'000'000);
    CHECK(ns("0.3s") == 300'000'000);  // no binary floating point in the way
    CHECK(ns("1.5ns") == 1);
    CHECK(ns("0.0000000001s") == 0);
    CHECK(ns("1.123456789123456789123s") == 1'123'456'789);
    CHECK(ns("2.5m") == 150'000'000'000);
    CHECK(ns("0.5h") == 1'800'000'000'000);
}

TEST_CASE("parse_duration and parse_size are exact however many digits the fraction has", "[units]") {
    // Found by fuzzing: digits after the 18th were dropped, which could lose a whole nanosecond.
    CHECK(ns("0.00000000000027777777778h") == 1);  // 1.000000000008ns
    CHECK(ns(".07777777777777777779777777777777777774777777777777777777777777777h") == 280'000'000'000);
    CHECK(ns("0.9999999999999999999999999s") == 999'999'999);
    CHECK(parse_size("0.0000000000000000000001EiB") == 0);
    CHECK(parse_size("0.000000000000000000867361737988403548EiB") == 1);  // just over 2^-60 EiB
    CHECK(parse_rate("0.5") == 0.5);
}

TEST_CASE("parse_duration: compound terms from large to small", "[units]") {
    CHECK(parse_duration("1h30m") == 90min);
    CHECK(parse_duration("1m30s") == 90s);
    CHECK(parse_duration("1m2.5s") == 62500ms);
    CHECK(parse_duration("1s500ms") == 1500ms);
    CHECK(parse_duration("1m 30s") == 90s);
    CHECK(parse_duration("2 s") == 2s);
    CHECK(parse_duration("  3s\t") == 3s);
    CHECK_FALSE(parse_duration("30s1m"));   // out of order
    CHECK_FALSE(parse_duration("1s1s"));    // repeated unit
    CHECK_FALSE(parse_duration("1m30"));    // bare number after a term
    CHECK_FALSE(parse_duration("1 30s"));
}

TEST_CASE("parse_duration rejects negatives, garbage and overflow", "[units]") {
    for (const char* bad : {"", " ", "-1s", "-1", "+1s", "s", "ms", "1x", "1 sec", "1S", "1Ms",
                            "1.s", ".", "1..5s", "1.5.5s", "1e3", "1e3ms", "abc", "1s!", "0x10",
                            "1d", "inf", "nan", "1,5s", "\xC2\xB5s"}) {
        INFO("input: '" << bad << "'");
        CHECK_FALSE(parse_duration(bad));
    }
    // The int64 nanosecond range is about 292 years.
    CHECK(ns("9223372036854775807ns") == std::numeric_limits<std::int64_t>::max());
    CHECK_FALSE(parse_duration("9223372036854775808ns"));
    CHECK_FALSE(parse_duration("9223372037s"));
    CHECK(parse_duration("9223372036s"));
    CHECK_FALSE(parse_duration("99999999999999999999999s"));  // beyond uint64 while reading
    CHECK_FALSE(parse_duration("2562048h"));
    CHECK_FALSE(parse_duration("2562047h59m59s1s"));  // repeated unit anyway
    CHECK_FALSE(parse_duration("2562047h47m16.854775807s1ns"));  // sum overflows by 1ns
    CHECK(ns("2562047h47m16.854775807s") == std::numeric_limits<std::int64_t>::max());
}

TEST_CASE("format_duration: three significant digits in the best unit", "[units]") {
    CHECK(format_duration(0ns) == "0s");
    CHECK(format_duration(1ns) == "1ns");
    CHECK(format_duration(999ns) == "999ns");
    CHECK(format_duration(1000ns) == "1us");
    CHECK(format_duration(1234ns) == "1.23us");
    CHECK(format_duration(45600ns) == "45.6us");
    CHECK(format_duration(999'999ns) == "1ms");  // rounding moves it up a unit
    CHECK(format_duration(1'230'000ns) == "1.23ms");
    CHECK(format_duration(1'500'000ns) == "1.5ms");
    CHECK(format_duration(250ms) == "250ms");
    CHECK(format_duration(999'600us) == "1s");
    CHECK(format_duration(1500ms) == "1.5s");
    CHECK(format_duration(2s) == "2s");
    CHECK(format_duration(59'900ms) == "59.9s");
    CHECK(format_duration(59'960ms) == "1m");
    CHECK(format_duration(60s) == "1m");
    CHECK(format_duration(90s) == "1m30s");
    CHECK(format_duration(90'400ms) == "1m30s");
    CHECK(format_duration(90'600ms) == "1m31s");
    CHECK(format_duration(3600s) == "1h");
    CHECK(format_duration(3605s) == "1h5s");
    CHECK(format_duration(3725s) == "1h2m5s");
    CHECK(format_duration(-1500ms) == "-1.5s");
    CHECK(format_duration(-90s) == "-1m30s");
    // The extremes round down to the largest whole second parse_duration reads.
    CHECK(format_duration(std::chrono::nanoseconds::min()) == "-2562047h47m16s");
    CHECK(format_duration(std::chrono::nanoseconds::max()) == "2562047h47m16s");
}

TEST_CASE("format_duration output parses back to about the same value", "[units]") {
    for (std::int64_t v : {1LL, 999LL, 1'234LL, 45'678LL, 1'234'567LL, 987'654'321LL, 12'345'678'901LL,
                           98'765'432'109LL, 7'200'000'000'000LL}) {
        const auto text = format_duration(std::chrono::nanoseconds(v));
        INFO(v << " -> " << text);
        const auto back = ns(text);
        REQUIRE(back);
        CHECK(std::abs(static_cast<double>(*back - v)) <= static_cast<double>(v) * 0.01);
    }
}

TEST_CASE("format_duration near the int64 limit still parses back", "[units]") {
    // Found by fuzzing: rounding to the nearest second went past the largest duration
    // parse_duration reads ("2562047h47m17s" for the maximum).
    for (auto d : {std::chrono::nanoseconds::max(), std::chrono::nanoseconds::max() - 1ns,
                   std::chrono::nanoseconds(9'223'372'036'500'000'000)}) {
        INFO(d.count());
        const auto text = format_duration(d);
        CHECK(text == "2562047h47m16s");
        const auto back = parse_duration(text);
        REQUIRE(back);
        CHECK(d - *back < 1s);
    }
}

TEST_CASE("parse_size: decimal and binary units", "[units]") {
    CHECK(parse_size("0") == 0u);
    CHECK(parse_size("1024") == 1024u);
    CHECK(parse_size("1024B") == 1024u);
    CHECK(parse_size("64KiB") == 65536u);
    CHECK(parse_size("64 KiB") == 65536u);
    CHECK(parse_size("16MiB") == 16u * 1024 * 1024);
    CHECK(parse_size("1GiB") == 1024u * 1024 * 1024);
    CHECK(parse_size("1TiB") == 1024ull * 1024 * 1024 * 1024);
    CHECK(parse_size("1Ki") == 1024u);
    CHECK(parse_size("1kib") == 1024u);
    CHECK(parse_size("1k") == 1000u);
    CHECK(parse_size("1K") == 1000u);
    CHECK(parse_size("1KB") == 1000u);
    CHECK(parse_size("1kB") == 1000u);
    CHECK(parse_size("1M") == 1'000'000u);
    CHECK(parse_size("1MB") == 1'000'000u);
    CHECK(parse_size("1m") == 1'000'000u);
    CHECK(parse_size("2G") == 2'000'000'000u);
    CHECK(parse_size("1T") == 1'000'000'000'000u);
    CHECK(parse_size(" 8k ") == 8000u);
}

TEST_CASE("parse_size: fractions round down to whole bytes", "[units]") {
    CHECK(parse_size("1.5k") == 1500u);
    CHECK(parse_size("1.5KiB") == 1536u);
    CHECK(parse_size("0.5") == 0u);
    CHECK(parse_size("1.3KiB") == 1331u);  // 1331.2
    CHECK(parse_size("0.1MiB") == 104857u);  // 104857.6
}

TEST_CASE("parse_size rejects garbage, signs and overflow", "[units]") {
    for (const char* bad : {"", "-1", "+1", "-1k", "k", "KiB", "1x", "1 K B", "1KiBB", "1iB", "1bb",
                            "1.", "1e3", "abc", "1 2", "1,000", "0x10", "1KiB!", "1Kb/s"}) {
        INFO("input: '" << bad << "'");
        CHECK_FALSE(parse_size(bad));
    }
    CHECK(parse_size("18446744073709551615") == std::numeric_limits<std::uint64_t>::max());
    CHECK_FALSE(parse_size("18446744073709551616"));
    CHECK(parse_size("15EiB") == 15ull << 60);
    CHECK_FALSE(parse_size("16EiB"));
    CHECK_FALSE(parse_size("17179869184GiB"));
    CHECK(parse_size("17179869183GiB") == 17179869183ull << 30);
    CHECK_FALSE(parse_size("20E"));
}

TEST_CASE("format_bytes: binary units, three significant digits", "[units]") {
    CHECK(format_bytes(0) == "0 B");
    CHECK(format_bytes(512) == "512 B");
    CHECK(format_bytes(1023) == "1023 B");
    CHECK(format_bytes(1024) == "1 KiB");
    CHECK(format_bytes(1536) == "1.5 KiB");
    CHECK(format_bytes(65536) == "64 KiB");
    CHECK(format_bytes(1024 * 1024 + 512 * 1024) == "1.5 MiB");
    CHECK(format_bytes(1024 * 1024 - 1) == "1 MiB");
    CHECK(format_bytes(1300000000) == "1.21 GiB");
    CHECK(format_bytes(std::numeric_limits<std::uint64_t>::max()) == "16 EiB");
    // What format_bytes writes, parse_size reads (to within the rounding).
    CHECK(parse_size(format_bytes(65536)) == 65536u);
}

TEST_CASE("parse_rate: counts per time unit, as per second", "[units]") {
    CHECK(parse_rate("5000") == Approx(5000));
    CHECK(parse_rate("100/s") == Approx(100));
    CHECK(parse_rate("100/sec") == Approx(100));
    CHECK(parse_rate("1k/s") == Approx(1000));
    CHECK(parse_rate("1.5k") == Approx(1500));
    CHECK(parse_rate("2M/s") == Approx(2e6));
    CHECK(parse_rate("60/m") == Approx(1));
    CHECK(parse_rate("30/min") == Approx(0.5));
    CHECK(parse_rate("3600/h") == Approx(1));
    CHECK(parse_rate("2/ms") == Approx(2000));
    CHECK(parse_rate("1/us") == Approx(1e6));
    CHECK(parse_rate("0.5") == Approx(0.5));
    CHECK(parse_rate("0") == Approx(0));
    CHECK(parse_rate(" 10 / s ") == Approx(10));
}

TEST_CASE("parse_rate rejects garbage and signs", "[units]") {
    for (const char* bad : {"", "/s", "-1", "+1", "-1/s", "1/", "1/x", "1/2s", "1//s", "x/s", "1kk",
                            "1m/s", "1 per s", "1e3", "nan", "inf", "1/s/s"}) {
        INFO("input: '" << bad << "'");
        CHECK_FALSE(parse_rate(bad));
    }
}
