// Where `-L` goes: redirect_target() resolving a server's Location against the URL that was
// asked (Boost.URL, RFC 3986 section 5), and redirected_options() deciding which credentials go
// along. The Location is the server's, so anything may be in it.
//
// Input: one byte choosing the URL that was asked (see `bases`), then the Location.
// Checked: a refusal has a one-line reason that is safe on a terminal; an accepted target is a
// usable URL (ws or wss, a host or the same unix socket, a target starting with '/') that
// parses back to itself and, followed again, leads to the same place; and the token, cookie,
// Authorization header and --host/--sni go only to the original scheme, host and port.
// fuzz-options: -max_len=2048
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "client.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("location_fuzz", what);
}

const char* const bases[] = {
    "ws://example.com/a/b?x=1",
    "wss://example.com:8443/",
    "ws://[::1]:8080/path/",
    "ws://user:pw@127.0.0.1:9000/deep/er/path?q",
};

endpoint base_for(std::uint8_t b) {
    if (b % 5 == 4) {
        endpoint u;
        u.unix_path = "/tmp/wsx.sock";
        u.target = "/sock/path?y=2";
        return u;
    }
    std::string why;
    auto u = parse_ws_url(bases[b % 5], &why);
    check(bool(u), std::string("a base URL does not parse: ") + why);
    return *u;
}

bool same_place(const endpoint& a, const endpoint& b) {
    return a.tls == b.tls && a.host == b.host && a.port == b.port && a.unix_path == b.unix_path;
}

// Host names compare without case (RFC 3986 section 3.2.2): "exampLe.com" is example.com, and
// credentials may go there.
bool same_origin(const endpoint& a, const endpoint& b) {
    if (a.tls != b.tls || a.port != b.port || a.unix_path != b.unix_path || a.host.size() != b.host.size()) return false;
    for (std::size_t i = 0; i < a.host.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
        if (lower(a.host[i]) != lower(b.host[i])) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const endpoint from = base_for(in.byte());
    const std::string_view location = in.rest();

    std::string error;
    const auto to = redirect_target(from, location, &error);
    if (!to) {
        check(!error.empty(), "a refused Location without a reason");
        check(error.find('\n') == std::string::npos, "a multi-line reason");
        check(fuzz::terminal_safe(error), "a reason with unescaped text: " + error);
        return 0;
    }
    check(!to->target.empty() && to->target.front() == '/', "a target not starting with '/': " + to->target);
    check(to->target.find_first_of(" \r\n") == std::string::npos, "a target with a space or line break");
    check(to->target.find('#') == std::string::npos, "a fragment was kept");
    if (to->is_unix()) {
        check(from.is_unix() && to->unix_path == from.unix_path, "a Location moved to another unix socket");
    } else {
        check(!to->host.empty() && to->port != 0, "a target without host or port");
        // An absolute URL of the target leads to the target itself.
        std::string why;
        const auto back = parse_ws_url(to->to_string(), &why);
        check(bool(back), fmt::format("the target '{}' does not parse back: {}", to->to_string(), why));
        check(same_place(*back, *to) && back->target == to->target,
              fmt::format("the target '{}' parses back as '{}'", to->to_string(), back->to_string()));
        // Followed again as a Location, it leads to the same place; its path may still lose a
        // "." kept to protect empty segments ("/.//x"), but then it is settled.
        const auto again = redirect_target(from, to->to_string(), &why);
        check(again && same_place(*again, *to), fmt::format("the target '{}' leads elsewhere", to->to_string()));
        const auto third = redirect_target(from, again->to_string(), &why);
        check(third && same_place(*third, *again) && third->target == again->target,
              fmt::format("the target '{}' does not settle", again->to_string()));
    }

    client_options o;
    o.url = from;
    o.token = "tok";
    o.cookies = {"c=1"};
    o.host_override = "front.example";
    o.headers = {{"Authorization", "Bearer x"}, {"X-Other", "kept"}};
    const auto r = redirected_options(o, *to);
    check(same_place(r.url, *to) && r.url.target == to->target, "the redirected options go elsewhere");
    const bool carried = !r.token.empty() || !r.cookies.empty() || !r.host_override.empty();
    bool auth_header = false, other_header = false;
    for (const auto& [name, value] : r.headers) {
        auth_header |= name == "Authorization";
        other_header |= name == "X-Other";
    }
    check(other_header, "a header without credentials was dropped");
    if (!same_origin(from, *to)) {
        check(!carried && !auth_header, fmt::format("credentials went from {} to {}", from.to_string(), to->to_string()));
    } else {
        check(r.token == "tok" && !r.cookies.empty() && auth_header, "credentials were dropped on the same host");
    }
    return 0;
}
