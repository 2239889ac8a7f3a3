// The client's reading of the answer to its upgrade request (client.cpp, and bench, which shares
// the checks): the answer's bytes through Beast's response parser as the client sets it up, whole
// and split (the same answer either way), then check_upgrade_answer for the key the request
// carried, the refusal message for anything but a 101 (shown on a terminal: it must come out
// escaped), and permessage-deflate's answer (pmd::parse_answer) against what was offered.
// Also sec_websocket_accept against SHA-1 from OpenSSL.
//
// Input: one byte of options, then the answer. Options: bit 0 offers permessage-deflate, bit 1
// asks for no context takeover, (byte >> 2) % 7 + 9 is the window offered. '1' (0x31): offered,
// 15 bits; '0': not offered.
// fuzz-options: -max_len=4096
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <openssl/sha.h>

#include "client.hpp"
#include "fuzz_support.hpp"
#include "permessage_deflate.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("upgrade_response_fuzz", what);
}

/// The key of RFC 6455's example: the corpus answers it with s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
const std::string key = "dGhlIHNhbXBsZSBub25jZQ==";

struct read_result {
    error_code ec;
    std::string answer;
    http::response<http::string_body> res;
};

read_result read_answer(std::string_view bytes, std::uint32_t split) {
    fuzz::chunked_source src(bytes, split);
    beast::flat_buffer buffer;
    // As the client reads it (client.cpp, limit_answer_parser and upgrade): the header, then a
    // refusal's body, whose errors (too long, cut short) leave the status and fields usable.
    http::response_parser<http::string_body> parser;
    parser.header_limit(60 * 1024);
    parser.body_limit(boost::none);
    read_result r;
    http::read_header(src, buffer, parser, r.ec);
    const auto length = parser.content_length();
    if (!r.ec && !parser.is_done() && parser.get().result_int() != 101 && !(length && *length > 64 * 1024)) {
        parser.body_limit(64 * 1024);
        error_code body_ec;
        http::read(src, buffer, parser, body_ec);
    }
    if (r.ec) return r;
    r.res = parser.release();
    r.answer = fmt::format("{} {} {}\n", r.res.version(), r.res.result_int(), std::string_view(r.res.reason()));
    for (const auto& f : r.res) r.answer += fmt::format("{}: {}\n", std::string_view(f.name_string()), std::string_view(f.value()));
    r.answer += "\n" + r.res.body();
    return r;
}

std::string reference_accept(std::string_view k) {
    const std::string in = std::string(k) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), md);
    return base64_encode(std::string_view(reinterpret_cast<const char*>(md), sizeof md));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const std::uint8_t opts = in.byte();
    const deflate_options offered{.enabled = (opts & 1) != 0,
                                  .window_bits = 9 + (opts >> 2) % 7,
                                  .no_context_takeover = (opts & 2) != 0};
    const std::string_view bytes = in.rest();
    check(sec_websocket_accept(bytes.substr(0, 64)) == reference_accept(bytes.substr(0, 64)),
          "sec_websocket_accept disagrees with OpenSSL's SHA-1");

    auto whole = read_answer(bytes, 0);
    for (std::uint32_t split : {std::uint32_t{1}, fuzz::split_seed(bytes)}) {
        const auto pieces = read_answer(bytes, split);
        // Which error an unreadable one gets may depend on the split (Beast parses the start line
        // at once when it can, else waits for the end of the header): that it fails may not.
        check(bool(pieces.ec) == bool(whole.ec), fmt::format("split {} reads '{}', whole '{}'", split, pieces.ec.message(), whole.ec.message()));
        check(pieces.answer == whole.answer, "a split answer reads differently");
    }
    if (whole.ec) return 0;
    const auto& res = whole.res;

    const error_code verdict = check_upgrade_answer(res, key);
    if (res.result_int() != 101) {
        check(verdict == websocket::error::upgrade_declined, "an answer other than 101 is not declined");
        endpoint url;
        url.host = "example.com";
        url.port = 80;
        const auto refusal = upgrade_refusal(res, url);
        check(refusal.status() == static_cast<int>(res.result_int()), "the refusal has another status");
        check(fuzz::terminal_safe(refusal.what()), fmt::format("the refusal shows unescaped text: {}", refusal.what()));
        for (const auto& [name, value] : refusal.fields())
            check(beast::iequals(name, "WWW-Authenticate") || beast::iequals(name, "Retry-After"), "a refusal passes on " + name);
        return 0;
    }
    if (verdict) return 0;
    check(res.version() == 11 && res[http::field::sec_websocket_accept] == reference_accept(key), "a wrong answer passed");

    const std::string_view ext(res[http::field::sec_websocket_extensions]);
    if (!offered.enabled) return 0;  // the raw path refuses any extension outright
    const auto a = pmd::parse_answer(ext, offered);
    const bool blank = ext.find_first_not_of(" \t") == std::string_view::npos;
    switch (a.status) {
    case pmd::answer_status::declined:
        check(blank, "a non-empty answer was taken as declined");
        break;
    case pmd::answer_status::invalid:
        check(!blank && !a.error.empty(), "an invalid answer without a reason");
        check(fuzz::terminal_safe(a.error), "an invalid answer's reason shows unescaped text");
        break;
    case pmd::answer_status::accepted:
        check(a.params.client_max_window_bits >= 9 && a.params.client_max_window_bits <= offered.window_bits,
              "the agreed client window is outside what was offered");
        check(a.params.server_max_window_bits >= 8 && a.params.server_max_window_bits <= 15, "the server window is out of range");
        if (offered.no_context_takeover) check(a.params.client_no_context_takeover, "context takeover kept against the offer");
        break;
    }
    return 0;
}
