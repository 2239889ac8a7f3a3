#include "codec.hpp"
#include "proxy.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <vector>

namespace wsx {

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

void set_error(std::string* error, std::string message) {
    if (error) *error = std::move(message);
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
    unsigned value = 0;
    if (s.empty() || s.size() > 5) return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size() || value == 0 || value > 65535)
        return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

/// An IP literal, with or without IPv6 brackets; nullopt for names.
std::optional<net::ip::address> ip_literal(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    error_code ec;
    auto addr = net::ip::make_address(std::string(host), ec);
    if (ec) return std::nullopt;
    return addr;
}

/// host:port for request lines and messages, with IPv6 literals in brackets.
std::string authority(std::string_view host, std::uint16_t port) {
    std::string out;
    const bool v6 = host.find(':') != std::string_view::npos && host.front() != '[';
    if (v6) out += '[';
    out += host;
    if (v6) out += ']';
    out += ':';
    out += std::to_string(port);
    return out;
}

std::string base64(std::string_view in) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        const std::uint32_t v = (std::uint8_t(in[i]) << 16) | (std::uint8_t(in[i + 1]) << 8) |
                                std::uint8_t(in[i + 2]);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (const std::size_t rest = in.size() - i; rest > 0) {
        std::uint32_t v = std::uint8_t(in[i]) << 16;
        if (rest == 2) v |= std::uint8_t(in[i + 1]) << 8;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

bool valid_host_name(std::string_view host) {
    return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
    });
}

/// True when the first `bits` bits of two addresses of the same family agree.
bool same_prefix(const net::ip::address& a, const net::ip::address& b, unsigned bits) {
    if (a.is_v4() != b.is_v4()) return false;
    std::vector<unsigned char> x, y;
    if (a.is_v4()) {
        auto ab = a.to_v4().to_bytes(), bb = b.to_v4().to_bytes();
        x.assign(ab.begin(), ab.end());
        y.assign(bb.begin(), bb.end());
    } else {
        auto ab = a.to_v6().to_bytes(), bb = b.to_v6().to_bytes();
        x.assign(ab.begin(), ab.end());
        y.assign(bb.begin(), bb.end());
    }
    if (bits > x.size() * 8) return false;
    for (std::size_t i = 0; bits > 0; ++i) {
        const unsigned take = std::min(bits, 8u);
        const unsigned char mask = static_cast<unsigned char>(0xff00u >> take);
        if ((x[i] & mask) != (y[i] & mask)) return false;
        bits -= take;
    }
    return true;
}

bool entry_matches(std::string_view entry, const std::string& host,
                   const std::optional<net::ip::address>& host_ip, std::uint16_t port) {
    if (entry == "*") return true;
    // Split an optional :port off the entry; a bare IPv6 literal has several colons and no port.
    std::string_view name = entry;
    std::string_view port_text;
    if (name.front() == '[') {
        const auto close = name.find(']');
        if (close == std::string_view::npos) return false;
        if (close + 1 < name.size()) {
            if (name[close + 1] != ':') return false;
            port_text = name.substr(close + 2);
        }
        name = name.substr(1, close - 1);
    } else if (std::count(name.begin(), name.end(), ':') == 1) {
        const auto colon = name.find(':');
        port_text = name.substr(colon + 1);
        name = name.substr(0, colon);
    }
    if (!port_text.empty()) {
        const auto p = parse_port(port_text);
        if (!p || *p != port) return false;
    }
    if (name.empty()) return false;

    if (host_ip) {
        // IP targets match addresses and CIDR blocks only, never as a name suffix.
        std::string_view addr_text = name;
        std::optional<unsigned> bits;
        if (const auto slash = name.find('/'); slash != std::string_view::npos) {
            addr_text = name.substr(0, slash);
            const auto b = name.substr(slash + 1);
            unsigned v = 0;
            auto [end, ec] = std::from_chars(b.data(), b.data() + b.size(), v);
            if (b.empty() || ec != std::errc{} || end != b.data() + b.size()) return false;
            bits = v;
        }
        const auto entry_ip = ip_literal(addr_text);
        if (!entry_ip) return false;
        if (bits) return same_prefix(*entry_ip, *host_ip, *bits);
        return *entry_ip == *host_ip;
    }

    if (name.starts_with("*.")) name.remove_prefix(1);
    if (name.front() == '.') name.remove_prefix(1);
    while (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty()) return false;
    const std::string n = lower(name);
    if (host == n) return true;
    return host.size() > n.size() && host.ends_with(n) && host[host.size() - n.size() - 1] == '.';
}

