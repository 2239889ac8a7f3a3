// permessage-deflate's inflater (permessage_deflate.cpp), the receiving end of hostile
// compressed messages:
//  - arbitrary messages through one inflater (context kept or not) with a size limit, against
//    zlib itself in the same raw-deflate mode: the same verdict, the same bytes; never more than
//    the limit; the buffer never larger than its documented bound;
//  - arbitrary messages through the deflater and back: equal, accepted at a limit of exactly
//    their size and refused one byte below it.
//
// Input: mode byte, limit (two bytes, little-endian, times 16), then messages, each a two-byte
// little-endian length and that many bytes (the last one takes what is left).
// Mode: bit 0 round trip (else inflate the messages as they are), bit 1 no context takeover,
// (mode >> 2) % 7 + 9 the deflater's window.
// fuzz-options: -max_len=65536 -rss_limit_mb=2048
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "permessage_deflate.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("inflate_fuzz", what);
}

/// zlib's own raw inflate, kept across messages the way RFC 7692 section 7.2.2 reads them:
/// the message, then the 00 00 ff ff its sender left off, after which the stream must stand
/// between blocks (a message is whole blocks); the state is dropped after a message
/// that ended the deflate stream, after a failure, or after every message without context takeover.
class reference_inflater {
public:
    explicit reference_inflater(bool reset_each) : reset_each_(reset_each) {
        check(inflateInit2(&z_, -15) == Z_OK, "inflateInit2");
    }
    ~reference_inflater() { inflateEnd(&z_); }
    reference_inflater(const reference_inflater&) = delete;
    reference_inflater& operator=(const reference_inflater&) = delete;

    /// The message's bytes, or nothing when the data is not valid deflate data or the output
    /// exceeds `limit`.
    std::optional<std::string> inflate(std::string_view compressed, std::uint64_t limit) {
        std::string out;
        bool ok = true, ended = false;
        auto run = [&](std::string_view data, int flush) {
            std::string in(data);
            z_.next_in = reinterpret_cast<Bytef*>(in.data());
            z_.avail_in = static_cast<uInt>(in.size());
            char buf[4096];
            for (;;) {
                z_.next_out = reinterpret_cast<Bytef*>(buf);
                z_.avail_out = sizeof buf;
                const int rc = ::inflate(&z_, flush);
                out.append(buf, sizeof buf - z_.avail_out);
                if (out.size() > limit) {
                    ok = false;
                    return;
                }
                if (rc == Z_STREAM_END) {
                    ended = true;
                    return;
                }
                if (rc == Z_BUF_ERROR || (rc == Z_OK && z_.avail_in == 0 && z_.avail_out > 0)) return;  // all used up
                if (rc != Z_OK) {
                    ok = false;
                    return;
                }
            }
        };
        run(compressed, Z_SYNC_FLUSH);
        // The tail ends an empty stored block: after it the stream must stand between blocks
        // (data_type bit 128, with Z_BLOCK), every byte of it used.
        if (ok && !ended) {
            run(std::string_view("\x00\x00\xff\xff", 4), Z_BLOCK);
            if (ok && !ended && (z_.avail_in != 0 || (z_.data_type & 128) == 0)) ok = false;
        }
        if (reset_each_ || ended || !ok) inflateReset(&z_);
        if (!ok) return std::nullopt;
        return out;
    }

private:
    z_stream z_{};
    bool reset_each_;
};

std::vector<std::string_view> messages(fuzz::input& in) {
    std::vector<std::string_view> out;
    while (!in.empty()) {
        const std::size_t lo = in.byte(), hi = in.byte();
        out.push_back(in.take(lo | hi << 8));
    }
    return out;
}

/// What decompress may hold at most (see the loop in pmd::inflater::decompress): it starts at
/// four times the input (at least 256 bytes), and grows by doubling only while the output is
/// within the limit and less than 1 KiB of room is left. The string's capacity may be twice its
/// size.
std::size_t memory_bound(std::size_t compressed, std::uint64_t limit) {
    return 2 * std::max<std::size_t>({256, compressed * 4, 2 * (limit + 1024)});
}

void inflate_as_they_are(const std::vector<std::string_view>& msgs, bool reset_each, std::uint64_t limit) {
    pmd::inflater ours(reset_each);
    reference_inflater zlib(reset_each);
    for (const auto m : msgs) {
        std::string out;
        const bool ok = ours.decompress(m, out, limit);
        const auto expected = zlib.inflate(m, limit);
        check(ok == expected.has_value(),
              fmt::format("the inflater says {}, zlib says {}", ok ? "ok" : "no", expected ? "ok" : "no"));
        check(out.capacity() <= memory_bound(m.size(), limit),
              fmt::format("{} bytes held for {} compressed bytes at limit {}", out.capacity(), m.size(), limit));
        if (!ok) continue;
        check(out.size() <= limit, "more than the limit came out");
        check(out == *expected, "the inflater and zlib inflate to different bytes");
    }
}

void round_trip(const std::vector<std::string_view>& msgs, bool no_context_takeover, int window_bits) {
    pmd::deflater deflater(window_bits, no_context_takeover);
    // A sender that resets may be read by a receiver that keeps its window, and one that keeps
    // its context by a receiver that does too.
    pmd::inflater kept(false), reset(no_context_takeover);
    bool first = true;
    for (const auto m : msgs) {
        std::string compressed;
        deflater.compress(m, compressed);
        for (auto* inflater : {&kept, &reset}) {
            std::string out;
            check(inflater->decompress(compressed, out, m.size()), fmt::format("a {}-byte message did not come back", m.size()));
            check(out == m, "a message came back changed");
        }
        if (first && !m.empty()) {
            // Refusing costs the inflater its state: a fresh one, for the first message only.
            pmd::inflater tight(no_context_takeover);
            std::string out;
            check(!tight.decompress(compressed, out, m.size() - 1), "a message one byte over the limit was accepted");
        }
        first = false;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const std::uint8_t mode = in.byte();
    const std::uint64_t lo = in.byte(), hi = in.byte();
    const std::uint64_t limit = (lo | hi << 8) * 16;
    const auto msgs = messages(in);
    if (mode & 1) round_trip(msgs, (mode & 2) != 0, 9 + (mode >> 2) % 7);
    else inflate_as_they_are(msgs, (mode & 2) != 0, limit);
    return 0;
}
