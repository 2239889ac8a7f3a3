#include "frame_reader.hpp"

#include <algorithm>
#include <cstring>

#include "codec.hpp"

namespace wsx {

namespace {

/// data ^= key, where data starts at position `at` of the key (wire order).
void unmask(char* data, std::size_t n, std::uint32_t key, unsigned at) noexcept {
    if (at != 0) key = (key >> (8 * at)) | (key << (32 - 8 * at));  // little-endian: rotate to `at`
    apply_mask(data, data, n, key);
}

}  // namespace

bool is_valid_close_code(std::uint16_t code) noexcept {
    if (code >= 3000 && code <= 4999) return true;
    switch (code) {
        case 1000: case 1001: case 1002: case 1003: case 1007: case 1008:
        case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
            return true;
        default:
            return false;
    }
}

std::size_t frame_reader::fail(frame_event& ev, websocket::error e, std::uint16_t code) noexcept {
    failed_ = true;
    ev.kind = frame_event::error;
    ev.failure = e;
    ev.close_code = code;
    return 0;
}

std::size_t frame_reader::next(char* data, std::size_t n, frame_event& ev) {
    ev.kind = frame_event::none;
    if (failed_) return 0;
    if (in_frame_) return payload(data, n, ev);
    if (n < 2) return 0;
    const auto b0 = static_cast<unsigned char>(data[0]);
    const auto b1 = static_cast<unsigned char>(data[1]);
    const bool fin = (b0 & 0x80) != 0;
    const unsigned op = b0 & 0x0f;
    const bool masked = (b1 & 0x80) != 0;
    const unsigned len7 = b1 & 0x7f;
    if (b0 & 0x70) return fail(ev, websocket::error::bad_reserved_bits, 1002);
    if (op >= 3 && op != 8 && op != 9 && op != 10) return fail(ev, websocket::error::bad_opcode, 1002);
    if (masked != masked_)
        return fail(ev, masked ? websocket::error::bad_masked_frame : websocket::error::bad_unmasked_frame, 1002);
    const bool control = op >= 8;
    if (control && !fin) return fail(ev, websocket::error::bad_control_fragment, 1002);
    if (control && len7 > 125) return fail(ev, websocket::error::bad_control_size, 1002);
    const std::size_t head = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (n < head) return 0;
    std::uint64_t len = len7;
    if (len7 == 126) {
        len = (std::uint64_t(static_cast<unsigned char>(data[2])) << 8) | static_cast<unsigned char>(data[3]);
        if (len < 126) return fail(ev, websocket::error::bad_size, 1002);
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(data[2 + i]);
        if (len < 65536 || (len >> 63) != 0) return fail(ev, websocket::error::bad_size, 1002);
    }
    std::uint32_t key = 0;
    if (masked) std::memcpy(&key, data + head - 4, 4);

    if (control) {
        if (n < head + len) return 0;
        char* body = data + head;
        if (masked) unmask(body, len, key, 0);
        const std::size_t used = head + len;
        if (op == 9 || op == 10) {
            ev.kind = op == 9 ? frame_event::ping : frame_event::pong;
            ev.control = {body, len};
            return used;
        }
        // Close: no payload, or a valid code and a UTF-8 reason.
        if (len == 1) return fail(ev, websocket::error::bad_close_size, 1002);
        ev.close_code = 1005;
        ev.control = {};
        if (len >= 2) {
            const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(body[0]) << 8) |
                                                         static_cast<unsigned char>(body[1]));
            if (!is_valid_close_code(code)) return fail(ev, websocket::error::bad_close_code, 1002);
            ev.control = {body + 2, len - 2};
            if (!is_valid_utf8(ev.control)) return fail(ev, websocket::error::bad_close_payload, 1007);
            ev.close_code = code;
        }
        ev.kind = frame_event::close;
        failed_ = true;  // nothing after a Close is read
        return used;
    }

    if (op == 0 && !in_message_) return fail(ev, websocket::error::bad_continuation, 1002);
    if (op != 0 && in_message_) return fail(ev, websocket::error::bad_data_frame, 1002);
    if (op != 0) {
        in_message_ = true;
        binary_ = op == 2;
        message_.clear();
        utf8_checked_ = 0;
    }
    if (len > max_message_ || message_.size() > max_message_ - len)
        return fail(ev, websocket::error::message_too_big, 1009);
    if (fin && op != 0 && n - head >= len) {
        // The common case: a whole message in one frame, all of it here. It is used in place.
        char* body = data + head;
        if (masked) unmask(body, len, key, 0);
        in_message_ = false;
        const std::string_view msg(body, len);
        if (!binary_ && !is_valid_utf8(msg)) return head + len + fail(ev, websocket::error::bad_frame_payload, 1007);
        ev.kind = frame_event::message;
        ev.binary = binary_;
        ev.in_place = true;
        ev.control = msg;
        return head + len;
    }
    in_frame_ = true;
    fin_ = fin;
    remaining_ = len;
    key_ = key;
    key_at_ = 0;
    return head + payload(data + head, n - head, ev);
}

std::size_t frame_reader::payload(char* data, std::size_t n, frame_event& ev) {
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
    if (take > 0) {
        if (masked_) unmask(data, take, key_, key_at_);
        key_at_ = static_cast<unsigned>((key_at_ + take) % 4);
        if (message_.empty() && take == remaining_) message_.assign(data, take);  // the common case: one whole frame
        else message_.append(data, take);
        remaining_ -= take;
        if (!binary_) {
            // Text is checked as it arrives, so invalid UTF-8 fails the connection at once,
            // not only when the message is complete (RFC 6455 8.1).
            const std::size_t ok = utf8_complete_prefix(std::string_view(message_).substr(utf8_checked_));
            if (ok == std::string_view::npos) return take + fail(ev, websocket::error::bad_frame_payload, 1007);
            utf8_checked_ += ok;
        }
    }
    if (remaining_ > 0) return take;
    in_frame_ = false;
    if (!fin_) return take;
    in_message_ = false;
    // The message ends: an unfinished sequence at its end is invalid too.
    if (!binary_ && utf8_checked_ != message_.size()) return take + fail(ev, websocket::error::bad_frame_payload, 1007);
    ev.kind = frame_event::message;
    ev.binary = binary_;
    ev.in_place = false;
    ev.payload = std::move(message_);
    message_ = std::string();
    return take;
}

}  // namespace wsx
