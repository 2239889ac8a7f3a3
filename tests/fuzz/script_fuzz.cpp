// Dialogue scripts (script.cpp), read from a file or stdin given to `wsx connect --script`: any
// bytes parse to steps or to errors, never a crash or a hang. Errors are few (at most the cap),
// name lines that exist, in order, and are one terminal-safe line each; steps come in line
// order, and parsing the same text again gives the same answer.
// fuzz-options: -max_len=4096
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "script.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("script_fuzz", what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::size_t lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;

    std::vector<script_error> errors;
    const auto steps = parse_script(text, &errors, 5);
    check(steps.has_value() == errors.empty(), "steps and errors together, or neither");
    if (!steps) {
        check(errors.size() <= 5, fmt::format("{} errors, more than the cap of 5", errors.size()));
        std::size_t previous = 0;
        for (const auto& e : errors) {
            check(e.line >= 1 && e.line <= lines, fmt::format("an error on line {} of {}", e.line, lines));
            check(e.line > previous, "errors out of line order");
            previous = e.line;
            check(!e.message.empty() && e.message.find('\n') == std::string::npos, "an error that is not one line");
            check(fuzz::terminal_safe(e.message), "an error that is not terminal-safe: " + e.message);
        }
        return 0;
    }
    check(!steps->empty(), "a script parsed to no steps");
    std::size_t previous = 0;
    for (const auto& s : *steps) {
        check(s.line > previous && s.line <= lines, fmt::format("a step on line {} after line {}", s.line, previous));
        previous = s.line;
        check(!s.source.empty(), "a step without its source text");
        if (s.op == script_step::kind::ping) check(s.text.size() <= 125, "a ping payload over 125 bytes");
        if (s.op == script_step::kind::close) {
            if (s.source == "close") check(!s.code && s.text.empty(), "a bare close with a code or reason");
            if (s.code) check(close_code_problem(*s.code).empty(), fmt::format("close code {} a client may not send", *s.code));
            check(close_reason_problem(s.text).empty(), "a close reason that does not fit a Close frame");
        }
        if (s.op == script_step::kind::expect_json) check(s.json.has_value(), "expect-json without its expectation");
        if (s.timeout) check(s.timeout->count() > 0, "a step timeout of zero");
        const bool last = &s == &steps->back();
        if (s.op == script_step::kind::close || s.op == script_step::kind::expect_close)
            check(last, "a step after close or expect-close");
    }
    const auto again = parse_script(text, nullptr, 5);
    check(again && again->size() == steps->size(), "a second parse of the same text differs");
    return 0;
}
