#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include "codec.hpp"
#include "frame_reader.hpp"
#include "permessage_deflate.hpp"

using wsx::frame_event;
using wsx::frame_reader;
namespace websocket = boost::beast::websocket;

namespace {

/// One frame as a client sends it (masked with `key`), or unmasked when key is 0.
std::string frame(unsigned opcode, std::string_view payload, bool fin = true, std::uint32_t key = 0x5a1bc3d4,
                  int len_bytes = 0) {
    std::string f;
    f.push_back(static_cast<char>((fin ? 0x80 : 0) | opcode));
    const char mask_bit = key ? static_cast<char>(0x80) : 0;
    const std::size_t n = payload.size();
    if (len_bytes == 0) len_bytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
    if (len_bytes == 0) {
        f.push_back(static_cast<char>(mask_bit | n));
    } else if (len_bytes == 2) {
        f.push_back(static_cast<char>(mask_bit | 126));
        f.push_back(static_cast<char>(n >> 8));
        f.push_back(static_cast<char>(n & 0xff));
    } else {
        f.push_back(static_cast<char>(mask_bit | 127));
        for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((std::uint64_t(n) >> (8 * i)) & 0xff));
    }
    if (!key) return f + std::string(payload);
    unsigned char k[4] = {static_cast<unsigned char>(key >> 24), static_cast<unsigned char>(key >> 16),
                          static_cast<unsigned char>(key >> 8), static_cast<unsigned char>(key)};
    f.append(reinterpret_cast<const char*>(k), 4);
    for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ k[i % 4]));
    return f;
}

std::string close_payload(std::uint16_t code, std::string_view reason = {}) {
    std::string p;
    p.push_back(static_cast<char>(code >> 8));
    p.push_back(static_cast<char>(code & 0xff));
    return p + std::string(reason);
}

struct seen {
    frame_event::kind_t kind;
    std::string data;  // message payload, control payload or close reason
    bool binary = false;
    std::uint16_t code = 0;
    websocket::error failure{};
    bool operator==(const seen& o) const {
        return kind == o.kind && data == o.data && binary == o.binary && code == o.code && failure == o.failure;
    }
};

seen observe(const frame_event& ev) {
    seen s{ev.kind, {}, ev.kind == frame_event::message && ev.binary, 0, {}};
    if (ev.kind == frame_event::message) s.data = std::string(ev.data());
    if (ev.kind == frame_event::ping || ev.kind == frame_event::pong || ev.kind == frame_event::close)
        s.data = std::string(ev.control);
    if (ev.kind == frame_event::close || ev.kind == frame_event::error) s.code = ev.close_code;
    if (ev.kind == frame_event::error) s.failure = ev.failure;
    return s;
}

/// Feeds `pieces` one after the other, as reads from a socket would deliver them; returns every
/// event until an error or Close. Checks the reader's contract on every call: it yields an
/// event or takes every byte offered (a caller's loop always ends).
std::vector<seen> feed_pieces(const std::vector<std::string>& pieces, std::uint64_t max = 1 << 20, bool masked = true,
                              wsx::pmd::inflater* inflate = nullptr) {
    frame_reader r(max, masked);
    r.set_inflater(inflate);
    std::vector<seen> out;
    for (std::string buf : pieces) {
        std::size_t used = 0;
        while (used < buf.size()) {
            frame_event ev;
            const std::size_t got = r.next(buf.data() + used, buf.size() - used, ev);
            used += got;
            if (ev.kind == frame_event::none) {
                REQUIRE(used == buf.size());
                break;
            }
            if (ev.kind != frame_event::error) REQUIRE(got > 0);
            out.push_back(observe(ev));
            if (ev.kind == frame_event::close || ev.kind == frame_event::error) return out;
        }
    }
    return out;
}

/// Feeds `wire` in chunks of `chunk` bytes.
std::vector<seen> feed(const std::string& wire, std::size_t chunk, std::uint64_t max = 1 << 20, bool masked = true) {
    std::vector<std::string> pieces;
    for (std::size_t at = 0; at < wire.size(); at += chunk) pieces.push_back(wire.substr(at, chunk));
    return feed_pieces(pieces, max, masked);
}

