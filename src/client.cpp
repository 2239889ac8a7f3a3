#include "client.hpp"

#include <random>

#include <boost/beast/core/detail/sha1.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <boost/url/url.hpp>
#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "auth.hpp"
#include "codec.hpp"
#include "connect_hints.hpp"
#include "exit_code.hpp"
#include "frame_reader.hpp"
#include "joined_fields.hpp"
#include "one_line.hpp"
#include "url_reference.hpp"
#include "permessage_deflate.hpp"
#include "random_seed.hpp"
#include "units.hpp"

namespace wsx {

std::string refused_hint(const error_code& ec, bool via_proxy) {
    if (ec != net::error::connection_refused) return {};
    return via_proxy ? " (is the proxy running on that port?)" : " (is a server listening on that port?)";
}

namespace {

using clock = steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

std::string ms(std::chrono::nanoseconds d) {
    return fmt::format("{}ms", duration_cast<milliseconds>(d).count());
}

// Beast seeds the generator of handshake keys from eight std::random_device words unless it is
// seeded first (before any stream exists; later calls change nothing); see random_seed.hpp.
void seed_handshake_keys() {
    static const bool seeded = [] {
        std::uint32_t words[8];
        for (auto& w : words) w = random_seed();
        std::seed_seq seq(std::begin(words), std::end(words));
        websocket::seed_prng(seq);
        return true;
    }();
    (void)seeded;
}

[[noreturn]] void timed_out(const client_options& o, std::string_view step) {
    throw open_failure("timeout", exit_code::timeout, fmt::format("timed out after {} {} {} (raise --connect-timeout)",
                                                                  ms(o.connect_timeout), step, o.url.to_string()));
}

// The short reason bench tallies a failed TCP connect under.
std::string connect_reason(const error_code& ec) {
    if (ec == net::error::connection_refused) return "refused";
    if (ec == net::error::host_unreachable || ec == net::error::network_unreachable) return "unreachable";
    if (ec == net::error::connection_reset) return "reset";
    if (ec == net::error::no_buffer_space || ec == net::error::no_descriptors) return "no resources";
    return ec.message();
}

// How to get past a certificate verification failure, for the error line.
std::string verify_hint(const client_options& o, beast::ssl_stream<beast::tcp_stream>& tls) {
    switch (SSL_get_verify_result(tls.native_handle())) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return " (trust its CA with --cacert FILE, or skip verification with -k)";
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return fmt::format(" (the certificate is not for '{}')", o.tls.sni.empty() ? o.url.host : o.tls.sni);
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return " (check the clocks, or skip verification with -k)";
    default:
        return {};
    }
}

// A TLS handshake that ends in a reset, an EOF or bytes that are no TLS record (such as an
// HTTP answer to the ClientHello) most likely reached a server without TLS.
bool looks_like_plain_server(const error_code& ec) {
    if (ec == net::error::connection_reset || ec == net::error::eof || ec == ssl::error::stream_truncated) return true;
    if (ec.category() != net::error::get_ssl_category()) return false;
    const int reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
    return reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
           reason == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

void print_headers(std::ostream& out, char mark, const auto& fields) {
    for (const auto& f : fields) out << mark << ' ' << f.name_string() << ": " << f.value() << '\n';
}

}  // namespace

// An IP literal needs no lookup (and no resolver thread, which costs start-up time).
net::awaitable<tcp::resolver::results_type> resolve(const std::string& host, std::uint16_t port, clock::time_point deadline,
                                                    std::string_view name, std::string_view raise,
                                                    std::chrono::nanoseconds budget) {
    error_code parse_ec;
    auto literal = net::ip::make_address(host, parse_ec);
    if (!parse_ec)
        co_return tcp::resolver::results_type::create(tcp::endpoint(literal, port), host, std::to_string(port));
    auto ex = co_await net::this_coro::executor;
    tcp::resolver resolver(ex);
    net::steady_timer timer(ex, deadline);
    bool expired = false;
    timer.async_wait([&](error_code ec) {
        if (!ec) {
            expired = true;
            resolver.cancel();
        }
    });
    error_code ec;
    auto results = co_await resolver.async_resolve(host, std::to_string(port), net::redirect_error(net::use_awaitable, ec));
    timer.cancel();
    if (expired)
        throw open_failure("timeout", exit_code::timeout,
                           fmt::format("timed out after {} resolving {} (raise {})", ms(budget), name, raise));
    if (ec) throw open_failure("resolve", exit_code::resolve, fmt::format("cannot resolve '{}': {}", host, ec.message()));
    co_return results;
}

namespace {

// TCP connect to the server or to the proxy, then the proxy handshake.
net::awaitable<void> open_tcp(beast::tcp_stream& tcp, const client_options& o, const open_hints& hints, connect_info& r,
                              clock::time_point deadline) {
    const auto t0 = clock::now();
    const bool via_proxy = o.proxy.has_value();
    const std::string& host = via_proxy ? o.proxy->host : o.url.host;
    const std::uint16_t port = via_proxy ? o.proxy->port : o.url.port;
    const auto c = co_await async_connect_tcp(tcp, host, port, deadline, o.url.to_string(), "--connect-timeout", via_proxy,
                                              hints.first_hop);
    r.remote = format_host_port(c.peer.address().to_string(), c.peer.port());
    const auto t2 = clock::now();
    r.timings.dns = c.dns;
    r.timings.tcp = t2 - t0 - c.dns;
    if (!via_proxy) co_return;

    // The deadline set for the connect covers every later step too (proxy, TLS, upgrade): a
    // stream's expiry applies to all its operations until it is changed.
    try {
        if (o.proxy->type == proxy_config::kind::http) {
            co_await http_connect_handshake(tcp, *o.proxy, o.url.host, o.url.port);
        } else {
            std::string target = o.url.host;
            if (o.proxy->type == proxy_config::kind::socks5) {
                // socks5:// resolves locally; socks5h:// lets the proxy resolve.
                auto targets = co_await resolve(o.url.host, o.url.port, deadline, o.url.to_string(), "--connect-timeout",
                                                o.connect_timeout);
                target = targets.begin()->endpoint().address().to_string();
            }
            co_await socks5_handshake(tcp, *o.proxy, target, o.url.port);
        }
    } catch (const open_failure&) {
        throw;
    } catch (const failure& f) {
        throw open_failure("proxy", f.code(), f.what());
    } catch (const boost::system::system_error& e) {
        if (e.code() == beast::error::timeout) timed_out(o, "in the proxy handshake for");
        throw open_failure("proxy", exit_code::connect,
                           fmt::format("proxy {} failed: {}", format_host_port(host, port), e.code().message()));
    }
    r.timings.proxy = clock::now() - t2;
}

// How an answer to the upgrade is read: the header up to 60 KiB (a long Location or challenge;
// Beast's default is 8 KiB, and it cannot hold a field of 64 KiB), then, for a refusal, a body
// up to 64 KiB. A refusal's body is shown, not needed: one that is longer, or cut short, still
// leaves the status and the fields. upgrade_response_fuzz reads answers the same way.
constexpr std::size_t answer_header_limit = 60 * 1024;
constexpr std::uint64_t answer_body_limit = 64 * 1024;

// Prints the exchange for -v, then throws the failure that `ec` means (`answered`: the
// server's HTTP answer was read), or one for a subprotocol that was not offered.
// `tls_record`: what came back instead of an answer starts like a TLS record (an alert or a
// handshake), the reply of a TLS server to a plaintext request.
void report_upgrade(error_code ec, bool answered, const client_options& o, connect_info& r, std::ostream* verbose,
                    bool tls_record = false) {
    if (verbose) {
        *verbose << "> " << r.request.method_string() << ' ' << r.request.target() << " HTTP/1.1\n";
        print_headers(*verbose, '>', r.request);
        if (answered) {
            *verbose << "< HTTP/1.1 " << r.response.result_int() << ' ' << r.response.reason() << '\n';
            print_headers(*verbose, '<', r.response);
        }
        verbose->flush();
    }
    if (ec == beast::error::timeout) timed_out(o, "waiting for the upgrade from");
    if (ec && !answered) {
        // With TLS 1.3 a server that refuses our client certificate says so only now, when
        // the client already considers the handshake done: that is still a TLS failure.
        if (ec.category() == net::error::get_ssl_category() || ec.category() == ssl::error::get_stream_category()) {
            const bool truncated = ec == ssl::error::stream_truncated;
            const std::string why = truncated ? "the server ended the TLS session without answering" : describe_tls_error(ec);
            std::string hint;
            if (truncated || why.find("certificate") != std::string::npos)
                hint = o.tls.cert.empty() ? " (if it requires a client certificate, use --cert and --key)"
                                          : " (it may have refused the client certificate)";
            throw open_failure("tls", exit_code::tls, fmt::format("TLS connection to {} failed during the upgrade: {}{}",
                                                      format_host_port(o.url.host, o.url.port), why, hint));
        }
        const bool hung_up = ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset;
        // Over TLS 1.3 a refused client certificate often shows only as the server hanging up
        // (its alert lost to a reset): with TLS, no answer at all is reported as a TLS failure.
        if (hung_up && o.url.tls)
            throw open_failure("tls", exit_code::tls,
                          fmt::format("TLS connection to {} ended before the upgrade was answered{}",
                                      format_host_port(o.url.host, o.url.port),
                                      o.tls.cert.empty() ? " (if the server requires a client certificate, use --cert and --key)"
                                                         : " (the server may have refused the client certificate)"));
        if (tls_record && !o.url.tls)
            throw open_failure("upgrade", exit_code::upgrade,
                          fmt::format("upgrade with {} failed: the server answered with TLS (use wss://)", o.url.to_string()));
        // A TLS server given a plaintext request often just hangs up.
        if (hung_up)
            throw open_failure("upgrade", exit_code::upgrade,
                          fmt::format("upgrade with {} failed: the server closed the connection without an HTTP response{}",
                                      o.url.to_string(), o.url.is_unix() ? "" : " (if it speaks TLS, use wss://)"));
        if (ec == http::error::header_limit)
            throw open_failure("upgrade", exit_code::upgrade,
                               fmt::format("upgrade with {} failed: the answer's header is larger than {} KiB", o.url.to_string(),
                                           answer_header_limit / 1024));
        if (ec.category() == http::make_error_code(http::error::bad_version).category())
            throw open_failure("upgrade", exit_code::upgrade, fmt::format("upgrade with {} failed: the answer is not HTTP ({}){}",
                                                          o.url.to_string(), ec.message(),
                                                          o.url.tls || o.url.is_unix() ? "" : " (if the server speaks TLS, use wss://)"));
        throw open_failure("upgrade", exit_code::upgrade, fmt::format("upgrade with {} failed: {}", o.url.to_string(), ec.message()));
    }
    if (ec == websocket::error::upgrade_declined || (ec && r.response.result_int() != 101))
        throw upgrade_refusal(r.response, o.url);
    if (ec) {
        const bool accept = ec == websocket::error::bad_sec_accept || ec == websocket::error::no_sec_accept;
        throw open_failure(accept ? "bad accept" : "bad upgrade answer", exit_code::upgrade,
                           fmt::format("upgrade with {} failed: {}", o.url.to_string(), ec.message()));
    }
    r.subprotocol = std::string(r.response[http::field::sec_websocket_protocol]);
    if (!r.subprotocol.empty() &&
        std::find(o.subprotocols.begin(), o.subprotocols.end(), r.subprotocol) == o.subprotocols.end())
        throw open_failure("upgrade", exit_code::upgrade,
                      fmt::format("server chose subprotocol '{}', which was not offered", escape_for_terminal(r.subprotocol)));
}

template <class Stream, class Parser>
net::awaitable<error_code> read_answer(Stream& stream, beast::flat_buffer& buffer, Parser& parser) {
    parser.header_limit(answer_header_limit);
    parser.body_limit(boost::none);  // checked below, once the status is known
    error_code ec;
    co_await http::async_read_header(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    if (ec || parser.is_done()) co_return ec;
    const auto length = parser.content_length();
    if (parser.get().result_int() == 101 || (length && *length > answer_body_limit)) co_return ec;
    parser.body_limit(answer_body_limit);
    error_code body_ec;
    co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, body_ec));
    co_return ec;
}

// The upgrade: the request is written and the answer read here; the bytes that arrived behind
// the answer (a server may greet at once) are kept for the session, with the permessage-deflate
// agreement when the server accepted the offer. The stream is left with no deadline and no
// write interest.
template <class Stream>
net::awaitable<void> upgrade(Stream& stream, const client_options& o, opened_connection& out, std::ostream* verbose) {
    auto& r = out.info;
    const auto t0 = clock::now();
    auto& lowest = beast::get_lowest_layer(stream);  // its expiry is the connect's deadline already
    const std::string key = make_sec_websocket_key();
    r.request = upgrade_request(o, o.url, key);
    error_code ec;
    co_await http::async_write(stream, r.request, net::redirect_error(net::use_awaitable, ec));
    beast::flat_buffer buffer;
    bool answered = false;
    if (!ec) {
        http::response_parser<http::string_body> parser;
        ec = co_await read_answer(stream, buffer, parser);
        if (!ec) {
            answered = true;
            r.response = parser.release();
            ec = check_upgrade_answer(r.response, key);
        }
    }
    lowest.expires_never();
    const auto first = static_cast<const unsigned char*>(buffer.data().data());
    const bool tls_record = !answered && buffer.size() > 0 && (first[0] == 0x15 || first[0] == 0x16);
    report_upgrade(ec, answered, o, r, verbose, tls_record);
    out.extensions = joined_fields(r.response, http::field::sec_websocket_extensions);
    if (!o.deflate.enabled && !out.extensions.empty())
        throw open_failure("extension", exit_code::upgrade,
                           fmt::format("upgrade with {} failed: the server enabled an extension that was not offered ({})",
                                       o.url.to_string(), escape_for_terminal(out.extensions)));
    if (o.deflate.enabled) {
        auto answer = pmd::parse_answer(out.extensions, o.deflate);
        if (answer.status == pmd::answer_status::invalid)
            throw open_failure("bad extension answer", exit_code::upgrade,
                               fmt::format("upgrade with {} failed: {}", o.url.to_string(), answer.error));
        if (answer.status == pmd::answer_status::accepted) out.deflate = answer.params;
    }
    r.timings.upgrade = clock::now() - t0;
    out.leftover = beast::buffers_to_string(buffer.data());
    drop_write_interest(lowest.socket());
}

}  // namespace

