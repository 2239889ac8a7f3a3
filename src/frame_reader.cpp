#include "frame_reader.hpp"

#include <algorithm>
#include <cstring>

#include "codec.hpp"
#include "permessage_deflate.hpp"

namespace wsx {

namespace {

/// data ^= key, where data starts at position `at` of the key (wire order).
void unmask(char* data, std::size_t n, std::uint32_t key, unsigned at) noexcept {
    if (at != 0) key = (key >> (8 * at)) | (key << (32 - 8 * at));  // little-endian: rotate to `at`
    apply_mask(data, data, n, key);
}

bool is_control(unsigned op) noexcept { return op >= 8; }

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

void frame_reader::fail(frame_event& ev, websocket::error e, std::uint16_t code) noexcept {
    done_ = true;
    ev.kind = frame_event::error;
    ev.compressed = false;
    ev.failure = e;
    ev.close_code = code;
}

std::size_t frame_reader::next(char* data, std::size_t n, frame_event& ev) {
    ev.kind = frame_event::none;
    std::size_t used = 0;
    // Each turn takes at least one byte or yields an event: the loop ends.
    while (used < n && !done_) {
        if (state_ == state::payload) {
            used += take_payload(data + used, n - used, ev);
        } else if (state_ == state::control) {
            const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(n - used, remaining_));
            const std::size_t at = control_.size();
            control_.append(data + used, take);
            if (masked_) unmask(control_.data() + at, take, key_, key_at_);
            key_at_ = static_cast<unsigned>((key_at_ + take) % 4);
            remaining_ -= take;
            used += take;
            if (remaining_ == 0) {
                state_ = state::header;
                control_event(op_, control_, ev);
            }
        } else {
            // Gather the header: its first two bytes say how long it is.
            const std::size_t take = std::min<std::size_t>(head_need_ - head_have_, n - used);
            std::memcpy(head_ + head_have_, data + used, take);
            head_have_ = static_cast<unsigned char>(head_have_ + take);
            used += take;
            if (head_have_ < head_need_) continue;
            if (header_complete(ev)) start_payload(data, n, used, ev);
        }
        if (ev.kind != frame_event::none) return done_ && ev.kind == frame_event::error ? n : used;
    }
    return n;
}

// The header in head_ is complete as far as head_need_ says. Returns true once the whole
// header is read and valid (the frame's payload follows); false when it needs more bytes
// (head_need_ grew) or failed (ev is the error).
bool frame_reader::header_complete(frame_event& ev) {
    const auto b0 = static_cast<unsigned char>(head_[0]);
    const auto b1 = static_cast<unsigned char>(head_[1]);
    const bool fin = (b0 & 0x80) != 0;
    const bool rsv1 = (b0 & 0x40) != 0;
    const unsigned op = b0 & 0x0f;
    const bool masked = (b1 & 0x80) != 0;
    const unsigned len7 = b1 & 0x7f;
    if (head_need_ == 2) {
        // The checks that need only the first two bytes, made as soon as they are here.
        if ((b0 & 0x30) || (rsv1 && (!inflater_ || is_control(op) || op == 0))) {
            fail(ev, websocket::error::bad_reserved_bits, 1002);
            return false;
        }
        if (op >= 3 && op != 8 && op != 9 && op != 10) {
            fail(ev, websocket::error::bad_opcode, 1002);
            return false;
        }
        if (masked != masked_) {
            fail(ev, masked ? websocket::error::bad_masked_frame : websocket::error::bad_unmasked_frame, 1002);
            return false;
        }
        if (is_control(op) && !fin) {
            fail(ev, websocket::error::bad_control_fragment, 1002);
            return false;
        }
        if (is_control(op) && len7 > 125) {
            fail(ev, websocket::error::bad_control_size, 1002);
            return false;
        }
        if (op == 0 && !in_message_) {
            fail(ev, websocket::error::bad_continuation, 1002);
            return false;
        }
        if (op != 0 && !is_control(op) && in_message_) {
            fail(ev, websocket::error::bad_data_frame, 1002);
            return false;
        }
        head_need_ = static_cast<unsigned char>(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0));
        if (head_have_ < head_need_) return false;
    }
    std::uint64_t len = len7;
    if (len7 == 126) {
        len = (std::uint64_t(static_cast<unsigned char>(head_[2])) << 8) | static_cast<unsigned char>(head_[3]);
        if (len < 126) {
            fail(ev, websocket::error::bad_size, 1002);
            return false;
        }
    } else if (len7 == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(head_[2 + i]);
        if (len < 65536 || (len >> 63) != 0) {
            fail(ev, websocket::error::bad_size, 1002);
            return false;
        }
    }
    key_ = 0;
    if (masked) std::memcpy(&key_, head_ + head_need_ - 4, 4);
    key_at_ = 0;
    op_ = static_cast<unsigned char>(op);
    fin_ = fin;
    remaining_ = len;
    const std::size_t head_size = head_need_;
    head_have_ = 0;
    head_need_ = 2;
    if (is_control(op)) return true;
    if (op != 0) {
        in_message_ = true;
        binary_ = op == 2;
        compressed_ = rsv1;
        message_.clear();
        utf8_checked_ = 0;
        wire_ = 0;
    }
    if (len > max_message_ || message_.size() > max_message_ - len) {
        fail(ev, websocket::error::message_too_big, 1009);
        return false;
    }
    wire_ += head_size;
    return true;
}