/// The events for `wire` must not depend on how it is split: whole, one byte at a time, at
/// every single cut, and in random chunks.
void check_split_invariant(const std::string& wire, const std::vector<seen>& want, std::uint64_t max = 1 << 20) {
    REQUIRE(feed(wire, wire.size() + 1, max) == want);
    REQUIRE(feed(wire, 1, max) == want);
    for (std::size_t cut = 1; cut < wire.size() && cut < 2000; ++cut) {
        INFO("cut at " << cut);
        REQUIRE(feed_pieces({wire.substr(0, cut), wire.substr(cut)}, max) == want);
    }
    std::mt19937 rng(static_cast<std::uint32_t>(wire.size()));
    for (int round = 0; round < 20; ++round) {
        std::vector<std::string> pieces;
        for (std::size_t at = 0; at < wire.size();) {
            const std::size_t n = 1 + rng() % 40;
            pieces.push_back(wire.substr(at, n));
            at += n;
        }
        INFO("random round " << round);
        REQUIRE(feed_pieces(pieces, max) == want);
    }
}

seen msg(std::string text, bool binary = false) { return {frame_event::message, std::move(text), binary, 0, {}}; }
seen err(websocket::error e, std::uint16_t code) { return {frame_event::error, {}, false, code, e}; }

}  // namespace

TEST_CASE("frame_reader: messages and control frames, whole or one byte at a time", "[frame_reader]") {
    const std::string big(70000, 'x');
    std::string mid(300, '\0');
    for (std::size_t i = 0; i < mid.size(); ++i) mid[i] = static_cast<char>(i);
    const std::string wire = frame(1, "hello") + frame(2, mid) + frame(9, "pi") + frame(1, big) + frame(1, "") +
                             frame(10, "po") + frame(8, close_payload(1000, "bye"));
    const std::vector<seen> want = {msg("hello"), msg(mid, true), {frame_event::ping, "pi"}, msg(big), msg(""),
                                    {frame_event::pong, "po"}, {frame_event::close, "bye", false, 1000, {}}};
    for (std::size_t chunk : {wire.size(), std::size_t(1), std::size_t(3), std::size_t(7), std::size_t(4096)}) {
        INFO("chunk " << chunk);
        CHECK(feed(wire, chunk) == want);
    }
}

TEST_CASE("frame_reader: a whole one-frame message is yielded in place, unmasked", "[frame_reader]") {
    std::string buf = frame(2, "in place") + frame(1, "next", false);
    frame_reader r(1 << 20, true);
    frame_event ev;
    const std::size_t used = r.next(buf.data(), buf.size(), ev);
    REQUIRE(ev.kind == frame_event::message);
    CHECK(ev.in_place);
    CHECK(ev.binary);
    CHECK(ev.data() == "in place");
    CHECK(ev.data().data() == buf.data() + 6);  // the payload, unmasked where it arrived
    CHECK(ev.payload.empty());
    // A message still coming (here: an unfinished fragment) is gathered, not in place.
    CHECK(r.next(buf.data() + used, buf.size() - used, ev) == buf.size() - used);
    CHECK(ev.kind == frame_event::none);
    std::string last = frame(0, "!");
    r.next(last.data(), last.size(), ev);
    REQUIRE(ev.kind == frame_event::message);
    CHECK_FALSE(ev.in_place);
    CHECK(ev.data() == "next!");
}

TEST_CASE("frame_reader: fragments make one message; control frames may come between them", "[frame_reader]") {
    // "€" (E2 82 AC) split across the fragments: valid once whole.
    const std::string wire = frame(1, "a\xE2", false) + frame(9, "between") + frame(0, "\x82", false) +
                             frame(0, "\xAC" "z", true) + frame(2, "b");
    const std::vector<seen> want = {{frame_event::ping, "between"}, msg("a\xE2\x82\xAC" "z"), msg("b", true)};
    CHECK(feed(wire, wire.size()) == want);
    CHECK(feed(wire, 1) == want);
}

TEST_CASE("frame_reader: a Close without payload reports 1005", "[frame_reader]") {
    CHECK(feed(frame(8, ""), 64) == std::vector<seen>{{frame_event::close, "", false, 1005, {}}});
}

