#include "endpoint.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fmt/format.h>

#include "codec.hpp"
#include "url_reference.hpp"

namespace wsx {
namespace {

bool parse_port(std::string_view s, std::uint16_t& out) {
    if (s.empty() || s.size() > 5) return false;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v > 65535) return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

/// A host as RFC 3986 spells a registered name, and nothing decoded from a %XX escape into
/// anything else: the host goes as it is into the Host header and a proxy's CONNECT line, where
/// '@', '/', ':', blanks or controls would change their meaning. (IPv6 literals are checked apart.)
bool plain_host_name(std::string_view host) {
    return std::all_of(host.begin(), host.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
    });
}

// Built with append: GCC 12 reports a false -Wrestrict for `"/" + s` at -O3.
std::string with_leading_slash(std::string_view path) {
    std::string out;
    out.reserve(path.size() + 1);
    if (path.empty() || path.front() != '/') out.push_back('/');
    out.append(path.data(), path.size());
    return out;
}

}  // namespace

std::string format_host_port(std::string_view host, std::uint16_t port) {
    if (host.find(':') != std::string_view::npos) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

std::string endpoint::host_header() const {
    if (is_unix()) return "localhost";
    const std::uint16_t default_port = tls ? 443 : 80;
    if (port == default_port)
        return host.find(':') != std::string::npos ? fmt::format("[{}]", host) : host;
    return format_host_port(host, port);
}

std::string endpoint::to_string() const {
    if (is_unix()) return fmt::format("{}://{}:{}", tls ? "wss+unix" : "ws+unix", unix_path, target);
    return fmt::format("{}://{}{}", tls ? "wss" : "ws", host_header(), target);
}

namespace {
boost::urls::result<boost::urls::url_view> respell_ipv4_prefix(std::string_view text, std::string& storage) {
    auto parsed = boost::urls::parse_uri_reference(text);
    if (!parsed) return parsed;
    const boost::urls::url_view u = *parsed;
    if (u.host_type() != boost::urls::host_type::ipv4 || u.encoded_path().empty() || u.encoded_path().front() == '/')
        return parsed;
    const auto at = static_cast<std::size_t>(u.encoded_host().data() - text.data());
    storage = fmt::format("{}%{:02X}{}", text.substr(0, at), static_cast<unsigned char>(text[at]), text.substr(at + 1));
    return boost::urls::parse_uri_reference(storage);
}
}  // namespace

boost::urls::result<boost::urls::url_view> parse_url_reference(std::string_view text, std::string& storage) {
    auto parsed = respell_ipv4_prefix(text, storage);
    // After an authority the path is empty or starts with '/': Boost.URL 1.81 also reads a port
    // only as far as its digits go ("host:7x/" as port 7 and path "x/").
    if (parsed && parsed->has_authority() && !parsed->encoded_path().empty() && parsed->encoded_path().front() != '/')
        return boost::urls::grammar::error::invalid;
    return parsed;
}

std::optional<endpoint> parse_ws_url(std::string_view text, std::string* error) {
    auto fail = [&](std::string msg) -> std::optional<endpoint> {
        if (error) *error = std::move(msg);
        return std::nullopt;
    };
    if (text.empty()) return fail("empty URL: give one like ws://127.0.0.1:8080/");

    endpoint ep;
    // ws+unix:///path/to.sock:/resource — the socket path ends at the first ':'.
    for (std::string_view scheme : {"ws+unix://", "wss+unix://"}) {
        if (!starts_with_icase(text, scheme)) continue;
        ep.tls = scheme[2] == 's';
        std::string_view rest = text.substr(scheme.size());
        auto colon = rest.find(':');
        ep.unix_path = std::string(rest.substr(0, colon));
        if (colon != std::string_view::npos) ep.target = std::string(rest.substr(colon + 1));
        if (ep.unix_path.empty())
            return fail(fmt::format("invalid URL '{}': missing socket path (ws+unix:///path/to.sock:/resource)", text));
        if (ep.target.empty() || ep.target[0] != '/') ep.target = with_leading_slash(ep.target);
        // The resource goes into the request line as it is, where a blank or a control would end
        // it early: it must be a path and query as URLs spell them (with %XX for anything else).
        if (!boost::urls::parse_origin_form(ep.target))
            return fail(fmt::format("invalid URL '{}': the resource '{}' after the socket path is not a valid path "
                                    "(write blanks and other special characters as %XX)",
                                    escape_for_terminal(text), escape_for_terminal(ep.target)));
        return ep;
    }

    std::string owned;
    if (text.find("://") == std::string_view::npos) {
        owned = "ws://" + std::string(text);  // bare host:port, as wscat does
        text = owned;
    }
    std::string respelt;
    auto parsed = parse_url_reference(text, respelt);
    if (!parsed && parsed.error() == boost::urls::grammar::error::invalid)
        return fail(fmt::format("invalid URL '{}': the host and port end at the first '/', '?' or '#' "
                                "(a port is digits only, e.g. ws://127.0.0.1:8080/path)",
                                escape_for_terminal(text)));
    if (!parsed) return fail(fmt::format("invalid URL '{}': {}", text, parsed.error().message()));
    const boost::urls::url_view u = *parsed;
    std::string scheme(u.scheme());
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "ws") ep.tls = false;
    else if (scheme == "wss") ep.tls = true;
    else if (scheme == "http" || scheme == "https")
        return fail(fmt::format("unsupported scheme '{}' in '{}': use {}://", scheme, text,
                                scheme == "http" ? "ws" : "wss"));
    else
        return fail(fmt::format("unsupported scheme '{}' in '{}': use ws://, wss:// or ws+unix://", scheme, text));

    if (!u.has_authority() || u.host().empty())
        return fail(fmt::format("invalid URL '{}': missing host (e.g. ws://127.0.0.1:8080/)", text));
    switch (u.host_type()) {
    case boost::urls::host_type::ipv6: ep.host = u.host_address(); break;
    case boost::urls::host_type::ipvfuture:
        return fail(fmt::format("invalid URL '{}': unsupported IP literal", text));
    default: ep.host = u.host(); break;  // percent-decoded name or IPv4
    }
    if (u.host_type() != boost::urls::host_type::ipv6 && !plain_host_name(ep.host))
        return fail(fmt::format("invalid URL '{}': the host '{}' holds characters no host name can", text,
                                escape_for_terminal(ep.host)));
    if (u.has_port()) {
        if (!parse_port(u.port(), ep.port) || ep.port == 0)
            return fail(fmt::format("invalid port '{}' in '{}': use 1-65535", std::string(u.port()), text));
    } else {
        ep.port = ep.tls ? 443 : 80;
    }
    if (u.has_userinfo()) {
        ep.username = u.user();
        ep.password = u.password();
    }
    std::string target = with_leading_slash(u.encoded_path());
    if (u.has_query()) {
        target.push_back('?');
        target.append(u.encoded_query().data(), u.encoded_query().size());
    }
    ep.target = std::move(target);
    return ep;
}