std::string upgrade_target(const client_options& o, const endpoint& url) {
    std::string target = url.target;
    // A redirect to the same host may lead to a target that carries the parameter already
    // (the server kept the query): it is not sent twice.
    if (!o.token.empty() && !o.token_query.empty() && !query_param(target, o.token_query)) {
        target += target.find('?') == std::string::npos ? '?' : '&';
        target += boost::urls::encode(o.token_query, boost::urls::unreserved_chars);
        target += '=';
        target += boost::urls::encode(o.token, boost::urls::unreserved_chars);
    }
    return target;
}

std::string make_sec_websocket_key() {
    thread_local std::mt19937 rng{random_seed()};
    std::string raw(16, '\0');
    for (auto& c : raw) c = static_cast<char>(rng());
    return base64_encode(raw);
}

std::string sec_websocket_accept(std::string_view key) {
    // Beast's SHA-1, not OpenSSL's: the first EVP call loads OpenSSL's configuration and
    // providers, which costs a plain ws:// connection about a millisecond of start-up.
    static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    beast::detail::sha1_context ctx;
    beast::detail::init(ctx);
    beast::detail::update(ctx, key.data(), key.size());
    beast::detail::update(ctx, guid.data(), guid.size());
    char md[beast::detail::sha1_context::digest_size];
    beast::detail::finish(ctx, md);
    return base64_encode(std::string_view(md, sizeof md));
}