TEST_CASE("frame_reader: protocol errors carry the close code RFC 6455 prescribes", "[frame_reader]") {
    using e = websocket::error;
    std::string rsv = frame(1, "x");
    rsv[0] = static_cast<char>(rsv[0] | 0x40);
    CHECK(feed(rsv, 64) == std::vector<seen>{err(e::bad_reserved_bits, 1002)});
    CHECK(feed(frame(3, "x"), 64) == std::vector<seen>{err(e::bad_opcode, 1002)});
    CHECK(feed(frame(1, "x", true, 0), 64) == std::vector<seen>{err(e::bad_unmasked_frame, 1002)});
    CHECK(feed(frame(1, "x"), 64, 1 << 20, false) == std::vector<seen>{err(e::bad_masked_frame, 1002)});
    CHECK(feed(frame(9, "x", false), 64) == std::vector<seen>{err(e::bad_control_fragment, 1002)});
    CHECK(feed(frame(9, std::string(126, 'p')), 300) == std::vector<seen>{err(e::bad_control_size, 1002)});
    CHECK(feed(frame(0, "x"), 64) == std::vector<seen>{err(e::bad_continuation, 1002)});
    CHECK(feed(frame(1, "x", false) + frame(1, "y"), 64) == std::vector<seen>{err(e::bad_data_frame, 1002)});
    CHECK(feed(frame(1, "short", true, 0x01020304, 2), 64) == std::vector<seen>{err(e::bad_size, 1002)});
    CHECK(feed(frame(1, std::string(200, 'y'), true, 0x01020304, 8), 300) == std::vector<seen>{err(e::bad_size, 1002)});
    CHECK(feed(frame(2, std::string(101, 'y')), 300, 100) == std::vector<seen>{err(e::message_too_big, 1009)});
    CHECK(feed(frame(2, std::string(60, 'y'), false) + frame(0, std::string(41, 'y')), 300, 100) ==
          std::vector<seen>{err(e::message_too_big, 1009)});
    CHECK(feed(frame(2, std::string(100, 'y')), 300, 100) == std::vector<seen>{msg(std::string(100, 'y'), true)});
    CHECK(feed(frame(1, "bad \xC0\xAF utf-8"), 64) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
    CHECK(feed(frame(1, "\xED\xA0\x80"), 64) == std::vector<seen>{err(e::bad_frame_payload, 1007)});  // a surrogate
    CHECK(feed(frame(8, "\x03"), 64) == std::vector<seen>{err(e::bad_close_size, 1002)});
    for (std::uint16_t bad : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
        INFO("close code " << bad);
        CHECK(feed(frame(8, close_payload(bad)), 64) == std::vector<seen>{err(e::bad_close_code, 1002)});
    }
    for (std::uint16_t good : {1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999})
        CHECK(feed(frame(8, close_payload(good)), 64) == std::vector<seen>{{frame_event::close, "", false, good, {}}});
    CHECK(feed(frame(8, close_payload(1000, "\xFF")), 64) == std::vector<seen>{err(e::bad_close_payload, 1007)});
}

TEST_CASE("frame_reader: invalid UTF-8 fails the connection as soon as it arrives", "[frame_reader]") {
    using e = websocket::error;
    // The first fragment is already invalid: the error comes before the message ends, and the
    // fragment that would end it is never needed (feed stops at the error).
    for (std::size_t chunk : {std::size_t(1), std::size_t(5), std::size_t(64)}) {
        INFO("chunk " << chunk);
        CHECK(feed(frame(1, "ok \xFF", false) + frame(9, "after"), chunk) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
        // A sequence that cannot be completed, cut by the fragment's end: a surrogate (ED A0) and
        // a code point above U+10FFFF (F4 90).
        CHECK(feed(frame(1, "\xED\xA0", false) + frame(9, "after"), chunk) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
        CHECK(feed(frame(1, "\xF4\x90", false) + frame(9, "after"), chunk) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
        // Inside one frame that arrives in pieces: invalid bytes early in a large frame fail it
        // before the rest of its payload is there.
        const std::string big = frame(1, "\xC0" + std::string(5000, 'a'));
        CHECK(feed(big.substr(0, 100), chunk) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
    }
    // Unfinished sequences that can still be completed are not errors until the message ends.
    const std::string open4 = frame(1, "\xF0\x9F", false) + frame(9, "p") + frame(0, "\x98", false) + frame(0, "\x80");
    CHECK(feed(open4, 1) == std::vector<seen>{{frame_event::ping, "p"}, msg("\xF0\x9F\x98\x80")});
    CHECK(feed(frame(1, "a\xE2\x82", false) + frame(0, ""), 64) == std::vector<seen>{err(e::bad_frame_payload, 1007)});
}

TEST_CASE("frame_reader: nothing is read after an error or a Close", "[frame_reader]") {
    std::string wire = frame(8, close_payload(1000)) + frame(1, "late");
    frame_reader r(1 << 20, true);
    frame_event ev;
    const std::size_t used = r.next(wire.data(), wire.size(), ev);
    CHECK(ev.kind == frame_event::close);
    // The rest is taken and ignored.
    CHECK(r.next(wire.data() + used, wire.size() - used, ev) == wire.size() - used);
    CHECK(ev.kind == frame_event::none);
    CHECK(r.done());
}

TEST_CASE("frame_reader: random messages survive random chunking", "[frame_reader]") {
    std::mt19937 rng(20261128);
    for (int round = 0; round < 50; ++round) {
        std::string wire;
        std::vector<seen> want;
        for (int m = 0; m < 20; ++m) {
            const std::size_t size = std::uniform_int_distribution<std::size_t>(0, m % 5 == 0 ? 70000 : 300)(rng);
            std::string payload(size, '\0');
            for (auto& c : payload) c = static_cast<char>(rng());
            const std::uint32_t key = static_cast<std::uint32_t>(rng()) | 1;
            // Split some messages into fragments of random sizes.
            std::size_t at = 0;
            bool first = true;
            do {
                const std::size_t part = rng() % 3 == 0 ? std::min<std::size_t>(size - at, rng() % 500) : size - at;
                const bool fin = at + part == size;
                wire += frame(first ? 2 : 0, std::string_view(payload).substr(at, part), fin, key);
                at += part;
                first = false;
            } while (at < size);
            want.push_back(msg(payload, true));
        }
        const std::size_t chunk = std::uniform_int_distribution<std::size_t>(1, 9000)(rng);
        INFO("round " << round << " chunk " << chunk);
        REQUIRE(feed(wire, chunk, 1 << 20) == want);
    }
}

TEST_CASE("frame_reader: a control frame split inside a fragmented message", "[frame_reader]") {
    // TEXT(fin=0,"chop"), PING("p"), CONT(fin=1,"ped"): at every split, one pong-worthy ping
    // and the whole message, in that order.
    const std::string wire = frame(1, "chop", false) + frame(9, "p") + frame(0, "ped", true);
    check_split_invariant(wire, {{frame_event::ping, "p"}, msg("chopped")});
}

TEST_CASE("frame_reader: 8,000 fragments of 11 bytes, split anywhere", "[frame_reader]") {
    std::string wire, whole;
    for (int i = 0; i < 8000; ++i) {
        const std::string part = "fragment-" + std::to_string(i % 10) + ".";
        whole += part;
        wire += frame(i == 0 ? 1 : 0, part, i == 7999);
    }
    const std::vector<seen> want = {msg(whole)};
    for (std::size_t chunk : {std::size_t(1), std::size_t(2), std::size_t(13), std::size_t(65536), wire.size()}) {
        INFO("chunk " << chunk);
        REQUIRE(feed(wire, chunk) == want);
    }
}

TEST_CASE("frame_reader: every case gives the same answer however it is split", "[frame_reader]") {
    using e = websocket::error;
    check_split_invariant(frame(1, "a\xE2", false) + frame(9, "between") + frame(0, "\x82", false) +
                              frame(0, "\xAC" "z", true) + frame(10, "") + frame(2, std::string(300, 'b')) +
                              frame(8, close_payload(1001, "gone")),
                          {{frame_event::ping, "between"}, msg("a\xE2\x82\xAC" "z"), {frame_event::pong, ""},
                           msg(std::string(300, 'b'), true), {frame_event::close, "gone", false, 1001, {}}});
    check_split_invariant(frame(1, "ok", false) + frame(9, "x", false), {err(e::bad_control_fragment, 1002)});
    check_split_invariant(frame(1, "ok \xFF", false), {err(e::bad_frame_payload, 1007)});
    check_split_invariant(frame(1, "x", false) + frame(9, "p") + frame(1, "y"), {{frame_event::ping, "p"}, err(e::bad_data_frame, 1002)});
    check_split_invariant(frame(8, "\x03"), {err(e::bad_close_size, 1002)});
    check_split_invariant(frame(2, std::string(70, 'y'), false) + frame(9, "") + frame(0, std::string(41, 'y')),
                          {{frame_event::ping, ""}, err(e::message_too_big, 1009)}, 100);
    check_split_invariant(frame(1, "ok") + frame(1, "\xED\xA0\x80"), {msg("ok"), err(e::bad_frame_payload, 1007)});
}

TEST_CASE("frame_reader: the encoder's frames read back, masked or not, at every length", "[frame_reader]") {
    for (std::size_t len : {0u, 1u, 125u, 126u, 65535u, 65536u, 100000u}) {
        std::string payload(len, 'x');
        for (std::size_t i = 0; i < len; ++i) payload[i] = static_cast<char>('a' + i % 26);
        const std::uint32_t key = 0xdeadbeef;
        std::string masked, plain;
        wsx::append_frame(masked, wsx::opcode_byte::binary, payload, &key);
        wsx::append_frame(plain, wsx::opcode_byte::text, payload);
        CHECK(masked.size() == plain.size() + 4);
        CHECK((static_cast<unsigned char>(masked[1]) & 0x80) != 0);  // clients mask
        CHECK(feed(masked, 4096, 1 << 20, true) == std::vector<seen>{msg(payload, true)});
        CHECK(feed(plain, 4096, 1 << 20, false) == std::vector<seen>{msg(payload)});
    }
    std::string close;
    wsx::append_frame(close, wsx::opcode_byte::close, wsx::close_payload(1001, "bye"));
    CHECK(feed(close, 3, 1 << 20, false) == std::vector<seen>{{frame_event::close, "bye", false, 1001, {}}});
    // A long reason is cut to 123 bytes at a character boundary, so it stays valid UTF-8.
    std::string reason;
    for (int i = 0; i < 70; ++i) reason += "\xC3\xA9";  // é: 140 bytes
    const std::string cut = wsx::close_payload(1000, reason);
    CHECK(cut.size() == 2 + 122);
    CHECK(wsx::is_valid_utf8(std::string_view(cut).substr(2)));
}

TEST_CASE("frame_reader: RSV1 marks compressed messages only when permessage-deflate is on", "[frame_reader]") {
    using e = websocket::error;
    wsx::pmd::deflater def(15, false);
    std::string z;
    def.compress("hello hello hello", z);
    std::string wire;
    wsx::append_frame(wire, wsx::opcode_byte::text | wsx::opcode_byte::rsv1, z);
    CHECK(feed(wire, 64, 1 << 20, false) == std::vector<seen>{err(e::bad_reserved_bits, 1002)});  // not negotiated
    for (std::size_t chunk : {std::size_t(1), std::size_t(3), wire.size()}) {
        wsx::pmd::inflater inf(false);
        std::vector<std::string> pieces;
        for (std::size_t at = 0; at < wire.size(); at += chunk) pieces.push_back(wire.substr(at, chunk));
        CHECK(feed_pieces(pieces, 1 << 20, false, &inf) == std::vector<seen>{msg("hello hello hello")});
    }
    // Fragmented: RSV1 on the first frame only; a continuation with RSV1 is an error.
    {
        wsx::pmd::deflater d2(15, false);
        std::string z2;
        d2.compress("fragmented and compressed", z2);
        std::string frag;
        wsx::append_frame(frag, 0x40 | 0x01, z2.substr(0, 5));  // RSV1, text, FIN clear
        wsx::append_frame(frag, 0x89, "p");
        wsx::append_frame(frag, 0x80, z2.substr(5));
        wsx::pmd::inflater inf(false);
        CHECK(feed_pieces({frag}, 1 << 20, false, &inf) ==
              std::vector<seen>{{frame_event::ping, "p"}, msg("fragmented and compressed")});
        std::string bad;
        wsx::append_frame(bad, 0x40 | 0x01, "x");
        wsx::append_frame(bad, 0xC0, "y");
        wsx::pmd::inflater inf2(false);
        CHECK(feed_pieces({bad}, 1 << 20, false, &inf2) == std::vector<seen>{err(e::bad_reserved_bits, 1002)});
    }
    wsx::pmd::inflater inf(false);
    std::string ping("\xc9\x00", 2);  // control frames are never compressed
    CHECK(feed_pieces({ping}, 100, false, &inf) == std::vector<seen>{err(e::bad_reserved_bits, 1002)});
    // A small message that inflates past the limit: 1009. Data that is not deflate data: 1007.
    wsx::pmd::deflater d3(15, false);
    std::string bomb;
    d3.compress(std::string(100000, 'a'), bomb);
    std::string bw;
    wsx::append_frame(bw, wsx::opcode_byte::binary | wsx::opcode_byte::rsv1, bomb);
    wsx::pmd::inflater inf3(false);
    CHECK(feed_pieces({bw}, 1000, false, &inf3) == std::vector<seen>{err(e::message_too_big, 1009)});
    std::string junk;
    wsx::append_frame(junk, wsx::opcode_byte::binary | wsx::opcode_byte::rsv1, "\xff\xff\xff\xff");
    wsx::pmd::inflater inf4(false);
    CHECK(feed_pieces({junk}, 1000, false, &inf4) == std::vector<seen>{err(e::partial_deflate_block, 1007)});
}

TEST_CASE("for_each_fragment: opcode and RSV1 on the first frame, FIN on the last", "[frame_reader]") {
    using piece = std::pair<unsigned, std::string>;
    auto cut = [](unsigned char first, std::string_view payload, std::size_t fragment) {
        std::vector<piece> out;
        wsx::for_each_fragment(first, payload, fragment,
                               [&](unsigned char b, std::string_view p) { out.emplace_back(b, std::string(p)); });
        return out;
    };
    CHECK(cut(wsx::opcode_byte::text, "abcdefghijklmnopqrstuvwxy", 10) ==
          std::vector<piece>{{0x01, "abcdefghij"}, {0x00, "klmnopqrst"}, {0x80, "uvwxy"}});
    // A multiple of the size: no empty frame at the end.
    CHECK(cut(wsx::opcode_byte::binary, "abcdef", 3) == std::vector<piece>{{0x02, "abc"}, {0x80, "def"}});
    CHECK(cut(wsx::opcode_byte::binary | wsx::opcode_byte::rsv1, "abcde", 2) ==
          std::vector<piece>{{0x42, "ab"}, {0x00, "cd"}, {0x80, "e"}});
    // No larger than the size, empty, or no size: one frame, as given.
    CHECK(cut(wsx::opcode_byte::text, "abc", 3) == std::vector<piece>{{0x81, "abc"}});
    CHECK(cut(wsx::opcode_byte::text | wsx::opcode_byte::rsv1, "", 3) == std::vector<piece>{{0xc1, ""}});
    CHECK(cut(wsx::opcode_byte::text, "abcdef", 0) == std::vector<piece>{{0x81, "abcdef"}});
    CHECK(cut(wsx::opcode_byte::text, "abc", 1).size() == 3);
}

TEST_CASE("for_each_fragment: the frames read back as the message, masked, compressed or not", "[frame_reader]") {
    std::mt19937 rng(11);
    for (std::size_t fragment : {std::size_t(1), std::size_t(7), std::size_t(125), std::size_t(126), std::size_t(70000)}) {
        // Always longer than two fragments, so that every size is cut into several frames.
        std::string payload(2 * fragment + 1 + rng() % 100000, '\0');
        for (auto& c : payload) c = static_cast<char>('a' + rng() % 26);
        const auto frames_of = [fragment](std::size_t n) { return n == 0 ? std::size_t(1) : (n + fragment - 1) / fragment; };
        std::string wire;
        const std::uint32_t key = rng();
        std::size_t frames = 0;
        wsx::for_each_fragment(wsx::opcode_byte::text, payload, fragment, [&](unsigned char b, std::string_view p) {
            wsx::append_frame(wire, b, p, &key);
            ++frames;
        });
        INFO("fragment " << fragment << ", payload " << payload.size());
        CHECK(frames == frames_of(payload.size()));
        CHECK(feed(wire, 4096) == std::vector<seen>{msg(payload)});

        wsx::pmd::deflater def(15, false);
        std::string z;
        def.compress(payload, z);
        std::string zwire;
        std::size_t zframes = 0;
        wsx::for_each_fragment(wsx::opcode_byte::binary | wsx::opcode_byte::rsv1, z, fragment,
                               [&](unsigned char b, std::string_view p) {
                                   wsx::append_frame(zwire, b, p);
                                   ++zframes;
                               });
        CHECK(zframes == frames_of(z.size()));
        wsx::pmd::inflater inf(false);
        CHECK(feed_pieces({zwire}, 1 << 20, false, &inf) == std::vector<seen>{msg(payload, true)});
    }
}
