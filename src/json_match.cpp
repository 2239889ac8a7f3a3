#include "json_match.hpp"

#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace wsx {
namespace {

using json = nlohmann::json;

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (const char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

/// Reads a path up to an '=' outside brackets or the end of `spec`.
class path_parser {
public:
    explicit path_parser(std::string_view spec) : spec_(spec) {}

    /// Parses the path; on success `end()` is the position of '=' or spec.size().
    bool run(std::vector<json_path_step>& steps) {
        skip_blanks();
        if (at('.')) ++pos_;  // jq-style leading dot: ".user.name"
        bool need_step = true;  // at the start and after '.'
        while (pos_ < spec_.size() && !at('=')) {
            if (at('[')) {
                if (!bracket(steps)) return false;
            } else if (at('.')) {
                if (need_step) return fail("empty key");
                ++pos_;
                need_step = true;
                continue;
            } else if (at(']')) {
                return fail("']' without '['");
            } else {
                if (!need_step) return fail("expected '.', '[' or '=' after ']'");
                if (!key(steps)) return false;
            }
            need_step = false;
        }
        if (need_step) return fail(steps.empty() ? "empty path" : "empty key");
        return true;
    }

    std::size_t end() const { return pos_; }
    const std::string& error() const { return error_; }

private:
    bool at(char c) const { return pos_ < spec_.size() && spec_[pos_] == c; }

    void skip_blanks() {
        while (pos_ < spec_.size() && is_blank(spec_[pos_])) ++pos_;
    }

    bool fail(std::string_view what) {
        error_ = fmt::format("{} at position {} in '{}'", what, pos_ + 1, spec_);
        return false;
    }

    /// A bare key: everything up to '.', '[', ']', '=' or the end.
    bool key(std::vector<json_path_step>& steps) {
        const std::size_t start = pos_;
        while (pos_ < spec_.size() && std::string_view(".[]=").find(spec_[pos_]) == std::string_view::npos) ++pos_;
        auto k = spec_.substr(start, pos_ - start);
        if (pos_ == spec_.size() || at('=')) k = trim(k);  // blanks before '=' or at the end
        if (k.empty()) return fail("empty key");
        if (at('=') && k.back() == '!')
            return fail("'!=' is not supported (write the key as [\"...!\"] if it ends in '!')");
        steps.emplace_back(std::string(k));
        return true;
    }

    /// "[N]", "[-N]" or "[\"key\"]".
    bool bracket(std::vector<json_path_step>& steps) {
        ++pos_;  // '['
        skip_blanks();
        if (at('"')) {
            // Find the closing quote, stepping over escapes, then let the JSON
            // parser decode the literal.
            const std::size_t start = pos_++;
            while (pos_ < spec_.size() && !at('"')) pos_ += at('\\') ? 2 : 1;
            if (pos_ >= spec_.size()) return fail("unterminated string");
            ++pos_;
            const auto literal = json::parse(spec_.substr(start, pos_ - start), nullptr, false);
            if (!literal.is_string()) return fail("invalid quoted key");
            steps.emplace_back(literal.get<std::string>());
        } else {
            const std::size_t start = pos_;
            while (pos_ < spec_.size() && !at(']') && !is_blank(spec_[pos_])) ++pos_;
            const auto text = spec_.substr(start, pos_ - start);
            std::int64_t index = 0;
            const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), index);
            if (text.empty() || ec != std::errc{} || p != text.data() + text.size())
                return fail(fmt::format("bad array index '{}'", text));
            steps.emplace_back(index);
        }
        skip_blanks();
        if (!at(']')) return fail("expected ']'");
        ++pos_;
        return true;
    }

    std::string_view spec_;
    std::size_t pos_ = 0;
    std::string error_;
};

const json* step_into(const json& cur, const json_path_step& step) {
    std::int64_t index = 0;
    if (const auto* key = std::get_if<std::string>(&step)) {
        if (cur.is_object()) {
            const auto it = cur.find(*key);
            return it == cur.end() ? nullptr : &*it;
        }
        if (!cur.is_array() || !all_digits(*key)) return nullptr;
        const auto [p, ec] = std::from_chars(key->data(), key->data() + key->size(), index);
        if (ec != std::errc{}) return nullptr;
    } else {
        if (!cur.is_array()) return nullptr;
        index = std::get<std::int64_t>(step);
    }
    const auto size = static_cast<std::int64_t>(cur.size());
    if (index < 0) index += size;
    if (index < 0 || index >= size) return nullptr;
    return &cur[static_cast<std::size_t>(index)];
}

}  // namespace

std::optional<json_expectation> json_expectation::parse(std::string_view spec, std::string* error) {
    json_expectation e;
    path_parser parser(spec);
    if (!parser.run(e.steps)) {
        if (error) *error = parser.error();
        return std::nullopt;
    }
    e.path = std::string(trim(spec.substr(0, parser.end())));
    if (parser.end() == spec.size()) {
        e.exists_only = true;
        return e;
    }
    e.raw_value = std::string(trim(spec.substr(parser.end() + 1)));
    e.value = json::parse(e.raw_value, nullptr, false);
    if (e.value.is_discarded()) e.value = e.raw_value;  // not JSON: a plain string
    return e;
}

const nlohmann::json* json_expectation::find(const nlohmann::json& doc) const {
    const json* cur = &doc;
    for (const auto& step : steps) {
        cur = step_into(*cur, step);
        if (cur == nullptr) return nullptr;
    }
    return cur;
}

bool json_expectation::matches(const nlohmann::json& doc) const {
    const json* found = find(doc);
    if (found == nullptr) return false;
    if (exists_only || *found == value) return true;
    // `id=42` also matches "42": on the command line quoting is easy to forget.
    return !value.is_string() && found->is_string() && found->get_ref<const std::string&>() == raw_value;
}

bool json_expectation::matches_text(std::string_view message_text) const {
    const auto doc = json::parse(message_text, nullptr, false);
    return !doc.is_discarded() && matches(doc);
}

std::string json_expectation::describe() const {
    if (exists_only) return path + " exists";
    return path + " = " + value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace wsx
