// The units parsers (units.cpp), which read options and scripted values: parse_duration and
// parse_size against plain references that do the arithmetic exactly (digit by digit, in 128
// bits), parse_rate for sanity, and the formatters' promise that what they write reads back
// (to within their three significant digits), on the parsed values and on the input's first
// eight bytes taken as a number.
// fuzz-options: -max_len=128
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "units.hpp"

namespace {

using namespace wsx;
using u128 = unsigned __int128;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("units_fuzz", what);
}

constexpr u128 too_big = u128{1} << 100;  // beyond any limit here, and far from overflowing

bool blank(char c) { return c == ' ' || c == '\t'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && blank(s.back())) s.remove_suffix(1);
    return s;
}

/// A number as written: "12", "1.5", ".5" (not "5." nor "."), taken off the front of `s`.
struct number {
    std::string_view whole, frac;
};

std::optional<number> take_number(std::string_view& s) {
    std::size_t i = 0;
    while (i < s.size() && digit(s[i])) ++i;
    number n{s.substr(0, i), {}};
    if (i < s.size() && s[i] == '.') {
        const std::size_t f = ++i;
        while (i < s.size() && digit(s[i])) ++i;
        n.frac = s.substr(f, i - f);
        if (n.frac.empty()) return std::nullopt;
    }
    if (n.whole.empty() && n.frac.empty()) return std::nullopt;
    s.remove_prefix(i);
    return n;
}

/// floor(n × mult), exactly (or too_big). The fraction's digits from the last one up:
/// floor((d + y) / 10) = floor((d + floor(y)) / 10) for a whole d, so dividing at each step
/// loses nothing that matters.
u128 times(const number& n, std::uint64_t mult) {
    u128 whole = 0;
    for (char c : n.whole) {
        whole = whole * 10 + static_cast<unsigned>(c - '0');
        if (whole >= too_big) return too_big;
    }
    u128 frac = 0;
    for (auto it = n.frac.rbegin(); it != n.frac.rend(); ++it) frac = (static_cast<unsigned>(*it - '0') * u128{mult} + frac) / 10;
    if (whole != 0 && whole >= too_big / mult) return too_big;
    const u128 v = whole * mult + frac;
    return v >= too_big ? too_big : v;
}

std::optional<std::int64_t> reference_duration(std::string_view text) {
    std::string_view s = trim(text);
    if (s.empty()) return std::nullopt;
    constexpr u128 limit = std::numeric_limits<std::int64_t>::max();
    u128 total = 0;
    std::uint64_t previous = 0;
    while (!s.empty()) {
        const auto n = take_number(s);
        if (!n) return std::nullopt;
        std::size_t u = 0;
        while (u < s.size() && !digit(s[u]) && s[u] != '.') ++u;
        const std::string_view unit_text = trim(s.substr(0, u));
        s.remove_prefix(u);
        std::uint64_t unit;
        if (unit_text.empty()) {
            if (previous != 0 || !s.empty()) return std::nullopt;  // a bare number stands alone
            unit = 1'000'000'000;
        } else if (unit_text == "ns") {
            unit = 1;
        } else if (unit_text == "us" || unit_text == "\u00b5s" || unit_text == "\u03bcs") {
            unit = 1'000;
        } else if (unit_text == "ms") {
            unit = 1'000'000;
        } else if (unit_text == "s") {
            unit = 1'000'000'000;
        } else if (unit_text == "m") {
            unit = 60'000'000'000;
        } else if (unit_text == "h") {
            unit = 3'600'000'000'000;
        } else {
            return std::nullopt;
        }
        if (previous != 0 && unit >= previous) return std::nullopt;  // largest first, each once
        previous = unit;
        total += times(*n, unit);
        if (total > limit) return std::nullopt;
    }
    return static_cast<std::int64_t>(total);
}