error_code check_upgrade_answer(const http::response<http::string_body>& res, const std::string& key) {
    if (res.result_int() != 101) return websocket::error::upgrade_declined;
    if (res.version() != 11) return websocket::error::bad_http_version;
    if (!http::token_list(res[http::field::connection]).exists("upgrade")) return websocket::error::no_connection_upgrade;
    if (!http::token_list(res[http::field::upgrade]).exists("websocket")) return websocket::error::no_upgrade_websocket;
    const auto accept = res[http::field::sec_websocket_accept];
    if (accept.empty()) return websocket::error::no_sec_accept;
    if (accept != sec_websocket_accept(key)) return websocket::error::bad_sec_accept;
    return {};
}

upgrade_refused upgrade_refusal(const http::response<http::string_body>& res, const endpoint& url) {
    std::string body = res.body();
    if (auto nl = body.find_first_of("\r\n"); nl != std::string::npos) body.resize(nl);
    if (body.size() > 200) body = body.substr(0, 200) + "...";
    std::vector<std::pair<std::string, std::string>> fields;
    for (const auto& f : res)
        if (f.name() == http::field::www_authenticate || f.name() == http::field::retry_after)
            fields.emplace_back(std::string(f.name_string()), std::string(f.value()));
    // A redirect is not followed (the upgrade request would have to be re-sent elsewhere,
    // perhaps with its credentials): say where it points instead.
    std::string redirect;
    if (const auto status = res.result_int(); status >= 300 && status < 400) {
        std::string location(res[http::field::location]);
        if (location.size() > 200) location = location.substr(0, 200) + "...";
        redirect = location.empty() ? " (a redirect without a Location)"
                                    : fmt::format(" (it redirects to {}: follow it with -L)", escape_for_terminal(location));
    }
    return upgrade_refused(res.result_int(),
                           fmt::format("upgrade rejected by {}: HTTP {} {}{}{}{}", url.to_string(), res.result_int(),
                                       escape_for_terminal(std::string_view(res.reason().data(), res.reason().size())),
                                       body.empty() ? "" : ": ", escape_for_terminal(body), redirect),
                           std::move(fields), std::string(res[http::field::location]));
}

