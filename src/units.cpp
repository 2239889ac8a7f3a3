#include "units.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <fmt/format.h>

namespace wsx {
namespace {

using u128 = unsigned __int128;

std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

/// An unsigned decimal read exactly: the whole part, and the digits after the point as written.
struct decimal {
    std::uint64_t whole = 0;
    std::string_view frac;

    double to_double() const {
        double f = 0;
        for (auto it = frac.rbegin(); it != frac.rend(); ++it) f = (f + (*it - '0')) / 10;
        return static_cast<double>(whole) + f;
    }

    /// value * mult rounded down, or nullopt when above `limit`. Exact however many digits the
    /// fraction has: they are taken from the last one up, each step a division by 10 rounded
    /// down, and floor((d + y) / 10) = floor((d + floor(y)) / 10) for a whole d, so no step
    /// loses anything the result would keep.
    std::optional<std::uint64_t> scaled(std::uint64_t mult, std::uint64_t limit) const {
        u128 v = 0;
        for (auto it = frac.rbegin(); it != frac.rend(); ++it) v = (static_cast<u128>(*it - '0') * mult + v) / 10;
        v += static_cast<u128>(whole) * mult;
        if (v > limit) return std::nullopt;
        return static_cast<std::uint64_t>(v);
    }
};

/// Reads "123", "1.5" or ".5" from the front of `s`, advancing it. No sign, no exponent.
std::optional<decimal> read_decimal(std::string_view& s) {
    decimal d;
    std::size_t i = 0;
    bool any = false;
    for (; i < s.size() && is_digit(s[i]); ++i) {
        const auto digit = static_cast<std::uint64_t>(s[i] - '0');
        if (d.whole > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
        d.whole = d.whole * 10 + digit;
        any = true;
    }
    if (i < s.size() && s[i] == '.') {
        const std::size_t first = ++i;
        while (i < s.size() && is_digit(s[i])) ++i;
        if (i == first) return std::nullopt;  // "5." is more likely a typo than a number
        d.frac = s.substr(first, i - first);
        any = true;
    }
    if (!any) return std::nullopt;
    s.remove_prefix(i);
    return d;
}

/// Takes the unit text that follows a number: everything up to the next digit or '.'.
std::string_view read_unit(std::string_view& s) {
    std::size_t i = 0;
    while (i < s.size() && !is_digit(s[i]) && s[i] != '.') ++i;
    auto unit = s.substr(0, i);
    s.remove_prefix(i);
    return unit;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

/// Nanoseconds per duration unit, 0 when unknown. Case-sensitive on purpose:
/// "M" and "m" mean different things elsewhere, so no guessing.
std::uint64_t duration_unit_ns(std::string_view u) {
    if (u == "ns") return 1;
    if (u == "us" || u == "\xC2\xB5s" /* U+00B5 */ || u == "\xCE\xBCs" /* U+03BC */) return 1'000;
    if (u == "ms") return 1'000'000;
    if (u == "s") return 1'000'000'000;
    if (u == "m") return 60'000'000'000;
    if (u == "h") return 3'600'000'000'000;
    return 0;
}

/// Formats with `decimals` digits after the point, then drops trailing zeros.
std::string trimmed(double v, int decimals) {
    auto s = fmt::format("{:.{}f}", v, decimals);
    if (s.find('.') != std::string::npos) {
        while (s.back() == '0') s.pop_back();
        if (s.back() == '.') s.pop_back();
    }
    return s;
}

/// Three significant digits for a value >= 1.
int decimals_for(double v) { return v < 10 ? 2 : v < 100 ? 1 : 0; }

double round_to(double v, int decimals) {
    const double p = std::pow(10.0, decimals);
    return std::round(v * p) / p;
}

}  // namespace

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
    auto s = trim_blanks(text);
    if (s.empty()) return std::nullopt;
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t total = 0;
    std::uint64_t previous_unit = 0;  // 0 before the first term
    while (!s.empty()) {
        auto number = read_decimal(s);
        if (!number) return std::nullopt;
        const auto unit_text = trim_blanks(read_unit(s));
        std::uint64_t unit = 0;
        if (unit_text.empty()) {
            // A bare number is seconds, but only on its own: "1m30" is ambiguous.
            if (previous_unit != 0 || !s.empty()) return std::nullopt;
            unit = 1'000'000'000;
        } else {
            unit = duration_unit_ns(unit_text);
            if (unit == 0) return std::nullopt;
        }
        if (previous_unit != 0 && unit >= previous_unit) return std::nullopt;
        previous_unit = unit;
        auto ns = number->scaled(unit, limit);
        if (!ns || *ns > limit - total) return std::nullopt;
        total += *ns;
    }
    return std::chrono::nanoseconds(static_cast<std::int64_t>(total));
}

std::string format_duration(std::chrono::nanoseconds d) {
    const auto count = d.count();
    if (count == 0) return "0s";
    // The magnitude as unsigned so that the minimum int64 value has a positive form.
    const std::uint64_t n = count < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(count)
                                      : static_cast<std::uint64_t>(count);
    const std::string sign = count < 0 ? "-" : "";
    if (n < 1'000) return fmt::format("{}{}ns", sign, n);

    struct unit { double scale; const char* name; };
    static constexpr unit units[] = {{1e3, "us"}, {1e6, "ms"}, {1e9, "s"}};
    for (const auto& u : units) {
        const double v = static_cast<double>(n) / u.scale;
        if (v >= 1000) continue;
        const int decimals = decimals_for(v);
        const double r = round_to(v, decimals);
        const bool seconds = u.scale == 1e9;
        if (!seconds && r >= 1000) continue;  // 999.96us reads better as 1ms
        if (seconds && r >= 60) break;        // 59.96s becomes 1m
        return sign + trimmed(r, decimals) + u.name;
    }

    // From one minute on, whole seconds: fractions stop being interesting. Rounded to the
    // nearest, but never past the largest whole second parse_duration reads (within half a
    // second of the int64 limit, rounding up would write a duration that does not fit).
    constexpr std::uint64_t max_secs = std::numeric_limits<std::int64_t>::max() / 1'000'000'000;
    const std::uint64_t secs =
        std::min(n / 1'000'000'000 + (n % 1'000'000'000 >= 500'000'000 ? 1 : 0), max_secs);
    std::string out = sign;
    if (secs >= 3600) out += fmt::format("{}h", secs / 3600);
    if (secs % 3600 >= 60) out += fmt::format("{}m", secs % 3600 / 60);
    if (secs % 60 != 0) out += fmt::format("{}s", secs % 60);
    return out;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    auto s = trim_blanks(text);
    auto number = read_decimal(s);
    if (!number) return std::nullopt;
    auto unit = trim_blanks(s);  // "64 KiB", as format_bytes writes it
    std::uint64_t mult = 1;
    if (!unit.empty() && (unit.back() == 'b' || unit.back() == 'B')) unit.remove_suffix(1);
    if (!unit.empty()) {
        const bool binary = unit.size() == 2 && lower(unit[1]) == 'i';
        if (unit.size() != 1 && !binary) return std::nullopt;
        const std::uint64_t base = binary ? 1024 : 1000;
        int power = 0;
        switch (lower(unit[0])) {
        case 'k': power = 1; break;
        case 'm': power = 2; break;
        case 'g': power = 3; break;
        case 't': power = 4; break;
        case 'p': power = 5; break;
        case 'e': power = 6; break;
        default: return std::nullopt;
        }
        for (int i = 0; i < power; ++i) mult *= base;
    }
    return number->scaled(mult, std::numeric_limits<std::uint64_t>::max());
}

std::string format_bytes(std::uint64_t bytes) {
    if (bytes < 1024) return fmt::format("{} B", bytes);
    static constexpr const char* names[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = static_cast<double>(bytes) / 1024;
    std::size_t i = 0;
    while (v >= 1024 && i + 1 < std::size(names)) {
        v /= 1024;
        ++i;
    }
    int decimals = decimals_for(v);
    double r = round_to(v, decimals);
    if (r >= 1024 && i + 1 < std::size(names)) {  // 1023.9 KiB reads better as 1 MiB
        v /= 1024;
        ++i;
        decimals = decimals_for(v);
        r = round_to(v, decimals);
    }
    return trimmed(r, decimals) + " " + names[i];
}

std::optional<double> parse_rate(std::string_view text) {
    auto s = trim_blanks(text);
    auto number = read_decimal(s);
    if (!number) return std::nullopt;
    double count = number->to_double();
    const auto slash = s.find('/');
    auto multiplier = trim_blanks(s.substr(0, slash));
    if (multiplier == "k" || multiplier == "K") count *= 1e3;
    else if (multiplier == "M") count *= 1e6;
    else if (multiplier == "G") count *= 1e9;
    else if (!multiplier.empty()) return std::nullopt;

    double per_second = count;
    if (slash != std::string_view::npos) {
        const auto unit = trim_blanks(s.substr(slash + 1));
        double seconds = 0;
        if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") seconds = 1e-6;
        else if (unit == "ms") seconds = 1e-3;
        else if (unit == "s" || unit == "sec") seconds = 1;
        else if (unit == "m" || unit == "min") seconds = 60;
        else if (unit == "h") seconds = 3600;
        else return std::nullopt;
        per_second = count / seconds;
    }
    if (!std::isfinite(per_second)) return std::nullopt;
    return per_second;
}

}  // namespace wsx