// A valid header was read; data[used, avail) follows it.
void frame_reader::start_payload(char* data, std::size_t avail, std::size_t& used, frame_event& ev) {
    char* body = data + used;
    const std::size_t have = avail - used;
    if (is_control(op_)) {
        if (have >= remaining_) {
            // The whole control frame is here: used in place.
            const auto len = static_cast<std::size_t>(remaining_);
            if (masked_) unmask(body, len, key_, 0);
            used += len;
            remaining_ = 0;
            return control_event(op_, std::string_view(body, len), ev);
        }
        control_.clear();
        state_ = state::control;
        return;
    }
    if (fin_ && op_ != 0 && have >= remaining_) {
        // The common case: a whole message in one frame, all of it here. It is used in place.
        const auto len = static_cast<std::size_t>(remaining_);
        if (masked_) unmask(body, len, key_, 0);
        used += len;
        wire_ += len;
        remaining_ = 0;
        return end_message(std::string_view(body, len), true, ev);
    }
    state_ = state::payload;
    if (remaining_ == 0) used += take_payload(body, 0, ev);  // an empty frame ends here
}

std::size_t frame_reader::take_payload(char* data, std::size_t n, frame_event& ev) {
    const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(n, remaining_));
    if (take > 0) {
        if (masked_) unmask(data, take, key_, key_at_);
        key_at_ = static_cast<unsigned>((key_at_ + take) % 4);
        message_.append(data, take);
        remaining_ -= take;
        wire_ += take;
        if (!binary_ && !compressed_) {
            // Text is checked as it arrives, so invalid UTF-8 fails the connection at once,
            // not only when the message is complete (RFC 6455 8.1).
            const std::size_t ok = utf8_complete_prefix(std::string_view(message_).substr(utf8_checked_));
            if (ok == std::string_view::npos) {
                fail(ev, websocket::error::bad_frame_payload, 1007);
                return take;
            }
            utf8_checked_ += ok;
        }
    }
    if (remaining_ > 0) return take;
    state_ = state::header;
    if (fin_) end_message(message_, false, ev);
    return take;
}

// The message is complete: `whole` is its payload as received (in the caller's buffer when
// in_place, else message_).
void frame_reader::end_message(std::string_view whole, bool in_place, frame_event& ev) {
    in_message_ = false;
    ev.binary = binary_;
    ev.wire = wire_;
    ev.compressed = compressed_;
    if (compressed_) {
        std::string out;
        if (!inflater_->decompress(whole, out, max_message_)) {
            if (out.size() > max_message_) fail(ev, websocket::error::message_too_big, 1009);
            else fail(ev, websocket::error::partial_deflate_block, 1007);  // not deflate data
            ev.compressed = true;
            return;
        }
        if (!binary_ && !is_valid_utf8(out)) return fail(ev, websocket::error::bad_frame_payload, 1007);
        message_.clear();
        ev.kind = frame_event::message;
        ev.in_place = false;
        ev.payload = std::move(out);
        return;
    }
    if (!binary_) {
        // The message ends: an unfinished sequence at its end is invalid too.
        const bool valid = in_place ? is_valid_utf8(whole) : utf8_checked_ == message_.size();
        if (!valid) return fail(ev, websocket::error::bad_frame_payload, 1007);
    }
    ev.kind = frame_event::message;
    ev.in_place = in_place;
    if (in_place) {
        ev.control = whole;
    } else {
        ev.payload = std::move(message_);
        message_ = std::string();
    }
}