std::optional<listen_address> parse_listen_address(std::string_view text, std::string* error,
                                                   std::uint16_t default_port) {
    auto fail = [&](std::string msg) -> std::optional<listen_address> {
        if (error) *error = std::move(msg);
        return std::nullopt;
    };
    listen_address a;
    a.port = default_port;
    std::string_view s = text;
    if (starts_with_icase(s, "unix:")) {
        a.unix_path = std::string(s.substr(5));
        if (a.unix_path.empty()) return fail("invalid listen address 'unix:': give a socket path, e.g. unix:/tmp/wsx.sock");
        // Clients name the socket in ws+unix://PATH:/resource, where the path ends at the first ':'.
        if (a.unix_path.find(':') != std::string::npos)
            return fail(fmt::format("invalid listen address '{}': a socket path cannot contain ':' (ws+unix:// URLs "
                                    "end the path there); choose another path",
                                    text));
        if (a.unix_path.find('\0') != std::string::npos)
            return fail(fmt::format("invalid listen address '{}': a socket path cannot contain NUL", text));
        if (a.unix_path.size() > max_unix_path)
            return fail(fmt::format("invalid listen address '{}': the socket path is {} bytes, the system allows {}; "
                                    "choose a shorter path",
                                    text, a.unix_path.size(), max_unix_path));
        return a;
    }
    for (std::string_view scheme : {"ws+unix://", "wss+unix://"})
        if (starts_with_icase(s, scheme)) {
            auto path = s.substr(scheme.size());
            path = path.substr(0, path.find(':'));
            return fail(fmt::format("invalid listen address '{}': listen on a unix socket with unix:{} "
                                    "(clients then connect to ws+unix://{}:/)",
                                    text, path.empty() ? "/path/to.sock" : path, path.empty() ? "/path/to.sock" : path));
        }
    for (std::string_view scheme : {"ws://", "wss://", "tcp://"})
        if (starts_with_icase(s, scheme)) s.remove_prefix(scheme.size());
    if (!s.empty() && s.back() == '/') s.remove_suffix(1);
    if (s.empty()) return fail("empty listen address: give PORT or HOST:PORT, e.g. 127.0.0.1:8080");

    auto bad_port = [&](std::string_view p) {
        return fail(fmt::format("invalid port '{}' in listen address '{}': use 0-65535 (0 picks a free port)", p, text));
    };
    if (s.front() == '[') {
        auto close = s.find(']');
        if (close == std::string_view::npos) return fail(fmt::format("invalid listen address '{}': missing ']'", text));
        a.host = std::string(s.substr(1, close - 1));
        auto rest = s.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':' || !parse_port(rest.substr(1), a.port)) return bad_port(rest.substr(rest.empty() ? 0 : 1));
        }
        return a;
    }
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) {
        if (std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            if (!parse_port(s, a.port)) return bad_port(s);
        } else {
            a.host = std::string(s);
        }
        return a;
    }
    if (s.find(':') != colon)
        return fail(fmt::format("invalid listen address '{}': write IPv6 addresses in brackets, e.g. [::1]:8080", text));
    if (colon > 0) a.host = std::string(s.substr(0, colon));
    if (!parse_port(s.substr(colon + 1), a.port)) return bad_port(s.substr(colon + 1));
    return a;
}

}  // namespace wsx
