#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "codec.hpp"

using namespace std::string_literals;
using wsx::record_splitter;
using records = std::vector<std::string>;

namespace {

/// Feeds `chunks` and finishes, collecting every record.
records split(record_splitter::mode m, const std::vector<std::string>& chunks, std::size_t max = 0) {
    record_splitter s(m, max);
    records out;
    auto collect = [&](std::string_view r) { out.emplace_back(r); };
    for (const auto& c : chunks) s.feed(c, collect);
    s.finish(collect);
    CHECK(s.pending() == 0);
    return out;
}

records split_whole(record_splitter::mode m, const std::string& data, std::size_t max = 0) {
    return split(m, {data}, max);
}

/// Every way of cutting `data` into two chunks, and byte by byte, must give the
/// same records as one chunk.
void check_boundaries(record_splitter::mode m, const std::string& data, const records& expected,
                      std::size_t max = 0) {
    INFO("data: " << data << " max: " << max);
    CHECK(split_whole(m, data, max) == expected);
    for (std::size_t cut = 0; cut <= data.size(); ++cut) {
        INFO("cut at " << cut);
        CHECK(split(m, {data.substr(0, cut), data.substr(cut)}, max) == expected);
    }
    std::vector<std::string> bytes;
    for (const char c : data) bytes.emplace_back(1, c);
    CHECK(split(m, bytes, max) == expected);
}

constexpr auto lines = record_splitter::mode::lines;
constexpr auto nul = record_splitter::mode::nul;
constexpr auto chunks = record_splitter::mode::chunks;

}  // namespace

TEST_CASE("lines: LF, CRLF, empty lines and a final line without newline", "[codec]") {
    check_boundaries(lines, "hello\nworld\n", {"hello", "world"});
    check_boundaries(lines, "hello\r\nworld\r\n", {"hello", "world"});
    check_boundaries(lines, "a\n\nb\n", {"a", "", "b"});
    check_boundaries(lines, "\n", {""});
    check_boundaries(lines, "\n\n", {"", ""});
    check_boundaries(lines, "last", {"last"});
    check_boundaries(lines, "one\ntwo", {"one", "two"});
    check_boundaries(lines, "", {});
    check_boundaries(lines, "\r\n", {""});
}

TEST_CASE("lines: only the '\\r' of a CRLF is removed", "[codec]") {
    check_boundaries(lines, "a\rb\n", {"a\rb"});
    check_boundaries(lines, "a\r\r\n", {"a\r"});
    check_boundaries(lines, "\rx\n", {"\rx"});
    check_boundaries(lines, "end\r", {"end\r"});  // no LF follows: not a CRLF
    check_boundaries(lines, "a\n\r", {"a", "\r"});
}

TEST_CASE("lines: binary bytes and NULs are data", "[codec]") {
    check_boundaries(lines, "a\0b\n\xff\xfe\n"s, {"a\0b"s, "\xff\xfe"});
}

TEST_CASE("nul: records end at NUL, '\\r' is data", "[codec]") {
    check_boundaries(nul, "a\0b\0"s, {"a", "b"});
    check_boundaries(nul, "a\0\0b"s, {"a", "", "b"});
    check_boundaries(nul, "line one\nline two\r\n\0x"s, {"line one\nline two\r\n", "x"});
    check_boundaries(nul, "\0"s, {""});
    check_boundaries(nul, "tail", {"tail"});
}

TEST_CASE("chunks: every non-empty chunk is a record", "[codec]") {
    CHECK(split(chunks, {"ab\n", "", "c\0d"s, "\r\n"}) == records{"ab\n", "c\0d"s, "\r\n"});
    CHECK(split(chunks, {}).empty());
    CHECK(split(chunks, {"abcdefg"}, 3) == records{"abc", "def", "g"});
    CHECK(split(chunks, {"abcdef"}, 3) == records{"abc", "def"});
}

