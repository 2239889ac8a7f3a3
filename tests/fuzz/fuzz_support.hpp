#pragma once
// Helpers shared by the fuzz targets (a header, so the glob of *_fuzz.cpp leaves it alone).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "codec.hpp"
#include "net.hpp"

namespace wsx::fuzz {

/// Stops the run with a message: libFuzzer keeps the input that got here.
[[noreturn]] inline void fail(const char* target, const std::string& what) {
    std::fprintf(stderr, "%s: %s\n", target, what.c_str());
    std::abort();
}

/// Text from a peer reaches a terminal only through escape_for_terminal: what is shown must
/// be unchanged by it.
inline bool terminal_safe(std::string_view s) { return escape_for_terminal(s) == s; }

/// Reads the input front to back: the leading bytes of a fuzz input choose options.
class input {
public:
    input(const std::uint8_t* data, std::size_t size) : s_(reinterpret_cast<const char*>(data), size) {}
    bool empty() const { return s_.empty(); }
    /// The next byte, 0 when none is left.
    std::uint8_t byte() {
        if (s_.empty()) return 0;
        const auto b = static_cast<std::uint8_t>(s_.front());
        s_.remove_prefix(1);
        return b;
    }
    /// The next `n` bytes (fewer at the end).
    std::string_view take(std::size_t n) {
        const auto t = s_.substr(0, n);
        s_.remove_prefix(t.size());
        return t;
    }
    /// Everything left.
    std::string_view rest() {
        const auto t = s_;
        s_ = {};
        return t;
    }

private:
    std::string_view s_;
};

/// A SyncReadStream over bytes in memory, handing them out in pieces whose sizes follow a
/// pattern derived from `seed` (1 byte at a time when seed is 1, everything at once when 0),
/// then end of stream: Beast's readers see the input split as a network might split it.
class chunked_source {
public:
    chunked_source(std::string_view data, std::uint32_t seed) : data_(data), state_(seed) {}

    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers, error_code& ec) {
        ec = {};
        if (data_.empty()) {
            ec = net::error::eof;
            return 0;
        }
        std::size_t n = data_.size();
        if (state_ == 1) {
            n = 1;
        } else if (state_ != 0) {
            state_ = state_ * 1103515245u + 12345u;  // any cheap pattern of small and large pieces
            n = std::min<std::size_t>(n, 1 + (state_ >> 16) % 97);
        }
        n = net::buffer_copy(buffers, net::buffer(data_.data(), n));
        data_.remove_prefix(n);
        return n;
    }
    template <class MutableBufferSequence>
    std::size_t read_some(const MutableBufferSequence& buffers) {
        error_code ec;
        const std::size_t n = read_some(buffers, ec);
        if (ec) throw boost::system::system_error(ec);
        return n;
    }
    /// Bytes not read yet.
    std::size_t left() const { return data_.size(); }

private:
    std::string_view data_;
    std::uint32_t state_;
};

/// A seed for chunked_source from the input itself, never 0 or 1 (those are tried anyway).
inline std::uint32_t split_seed(std::string_view data) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : data) h = (h ^ c) * 16777619u;
    return h < 2 ? h + 2 : h;
}

}  // namespace wsx::fuzz