http::request<http::empty_body> upgrade_request(const client_options& o, const endpoint& url, const std::string& key) {
    http::request<http::empty_body> req(http::verb::get, upgrade_target(o, url), 11);
    req.set(http::field::host, o.host_override.empty() ? url.host_header() : o.host_override);
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, key);
    req.set(http::field::sec_websocket_version, "13");
    if (o.deflate.enabled) req.set(http::field::sec_websocket_extensions, pmd::client_offer(o.deflate));
    decorate_upgrade_request(req, o, url);
    return req;
}

void decorate_upgrade_request(http::fields& req, const client_options& o, const endpoint& url) {
    if (!o.user_agent.empty()) req.set(http::field::user_agent, o.user_agent);  // empty: none (a proxy whose client sent none)
    if (!o.subprotocols.empty()) {
        std::string list;
        for (const auto& p : o.subprotocols) list += (list.empty() ? "" : ", ") + p;
        req.set(http::field::sec_websocket_protocol, list);
    }
    if (!o.origin.empty()) req.set(http::field::origin, o.origin);
    if (!o.cookies.empty()) {
        std::string c;
        for (const auto& k : o.cookies) c += (c.empty() ? "" : "; ") + k;
        req.set(http::field::cookie, c);
    }
    std::string userpass = o.basic_auth;
    if (userpass.empty() && !url.username.empty()) userpass = url.username + ":" + url.password;
    if (!userpass.empty()) req.set(http::field::authorization, "Basic " + base64_encode(userpass));
    if (!o.token.empty() && o.token_query.empty()) req.set(http::field::authorization, "Bearer " + o.token);
    for (const auto& [name, value] : o.headers) req.set(name, value);
}

