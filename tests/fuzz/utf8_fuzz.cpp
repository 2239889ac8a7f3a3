// UTF-8 validation (codec.hpp): is_valid_utf8 against a plain reference decoder written from
// RFC 3629, and utf8_complete_prefix's contract on every prefix of the input (which is what a
// reader checking text piece by piece sees at each split). The terminal and JSON escapers,
// which decode with the same tables, are held to their promises on the same bytes.
// fuzz-options: -max_len=512
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "codec.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "utf8_fuzz: %s\n", what);
    std::abort();
}
void check(bool ok, const char* what) {
    if (!ok) fail(what);
}

/// The encoding of a code point (no checks: the caller passes scalar values only).
std::string encode(char32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

/// Decodes one sequence at `s` the long way (RFC 3629 section 3): the lead byte gives the
/// length, the rest must be continuation bytes, and the value must be the shortest form, not a
/// surrogate and at most U+10FFFF. Returns its length, 0 when it is not well-formed or is cut short.
std::size_t reference_sequence(std::string_view s) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    std::size_t len;
    char32_t cp;
    if (b(0) < 0x80) return 1;
    if ((b(0) & 0xE0) == 0xC0) len = 2, cp = b(0) & 0x1F;
    else if ((b(0) & 0xF0) == 0xE0) len = 3, cp = b(0) & 0x0F;
    else if ((b(0) & 0xF8) == 0xF0) len = 4, cp = b(0) & 0x07;
    else return 0;
    if (s.size() < len) return 0;
    for (std::size_t i = 1; i < len; ++i) {
        if ((b(i) & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b(i) & 0x3F);
    }
    static constexpr char32_t shortest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < shortest[len]) return 0;               // overlong
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;     // surrogate
    if (cp > 0x10FFFF) return 0;                    // beyond Unicode
    // The reference agrees with the encoder: a value decoded is spelled one way only.
    check(encode(cp) == s.substr(0, len), "reference decoder and encoder disagree");
    return len;
}

/// The end of the longest prefix of `s` made of whole well-formed sequences.
std::size_t reference_whole(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t n = reference_sequence(s.substr(i));
        if (n == 0) break;
        i += n;
    }
    return i;
}

/// Every proper prefix (1 to 3 bytes) of the encoding of every code point from U+0080 on: the
/// only tails that more bytes can still turn into well-formed text.
const std::unordered_set<std::string>& incomplete_starts() {
    static const std::unordered_set<std::string> set = [] {
        std::unordered_set<std::string> s;
        for (char32_t cp = 0x80; cp <= 0x10FFFF; ++cp) {
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;
            const std::string e = encode(cp);
            for (std::size_t k = 1; k < e.size(); ++k) s.insert(e.substr(0, k));
        }
        return s;
    }();
    return set;
}

/// utf8_complete_prefix as specified, from the reference: the whole sequences, then either
/// nothing or the start of one that may still be completed; npos otherwise.
std::size_t reference_complete_prefix(std::string_view s) {
    const std::size_t whole = reference_whole(s);
    if (whole == s.size()) return whole;
    const std::string_view rest = s.substr(whole);
    if (rest.size() <= 3 && incomplete_starts().count(std::string(rest))) return whole;
    return std::string_view::npos;
}

bool has_terminal_control(std::string_view s) {
    // What escape_for_terminal must never let through: C0 controls but tab and newline, DEL,
    // C1 controls as UTF-8 and the bidirectional formatting characters.
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F) return true;
            ++i;
            continue;
        }
        const std::size_t n = reference_sequence(s.substr(i));
        if (n == 0) return true;  // not text at all
        const std::string_view seq = s.substr(i, n);
        if (n == 2 && static_cast<unsigned char>(seq[0]) == 0xC2 && static_cast<unsigned char>(seq[1]) < 0xA0) return true;
        if (seq == "\u200E" || seq == "\u200F") return true;
        for (char32_t cp : {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069})
            if (seq == encode(cp)) return true;
        i += n;
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    incomplete_starts();  // built once, before the clock of the first input starts
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const bool valid = reference_whole(in) == in.size();
    check(wsx::is_valid_utf8(in) == valid, "is_valid_utf8 disagrees with the reference");

    // Every split: the first part as a piece-by-piece checker sees it.
    for (std::size_t cut = 0; cut <= in.size(); ++cut) {
        const std::string_view head = in.substr(0, cut);
        const std::size_t got = wsx::utf8_complete_prefix(head);
        check(got == reference_complete_prefix(head), "utf8_complete_prefix disagrees with the reference");
        if (got != std::string_view::npos) {
            check(got <= cut && cut - got <= 3, "utf8_complete_prefix holds back more than a sequence start");
            check(wsx::is_valid_utf8(head.substr(0, got)), "utf8_complete_prefix's prefix is not valid");
        }
    }

    // The escapers: terminal-safe output; JSON that parses (to the input itself when it is text).
    const std::string shown = wsx::escape_for_terminal(in);
    check(!has_terminal_control(shown), "escape_for_terminal let a control through");
    check(wsx::escape_for_terminal(shown) == shown, "escape_for_terminal is not idempotent on its output");
    if (valid && !has_terminal_control(in)) check(shown == in, "escape_for_terminal changed harmless text");
    std::string literal;
    wsx::append_json_string(literal, in);
    const auto parsed = nlohmann::json::parse(literal, nullptr, false);
    check(parsed.is_string(), "append_json_string wrote invalid JSON");
    if (valid) check(parsed.get_ref<const std::string&>() == in, "append_json_string changed valid text");
    return 0;
}
