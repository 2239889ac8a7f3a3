#include "script.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "units.hpp"

namespace wsx {

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && blank(s.front())) s.remove_prefix(1);
    while (!s.empty() && blank(s.back())) s.remove_suffix(1);
    return s;
}

/// Splits off the first word (up to a blank); the rest comes back trimmed.
std::string_view first_word(std::string_view& s) {
    std::size_t i = 0;
    while (i < s.size() && !blank(s[i])) ++i;
    const auto w = s.substr(0, i);
    s = trim(s.substr(i));
    return w;
}

/// The step kinds, as written, with what each takes (for "unknown step" messages).
struct keyword {
    std::string_view name;
    script_step::kind op;
};
constexpr keyword keywords[] = {
    {"send", script_step::kind::send},
    {"send-json", script_step::kind::send_json},
    {"send-binary", script_step::kind::send_binary},
    {"send-file", script_step::kind::send_file},
    {"expect", script_step::kind::expect},
    {"expect-json", script_step::kind::expect_json},
    {"expect-close", script_step::kind::expect_close},
    {"ping", script_step::kind::ping},
    {"wait", script_step::kind::wait},
    {"close", script_step::kind::close},
};

constexpr std::string_view known_steps =
    "send, send-json, send-binary, send-file, expect, expect-json, expect-close, ping, wait, close";

/// A whole number in [0, 65535] written with digits only.
std::optional<long long> small_number(std::string_view s) {
    if (s.empty() || s.size() > 5) return std::nullopt;
    long long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

/// Parses one non-blank, non-comment line; returns the problem, if any.
std::string parse_step(std::string_view line, script_step& st) {
    std::string_view rest = line;
    const auto word = first_word(rest);
    const keyword* k = nullptr;
    for (const auto& kw : keywords)
        if (kw.name == word) k = &kw;
    if (!k)
        return fmt::format("unknown step '{}' (use one of: {}; '#' starts a comment)", escape_for_terminal(word.substr(0, 40)),
                           known_steps);
    st.op = k->op;
    using K = script_step::kind;
    const bool waits = st.op == K::expect || st.op == K::expect_json || st.op == K::expect_close;
    // A last word timeout=DURATION bounds a waiting step.
    if (const auto at = rest.rfind("timeout="); at != std::string_view::npos && (at == 0 || blank(rest[at - 1]))) {
        const auto value = rest.substr(at + 8);
        if (value.find_first_of(" \t") == std::string_view::npos && st.op != K::send && st.op != K::send_json &&
            st.op != K::send_binary && st.op != K::send_file && st.op != K::ping && st.op != K::close) {
            if (!waits) return fmt::format("{} takes no timeout= (only expect, expect-json and expect-close do)", word);
            const auto d = parse_duration(value);
            if (!d || d->count() == 0)
                return fmt::format("timeout='{}' is not a duration greater than 0 (write e.g. timeout=2s or timeout=500ms)",
                                   escape_for_terminal(value.substr(0, 40)));
            st.timeout = *d;
            rest = trim(rest.substr(0, at));
        }
    }
    switch (st.op) {
    case K::send:
        if (rest.empty()) return "send needs the message text (send MESSAGE)";
        st.text = rest;
        return {};
    case K::send_json: {
        if (rest.empty()) return "send-json needs a JSON value (send-json {\"op\":\"hi\"})";
        if (!nlohmann::json::accept(rest))
            return "send-json: not valid JSON (use send for plain text)";
        st.text = rest;
        return {};
    }
    case K::send_binary: {
        if (rest.empty()) return "send-binary needs hex bytes (send-binary 48 65 6c 6c 6f)";
        auto bytes = from_hex(rest);
        if (!bytes) return "send-binary: not hex bytes (two hex digits a byte, blanks allowed between them: send-binary 0a ff 00)";
        st.text = std::move(*bytes);
        return {};
    }
    case K::send_file:
        if (rest.empty()) return "send-file needs a path (send-file ./payload.json)";
        st.text = rest;
        return {};
    case K::expect:
        if (rest.empty()) return "expect needs a regular expression (expect ^ready$; use expect . for any message)";
        st.text = rest;
        return {};
    case K::expect_json: {
        if (rest.empty()) return "expect-json needs PATH=VALUE (expect-json user.id=7)";
        std::string err;
        auto j = json_expectation::parse(rest, &err);
        if (!j) return fmt::format("expect-json: {}", err);
        st.json = std::move(*j);
        st.text = rest;
        return {};
    }
    case K::expect_close: {
        if (rest.empty()) return {};
        const auto code = small_number(rest);
        if (!code || *code < 1000 || *code > 4999)
            return fmt::format("expect-close: '{}' is not a close code (1000-4999, or none for any Close)",
                               escape_for_terminal(rest.substr(0, 40)));
        st.code = static_cast<int>(*code);
        return {};
    }
    case K::ping:
        if (rest.size() > 125) return fmt::format("ping: {} bytes of data, a Ping carries at most 125", rest.size());
        st.text = rest;
        return {};
    case K::wait: {
        const auto d = parse_duration(rest);
        if (rest.empty() || !d) return "wait needs a duration (wait 500ms, wait 2s)";
        st.duration = *d;
        return {};
    }
    case K::close: {
        if (rest.empty()) return {};
        const auto code_text = first_word(rest);
        const auto code = small_number(code_text);
        if (!code)
            return fmt::format("close: '{}' is not a close code (close [CODE [REASON]], e.g. close 1000 done)",
                               escape_for_terminal(code_text.substr(0, 40)));
        if (auto why = close_code_problem(*code); !why.empty()) return "close: " + why;
        if (auto why = close_reason_problem(rest); !why.empty()) return "close: " + why;
        st.code = static_cast<int>(*code);
        st.text = rest;
        return {};
    }
    }
    return {};
}

}  // namespace