[[noreturn]] void refuse(std::string message) {
    throw failure(exit_code::connect, std::move(message));
}

std::string_view socks5_reply_text(std::uint8_t code) {
    switch (code) {
    case 0x01: return "general SOCKS server failure";
    case 0x02: return "connection not allowed by ruleset";
    case 0x03: return "network unreachable";
    case 0x04: return "host unreachable";
    case 0x05: return "connection refused by destination";
    case 0x06: return "TTL expired";
    case 0x07: return "command not supported";
    case 0x08: return "address type not supported";
    default: return "unknown error";
    }
}

}  // namespace

std::optional<proxy_config> parse_proxy_url(std::string_view url, std::string* error) {
    url = trim(url);
    if (url.empty()) {
        set_error(error, "empty proxy URL");
        return std::nullopt;
    }

    proxy_config p;
    std::string_view rest = url;
    if (const auto sep = url.find("://"); sep != std::string_view::npos) {
        const std::string scheme = lower(url.substr(0, sep));
        rest = url.substr(sep + 3);
        if (scheme == "http") {
            p.type = proxy_config::kind::http;
        } else if (scheme == "socks5") {
            p.type = proxy_config::kind::socks5;
        } else if (scheme == "socks5h") {
            p.type = proxy_config::kind::socks5h;
        } else if (scheme == "https") {
            set_error(error, "https proxies are not supported; use http:// or socks5://");
            return std::nullopt;
        } else if (scheme == "socks4" || scheme == "socks4a") {
            set_error(error, scheme + " proxies are not supported; use socks5:// or socks5h://");
            return std::nullopt;
        } else {
            set_error(error, "unsupported proxy scheme '" + scheme +
                                 "'; use http://, socks5:// or socks5h://");
            return std::nullopt;
        }
    }

    std::string_view auth = rest;
    if (const auto end = rest.find_first_of("/?#"); end != std::string_view::npos) {
        auth = rest.substr(0, end);
        if (rest.substr(end) != "/") {
            set_error(error, "a proxy URL has no path, query or fragment: '" +
                                 std::string(rest.substr(end)) + "'");
            return std::nullopt;
        }
    }

    // The last '@' ends the credentials, so an unencoded '@' in a password still works.
    if (const auto at = auth.rfind('@'); at != std::string_view::npos) {
        const auto userinfo = auth.substr(0, at);
        auth = auth.substr(at + 1);
        const auto colon = userinfo.find(':');
        auto user = percent_decode(userinfo.substr(0, colon));
        auto pass = colon == std::string_view::npos ? std::optional<std::string>("")
                                                    : percent_decode(userinfo.substr(colon + 1));
        if (!user || !pass) {
            set_error(error, "invalid percent-encoding in proxy credentials");
            return std::nullopt;
        }
        p.username = std::move(*user);
        p.password = std::move(*pass);
    }

    std::string_view port_text;
    bool has_port = false;
    if (!auth.empty() && auth.front() == '[') {
        const auto close = auth.find(']');
        if (close == std::string_view::npos) {
            set_error(error, "missing ']' after the IPv6 proxy address");
            return std::nullopt;
        }
        p.host = std::string(auth.substr(1, close - 1));
        error_code ec;
        net::ip::make_address_v6(p.host, ec);
        if (ec) {
            set_error(error, "invalid IPv6 proxy address '" + p.host + "'");
            return std::nullopt;
        }
        const auto after = auth.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                set_error(error, "unexpected '" + std::string(after) + "' after the proxy address");
                return std::nullopt;
            }
            has_port = true;
            port_text = after.substr(1);
        }
    } else {
        const auto colon = auth.find(':');
        if (colon != std::string_view::npos && auth.find(':', colon + 1) != std::string_view::npos) {
            set_error(error, "IPv6 proxy addresses must be in brackets, e.g. socks5://[::1]:1080");
            return std::nullopt;
        }
        p.host = lower(auth.substr(0, colon));
        if (colon != std::string_view::npos) {
            has_port = true;
            port_text = auth.substr(colon + 1);
        }
        if (p.host.empty()) {
            set_error(error, "missing proxy host in '" + std::string(url) + "'");
            return std::nullopt;
        }
        if (!valid_host_name(p.host)) {
            set_error(error, "invalid proxy host '" + p.host + "'");
            return std::nullopt;
        }
    }
    if (p.host.empty()) {
        set_error(error, "missing proxy host in '" + std::string(url) + "'");
        return std::nullopt;
    }

    if (has_port) {
        const auto port = parse_port(port_text);
        if (!port) {
            set_error(error, "invalid proxy port '" + std::string(port_text) +
                                 "' (expected 1-65535)");
            return std::nullopt;
        }
        p.port = *port;
    } else {
        p.port = p.type == proxy_config::kind::http ? default_http_proxy_port
                                                    : default_socks_proxy_port;
    }

    if (p.type != proxy_config::kind::http && (p.username.size() > 255 || p.password.size() > 255)) {
        set_error(error, "SOCKS5 usernames and passwords are limited to 255 bytes");
        return std::nullopt;
    }
    if (error) error->clear();
    return p;
}