net::awaitable<tcp_connected> async_connect_tcp(beast::tcp_stream& stream, const std::string& host, std::uint16_t port,
                                                clock::time_point deadline, std::string_view name, std::string_view raise,
                                                bool proxy, const tcp::resolver::results_type* resolved) {
    const auto t0 = clock::now();
    const auto budget = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - t0);
    tcp_connected c;
    tcp::resolver::results_type looked_up;
    if (!resolved) {
        looked_up = co_await resolve(host, port, deadline, name, raise, budget);
        resolved = &looked_up;
        c.dns = clock::now() - t0;
    }
    stream.expires_at(deadline);
    error_code ec;
    c.peer = co_await stream.async_connect(*resolved, net::redirect_error(net::use_awaitable, ec));
    if (ec == beast::error::timeout)
        throw open_failure("timeout", exit_code::timeout,
                           fmt::format("timed out after {} connecting to {} (raise {})", ms(budget), name, raise));
    if (ec)
        throw open_failure(connect_reason(ec), exit_code::connect,
                           fmt::format("cannot connect to {}{}: {}{}", format_host_port(host, port), proxy ? " (proxy)" : "",
                                       ec.message(), refused_hint(ec, proxy)));
    stream.socket().set_option(tcp::no_delay(true), ec);
    co_return c;
}

