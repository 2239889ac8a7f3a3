// What a Redis server (or anything answering on its port) sends the relay: RESP replies read by
// redis_reply_reader (hiredis's reader behind a guard on aggregate counts and bulk lengths,
// copied out into redis_value), and redis://, rediss:// and redis+sentinel:// URLs.
//
// Input: one byte of options, then the bytes. Bit 0 set: the bytes are a URL for
// parse_redis_url (it either parses, with a port, or says why); else a reply stream.
// Checked for a reply stream: the replies read do not depend on how the bytes are cut into
// feeds (whole, one byte at a time, seeded random pieces), an error is sticky and says why,
// and an encoded command reads back as the array of bulk strings it was made of.
// fuzz-options: -max_len=4096
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "redis.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("redis_reply_fuzz", what);
}

std::string describe(const redis_value& v) {
    std::string out = fmt::format("{}:", static_cast<int>(v.type));
    switch (v.type) {
    case redis_value::kind::integer: return out + std::to_string(v.integer);
    case redis_value::kind::array:
        out += "[";
        for (const auto& e : v.elements) out += describe(e) + ",";
        return out + "]";
    default: return out + fmt::format("{}/{}", v.str.size(), v.str);
    }
}

/// Every reply of `bytes` fed in pieces of the sizes `cut` gives, then "error" or "more".
std::string read_all(std::string_view bytes, std::uint32_t seed) {
    redis_reply_reader reader;
    std::string out;
    std::size_t at = 0;
    std::uint32_t x = seed;
    int replies = 0;
    while (at < bytes.size()) {
        std::size_t n = bytes.size() - at;
        if (seed == 1) n = 1;
        else if (seed != 0) {
            x = x * 1103515245u + 12345u;
            n = std::min<std::size_t>(n, 1 + (x >> 16) % 64);
        }
        reader.feed(bytes.substr(at, n));
        at += n;
        for (;;) {
            redis_value v;
            const auto r = reader.next(v);
            if (r == redis_reply_reader::result::reply) {
                out += describe(v) + "\n";
                check(++replies < 100000, "endless replies");
                continue;
            }
            if (r == redis_reply_reader::result::error) {
                check(!reader.error().empty(), "an error without a reason");
                redis_value again;
                check(reader.next(again) == redis_reply_reader::result::error, "an error that did not stay");
                return out + "error\n";
            }
            break;
        }
    }
    return out + "more\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const std::uint8_t opts = in.byte();
    const std::string_view bytes = in.rest();
    if (opts & 1) {
        std::string error;
        const auto url = parse_redis_url(std::string(bytes), error);
        if (!url) check(!error.empty() && fuzz::terminal_safe(error), "a refused URL without a clean reason: " + error);
        else check(url->port != 0 && !url->host.empty(), "a URL without host or port");
        if (url && url->sentinel()) {
            check(!url->master_name.empty(), "a sentinel URL without a master name");
            for (const auto& s : url->sentinels)
                check(s.port != 0 && !s.host.empty() && fuzz::terminal_safe(s.host), "a sentinel without host or port");
            check(url->host == url->sentinels.front().host && url->port == url->sentinels.front().port,
                  "host and port are not the first sentinel's");
        }
        return 0;
    }
    // Counts of any size are fed: the reader refuses those past its bound before hiredis
    // allocates for them, however the header is cut.
    const auto whole = read_all(bytes, 0);
    for (std::uint32_t seed : {std::uint32_t{1}, fuzz::split_seed(bytes)})
        check(read_all(bytes, seed) == whole, fmt::format("cut with seed {}, the replies read differently", seed));

    // A command made of pieces of the input reads back as what it was made of.
    std::vector<std::string> args;
    for (std::size_t i = 0; i < bytes.size() && args.size() < 8; i += 7) args.emplace_back(bytes.substr(i, 7));
    if (args.empty()) return 0;
    redis_reply_reader reader;
    reader.feed(redis_encode(args));
    redis_value v;
    check(reader.next(v) == redis_reply_reader::result::reply, "an encoded command does not read back");
    check(v.type == redis_value::kind::array && v.elements.size() == args.size(), "an encoded command has other parts");
    for (std::size_t i = 0; i < args.size(); ++i) check(v.elements[i].str == args[i], "an encoded argument changed");
    return 0;
}