std::string close_code_problem(long long code) {
    if ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999)) return {};
    if (code == 1005 || code == 1006 || code == 1015)
        return fmt::format("close code {} is never sent in a Close frame (use 1000, or 3000-4999 for your own)", code);
    return fmt::format("close code {} is not one a client may send (use 1000-1003, 1007-1011, or 3000-4999 for your own)",
                       code);
}

std::string close_reason_problem(std::string_view reason) {
    if (!is_valid_utf8(reason)) return "the close reason is not valid UTF-8";
    if (reason.size() > 123)
        return fmt::format("the close reason is {} bytes, a Close frame carries at most 123", reason.size());
    return {};
}

std::optional<std::vector<script_step>> parse_script(std::string_view text, std::vector<script_error>* errors,
                                                     std::size_t max_errors) {
    std::vector<script_step> steps;
    std::vector<script_error> found;
    std::size_t number = 0;
    std::size_t final_line = 0;  // the close or expect-close that ended the dialogue
    auto problem = [&](std::size_t line, std::string message) {
        // Messages quote the script's text: they reach a terminal escaped.
        if (found.size() < max_errors) found.push_back({line, escape_for_terminal(message)});
    };
    while (!text.empty() || number == 0) {
        ++number;
        const auto nl = text.find('\n');
        const std::string_view raw = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        const std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#') {
            if (text.empty()) break;
            continue;
        }
        if (!is_valid_utf8(line)) {
            problem(number, "not valid UTF-8 (write binary payloads with send-binary HEX)");
        } else if (final_line != 0) {
            problem(number, fmt::format("nothing can follow line {} (the connection is closed there); move this step before it",
                                        final_line));
        } else {
            script_step st;
            st.line = number;
            st.source = line;
            if (auto why = parse_step(line, st); !why.empty()) problem(number, std::move(why));
            else {
                if (st.op == script_step::kind::close || st.op == script_step::kind::expect_close) final_line = number;
                steps.push_back(std::move(st));
            }
        }
        if (text.empty()) break;
    }
    if (found.empty() && steps.empty()) problem(number, "the script has no steps (send MESSAGE, expect REGEX, ...)");
    if (!found.empty()) {
        if (errors) *errors = std::move(found);
        return std::nullopt;
    }
    return steps;
}

}  // namespace wsx