namespace {

// One hop of async_open(): resolve, TCP, proxy, TLS and the upgrade, with no redirect followed.
net::awaitable<opened_connection> open_hop(const client_options& o, const open_hints& hints, std::ostream* verbose) {
    auto ex = co_await net::this_coro::executor;
    seed_handshake_keys();
    opened_connection out;
    auto& r = out.info;
    const auto start = clock::now();
    const auto deadline = start + o.connect_timeout;

    if (o.url.is_unix()) {
        if (o.url.tls) throw failure(exit_code::usage, "wss+unix:// is not supported: use ws+unix://");
        unix_stream sock(ex);
        sock.expires_at(deadline);
        error_code ec;
        co_await sock.async_connect(net::local::stream_protocol::endpoint(o.url.unix_path),
                                    net::redirect_error(net::use_awaitable, ec));
        if (ec == beast::error::timeout) timed_out(o, "connecting to");
        if (ec) {
            const bool missing = ec == boost::system::errc::no_such_file_or_directory;
            throw open_failure(ec == net::error::connection_refused ? "refused" : missing ? "no such socket" : ec.message(),
                               exit_code::connect,
                               fmt::format("cannot connect to unix socket {}: {}{}", o.url.unix_path, ec.message(),
                                           ec == net::error::connection_refused || missing
                                               ? " (is a server listening on that socket?)"
                                               : ""));
        }
        r.remote = o.url.unix_path;
        r.timings.tcp = clock::now() - start;
        co_await upgrade(sock, o, out, verbose);
        out.stream.emplace(std::in_place_type<unix_stream>, std::move(sock));
    } else if (o.url.tls) {
        out.tls_context = hints.tls ? hints.tls : make_client_tls(o.tls);
        tls_stream tls(ex, *out.tls_context);
        co_await open_tcp(beast::get_lowest_layer(tls), o, hints, r, deadline);
        const auto t0 = clock::now();
        prepare_client_stream(tls, o.tls, o.url.host);
        error_code ec;
        co_await tls.async_handshake(ssl::stream_base::client, net::redirect_error(net::use_awaitable, ec));
        if (ec == beast::error::timeout) timed_out(o, "in the TLS handshake with");
        if (ec) {
            std::string hint = verify_hint(o, tls);
            if (hint.empty() && SSL_get_verify_result(tls.native_handle()) == X509_V_OK && looks_like_plain_server(ec))
                hint = " (does the server speak TLS? if not, use ws://)";
            throw open_failure("tls", exit_code::tls,
                               fmt::format("TLS handshake with {} failed: {}{}", format_host_port(o.url.host, o.url.port),
                                           describe_tls_error(ec, &tls), hint));
        }
        r.timings.tls = clock::now() - t0;
        co_await upgrade(tls, o, out, verbose);
        out.stream.emplace(std::in_place_type<tls_stream>, std::move(tls));
    } else {
        beast::tcp_stream tcp(ex);
        co_await open_tcp(tcp, o, hints, r, deadline);
        co_await upgrade(tcp, o, out, verbose);
        out.stream.emplace(std::in_place_type<beast::tcp_stream>, std::move(tcp));
    }
    r.timings.total = clock::now() - start;
    r.url = o.url;
    co_return out;
}

template <class Stream>
net::awaitable<void> write_close(Stream& stream, const std::string& frame) {
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(1));
    error_code ec;
    co_await net::async_write(stream, net::buffer(frame), net::redirect_error(net::use_awaitable, ec));
}

