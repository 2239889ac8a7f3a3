#include "codec.hpp"

#include <array>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace wsx {
namespace {

constexpr char hex_digits[] = "0123456789abcdef";

void append_hex_byte(std::string& out, unsigned char b) {
    out += hex_digits[b >> 4];
    out += hex_digits[b & 0xf];
}

bool is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

/// Length of the well-formed UTF-8 sequence that starts at p (n bytes left), and
/// its code point; 0 when the bytes there are not well-formed. Expects p[0] >= 0x80.
/// The second-byte ranges follow RFC 3629's table, which rules out overlong forms,
/// surrogates and code points above U+10FFFF in one place.
std::size_t utf8_sequence(const unsigned char* p, std::size_t n, char32_t& cp) {
    const unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || !is_cont(p[1])) return 0;
        cp = (char32_t(c & 0x1F) << 6) | (p[1] & 0x3F);
        return 2;
    }
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lo = 0xA0;       // overlong below U+0800
        else if (c == 0xED) hi = 0x9F;  // surrogates
        if (n < 3 || p[1] < lo || p[1] > hi || !is_cont(p[2])) return 0;
        cp = (char32_t(c & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lo = 0x90;       // overlong below U+10000
        else if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        if (n < 4 || p[1] < lo || p[1] > hi || !is_cont(p[2]) || !is_cont(p[3])) return 0;
        cp = (char32_t(c & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) |
             (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
        return 4;
    }
    return 0;  // continuation byte, C0/C1 (always overlong), F5..FF
}

/// Number of leading bytes of [p, p+n) that are ASCII, checked eight at a time.
std::size_t ascii_prefix(const unsigned char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL) break;
    }
    while (i < n && p[i] < 0x80) ++i;
    return i;
}

/// Code points that a terminal acts on instead of showing: C1 controls and the
/// bidirectional formatting characters (which can make text display in an order
/// other than the bytes', as in "Trojan Source").
bool is_invisible_control(char32_t cp) {
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

bool is_plain_ascii(unsigned char c) { return (c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n'; }

void append_u_escape(std::string& out, char32_t cp) {
    out += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(cp));
}

/// JSON string literal; with `terminal_safe`, also escapes the code points that
/// escape_for_terminal would (JSON's \uNNNN form keeps the literal valid).
void append_json_string_impl(std::string& out, std::string_view s, bool terminal_safe) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    out += '"';
    std::size_t i = 0;
    while (i < n) {
        // Copy the longest run that needs no escaping in one go.
        std::size_t j = i;
        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\') ++j;
        out.append(s.data() + i, j - i);
        i = j;
        if (i >= n) break;
        const unsigned char c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: append_u_escape(out, c); break;
            }
            ++i;
            continue;
        }
        char32_t cp = 0;
        const std::size_t len = utf8_sequence(p + i, n - i, cp);
        if (len == 0) {
            out += "\\ufffd";
            ++i;
        } else {
            if (terminal_safe && is_invisible_control(cp)) append_u_escape(out, cp);
            else out.append(s.data() + i, len);
            i += len;
        }
    }
    out += '"';
}

constexpr char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Decoding table: 0..63 for alphabet characters (both alphabets), -1 otherwise.
constexpr std::array<signed char, 256> make_b64_table() {
    std::array<signed char, 256> t{};
    for (auto& v : t) v = -1;
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(b64_alphabet[i])] = static_cast<signed char>(i);
    t['-'] = 62;
    t['_'] = 63;
    return t;
}
constexpr auto b64_table = make_b64_table();

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// ANSI colours of the JSON pretty printer (close to jq's choices).
constexpr std::string_view colour_key = "\x1b[34;1m";
constexpr std::string_view colour_string = "\x1b[32m";
constexpr std::string_view colour_number = "\x1b[36m";
constexpr std::string_view colour_literal = "\x1b[35m";
constexpr std::string_view colour_reset = "\x1b[0m";

/// Writes JSON as it is parsed (SAX), so key order, duplicate keys and the exact
/// spelling of floating-point numbers survive, and no document tree is built.
class pretty_printer {
public:
    using json = nlohmann::json;
    static constexpr std::size_t max_depth = 256;