std::optional<std::uint64_t> reference_size(std::string_view text) {
    std::string_view s = trim(text);
    const auto n = take_number(s);
    if (!n) return std::nullopt;
    std::string_view unit = trim(s);
    if (!unit.empty() && (unit.back() == 'b' || unit.back() == 'B')) unit.remove_suffix(1);
    std::uint64_t mult = 1;
    if (!unit.empty()) {
        const bool binary = unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I');
        if (unit.size() != 1 && !binary) return std::nullopt;
        static constexpr std::string_view prefixes = "kmgtpe";
        const char p = static_cast<char>(unit[0] >= 'A' && unit[0] <= 'Z' ? unit[0] - 'A' + 'a' : unit[0]);
        const auto power = prefixes.find(p);
        if (power == std::string_view::npos) return std::nullopt;
        for (std::size_t i = 0; i <= power; ++i) mult *= binary ? 1024 : 1000;
    }
    const u128 v = times(*n, mult);
    if (v > std::numeric_limits<std::uint64_t>::max()) return std::nullopt;
    return static_cast<std::uint64_t>(v);
}

std::uint64_t distance(std::uint64_t a, std::uint64_t b) { return a > b ? a - b : b - a; }

/// format_duration writes three significant digits below a minute, whole seconds above, and
/// promises that parse_duration reads it (when it is not negative).
void duration_reads_back(std::int64_t ns) {
    const std::string text = format_duration(std::chrono::nanoseconds(ns));
    if (ns < 0) {
        check(text.starts_with("-"), "a negative duration without its sign: " + text);
        return;
    }
    const auto back = parse_duration(text);
    check(back.has_value(), fmt::format("format_duration({}) = '{}' does not parse", ns, text));
    const auto v = static_cast<std::uint64_t>(ns);
    // Whole seconds from a minute on; within a second of the int64 limit, rounded down.
    const std::uint64_t slack = v >= 9'223'372'036'000'000'000 ? 1'000'000'000 : v >= 59'000'000'000 ? 500'000'000 : v / 200 + 1;
    check(distance(static_cast<std::uint64_t>(back->count()), v) <= slack,
          fmt::format("format_duration({}) = '{}' reads back as {}", ns, text, back->count()));
    check(format_duration(*back) == text, fmt::format("'{}' formats again as '{}'", text, format_duration(*back)));
}

/// format_bytes promises less: what it writes reads back when it fits 64 bits ("16 EiB", written
/// from 15.95 EiB on, does not).
void bytes_read_back(std::uint64_t n) {
    const std::string text = format_bytes(n);
    const auto back = parse_size(text);
    check(back.has_value() || n >= (std::uint64_t{254} << 56), fmt::format("format_bytes({}) = '{}' does not parse", n, text));
    if (back) check(distance(*back, n) <= n / 200 + 1, fmt::format("format_bytes({}) = '{}' reads back as {}", n, text, *back));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    const auto d = parse_duration(text);
    const auto ref_d = reference_duration(text);
    check(d.has_value() == ref_d.has_value(), fmt::format("parse_duration('{}') {}, the reference {}", text,
                                                          d ? "reads it" : "refuses it", ref_d ? "reads it" : "refuses it"));
    if (d) {
        check(d->count() == *ref_d, fmt::format("parse_duration('{}') = {}, the reference {}", text, d->count(), *ref_d));
        duration_reads_back(d->count());
    }

    const auto sz = parse_size(text);
    const auto ref_sz = reference_size(text);
    check(sz == ref_sz, fmt::format("parse_size('{}') = {}, the reference {}", text, sz ? fmt::format("{}", *sz) : "none",
                                    ref_sz ? fmt::format("{}", *ref_sz) : "none"));
    if (sz) bytes_read_back(*sz);

    if (const auto r = parse_rate(text)) check(std::isfinite(*r) && *r >= 0, fmt::format("parse_rate('{}') = {}", text, *r));

    if (size >= 8) {
        std::uint64_t raw;
        std::memcpy(&raw, data, 8);
        duration_reads_back(static_cast<std::int64_t>(raw));
        bytes_read_back(raw);
    }
    return 0;
}
