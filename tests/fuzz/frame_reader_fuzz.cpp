// The frame reader on arbitrary bytes: it never loops or crashes, keeps its contract (every
// call yields an event or takes all it is offered), and gives the same events however the
// input is split: whole, one byte per read, and in chunks chosen by the input itself.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "frame_reader.hpp"
#include "permessage_deflate.hpp"

namespace {

struct seen {
    int kind;
    bool binary;
    std::string data;
    unsigned code;
    int failure;
    bool operator==(const seen&) const = default;
};

std::vector<seen> run(const std::string& wire, const std::vector<std::size_t>& cuts, bool masked, bool deflate,
                      std::uint64_t max) {
    wsx::frame_reader r(max, masked);
    wsx::pmd::inflater inf(false);
    if (deflate) r.set_inflater(&inf);
    std::vector<seen> out;
    std::size_t at = 0;
    for (std::size_t c = 0; at < wire.size(); ++c) {
        const std::size_t n = c < cuts.size() ? std::min(cuts[c], wire.size() - at) : wire.size() - at;
        std::string buf = wire.substr(at, n);  // unmasked in place: each run reads its own copy
        at += n;
        std::size_t used = 0;
        while (used < buf.size()) {
            wsx::frame_event ev;
            const std::size_t got = r.next(buf.data() + used, buf.size() - used, ev);
            if (got > buf.size() - used) std::abort();
            used += got;
            if (ev.kind == wsx::frame_event::none) {
                if (used != buf.size()) std::abort();  // would leave a caller's loop without progress
                break;
            }
            if (ev.kind != wsx::frame_event::error && got == 0) std::abort();
            seen s{ev.kind, ev.binary, {}, ev.close_code, static_cast<int>(ev.failure)};
            if (ev.kind == wsx::frame_event::message) {
                s.data = std::string(ev.data());
                if (s.data.size() > max) std::abort();
            } else if (ev.kind != wsx::frame_event::error) {
                s.data = std::string(ev.control);
            }
            if (ev.kind != wsx::frame_event::close && ev.kind != wsx::frame_event::error) s.code = 0;
            if (ev.kind != wsx::frame_event::error) s.failure = 0;
            if (ev.kind != wsx::frame_event::message) s.binary = false;
            out.push_back(std::move(s));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    // Byte 0: bit 0 the reader expects masked frames (a server), bit 1 permessage-deflate is on,
    // bits 2-3 the maximum message size. Byte 1: a seed for the chunk sizes.
    const bool masked = data[0] & 1;
    const bool deflate = data[0] & 2;
    const std::uint64_t max = std::uint64_t(16) << (4 * ((data[0] >> 2) & 3));  // 16 B to 64 KiB
    std::uint32_t seed = data[1] * 2654435761u + 1;
    const std::string wire(reinterpret_cast<const char*>(data) + 2, size - 2);

    const auto whole = run(wire, {}, masked, deflate, max);
    if (run(wire, std::vector<std::size_t>(wire.size(), 1), masked, deflate, max) != whole) std::abort();
    std::vector<std::size_t> chunks;
    for (std::size_t at = 0; at < wire.size();) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        const std::size_t n = 1 + seed % 23;
        chunks.push_back(n);
        at += n;
    }
    if (run(wire, chunks, masked, deflate, max) != whole) std::abort();
    return 0;
}
