#include "event_json.hpp"

#include <ctime>

#include <fmt/format.h>

#include "codec.hpp"

namespace wsx {

std::string rfc3339_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
    // Floor division keeps times before 1970 right (the fraction is never negative).
    auto secs = us / 1000000;
    auto frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        --secs;
    }
    const std::time_t tt = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

namespace {
void append_key(std::string& out, const char* key, bool first = false) {
    if (!first) out += ',';
    out += '"';
    out += key;
    out += "\":";
}
}  // namespace

std::string to_event_json(const ws_event& e) {
    const bool payload = e.type == "text" || e.type == "binary" || e.type == "ping" || e.type == "pong";
    std::string out;
    out.reserve(112 + (payload ? e.data.size() + e.data.size() / 3 : 0) + e.reason.size());
    out += '{';
    append_key(out, event_key::ts, true);
    append_json_string(out, e.ts);
    if (e.conn) out += fmt::format(",\"conn\":{}", *e.conn);
    if (!e.dir.empty()) {
        out += ",\"dir\":";
        append_json_string(out, e.dir);
    }
    append_key(out, event_key::type);
    append_json_string(out, e.type);
    if (e.type == "close") {
        if (e.code) {
            append_key(out, event_key::code);
            out += fmt::format("{}", *e.code);
        }
        append_key(out, event_key::reason);
        append_json_string(out, e.reason);
    } else if (e.type == "error" && !e.reason.empty()) {
        append_key(out, event_key::reason);
        append_json_string(out, e.reason);
    }
    if (payload) {
        out += fmt::format(",\"len\":{}", e.data.size());
        if (e.type != "binary" && is_valid_utf8(e.data)) {
            out += ",\"encoding\":\"utf8\",\"data\":";
            append_json_string(out, e.data);
        } else {
            out += ",\"encoding\":\"base64\",\"data\":\"";
            out += base64_encode(e.data);
            out += '"';
        }
    }
    out += "}\n";
    return out;
}

}  // namespace wsx
