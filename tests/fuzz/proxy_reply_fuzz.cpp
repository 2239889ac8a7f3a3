// What the client reads from an outbound proxy (proxy.cpp), the proxy being untrusted:
//  - 'h' + bytes: the answer to HTTP CONNECT, read as http_connect_handshake reads it (the header
//    only, through Beast's response parser with the body skipped), whole and split (the same
//    answer either way), then check_connect_answer: a tunnel exactly for a 2xx with nothing
//    behind the header, and refusals that are safe to show on a terminal.
//  - 's' + bytes: the SOCKS5 replies (RFC 1928/1929) in the order the client reads them, checked
//    against a plain reading of the RFC, down to the reply's length (the client must read all of
//    it and not one byte of the tunnel).
// The byte after the mode picks credentials: odd ('1') with a user and password, even ('0') without.
// fuzz-options: -max_len=1024
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "fuzz_support.hpp"
#include "proxy.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("proxy_reply_fuzz", what);
}

const std::string target = "example.com:443";

proxy_config proxy(bool credentials, proxy_config::kind k) {
    proxy_config p;
    p.type = k;
    p.host = "proxy.example";
    p.port = 3128;
    if (credentials) {
        p.username = "user";
        p.password = "pass";
    }
    return p;
}

struct read_result {
    error_code ec;
    std::string header;
    std::size_t extra = 0;
    http::response<http::empty_body> res;
};

read_result read_connect_answer(std::string_view bytes, std::uint32_t split) {
    fuzz::chunked_source src(bytes, split);
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // as http_connect_handshake
    read_result r;
    http::read_header(src, buffer, parser, r.ec);
    if (r.ec) return r;
    r.res = parser.release();
    r.extra = buffer.size();
    r.header = fmt::format("{} {} {}\n", r.res.version(), r.res.result_int(), std::string_view(r.res.reason()));
    for (const auto& f : r.res) r.header += fmt::format("{}: {}\n", std::string_view(f.name_string()), std::string_view(f.value()));
    return r;
}

void http_connect(std::string_view bytes, bool credentials) {
    auto whole = read_connect_answer(bytes, 0);
    for (std::uint32_t split : {std::uint32_t{1}, fuzz::split_seed(bytes)}) {
        const auto pieces = read_connect_answer(bytes, split);
        // Which error an unreadable one gets may depend on the split (Beast parses the start line
        // at once when it can, else waits for the end of the header): that it fails may not.
        check(bool(pieces.ec) == bool(whole.ec), fmt::format("split {} reads '{}', whole '{}'", split, pieces.ec.message(), whole.ec.message()));
        check(pieces.header == whole.header, "a split answer reads differently");
        // How much came behind the header depends on the split; one byte at a time, nothing.
        if (split == 1) check(pieces.extra == 0, "read one byte at a time, bytes were read past the header");
    }
    if (whole.ec) return;
    const auto p = proxy(credentials, proxy_config::kind::http);
    const unsigned status = whole.res.result_int();
    const bool tunnel = status >= 200 && status <= 299 && whole.extra == 0;
    try {
        check_connect_answer(whole.res, whole.extra, p, target);
        check(tunnel, fmt::format("a tunnel opened on {} with {} bytes behind", status, whole.extra));
    } catch (const failure& f) {
        check(!tunnel, "a 2xx answer with nothing behind it was refused");
        check(f.code() == exit_code::connect, "a refusal with another exit code");
        check(fuzz::terminal_safe(f.what()), fmt::format("the refusal shows unescaped text: {}", f.what()));
    }
}

template <std::size_t N>
bool take(fuzz::input& in, std::array<std::uint8_t, N>& out) {
    const auto bytes = in.take(N);
    if (bytes.size() < N) return false;  // the proxy hung up: a transport error, not ours to judge
    for (std::size_t i = 0; i < N; ++i) out[i] = static_cast<std::uint8_t>(bytes[i]);
    return true;
}

void socks5(fuzz::input& in, bool credentials) {
    const auto p = proxy(credentials, proxy_config::kind::socks5h);
    // The dialogue as RFC 1928 and 1929 have it: which step ends it, and how long the reply is.
    std::array<std::uint8_t, 2> choice{}, status{};
    std::array<std::uint8_t, 5> head{};
    int step = 0;  // how far the client got
    try {
        if (!take(in, choice)) return;
        const bool password = socks5_use_password(choice, p);
        check(choice[0] == 5 && (choice[1] == 0 || (choice[1] == 2 && credentials)),
              fmt::format("method {} {} accepted", choice[0], choice[1]));
        check(password == (choice[1] == 2), "the method chosen is not the one followed");
        step = 1;
        if (password) {
            if (!take(in, status)) return;
            check_socks5_auth(status, p);
            check(status[1] == 0, "a failed authentication was accepted");
        }
        step = 2;
        if (!take(in, head)) return;
        const std::size_t rest = socks5_reply_rest(head, p, target);
        check(head[0] == 5 && head[1] == 0, "a failed CONNECT reply was accepted");
        // VER REP RSV ATYP, the address (IPv4 4, IPv6 16, a domain 1 + its length), the port 2.
        const std::size_t address = head[3] == 1 ? 4 : head[3] == 4 ? 16 : head[3] == 3 ? 1 + head[4] : 0;
        check(address != 0, "an unknown address type was accepted");
        check(5 + rest == 4 + address + 2, fmt::format("the reply is {} bytes, the client reads {}", 4 + address + 2, 5 + rest));
        check(rest <= 257, "the rest of the reply does not fit the client's buffer");
        step = 3;
    } catch (const failure& f) {
        check(f.code() == exit_code::connect, "a refusal with another exit code");
        check(fuzz::terminal_safe(f.what()), fmt::format("the refusal shows unescaped text: {}", f.what()));
        if (step == 0) check(choice[0] != 5 || !(choice[1] == 0 || (choice[1] == 2 && credentials)), "a good method was refused");
        if (step == 1) check(status[1] != 0, "a good authentication status was refused");
        if (step == 2)
            check(head[0] != 5 || head[1] != 0 || (head[3] != 1 && head[3] != 3 && head[3] != 4), "a good reply was refused");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const bool http = in.byte() != 's';
    const bool credentials = in.byte() & 1;
    if (http) http_connect(in.rest(), credentials);
    else socks5(in, credentials);
    return 0;
}