std::string to_string(const proxy_config& p) {
    std::string out = p.type == proxy_config::kind::http     ? "http://"
                      : p.type == proxy_config::kind::socks5 ? "socks5://"
                                                             : "socks5h://";
    if (!p.username.empty()) out += p.username + "@";
    out += authority(p.host, p.port);
    return out;
}

bool proxy_resolves_names(const proxy_config& p) noexcept {
    return p.type != proxy_config::kind::socks5;
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
    std::string_view h = trim(host);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    while (!h.empty() && h.back() == '.') h.remove_suffix(1);
    const std::string target = lower(h);
    const auto target_ip = ip_literal(target);

    std::size_t pos = 0;
    while (pos < no_proxy.size()) {
        const auto end = no_proxy.find_first_of(", \t", pos);
        const auto entry = trim(no_proxy.substr(pos, end == std::string_view::npos ? end : end - pos));
        if (!entry.empty() && entry_matches(entry, target, target_ip, port)) return true;
        if (end == std::string_view::npos) break;
        pos = end + 1;
    }
    return false;
}

std::optional<proxy_config> proxy_from_environment(
    bool secure_target, std::string_view target_host, std::uint16_t target_port,
    const std::function<const char*(const char*)>& getenv_fn, std::string* error) {
    if (error) error->clear();

    // Lower case first, as curl does; an empty value counts as unset.
    auto lookup = [&](std::initializer_list<const char*> names)
        -> std::optional<std::pair<const char*, std::string_view>> {
        for (const char* name : names) {
            const char* value = getenv_fn(name);
            if (value && !trim(value).empty()) return std::pair{name, std::string_view(value)};
        }
        return std::nullopt;
    };

    auto chosen = secure_target ? lookup({"https_proxy", "HTTPS_PROXY"})
                                : lookup({"http_proxy", "HTTP_PROXY"});
    if (!chosen) chosen = lookup({"all_proxy", "ALL_PROXY"});
    if (!chosen) return std::nullopt;

    if (const auto no_proxy = lookup({"no_proxy", "NO_PROXY"});
        no_proxy && no_proxy_matches(no_proxy->second, target_host, target_port))
        return std::nullopt;

    std::string why;
    auto p = parse_proxy_url(chosen->second, &why);
    if (!p && error) *error = std::string(chosen->first) + ": " + why;
    return p;
}