    explicit pretty_printer(bool colour) : colour_(colour) {}

    std::string take() { return std::move(out_); }

    bool null() { return scalar(colour_literal, "null"); }
    bool boolean(bool v) { return scalar(colour_literal, v ? "true" : "false"); }
    bool number_integer(json::number_integer_t v) { return scalar(colour_number, fmt::format("{}", v)); }
    bool number_unsigned(json::number_unsigned_t v) { return scalar(colour_number, fmt::format("{}", v)); }
    bool number_float(json::number_float_t, const json::string_t& text) { return scalar(colour_number, text); }
    bool string(json::string_t& v) {
        before_value();
        paint(colour_string, [&] { append_json_string_impl(out_, v, true); });
        return true;
    }
    bool binary(json::binary_t&) { return false; }  // not produced by the JSON parser

    bool start_object(std::size_t) { return open('{', true); }
    bool key(json::string_t& k) {
        auto& top = stack_.back();
        if (!top.empty) out_ += ',';
        top.empty = false;
        newline();
        paint(colour_key, [&] { append_json_string_impl(out_, k, true); });
        out_ += ": ";
        return true;
    }
    bool end_object() { return close('}'); }
    bool start_array(std::size_t) { return open('[', false); }
    bool end_array() { return close(']'); }

    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

private:
    struct level {
        bool object;
        bool empty = true;
    };

    template <class Write>
    void paint(std::string_view colour, Write&& write) {
        if (colour_) out_ += colour;
        write();
        if (colour_) out_ += colour_reset;
    }

    bool scalar(std::string_view colour, std::string_view text) {
        // The caller has already checked that the document is an object or array.
        before_value();
        paint(colour, [&] { out_ += text; });
        return true;
    }

    /// In an array, a value starts a new line; in an object, key() has done it.
    void before_value() {
        if (stack_.empty() || stack_.back().object) return;
        auto& top = stack_.back();
        if (!top.empty) out_ += ',';
        top.empty = false;
        newline();
    }

    bool open(char c, bool object) {
        if (stack_.size() >= max_depth) return false;
        before_value();
        out_ += c;
        stack_.push_back(level{object});
        return true;
    }

    bool close(char c) {
        const bool empty = stack_.back().empty;
        stack_.pop_back();
        if (!empty) newline();
        out_ += c;
        return true;
    }

    void newline() {
        out_ += '\n';
        out_.append(2 * stack_.size(), ' ');
    }

    bool colour_;
    std::string out_;
    std::vector<level> stack_;
};

}  // namespace

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        if (i + 2 >= s.size()) return std::nullopt;  // needs two hex digits
        const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

std::string hex_dump(std::string_view data) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    std::string out;
    out.reserve((data.size() + 15) / 16 * 68);
    for (std::size_t off = 0; off < data.size(); off += 16) {
        const std::size_t n = std::min<std::size_t>(16, data.size() - off);
        out += fmt::format("{:08x}:", off);
        for (std::size_t i = 0; i < 16; ++i) {
            if (i % 2 == 0) out += ' ';
            if (i < n) append_hex_byte(out, p[off + i]);
            else out += "  ";
        }
        out += "  ";
        for (std::size_t i = 0; i < n; ++i) {
            const unsigned char c = p[off + i];
            out += (c >= 0x20 && c < 0x7F) ? static_cast<char>(c) : '.';
        }
        out += '\n';
    }
    return out;
}

std::string to_hex(std::string_view data) {
    std::string out;
    out.reserve(data.size() * 2);
    for (const char c : data) append_hex_byte(out, static_cast<unsigned char>(c));
    return out;
}

std::optional<std::string> from_hex(std::string_view text) {
    std::string out;
    out.reserve(text.size() / 2);
    int high = -1;  // first digit of the byte being read
    for (const char c : text) {
        if (is_blank(c)) continue;
        const int v = hex_value(c);
        if (v < 0) return std::nullopt;
        if (high < 0) {
            high = v;
        } else {
            out += static_cast<char>((high << 4) | v);
            high = -1;
        }
    }
    if (high >= 0) return std::nullopt;
    return out;
}

