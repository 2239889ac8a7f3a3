#pragma once
/// frame_reader: an incremental RFC 6455 frame parser for connections without extensions.
///
/// It takes whatever bytes the socket produced, unmasks them in place and yields one event
/// at a time: a complete data message, a control frame, or the protocol error that fails
/// the connection (with the close code RFC 6455 prescribes). A message that lies whole in
/// the bytes offered (one frame) is yielded in place, without a copy; otherwise a data
/// frame's payload is appended to the message as it arrives, so only an incomplete frame
/// header or control frame (at most 139 bytes) is ever left for the caller to keep between reads.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "net.hpp"

namespace wsx {

struct frame_event {
    enum kind_t { none, message, ping, pong, close, error };
    kind_t kind = none;
    bool binary = false;             ///< message: binary (else text, already checked as UTF-8)
    bool in_place = false;           ///< message: its payload is `control`, in the caller's buffer
    std::string payload;             ///< message: its payload (when not in_place)
    std::string_view control;        ///< ping/pong: payload; close: reason; in-place message: payload
                                     ///< (all in the caller's buffer)
    std::uint16_t close_code = 0;    ///< close: the code received (1005 when none); error: the code to send
    websocket::error failure{};      ///< error: what was wrong

    /// message: its payload, wherever it is.
    std::string_view data() const noexcept { return in_place ? control : std::string_view(payload); }
};

class frame_reader {
public:
    /// `masked`: frames must be masked (a server reading a client), else must not be.
    frame_reader(std::uint64_t max_message_size, bool masked) noexcept
        : max_message_(max_message_size), masked_(masked) {}

    /// Reads from [data, data + n), unmasking in place. Returns the bytes consumed and sets
    /// `ev` (kind none: the rest is an incomplete frame header or control frame, to be
    /// offered again with more bytes behind it). After an error event, nothing more is read.
    std::size_t next(char* data, std::size_t n, frame_event& ev);

    bool failed() const noexcept { return failed_; }
    /// A message is partly received (between its first and last frame, or inside a frame).
    bool mid_message() const noexcept { return in_message_; }

private:
    std::size_t payload(char* data, std::size_t n, frame_event& ev);
    std::size_t fail(frame_event& ev, websocket::error e, std::uint16_t code) noexcept;

    std::uint64_t max_message_;
    bool masked_;
    bool failed_ = false;
    bool in_message_ = false;  // a data message has begun
    bool binary_ = false;
    bool in_frame_ = false;    // inside a data frame's payload
    bool fin_ = false;
    std::uint64_t remaining_ = 0;
    std::size_t utf8_checked_ = 0;  // text: bytes of message_ known to be whole well-formed UTF-8
    std::uint32_t key_ = 0;
    unsigned key_at_ = 0;      // position in the mask key of the next payload byte
    std::string message_;
};

/// dst = src XOR the 4-byte masking key (RFC 6455 5.3; key bytes in wire order, as read from
/// the frame into memory), 8 bytes at a time. dst may be src.
inline void apply_mask(char* dst, const char* src, std::size_t n, std::uint32_t key) noexcept {
    const std::uint64_t k8 = (std::uint64_t(key) << 32) | key;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t v;
        std::memcpy(&v, src + i, 8);
        v ^= k8;
        std::memcpy(dst + i, &v, 8);
    }
    const auto* kb = reinterpret_cast<const unsigned char*>(&key);
    for (; i < n; ++i) dst[i] = static_cast<char>(src[i] ^ kb[i % 4]);
}

/// RFC 6455 7.4: may `code` appear in a Close frame?
bool is_valid_close_code(std::uint16_t code) noexcept;

}  // namespace wsx