TEST_CASE("long records are delivered in pieces of max_record", "[codec]") {
    check_boundaries(lines, "abcdefghijk\n", {"abcde", "fghij", "k"}, 5);
    check_boundaries(lines, "abcde\n", {"abcde"}, 5);  // exactly the limit: one piece
    check_boundaries(lines, "abcdefghij\n", {"abcde", "fghij"}, 5);  // no empty last piece
    check_boundaries(lines, "abcde\r\n", {"abcde"}, 5);  // the CR of CRLF does not count
    check_boundaries(lines, "abcdefghij\r\n", {"abcde", "fghij"}, 5);
    check_boundaries(lines, "abcde\rx\n", {"abcde", "\rx"}, 5);
    check_boundaries(lines, "abcde\r", {"abcde", "\r"}, 5);  // unterminated: the CR is data
    check_boundaries(lines, "abcdefgh", {"abcde", "fgh"}, 5);
    check_boundaries(lines, "ab\nabcdefghijkl\n\nxy", {"ab", "abcde", "fghij", "kl", "", "xy"}, 5);
    check_boundaries(nul, "abcdefg\0hi\0"s, {"abcdef", "g", "hi"}, 6);
    check_boundaries(lines, "abc\n", {"a", "b", "c"}, 1);
}

TEST_CASE("split_records counts each over-long record once", "[codec]") {
    for (std::size_t cut = 0; cut <= 24; ++cut) {
        const std::string data = "abcdefghijkl\nab\nabcdefg";
        record_splitter s(lines, 5);
        records out;
        auto collect = [&](std::string_view r) { out.emplace_back(r); };
        s.feed(std::string_view(data).substr(0, std::min(cut, data.size())), collect);
        if (cut < data.size()) s.feed(std::string_view(data).substr(cut), collect);
        s.finish(collect);
        INFO("cut at " << cut);
        CHECK(s.split_records() == 2);
        CHECK(out == records{"abcde", "fghij", "kl", "ab", "abcde", "fg"});
    }
}

TEST_CASE("unterminated over-long records keep memory bounded", "[codec]") {
    record_splitter s(lines, 4);
    std::size_t delivered = 0;
    for (int i = 0; i < 1000; ++i) {
        s.feed("0123456789", [&](std::string_view r) {
            CHECK(r.size() == 4);
            delivered += r.size();
        });
        CHECK(s.pending() <= 5);
    }
    s.finish([&](std::string_view r) { delivered += r.size(); });
    CHECK(delivered == 10000);
}

TEST_CASE("record_splitter is reusable after finish", "[codec]") {
    record_splitter s(lines);
    records out;
    auto collect = [&](std::string_view r) { out.emplace_back(r); };
    s.feed("a\nb", collect);
    s.finish(collect);
    s.feed("c\n", collect);
    s.finish(collect);
    CHECK(out == records{"a", "b", "c"});
}

TEST_CASE("records inside one chunk are passed without copying", "[codec]") {
    record_splitter s(lines);
    const std::string chunk = "one\ntwo\nthr";
    std::vector<const char*> starts;
    s.feed(chunk, [&](std::string_view r) { starts.push_back(r.data()); });
    REQUIRE(starts.size() == 2);
    CHECK(starts[0] == chunk.data());
    CHECK(starts[1] == chunk.data() + 4);
    CHECK(s.pending() == 3);
}

TEST_CASE("random chunking matches whole-input splitting", "[codec]") {
    std::mt19937 rng(12345);
    const std::string alphabet = "ab\r\n\0"s;
    for (int round = 0; round < 300; ++round) {
        std::string data;
        const auto len = rng() % 40;
        for (std::size_t i = 0; i < len; ++i) data += alphabet[rng() % alphabet.size()];
        for (auto m : {lines, nul}) {
            for (std::size_t max : {0, 1, 2, 3, 7}) {
                const auto expected = split_whole(m, data, max);
                std::vector<std::string> parts;
                for (std::size_t i = 0; i < data.size();) {
                    const auto n = std::min<std::size_t>(1 + rng() % 6, data.size() - i);
                    parts.push_back(data.substr(i, n));
                    i += n;
                }
                INFO("round " << round << " max " << max);
                CHECK(split(m, parts, max) == expected);
            }
        }
    }
}

TEST_CASE("hex_dump looks like xxd", "[codec]") {
    CHECK(wsx::hex_dump("") == "");
    CHECK(wsx::hex_dump("Hello\n") ==
          "00000000: 4865 6c6c 6f0a                           Hello.\n");
    CHECK(wsx::hex_dump("0123456789abcdefXYZ\x1b\xff"s) ==
          "00000000: 3031 3233 3435 3637 3839 6162 6364 6566  0123456789abcdef\n"
          "00000010: 5859 5a1b ff                             XYZ..\n");
    CHECK(wsx::hex_dump(std::string(16, '\0')) ==
          "00000000: 0000 0000 0000 0000 0000 0000 0000 0000  ................\n");
    const auto big = wsx::hex_dump(std::string(4096, 'x'));
    CHECK(big.size() == 256 * 68);
    CHECK(big.substr(255 * 68, 10) == "00000ff0: ");
}