// Credentials stay with the scheme too: a wss:// URL's token must not go out in clear to a
// ws:// redirect on the same host and port (--allow-insecure-redirect).
bool same_origin(const endpoint& a, const endpoint& b) {
    if (a.tls != b.tls) return false;
    if (a.is_unix() || b.is_unix()) return a.unix_path == b.unix_path;
    return beast::iequals(a.host, b.host) && a.port == b.port;
}

}  // namespace

bool is_followed_redirect(int status) {
    return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::optional<endpoint> redirect_target(const endpoint& from, std::string_view location, std::string* error) {
    auto fail = [&](std::string why) -> std::optional<endpoint> {
        if (error) *error = fmt::format("the Location '{}' {}", escape_one_line(location), escape_one_line(why));
        return std::nullopt;
    };
    // Bytes outside ASCII (a UTF-8 path or query) are percent-encoded, as browsers do; a host
    // written that way is then refused below as not being a host name.
    std::string encoded;
    for (const char c : location) {
        if (static_cast<unsigned char>(c) < 0x80) encoded += c;
        else encoded += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    }
    std::string respelt;
    auto ref = parse_url_reference(encoded, respelt);
    if (!ref) return fail("is not a URL");
    // A unix socket has no URL of its own: a relative reference is resolved against its target
    // and stays on the socket; an absolute one leaves it.
    const std::string base_text =
        from.is_unix() ? "ws://localhost" + from.target : from.to_string();
    std::string base_respelt;
    auto base = parse_url_reference(base_text, base_respelt);
    if (!base) return fail("cannot be resolved against " + from.to_string());
    boost::urls::url dest(*base);
    if (!dest.resolve(*ref)) return fail("cannot be resolved against " + from.to_string());
    dest.remove_fragment();
    dest.normalize_path();  // no "." or ".." segments left, whatever the reference was,
    // except the ".." that would climb above the root, which Boost.URL keeps: they go too
    // (RFC 3986 section 5.2.4), "/../x" is "/x".
    const auto above_root = [](std::string& target) {
        while (target == "/.." || target.starts_with("/../") || target.starts_with("/..?")) target.erase(0, 3);
        if (target.empty() || target.front() != '/') target.insert(0, "/");
    };
    std::string scheme(dest.scheme());
    for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "http") scheme = "ws";
    else if (scheme == "https") scheme = "wss";
    else if (scheme != "ws" && scheme != "wss") return fail("is not a ws://, wss://, http:// or https:// URL");
    dest.set_scheme(scheme);
    if (from.is_unix() && !ref->has_scheme() && !ref->has_authority()) {
        endpoint to = from;
        std::string target(dest.encoded_path());
        if (target.empty()) target = "/";
        if (dest.has_query()) target += "?" + std::string(dest.encoded_query());
        above_root(target);
        to.target = target;
        return to;
    }
    std::string why;
    auto to = parse_ws_url(std::string_view(dest.buffer()), &why);
    if (!to) return fail("is not a usable URL: " + why);
    above_root(to->target);
    return to;
}

client_options redirected_options(const client_options& original, const endpoint& to) {
    client_options o = original;
    o.url = to;
    if (same_origin(original.url, to)) {
        // A relative Location carries no user:pass: the original URL's still applies here.
        if (o.url.username.empty()) {
            o.url.username = original.url.username;
            o.url.password = original.url.password;
        }
        return o;
    }
    // Only user:pass written in the Location itself goes to another host.
    o.basic_auth.clear();
    o.token.clear();
    o.token_query.clear();
    o.cookies.clear();
    o.host_override.clear();
    o.tls.sni.clear();
    std::erase_if(o.headers, [](const auto& h) {
        return beast::iequals(h.first, "Authorization") || beast::iequals(h.first, "Cookie") || beast::iequals(h.first, "Host");
    });
    return o;
}