void check_connect_answer(const http::response_header<>& res, std::size_t extra, const proxy_config& p,
                          std::string_view target) {
    const unsigned status = res.result_int();
    if (status < 200 || status > 299) {
        // The proxy's words reach a terminal: escaped, like any text from a peer.
        std::string reason = escape_for_terminal(std::string_view(res.reason().data(), res.reason().size()));
        if (reason.empty()) reason = std::string(http::obsolete_reason(res.result()));
        std::string message = "proxy refused CONNECT to " + std::string(target) + ": " +
                              std::to_string(status) + " " + reason;
        if (status == 407)
            message += p.username.empty()
                           ? " (give credentials in the proxy URL: http://user:pass@host:port)"
                           : " (check the proxy username and password)";
        refuse(std::move(message));
    }
    // The target speaks only after the client does (WebSocket and TLS both start client-side),
    // so bytes already behind the header cannot be the target's: the proxy is misbehaving.
    if (extra != 0)
        refuse("proxy " + to_string(p) + " sent " + std::to_string(extra) +
               " unexpected bytes after accepting CONNECT to " + std::string(target));
}

net::awaitable<void> http_connect_handshake(beast::tcp_stream& stream, const proxy_config& p,
                                            std::string_view host, std::uint16_t port) {
    const std::string target = authority(host, port);
    http::request<http::empty_body> req{http::verb::connect, target, 11};
    req.set(http::field::host, target);
    req.set(http::field::user_agent, "wsx/" WSX_VERSION);
    if (!p.username.empty())
        req.set(http::field::proxy_authorization, "Basic " + base64(p.username + ":" + p.password));
    co_await http::async_write(stream, req, net::use_awaitable);

    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> parser;
    // A 2xx answer to CONNECT has no body whatever its headers say; for other answers the
    // status line is all that is needed, so never wait for a body.
    parser.skip(true);
    try {
        co_await http::async_read_header(stream, buffer, parser, net::use_awaitable);
    } catch (const boost::system::system_error& e) {
        // Parse errors mean the peer is not (acting as) an HTTP proxy; transport errors and
        // the caller's deadline stay system_errors for the caller to map.
        if (e.code() == http::error::end_of_stream || e.code() == http::error::partial_message)
            refuse("proxy " + to_string(p) + " closed the connection before answering CONNECT to " +
                   target);
        if (e.code().category() == http::make_error_code(http::error::bad_version).category())
            refuse("invalid answer from proxy " + to_string(p) + " to CONNECT " + target + ": " +
                   e.code().message());
        throw;
    }

    check_connect_answer(parser.get(), buffer.size(), p, target);
}

bool socks5_use_password(std::array<std::uint8_t, 2> choice, const proxy_config& p) {
    const bool with_auth = !p.username.empty();
    if (choice[0] != 0x05)
        refuse("proxy " + to_string(p) + " did not answer as a SOCKS5 proxy (version byte " +
               std::to_string(choice[0]) + ")");
    if (choice[1] == 0xff)
        refuse(with_auth ? "SOCKS5 proxy " + to_string(p) +
                               " accepted none of the offered authentication methods"
                         : "SOCKS5 proxy " + to_string(p) +
                               " requires authentication (give socks5://user:pass@host:port)");
    if (choice[1] == 0x02 && with_auth) return true;
    if (choice[1] != 0x00)
        refuse("SOCKS5 proxy " + to_string(p) + " chose an authentication method that was not "
               "offered (" + std::to_string(choice[1]) + ")");
    return false;
}

void check_socks5_auth(std::array<std::uint8_t, 2> status, const proxy_config& p) {
    if (status[1] != 0x00)
        refuse("SOCKS5 proxy " + to_string(p) + ": authentication failed for user '" + p.username + "'");
}