void frame_reader::control_event(unsigned op, std::string_view body, frame_event& ev) {
    if (op == 9 || op == 10) {
        ev.kind = op == 9 ? frame_event::ping : frame_event::pong;
        ev.control = body;
        return;
    }
    // Close: no payload, or a valid code and a UTF-8 reason.
    if (body.size() == 1) return fail(ev, websocket::error::bad_close_size, 1002);
    ev.close_code = 1005;
    ev.control = {};
    if (body.size() >= 2) {
        const auto code = static_cast<std::uint16_t>((static_cast<unsigned char>(body[0]) << 8) |
                                                     static_cast<unsigned char>(body[1]));
        if (!is_valid_close_code(code)) return fail(ev, websocket::error::bad_close_code, 1002);
        ev.control = body.substr(2);
        if (!is_valid_utf8(ev.control)) return fail(ev, websocket::error::bad_close_payload, 1007);
        ev.close_code = code;
    }
    ev.kind = frame_event::close;
    done_ = true;  // nothing after a Close is read
}

std::string describe_protocol_error(error_code e) {
    using we = websocket::error;
    if (e.category() != websocket::make_error_code(we::closed).category()) return e.message();
    switch (static_cast<we>(e.value())) {
        case we::bad_reserved_bits: return "sent a frame with a reserved bit set that no extension gives meaning to";
        case we::bad_opcode: return "sent a frame with a reserved opcode";
        case we::bad_masked_frame: return "sent a masked frame (a server must not mask)";
        case we::bad_unmasked_frame: return "sent an unmasked frame (a client must mask)";
        case we::bad_control_fragment: return "sent a fragmented control frame";
        case we::bad_control_size: return "sent a control frame longer than 125 bytes";
        case we::bad_continuation: return "sent a continuation frame with no message to continue";
        case we::bad_data_frame: return "began a new message inside a fragmented one";
        case we::bad_size: return "sent a frame length in a longer form than needed";
        case we::message_too_big: return "sent a message larger than the maximum message size";
        case we::bad_frame_payload: return "sent invalid UTF-8 in a text message";
        case we::partial_deflate_block: return "sent a compressed message that does not inflate";
        case we::bad_close_size: return "sent a Close frame with a 1-byte payload";
        case we::bad_close_code: return "sent a Close frame with an invalid status code";
        case we::bad_close_payload: return "sent a Close frame whose reason is not UTF-8";
        default: return e.message();
    }
}

std::size_t encode_frame_header(char* out, unsigned char first, std::uint64_t len, const std::uint32_t* mask) noexcept {
    std::size_t n = 2;
    out[0] = static_cast<char>(first);
    const char mask_bit = mask ? static_cast<char>(0x80) : 0;
    if (len < 126) {
        out[1] = static_cast<char>(mask_bit | static_cast<char>(len));
    } else if (len < 65536) {
        out[1] = static_cast<char>(mask_bit | 126);
        out[2] = static_cast<char>(len >> 8);
        out[3] = static_cast<char>(len & 0xff);
        n = 4;
    } else {
        out[1] = static_cast<char>(mask_bit | 127);
        for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<char>((len >> (56 - 8 * i)) & 0xff);
        n = 10;
    }
    if (mask) {
        std::memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void append_frame(std::string& out, unsigned char first, std::string_view payload, const std::uint32_t* mask) {
    char head[max_frame_header];
    const std::size_t hs = encode_frame_header(head, first, payload.size(), mask);
    const std::size_t at = out.size() + hs;
    out.append(head, hs);
    if (!mask) {
        out.append(payload);
        return;
    }
    out.resize(at + payload.size());
    apply_mask(out.data() + at, payload.data(), payload.size(), *mask);
}

std::string close_payload(std::uint16_t code, std::string_view reason) {
    std::string p;
    if (code == 0) return p;
    if (reason.size() > 123) {
        reason = reason.substr(0, 123);
        // Do not end inside a character: drop continuation bytes and the lead byte they follow.
        std::size_t end = reason.size();
        while (end > 0 && (static_cast<unsigned char>(reason[end - 1]) & 0xc0) == 0x80) --end;
        if (end > 0 && static_cast<unsigned char>(reason[end - 1]) >= 0xc0) --end;
        if (is_valid_utf8(reason)) end = reason.size();
        reason = reason.substr(0, end);
    }
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xff));
    p.append(reason);
    return p;
}

}  // namespace wsx