net::awaitable<opened_connection> async_open(const client_options& o, const open_hints& hints, std::ostream* verbose) {
    if (!o.redirects.follow) co_return co_await open_hop(o, hints, verbose);
    const auto start = clock::now();
    client_options hop = o;
    open_hints hop_hints = hints;
    std::vector<redirect_hop> redirects;
    std::vector<std::string> visited{o.url.to_string()};
    for (;;) {
        // A coroutine cannot wait inside a handler: the redirect is noted there and followed after.
        std::optional<upgrade_refused> redirect;
        auto hop_start = clock::now();
        try {
            auto out = co_await open_hop(hop, hop_hints, verbose);
            out.info.redirects = std::move(redirects);
            out.info.timings.total = clock::now() - start;
            co_return out;
        } catch (const upgrade_refused& e) {
            if (!is_followed_redirect(e.status()) || e.location().empty()) throw;
            redirect.emplace(e);
        }
        std::string why;
        auto to = redirect_target(hop.url, redirect->location(), &why);
        if (!to)
            throw open_failure("redirect", exit_code::upgrade,
                               fmt::format("cannot follow the redirect (HTTP {}) from {}: {}", redirect->status(),
                                           hop.url.to_string(), why));
        const std::string next = to->to_string();
        if (redirects.size() >= o.redirects.max)
            throw open_failure("redirect", exit_code::upgrade,
                               fmt::format("too many redirects: {} followed from {}, and {} redirects to {} "
                                           "(at most {}: raise --max-redirs)",
                                           redirects.size(), o.url.to_string(), hop.url.to_string(), next,
                                           o.redirects.max));
        if (std::find(visited.begin(), visited.end(), next) != visited.end())
            throw open_failure("redirect", exit_code::upgrade,
                               fmt::format("redirect loop: {} redirects to {}, which redirected already", hop.url.to_string(),
                                           next));
        if (hop.url.tls && !to->tls && !o.redirects.allow_insecure)
            throw open_failure("redirect", exit_code::upgrade,
                               fmt::format("refusing the redirect from {} to {}: it leaves TLS (allow it with "
                                           "--allow-insecure-redirect)",
                                           hop.url.to_string(), next));
        redirects.push_back({.status = redirect->status(), .from = hop.url, .to = *to, .time = clock::now() - hop_start});
        if (verbose) {
            *verbose << fmt::format("* redirect {} of at most {}: HTTP {} from {} to {} ({})\n", redirects.size(),
                                    o.redirects.max, redirect->status(), hop.url.to_string(), next,
                                    format_duration(redirects.back().time));
            verbose->flush();
        }
        visited.push_back(next);
        hop = redirected_options(o, *to);
        // The addresses given are those of the first hop: still right through a proxy.
        if (!o.proxy) hop_hints.first_hop = nullptr;
    }
}

net::awaitable<client_options> async_settle_redirects(const client_options& o, const open_hints& hints,
                                                      std::ostream* verbose) {
    auto opened = co_await async_open(o, hints, verbose);
    client_options settled = opened.info.redirects.empty() ? o : redirected_options(o, opened.info.url);
    settled.redirects.follow = false;
    // The connection only showed the way: close it as a client does (RFC 6455 5.5.1), without
    // waiting for the server's Close.
    std::string close;
    const std::uint32_t key = static_cast<std::uint32_t>(random_seed());
    append_frame(close, opcode_byte::close, close_payload(1000, ""), &key);
    co_await std::visit([&](auto& stream) { return write_close(stream, close); }, *opened.stream);
    co_return settled;
}

net::awaitable<connect_result> async_connect(const client_options& o, std::ostream* verbose) {
    auto opened = co_await async_open(o, {}, verbose);
    connect_result r;
    static_cast<connect_info&>(r) = std::move(opened.info);
    r.session = std::visit(
        [&](auto& stream) -> std::shared_ptr<ws_session> {
            using S = std::decay_t<decltype(stream)>;
            using Layer = std::conditional_t<std::is_same_v<S, tls_stream>, tls_layer,
                                             std::conditional_t<std::is_same_v<S, unix_stream>, unix_layer, tcp_layer>>;
            return std::make_shared<session<Layer>>(std::move(stream), std::move(opened.leftover), o.session,
                                                    beast::role_type::client, opened.deflate);
        },
        *opened.stream);
    if (opened.tls_context) r.session->hold(opened.tls_context);
    co_return r;
}

}  // namespace wsx