std::string base64_encode(std::string_view data) {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t n = data.size();
    std::string out;
    out.reserve((n + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8) | p[i + 2];
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
        out += b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        const std::uint32_t v = std::uint32_t(p[i]) << 16;
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += "==";
    } else if (n - i == 2) {
        const std::uint32_t v = (std::uint32_t(p[i]) << 16) | (std::uint32_t(p[i + 1]) << 8);
        out += b64_alphabet[(v >> 18) & 63];
        out += b64_alphabet[(v >> 12) & 63];
        out += b64_alphabet[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size() / 4 * 3);
    std::uint32_t acc = 0;
    int bits = 0;
    std::size_t symbols = 0;  // alphabet characters seen
    std::size_t padding = 0;
    for (const char c : text) {
        if (is_blank(c)) continue;
        if (c == '=') {
            ++padding;
            continue;
        }
        if (padding != 0) return std::nullopt;  // data after padding
        const int v = b64_table[static_cast<unsigned char>(c)];
        if (v < 0) return std::nullopt;
        ++symbols;
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xFF);
        }
    }
    const std::size_t tail = symbols % 4;
    if (tail == 1) return std::nullopt;  // 6 bits cannot end a byte
    if (padding != 0 && (tail == 0 || padding != 4 - tail)) return std::nullopt;
    return out;
}

bool is_valid_utf8(std::string_view data) noexcept { return utf8_complete_prefix(data) == data.size(); }

std::size_t utf8_complete_prefix(std::string_view data) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(data.data());
    const std::size_t n = data.size();
    std::size_t i = 0;
    while (i < n) {
        i += ascii_prefix(p + i, n - i);
        if (i >= n) break;
        char32_t cp;
        const std::size_t len = utf8_sequence(p + i, n - i, cp);
        if (len == 0) break;
        i += len;
    }
    if (i == n) return n;
    // An unfinished sequence at the end is fine as long as what is there can still be completed.
    const unsigned char c = p[i];
    const std::size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    const std::size_t have = n - i;
    if (need == 0 || have >= need) return std::string_view::npos;
    const unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
    const unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
    if (have >= 2 && (p[i + 1] < lo || p[i + 1] > hi)) return std::string_view::npos;
    if (have >= 3 && !is_cont(p[i + 2])) return std::string_view::npos;
    return i;
}

std::string escape_for_terminal(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n && is_plain_ascii(p[i])) ++i;
    if (i == n) return std::string(text);  // the common case: nothing to do

    std::string out;
    out.reserve(n + 16);
    out.append(text.data(), i);
    while (i < n) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            if (is_plain_ascii(c)) {
                out += static_cast<char>(c);
            } else {
                out += "\\x";
                append_hex_byte(out, c);
            }
            ++i;
            continue;
        }
        char32_t cp = 0;
        const std::size_t len = utf8_sequence(p + i, n - i, cp);
        if (len == 0) {
            out += "\\x";
            append_hex_byte(out, c);
            ++i;
        } else {
            if (is_invisible_control(cp)) append_u_escape(out, cp);
            else out.append(text.data() + i, len);
            i += len;
        }
    }
    return out;
}

std::optional<std::string> pretty_json(std::string_view text, bool colour) {
    // Only objects and arrays are worth reformatting; this also skips the
    // parser for the usual non-JSON message.
    std::size_t start = 0;
    while (start < text.size() && is_blank(text[start])) ++start;
    if (start == text.size() || (text[start] != '{' && text[start] != '[')) return std::nullopt;

    pretty_printer printer(colour);
    const bool ok = nlohmann::json::sax_parse(text, &printer, nlohmann::json::input_format_t::json,
                                              /*strict=*/true, /*ignore_comments=*/false);
    if (!ok) return std::nullopt;
    return printer.take();
}

void append_json_string(std::string& out, std::string_view s) {
    append_json_string_impl(out, s, false);
}

}  // namespace wsx
