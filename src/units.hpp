#pragma once
/// Parsing and formatting of the human units used on the command line:
/// durations ("250ms"), sizes ("16MiB") and rates ("1k/s").
///
/// Parsers are strict: they accept the whole string or nothing, never negative
/// values, and report overflow as failure instead of wrapping or saturating.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsx {

/// Parses a duration. A number (digits with an optional fraction, no sign, no
/// exponent) followed by a unit: "ns", "us" (or "µs"), "ms", "s", "m", "h".
/// A bare number means seconds ("1.5" = 1500ms). Several terms may be chained
/// from the largest unit down ("1h30m", "1m2.5s"). The arithmetic is exact;
/// anything below one nanosecond is dropped. Blanks around the text, between a
/// number and its unit, and between terms are ignored ("1m 30s").
/// Returns nullopt for empty input, a sign, unknown units, repeated or
/// out-of-order units, or a value that does not fit in 64-bit nanoseconds.
std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

/// Formats a duration for people, three significant digits with trailing zeros
/// dropped: "0s", "500ns", "45.6us", "1.23ms", "250ms", "1.5s", "59.9s";
/// from one minute on, whole seconds: "1m30s", "2m", "1h5s". Negative values
/// get a leading '-'. The output is accepted by parse_duration (when not negative).
std::string format_duration(std::chrono::nanoseconds d);

/// Parses a byte count: a number with an optional fraction and an optional unit.
/// Decimal (SI) units: "k"/"K"/"kB"/"KB" = 1000, "M"/"MB" = 1000^2, "G"/"GB",
/// "T"/"TB". Binary (IEC) units: "Ki"/"KiB" = 1024, "Mi"/"MiB" = 1024^2, "Gi"/"GiB",
/// "Ti"/"TiB". Unit letters are case-insensitive ("1mib" = "1MiB"); "B" alone means
/// bytes; blanks may separate number and unit ("64 KiB", as format_bytes writes
/// it). A fractional result is rounded down to whole bytes ("1.5k" = 1500,
/// "0.5" = 0). Returns nullopt for empty input, a sign, garbage, or overflow.
std::optional<std::uint64_t> parse_size(std::string_view text);

/// Formats a byte count with binary units and up to three significant digits:
/// "0 B", "512 B", "64 KiB", "1.5 MiB", "1.21 GiB".
std::string format_bytes(std::uint64_t bytes);

/// Parses a rate and returns events per second. The count is a number with an
/// optional SI multiplier ("k" = 1000, "M" = 10^6, "G" = 10^9); it may be followed
/// by "/" and a time unit: "us", "ms", "s" (or "sec"), "m" (or "min"), "h".
/// A bare count means per second: "5000", "100/s", "1k/s", "60/m" (= 1/s), "2/ms".
/// Returns nullopt for empty input, a sign, garbage, or a non-finite result.
std::optional<double> parse_rate(std::string_view text);

}  // namespace wsx
