#pragma once
/// The frame codec: RFC 6455 framing, once, for every reader and writer in wsx (sessions of
/// every command, bench's connections, the proxy's bridges).
///
/// frame_reader is a state machine over the bytes a connection receives. It takes whatever
/// the socket produced, unmasks in place and yields one event at a time: a complete data
/// message, a control frame, or the protocol error that fails the connection (with the close
/// code RFC 6455 prescribes). Everything it needs between reads (a frame header cut short, a
/// control frame's payload, a fragmented message) it keeps itself, so the answer does not
/// depend on how the input was split, and every call either yields an event or takes all the
/// bytes offered: a caller's loop cannot spin. A message that lies whole in the bytes offered
/// (one frame) is yielded in place, without a copy.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "net.hpp"

namespace wsx {

namespace pmd {
class inflater;
}

struct frame_event {
    enum kind_t { none, message, ping, pong, close, error };
    kind_t kind = none;
    bool binary = false;             ///< message: binary (else text, already checked as UTF-8)
    bool in_place = false;           ///< message: its payload is `control`, in the caller's buffer
    std::string payload;             ///< message: its payload (when not in_place)
    std::string_view control;        ///< ping/pong: payload; close: reason; in-place message: payload
                                     ///< (valid until the next call, or while the caller's buffer is)
    std::uint16_t close_code = 0;    ///< close: the code received (1005 when none); error: the code to send
    websocket::error failure{};      ///< error: what was wrong
    std::uint64_t wire = 0;          ///< message: the bytes its frames took on the wire, headers included
    bool compressed = false;         ///< message, or error: the message came compressed (permessage-deflate)

    /// message: its payload, wherever it is.
    std::string_view data() const noexcept { return in_place ? control : std::string_view(payload); }
};

class frame_reader {
public:
    /// `masked`: frames must be masked (a server reading a client), else must not be.
    frame_reader(std::uint64_t max_message_size, bool masked) noexcept
        : max_message_(max_message_size), masked_(masked) {}

    /// permessage-deflate was negotiated: a message whose first frame has RSV1 set is inflated
    /// with `inf` (kept by the caller) when complete; one that would inflate past the maximum
    /// message size fails with 1009, data that is not deflate data with 1007 (partial_deflate_block).
    void set_inflater(pmd::inflater* inf) noexcept { inflater_ = inf; }

    /// Reads from [data, data + n), unmasking in place. Either sets an event and returns the
    /// bytes that went into it (the caller offers the rest again), or takes all n bytes into
    /// its state and returns n with `ev.kind == none`. After an error event or a Close, every
    /// later byte is taken and ignored.
    std::size_t next(char* data, std::size_t n, frame_event& ev);

    /// An error or a Close ended the input.
    bool done() const noexcept { return done_; }

private:
    enum class state : unsigned char { header, payload, control };

    bool header_complete(frame_event& ev);
    void start_payload(char* data, std::size_t avail, std::size_t& used, frame_event& ev);
    std::size_t take_payload(char* data, std::size_t n, frame_event& ev);
    void end_message(std::string_view whole, bool in_place, frame_event& ev);
    void control_event(unsigned op, std::string_view body, frame_event& ev);
    void fail(frame_event& ev, websocket::error e, std::uint16_t code) noexcept;

    std::uint64_t max_message_;
    pmd::inflater* inflater_ = nullptr;
    bool masked_;
    bool done_ = false;
    state state_ = state::header;
    unsigned char head_have_ = 0;  // header bytes gathered in head_
    unsigned char head_need_ = 2;  // the header's size, once its first two bytes are known
    unsigned char op_ = 0;         // the frame being read
    bool fin_ = false;
    bool in_message_ = false;      // a data message has begun (between its first and last frame)
    bool binary_ = false;
    bool compressed_ = false;      // the message began with RSV1 (permessage-deflate)
    unsigned key_at_ = 0;          // position in the mask key of the next payload byte
    std::uint32_t key_ = 0;
    std::uint64_t remaining_ = 0;  // payload bytes of the current frame still to come
    std::uint64_t wire_ = 0;       // the message's bytes on the wire so far
    std::size_t utf8_checked_ = 0; // text: bytes of message_ known to be whole well-formed UTF-8
    char head_[14];
    std::string message_;          // a message arriving in pieces (or compressed)
    std::string control_;          // a control frame's payload arriving in pieces
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

/// Frame header bytes (RFC 6455 5.2), FIN set: 0x80 | opcode, | 0x40 for RSV1.
namespace opcode_byte {
inline constexpr unsigned char text = 0x81, binary = 0x82, close = 0x88, ping = 0x89, pong = 0x8a;
inline constexpr unsigned char rsv1 = 0x40;
}  // namespace opcode_byte

/// The largest frame header: 2 bytes, an 8-byte length and a 4-byte masking key.
inline constexpr std::size_t max_frame_header = 14;

/// Writes the header of a frame carrying `len` payload bytes into `out` (room for
/// max_frame_header bytes) and returns its size. `first`: FIN, RSV and opcode bits. With a
/// `mask` key (wire order), the mask bit is set and the key ends the header.
std::size_t encode_frame_header(char* out, unsigned char first, std::uint64_t len, const std::uint32_t* mask) noexcept;

/// Appends one whole frame to `out`; masked with `*mask` when given.
void append_frame(std::string& out, unsigned char first, std::string_view payload, const std::uint32_t* mask = nullptr);

/// A data message sent as frames of at most `fragment` payload bytes (RFC 6455 5.4; 0: one
/// frame): calls f(first_byte, piece) for each frame in order. `first` (FIN set, opcode, RSV1 for
/// a compressed message) goes to the first frame with FIN cleared unless it is also the last;
/// continuation frames carry opcode 0 and no RSV bits (RFC 7692 6.1), the last one FIN. An
/// empty message is one frame.
template <class F>
void for_each_fragment(unsigned char first, std::string_view payload, std::size_t fragment, F&& f) {
    if (fragment == 0 || payload.size() <= fragment) return f(first, payload);
    for (std::size_t at = 0; at < payload.size(); at += fragment) {
        const bool last = payload.size() - at <= fragment;
        const unsigned char head = at == 0 ? static_cast<unsigned char>(first & 0x7f) : 0x00;
        f(static_cast<unsigned char>(head | (last ? 0x80 : 0)), payload.substr(at, fragment));
    }
}

/// The payload of a Close frame (RFC 6455 5.5.1): none for code 0, else the code and at most
/// 123 bytes of the reason (cut at a character boundary, so the reason stays UTF-8).
std::string close_payload(std::uint16_t code, std::string_view reason);

/// What a peer did wrong, for people: "sent invalid UTF-8 in a text message" (the frame
/// reader's errors; Beast's message for any other websocket error).
std::string describe_protocol_error(error_code e);

/// RFC 6455 7.4: may `code` appear in a Close frame?
bool is_valid_close_code(std::uint16_t code) noexcept;

}  // namespace wsx