std::size_t socks5_reply_rest(std::array<std::uint8_t, 5> head, const proxy_config& p, std::string_view target) {
    if (head[0] != 0x05)
        refuse("proxy " + to_string(p) + " sent an invalid SOCKS5 reply (version byte " +
               std::to_string(head[0]) + ")");
    if (head[1] != 0x00)
        refuse("SOCKS5 proxy " + to_string(p) + " could not connect to " + std::string(target) + ": " +
               std::string(socks5_reply_text(head[1])));
    switch (head[3]) {
    case 0x01: return 4 - 1 + 2;
    case 0x04: return 16 - 1 + 2;
    case 0x03: return std::size_t{head[4]} + 2;
    default:
        refuse("proxy " + to_string(p) + " sent a SOCKS5 reply with unknown address type " +
               std::to_string(head[3]));
    }
}

net::awaitable<void> socks5_handshake(beast::tcp_stream& stream, const proxy_config& p,
                                      std::string_view host, std::uint16_t port) {
    const std::string target = authority(host, port);
    const bool with_auth = !p.username.empty();

    // Method selection: always offer no-auth, and username/password when there are credentials.
    {
        std::vector<std::uint8_t> hello{0x05, 0x01, 0x00};
        if (with_auth) {
            hello[1] = 0x02;
            hello.push_back(0x02);
        }
        co_await net::async_write(stream, net::buffer(hello), net::use_awaitable);
    }
    std::array<std::uint8_t, 2> choice{};
    co_await net::async_read(stream, net::buffer(choice), net::use_awaitable);
    if (socks5_use_password(choice, p)) {
        if (p.username.size() > 255 || p.password.size() > 255)
            refuse("SOCKS5 usernames and passwords are limited to 255 bytes");
        std::vector<std::uint8_t> auth;
        auth.reserve(3 + p.username.size() + p.password.size());
        auth.push_back(0x01);
        auth.push_back(static_cast<std::uint8_t>(p.username.size()));
        auth.insert(auth.end(), p.username.begin(), p.username.end());
        auth.push_back(static_cast<std::uint8_t>(p.password.size()));
        auth.insert(auth.end(), p.password.begin(), p.password.end());
        co_await net::async_write(stream, net::buffer(auth), net::use_awaitable);
        std::array<std::uint8_t, 2> status{};
        co_await net::async_read(stream, net::buffer(status), net::use_awaitable);
        check_socks5_auth(status, p);
    }

    // CONNECT request: VER CMD RSV ATYP DST.ADDR DST.PORT
    {
        std::vector<std::uint8_t> req{0x05, 0x01, 0x00};
        if (const auto ip = ip_literal(host)) {
            if (ip->is_v4()) {
                req.push_back(0x01);
                const auto b = ip->to_v4().to_bytes();
                req.insert(req.end(), b.begin(), b.end());
            } else {
                req.push_back(0x04);
                const auto b = ip->to_v6().to_bytes();
                req.insert(req.end(), b.begin(), b.end());
            }
        } else {
            if (host.empty() || host.size() > 255)
                refuse("SOCKS5 cannot send a host name of " + std::to_string(host.size()) +
                       " bytes (1-255)");
            req.push_back(0x03);
            req.push_back(static_cast<std::uint8_t>(host.size()));
            req.insert(req.end(), host.begin(), host.end());
        }
        req.push_back(static_cast<std::uint8_t>(port >> 8));
        req.push_back(static_cast<std::uint8_t>(port & 0xff));
        co_await net::async_write(stream, net::buffer(req), net::use_awaitable);
    }

    // Reply: VER REP RSV ATYP BND.ADDR BND.PORT. The first five bytes tell how long the rest is
    // (the fifth is the domain length for ATYP 3), so the tunnel's first byte is never read.
    std::array<std::uint8_t, 5> head{};
    co_await net::async_read(stream, net::buffer(head), net::use_awaitable);
    const std::size_t rest = socks5_reply_rest(head, p, target);
    std::array<std::uint8_t, 257> tail{};
    co_await net::async_read(stream, net::buffer(tail.data(), rest), net::use_awaitable);
}

}  // namespace wsx
