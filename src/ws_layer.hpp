#pragma once
/// The byte-stream layer beneath every websocket::stream in wsx.
///
/// Why it exists: Beast's async_close discards every data frame that arrives after
/// our Close frame, but RFC 6455 lets the peer keep sending until its own Close, and
/// wsx promises that every received message is written out, also at close. So wsx
/// writes its Close frame itself through this layer (close_frame()) and keeps the
/// Beast read loop running; when the peer's Close arrives, Beast's automatic reply
/// is swallowed here because ours already went out.
#include "net.hpp"

#include <array>
#include <functional>
#include <random>
#include <string>

namespace wsx {

template <class Next>
class ws_layer {
public:
    using next_layer_type = Next;
    using executor_type = typename Next::executor_type;

    template <class... Args>
    explicit ws_layer(Args&&... args) : next_(std::forward<Args>(args)...) {}

    next_layer_type& next_layer() noexcept { return next_; }
    const next_layer_type& next_layer() const noexcept { return next_; }
    executor_type get_executor() noexcept { return next_.get_executor(); }

    bool sealed() const noexcept { return swallow_; }

    template <class MutableBuffers, class Handler>
    auto async_read_some(const MutableBuffers& b, Handler&& h) {
        return next_.async_read_some(b, std::forward<Handler>(h));
    }

    template <class ConstBuffers, class Handler>
    auto async_write_some(const ConstBuffers& b, Handler&& h) {
        return net::async_initiate<Handler, void(error_code, std::size_t)>(
            [this](auto handler, const ConstBuffers& buffers) {
                if (swallow_) {
                    auto ex = net::get_associated_executor(handler, next_.get_executor());
                    net::post(ex, [handler = std::move(handler), n = net::buffer_size(buffers)]() mutable {
                        handler(error_code{}, n);
                    });
                    return;
                }
                ++writes_in_flight_;
                next_.async_write_some(buffers, [this, handler = std::move(handler)](error_code ec, std::size_t n) mutable {
                    --writes_in_flight_;
                    start_injection();
                    handler(ec, n);
                });
            },
            h, b);
    }

    /// Writes raw bytes (our own Close frame) once no other write is on the wire, and
    /// from that moment swallows every later write. Calls done(ec) when written.
    template <class Done>
    void inject_and_seal(std::string bytes, Done done) {
        swallow_ = true;
        injection_ = std::move(bytes);
        on_injected_ = std::move(done);
        pending_injection_ = true;
        start_injection();
    }

    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& b, error_code& ec) { return next_.read_some(b, ec); }
    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& b) { return next_.read_some(b); }
    template <class ConstBuffers>
    std::size_t write_some(const ConstBuffers& b, error_code& ec) {
        if (swallow_) return net::buffer_size(b);
        return next_.write_some(b, ec);
    }
    template <class ConstBuffers>
    std::size_t write_some(const ConstBuffers& b) {
        if (swallow_) return net::buffer_size(b);
        return next_.write_some(b);
    }

private:
    void start_injection() {
        if (!pending_injection_ || writes_in_flight_ > 0) return;
        pending_injection_ = false;
        net::async_write(next_, net::buffer(injection_), [this](error_code ec, std::size_t) {
            auto done = std::move(on_injected_);
            on_injected_ = nullptr;
            if (done) done(ec);
        });
    }

    Next next_;
    bool swallow_ = false;
    bool pending_injection_ = false;
    int writes_in_flight_ = 0;
    std::string injection_;
    std::function<void(error_code)> on_injected_;
};

/// Encodes a Close frame (RFC 6455 5.5.1); masked when sent by a client.
inline std::string encode_close_frame(std::uint16_t code, std::string_view reason, bool mask) {
    if (reason.size() > 123) reason = reason.substr(0, 123);
    std::string payload;
    if (code != 0) {
        payload.push_back(static_cast<char>(code >> 8));
        payload.push_back(static_cast<char>(code & 0xff));
        payload.append(reason);
    }
    std::string frame;
    frame.push_back(static_cast<char>(0x88));
    frame.push_back(static_cast<char>((mask ? 0x80 : 0) | payload.size()));
    if (mask) {
        static thread_local std::mt19937 rng{std::random_device{}()};
        std::array<unsigned char, 4> key;
        auto r = rng();
        for (int i = 0; i < 4; ++i) key[i] = static_cast<unsigned char>(r >> (8 * i));
        frame.append(reinterpret_cast<const char*>(key.data()), 4);
        for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
    }
    frame += payload;
    return frame;
}

template <class Next>
void teardown(beast::role_type role, ws_layer<Next>& s, error_code& ec) {
    using websocket::teardown;
    teardown(role, s.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(beast::role_type role, ws_layer<Next>& s, Handler&& h) {
    using websocket::async_teardown;
    async_teardown(role, s.next_layer(), std::forward<Handler>(h));
}

}  // namespace wsx
