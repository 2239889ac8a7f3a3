// What a Redis server (or anything answering on its port) sends the relay: RESP replies read by
// redis_reply_reader (hiredis's reader behind a guard on aggregate counts and bulk lengths,
// copied out into redis_value), the cluster layout read from a reply (CLUSTER SLOTS), key slots,
// and redis://, rediss://, redis+sentinel:// and redis+cluster:// URLs.
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
#include "redis_cluster.hpp"

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

/// A reply read as a cluster layout: either a layout a relay can follow (slots in range, each
/// given once, every master with an address) or refused with a clean reason.
void check_layout(const redis_value& v) {
    std::string error;
    const auto ranges = parse_cluster_slots(v, error);
    if (!ranges) {
        check(!error.empty() && fuzz::terminal_safe(error), "a refused layout without a clean reason: " + error);
        return;
    }
    check(!ranges->empty(), "a layout that serves no slot");
    std::vector<bool> taken(redis_cluster_slots);
    for (const auto& r : *ranges) {
        check(r.first <= r.last && r.last < redis_cluster_slots, "a slot range out of bounds");
        check(r.master.port != 0 && fuzz::terminal_safe(r.master.host), "a master without a clean address");
        for (std::size_t s = r.first; s <= r.last; ++s) {
            check(!taken[s], "a slot given twice");
            taken[s] = true;
        }
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
                if (seed == 0) check_layout(v);
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
        if (url && url->cluster()) {
            check(url->db == 0, "a cluster URL with a database other than 0");
            for (const auto& n : url->cluster_nodes)
                check(n.port != 0 && !n.host.empty() && fuzz::terminal_safe(n.host), "a cluster seed without host or port");
        }
        return 0;
    }
    // A key's slot is in range, and a key with a hash tag is where its tag is.
    const std::string key(bytes);
    check(redis_key_slot(key) < redis_cluster_slots, "a slot out of range");
    if (key.find_first_of("{}") == std::string::npos && !key.empty())
        check(redis_key_slot("a{" + key + "}b") == redis_key_slot(key), "a hash tag not used for the slot");
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
