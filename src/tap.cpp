#include "tap.hpp"

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "event_json.hpp"
#include "exit_code.hpp"

namespace wsx {

std::optional<tap_format> parse_tap_format(std::string_view s) {
    if (s == "text") return tap_format::text;
    if (s == "hex") return tap_format::hex;
    if (s == "ndjson" || s == "json") return tap_format::ndjson;
    return std::nullopt;
}

namespace {

std::string to_hex(std::string_view data) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(data.size() * 2);
    for (unsigned char c : data) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string escape(std::string_view data, bool high) {
    std::string out;
    out.reserve(data.size());
    for (unsigned char c : data) {
        switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\\': out += "\\\\"; break;
        default:
            if (c < 0x20 || c == 0x7f || (high && c >= 0x80)) out += fmt::format("\\x{:02x}", c);
            else out += static_cast<char>(c);
        }
    }
    return out;
}

/// An ndjson tap line: the one event format, with the tap's own timestamp string.
std::string tap_event(std::string_view timestamp, std::uint64_t id, tap_direction dir, std::string_view type,
                      std::string_view data, std::optional<int> code, std::string_view reason) {
    ws_event e{.type = type, .dir = dir == tap_direction::to_upstream ? "up" : "down", .conn = id, .data = data,
               .code = code, .reason = reason, .ts = timestamp};
    return to_event_json(e);
}

}  // namespace

std::string format_tap_line(tap_format f, std::string_view timestamp, std::uint64_t id, tap_direction dir,
                            std::string_view opcode, std::string_view data) {
    const bool up = dir == tap_direction::to_upstream;
    switch (f) {
    case tap_format::text:
        // Text stays UTF-8; other payloads escape every byte that is not printable ASCII.
        return fmt::format("{} #{} {} {} {}\n", timestamp, id, up ? '>' : '<', opcode, escape(data, opcode != "text"));
    case tap_format::hex:
        return fmt::format("{} #{} {} {} {}\n", timestamp, id, up ? '>' : '<', opcode, to_hex(data));
    case tap_format::ndjson:
        return tap_event(timestamp, id, dir, opcode, data, {}, {});
    }
    return {};
}

std::string format_tap_close(tap_format f, std::string_view timestamp, std::uint64_t id, tap_direction dir, int code,
                             std::string_view reason) {
    const bool has_code = code >= 1000 && code <= 0xffff && code != 1005;
    if (f == tap_format::text) {
        std::string data = has_code ? std::to_string(code) : std::string();
        if (!reason.empty()) data += (data.empty() ? "" : " ") + std::string(reason);
        return format_tap_line(f, timestamp, id, dir, "close", data);
    }
    if (f == tap_format::ndjson)
        return tap_event(timestamp, id, dir, "close", {}, has_code ? std::optional<int>(code) : std::nullopt,
                         has_code ? reason : std::string_view());
    std::string payload;
    if (has_code) {
        payload += static_cast<char>((code >> 8) & 0xff);
        payload += static_cast<char>(code & 0xff);
        payload += reason;
    }
    return format_tap_line(f, timestamp, id, dir, "close", payload);
}

tap_writer::tap_writer(const std::string& path, tap_format f) : format_(f) {
    if (path == "-") {
        out_ = stdout;
        owned_ = false;
    } else {
        out_ = std::fopen(path.c_str(), "a");
        owned_ = true;
        if (!out_) throw failure(exit_code::usage, fmt::format("--tap {}: {}", path, std::strerror(errno)));
    }
}

tap_writer::~tap_writer() {
    if (owned_) std::fclose(out_);
    else std::fflush(out_);
}

void tap_writer::write(std::uint64_t id, tap_direction dir, std::string_view opcode, std::string_view data) {
    put(format_tap_line(format_, rfc3339_now(), id, dir, opcode, data));
}

void tap_writer::write_close(std::uint64_t id, tap_direction dir, int code, std::string_view reason) {
    put(format_tap_close(format_, rfc3339_now(), id, dir, code, reason));
}

void tap_writer::put(const std::string& line) {
    std::lock_guard lock(mutex_);
    std::fwrite(line.data(), 1, line.size(), out_);
    std::fflush(out_);
}

}  // namespace wsx
