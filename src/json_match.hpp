#pragma once
/// Expectations on JSON messages, as given to `--expect-json 'path=value'`.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace wsx {

/// One step of a JSON path: an object key or an array index. Negative indexes
/// count from the end (-1 is the last element).
using json_path_step = std::variant<std::string, std::int64_t>;

/// "path=value" or "path" (the value must exist, whatever it is, null included).
///
/// Path: dot-separated keys and [N] array indexes: `user.name`, `items[0].id`,
/// `a.b[2][1]`, `items[-1]`. A key that contains '.', '[', ']' or '=' is written
/// as a JSON string in brackets: `["weird.key"].x`, `a["b=c"]`. A key made only of
/// digits also indexes an array (`items.0.id` = `items[0].id`); on an object it is
/// an ordinary key.
///
/// Value: read as JSON when it is valid JSON (`n=3`, `ok=true`, `s="x"`,
/// `v=null`, `o={"a":1}`), otherwise taken as a plain string (`type=hello`).
/// Numbers compare by value (3 matches 3.0); objects regardless of key order.
/// A value not written as a JSON string also matches a string with the same
/// text, so `id=42` matches both 42 and "42". Blanks around the path and the
/// value are ignored; quote the value to keep them (`s=" x "`).
struct json_expectation {
    std::string path;       ///< the path as written (blanks trimmed)
    std::string raw_value;  ///< the value as written (blanks trimmed); empty for an existence check
    nlohmann::json value;   ///< the value to compare with
    bool exists_only = false;            ///< true for "path" without '='
    std::vector<json_path_step> steps;   ///< the parsed path

    /// Parses a spec. On failure returns nullopt and, if `error` is not null,
    /// stores a one-line reason there ("empty key at position 3 in 'a..b'").
    static std::optional<json_expectation> parse(std::string_view spec, std::string* error);

    /// The value at the path in `doc`, or nullptr when the path leads nowhere.
    const nlohmann::json* find(const nlohmann::json& doc) const;

    /// True when the path exists in `doc` (and, unless exists_only, its value matches).
    bool matches(const nlohmann::json& doc) const;

    /// Parses `message_text` as JSON and matches it; false when it is not JSON.
    bool matches_text(std::string_view message_text) const;

    /// Human form for messages: `user.name = "alice"`, `items[0].id exists`.
    std::string describe() const;
};

}  // namespace wsx