TEST_CASE("to_hex and from_hex", "[codec]") {
    CHECK(wsx::to_hex("") == "");
    CHECK(wsx::to_hex("Hello") == "48656c6c6f");
    CHECK(wsx::to_hex("\x00\xff\x7f"s) == "00ff7f");
    CHECK(wsx::from_hex("48656c6c6f") == "Hello"s);
    CHECK(wsx::from_hex("48656C6C6F") == "Hello"s);
    CHECK(wsx::from_hex("48 65 6c 6c 6f") == "Hello"s);
    CHECK(wsx::from_hex("4865 6c6c\n6f") == "Hello"s);
    CHECK(wsx::from_hex("") == ""s);
    CHECK(wsx::from_hex("00ff") == "\x00\xff"s);
    CHECK(wsx::from_hex("4 8") == "H"s);  // blanks are ignored, even inside a byte
    for (const char* bad : {"4", "486", "zz", "0x48", "48-65", "4g", "\xc3\xa9"}) {
        INFO("input: " << bad);
        CHECK_FALSE(wsx::from_hex(bad));
    }
    CHECK_FALSE(wsx::from_hex("48\0"s));
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    CHECK(wsx::from_hex(wsx::to_hex(all)) == all);
}

TEST_CASE("base64 encode and decode (RFC 4648 vectors)", "[codec]") {
    const std::pair<const char*, const char*> vectors[] = {
        {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (const auto& [plain, encoded] : vectors) {
        CHECK(wsx::base64_encode(plain) == encoded);
        CHECK(wsx::base64_decode(encoded) == std::string(plain));
    }
    CHECK(wsx::base64_encode("\xfb\xff"s) == "+/8=");
    CHECK(wsx::base64_decode("+/8=") == "\xfb\xff"s);
    CHECK(wsx::base64_decode("-_8") == "\xfb\xff"s);  // URL-safe, unpadded
    CHECK(wsx::base64_decode("Zm9vYg") == "foob"s);
    CHECK(wsx::base64_decode("Zm9v\nYmFy\n") == "foobar"s);
    CHECK(wsx::base64_decode(" Zm 9v ") == "foo"s);
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    CHECK(wsx::base64_decode(wsx::base64_encode(all)) == all);
}

TEST_CASE("base64_decode rejects garbage and bad padding", "[codec]") {
    for (const char* bad : {"Z", "Zm9vY", "Zm=9", "Zm9v=", "Zm9v====", "Zg=", "Zg===", "Zm8==",
                            "Z===", "Zm9v!", "Zm9v\x80", "=", "==", "Zg==Zg=="}) {
        INFO("input: " << bad);
        CHECK_FALSE(wsx::base64_decode(bad));
    }
}

TEST_CASE("is_valid_utf8", "[codec]") {
    CHECK(wsx::is_valid_utf8(""));
    CHECK(wsx::is_valid_utf8("plain ascii, long enough to use the 8-byte path"));
    CHECK(wsx::is_valid_utf8("\0\x7f"s));
    CHECK(wsx::is_valid_utf8("caf\xc3\xa9"));               // é
    CHECK(wsx::is_valid_utf8("\xe2\x82\xac"));              // €
    CHECK(wsx::is_valid_utf8("\xf0\x9f\x98\x80"));          // U+1F600
    CHECK(wsx::is_valid_utf8("\xc2\x80"));                  // U+0080, smallest 2-byte
    CHECK(wsx::is_valid_utf8("\xdf\xbf"));                  // U+07FF
    CHECK(wsx::is_valid_utf8("\xe0\xa0\x80"));              // U+0800, smallest 3-byte
    CHECK(wsx::is_valid_utf8("\xed\x9f\xbf"));              // U+D7FF, just below surrogates
    CHECK(wsx::is_valid_utf8("\xee\x80\x80"));              // U+E000, just above
    CHECK(wsx::is_valid_utf8("\xef\xbf\xbf"));              // U+FFFF
    CHECK(wsx::is_valid_utf8("\xf0\x90\x80\x80"));          // U+10000
    CHECK(wsx::is_valid_utf8("\xf4\x8f\xbf\xbf"));          // U+10FFFF, the last

    CHECK_FALSE(wsx::is_valid_utf8("\x80"));                // lone continuation
    CHECK_FALSE(wsx::is_valid_utf8("\xbf"));
    CHECK_FALSE(wsx::is_valid_utf8("\xc0\x80"));            // overlong NUL
    CHECK_FALSE(wsx::is_valid_utf8("\xc1\xbf"));            // overlong
    CHECK_FALSE(wsx::is_valid_utf8("\xe0\x80\x80"));        // overlong 3-byte
    CHECK_FALSE(wsx::is_valid_utf8("\xe0\x9f\xbf"));
    CHECK_FALSE(wsx::is_valid_utf8("\xf0\x80\x80\x80"));    // overlong 4-byte
    CHECK_FALSE(wsx::is_valid_utf8("\xf0\x8f\xbf\xbf"));
    CHECK_FALSE(wsx::is_valid_utf8("\xed\xa0\x80"));        // U+D800 surrogate
    CHECK_FALSE(wsx::is_valid_utf8("\xed\xbf\xbf"));        // U+DFFF surrogate
    CHECK_FALSE(wsx::is_valid_utf8("\xed\xa0\xbd\xed\xb8\x80"));  // CESU-8 pair
    CHECK_FALSE(wsx::is_valid_utf8("\xf4\x90\x80\x80"));    // U+110000
    CHECK_FALSE(wsx::is_valid_utf8("\xf5\x80\x80\x80"));
    CHECK_FALSE(wsx::is_valid_utf8("\xff"));
    CHECK_FALSE(wsx::is_valid_utf8("\xfe"));
    CHECK_FALSE(wsx::is_valid_utf8("\xc3"));                // truncated
    CHECK_FALSE(wsx::is_valid_utf8("\xe2\x82"));
    CHECK_FALSE(wsx::is_valid_utf8("\xf0\x9f\x98"));
    CHECK_FALSE(wsx::is_valid_utf8("\xc3("));               // bad continuation
    CHECK_FALSE(wsx::is_valid_utf8("\xe2\x28\xa1"));
    CHECK_FALSE(wsx::is_valid_utf8("\xf0\x9f\x28\x80"));
}

TEST_CASE("is_valid_utf8 finds a bad byte at any position of the fast path", "[codec]") {
    const std::string base(40, 'a');
    for (std::size_t i = 0; i < base.size(); ++i) {
        auto s = base;
        s[i] = '\xff';
        INFO("bad byte at " << i);
        CHECK_FALSE(wsx::is_valid_utf8(s));
        s[i] = '\xc3';  // truncated sequence unless followed by a continuation
        CHECK_FALSE(wsx::is_valid_utf8(s));
        s.insert(i + 1, 1, '\xa9');
        CHECK(wsx::is_valid_utf8(s));
    }
}

TEST_CASE("utf8_complete_prefix keeps a sequence that may still be completed", "[codec]") {
    constexpr auto bad = std::string_view::npos;
    CHECK(wsx::utf8_complete_prefix("") == 0);
    CHECK(wsx::utf8_complete_prefix("caf\xc3\xa9") == 5);
    CHECK(wsx::utf8_complete_prefix("caf\xc3") == 3);                 // waits for its continuation
    CHECK(wsx::utf8_complete_prefix("x\xe2\x82") == 1);
    CHECK(wsx::utf8_complete_prefix("x\xf0\x9f\x98") == 1);
    CHECK(wsx::utf8_complete_prefix("\xed\x9f") == 0);               // below the surrogates: may complete
    CHECK(wsx::utf8_complete_prefix("\xed\xa0") == bad);             // a surrogate, whatever follows
    CHECK(wsx::utf8_complete_prefix("\xe0\x9f") == bad);             // overlong, whatever follows
    CHECK(wsx::utf8_complete_prefix("\xf0\x8f") == bad);
    CHECK(wsx::utf8_complete_prefix("\xf4\x90") == bad);             // above U+10FFFF
    CHECK(wsx::utf8_complete_prefix("\xf0\x9f\x28") == bad);        // third byte not a continuation
    CHECK(wsx::utf8_complete_prefix("\xc3(") == bad);
    CHECK(wsx::utf8_complete_prefix("ok\xff") == bad);
    CHECK(wsx::utf8_complete_prefix("\x80") == bad);
    CHECK(wsx::utf8_complete_prefix("\xc0") == bad);                  // C0 and C1 are never valid
    CHECK(wsx::utf8_complete_prefix("\xf5") == bad);
    // Every split of a valid text: the prefix found plus the rest re-checked is the whole.
    const std::string text = "a\xc3\xa9" "b\xe2\x82\xac\xf0\x9f\x98\x80" "z";
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        INFO("cut at " << cut);
        const std::size_t ok = wsx::utf8_complete_prefix(std::string_view(text).substr(0, cut));
        REQUIRE(ok != bad);
        CHECK(cut - ok <= 3);
        CHECK(wsx::utf8_complete_prefix(std::string_view(text).substr(ok)) == text.size() - ok);
    }
}

TEST_CASE("escape_for_terminal neutralises control sequences", "[codec]") {
    CHECK(wsx::escape_for_terminal("hello world") == "hello world");
    CHECK(wsx::escape_for_terminal("tab\there\nnext") == "tab\there\nnext");
    CHECK(wsx::escape_for_terminal("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m");
    CHECK(wsx::escape_for_terminal("\x1b]0;title\x07") == "\\x1b]0;title\\x07");  // OSC set title
    CHECK(wsx::escape_for_terminal("a\rb") == "a\\x0db");
    CHECK(wsx::escape_for_terminal("\0"s) == "\\x00");
    CHECK(wsx::escape_for_terminal("del\x7f") == "del\\x7f");
    CHECK(wsx::escape_for_terminal("bs\x08") == "bs\\x08");
    CHECK(wsx::escape_for_terminal("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK(wsx::escape_for_terminal("\xc2\x9b" "31m") == "\\u009b31m");  // C1 CSI
    CHECK(wsx::escape_for_terminal("\xc2\x85") == "\\u0085");
    CHECK(wsx::escape_for_terminal("\xc2\xa0") == "\xc2\xa0");  // U+00A0 is printable
    CHECK(wsx::escape_for_terminal("abc\xe2\x80\xae" "def") == "abc\\u202edef");  // RLO
    CHECK(wsx::escape_for_terminal("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");
    CHECK(wsx::escape_for_terminal("\x9b" "31m") == "\\x9b31m");  // raw C1 byte: invalid UTF-8
    CHECK(wsx::escape_for_terminal("bad\xff\xfe end") == "bad\\xff\\xfe end");
    CHECK(wsx::escape_for_terminal("\xc0\xaf") == "\\xc0\\xaf");  // overlong '/'
    CHECK(wsx::escape_for_terminal("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // surrogate
    CHECK(wsx::escape_for_terminal("trunc\xe2\x82") == "trunc\\xe2\\x82");
    CHECK(wsx::escape_for_terminal("\xe2\x82" "A") == "\\xe2\\x82A");  // resynchronises
    CHECK(wsx::escape_for_terminal("") == "");
}

TEST_CASE("escape_for_terminal output never contains a control character", "[codec]") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    all += "\xc2\x80\xc2\x9f\xe2\x80\xae";
    const auto out = wsx::escape_for_terminal(all);
    for (const char c : out) {
        const auto u = static_cast<unsigned char>(c);
        CHECK((u >= 0x20 || c == '\t' || c == '\n'));
        CHECK(u != 0x7f);
        CHECK(u < 0x80);  // every high byte of `all` was invalid or a C1 control
    }
}

TEST_CASE("pretty_json indents objects and arrays", "[codec]") {
    CHECK(wsx::pretty_json(R"({"b":1,"a":[true,null,"x"],"c":{}})", false) ==
          "{\n"
          "  \"b\": 1,\n"
          "  \"a\": [\n"
          "    true,\n"
          "    null,\n"
          "    \"x\"\n"
          "  ],\n"
          "  \"c\": {}\n"
          "}"s);
    CHECK(wsx::pretty_json("[]", false) == "[]"s);
    CHECK(wsx::pretty_json("  {}\n", false) == "{}"s);
    CHECK(wsx::pretty_json("[[1,[]],{\"k\":[{}]}]", false) ==
          "[\n  [\n    1,\n    []\n  ],\n  {\n    \"k\": [\n      {}\n    ]\n  }\n]"s);
}

TEST_CASE("pretty_json keeps numbers as written and escapes strings", "[codec]") {
    CHECK(wsx::pretty_json("[1.0, 1e3, -0.5, 12345678901234567890123, -7, 18446744073709551615]", false) ==
          "[\n  1.0,\n  1e3,\n  -0.5,\n  12345678901234567890123,\n  -7,\n  18446744073709551615\n]"s);
    CHECK(wsx::pretty_json(R"({"k":"a\"b\\c\n\u001b[31m"})", false) ==
          "{\n  \"k\": \"a\\\"b\\\\c\\n\\u001b[31m\"\n}"s);
    // C1 and bidi controls stay escaped, other text stays readable.
    CHECK(wsx::pretty_json(R"(["\u0085\u202e", "caf\u00e9"])", false) ==
          "[\n  \"\\u0085\\u202e\",\n  \"caf\xc3\xa9\"\n]"s);
    CHECK(wsx::pretty_json(R"({"dup":1,"dup":2})", false) == "{\n  \"dup\": 1,\n  \"dup\": 2\n}"s);
}

TEST_CASE("pretty_json colours keys, strings, numbers and literals", "[codec]") {
    CHECK(wsx::pretty_json(R"({"k":"v","n":1,"t":true,"z":null})", true) ==
          "{\n"
          "  \x1b[34;1m\"k\"\x1b[0m: \x1b[32m\"v\"\x1b[0m,\n"
          "  \x1b[34;1m\"n\"\x1b[0m: \x1b[36m1\x1b[0m,\n"
          "  \x1b[34;1m\"t\"\x1b[0m: \x1b[35mtrue\x1b[0m,\n"
          "  \x1b[34;1m\"z\"\x1b[0m: \x1b[35mnull\x1b[0m\n"
          "}"s);
}

TEST_CASE("pretty_json declines scalars, invalid JSON and deep nesting", "[codec]") {
    for (const char* text : {"", "   ", "3", "\"str\"", "true", "null", "hello", "{", "[1,]", "{\"a\":}",
                             "{} {}", "[1] x", "{'a':1}", "[1,2", "{\"a\":1}}", "[\"\xff\"]"}) {
        INFO("input: " << text);
        CHECK_FALSE(wsx::pretty_json(text, false));
    }
    const std::string ok_deep = std::string(256, '[') + std::string(256, ']');
    CHECK(wsx::pretty_json(ok_deep, false));
    const std::string too_deep = std::string(257, '[') + std::string(257, ']');
    CHECK_FALSE(wsx::pretty_json(too_deep, false));
    const std::string very_deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK_FALSE(wsx::pretty_json(very_deep, false));
}

TEST_CASE("pretty_json output is the same JSON", "[codec]") {
    const std::string text = R"({"a":[1,2.5,{"b":"x\ty"}],"c":false,"d":"\u00e9\ud83d\ude00"})";
    const auto pretty = wsx::pretty_json(text, false);
    REQUIRE(pretty);
    CHECK(nlohmann::json::parse(*pretty) == nlohmann::json::parse(text));
}

TEST_CASE("append_json_string escapes and repairs", "[codec]") {
    auto quote = [](std::string_view s) {
        std::string out;
        wsx::append_json_string(out, s);
        return out;
    };
    CHECK(quote("") == "\"\"");
    CHECK(quote("plain") == "\"plain\"");
    CHECK(quote("q\"b\\") == R"("q\"b\\")");
    CHECK(quote("\b\f\n\r\t\x01\x1f\x7f") == "\"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\"");
    CHECK(quote("\0"s) == "\"\\u0000\"");
    CHECK(quote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(quote("a\xff" "b") == "\"a\\ufffdb\"");
    CHECK(quote("\xe2\x82") == "\"\\ufffd\\ufffd\"");
    // Whatever the bytes, the result is JSON that decodes to valid UTF-8.
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    const auto decoded = nlohmann::json::parse(quote(all)).get<std::string>();
    CHECK(wsx::is_valid_utf8(decoded));
    CHECK(decoded.substr(0, 128) == all.substr(0, 128));
}

TEST_CASE("percent_decode decodes escapes and refuses malformed ones", "[codec]") {
    CHECK(wsx::percent_decode("a%20b%2Fc") == std::optional<std::string>("a b/c"));
    CHECK(wsx::percent_decode("p%40ss%3a") == std::optional<std::string>("p@ss:"));
    CHECK(wsx::percent_decode("plain") == std::optional<std::string>("plain"));
    CHECK_FALSE(wsx::percent_decode("bad%2"));
    CHECK_FALSE(wsx::percent_decode("bad%zz"));
    CHECK_FALSE(wsx::percent_decode("%"));
}
