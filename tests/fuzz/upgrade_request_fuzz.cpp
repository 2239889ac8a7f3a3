// The server's reading of an upgrade request (server.cpp): raw bytes through Beast's request
// parser with the listener's limits, whole and split into pieces (the same request and the same
// leftover bytes either way), then the checks run on it before and during the upgrade:
// websocket::is_upgrade, Beast's accept (which only checks the request: permessage-deflate is
// the server's own choose_offer, whose answer wsx's client must accept), the listeners' early refusal
// (invalid_upgrade_response: what it lets through, the accept must take),
// authentication (token, JWT, Basic, Origin), the proxy's target rewrite and the CGI environment.
// fuzz-options: -max_len=4096
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/_experimental/test/stream.hpp>
#include <fmt/format.h>

#include "auth.hpp"
#include "client.hpp"
#include "fuzz_support.hpp"
#include "permessage_deflate.hpp"
#include "proxy_app.hpp"
#include "serve_app.hpp"
#include "server.hpp"

namespace {

using namespace wsx;

/// The listener's --max-request-bytes here: small, so that inputs reach it.
constexpr std::size_t request_limit = 2048;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("upgrade_request_fuzz", what);
}

struct read_result {
    error_code ec;
    std::string request;   ///< the parsed request, spelt out (when ec is clear)
    std::string leftover;  ///< bytes after the request: what the session gets as early frames
    std::optional<http_request> req;
};

std::string describe(const http_request& req) {
    std::string s = fmt::format("{} {} {}\n", std::string_view(req.method_string().data(), req.method_string().size()),
                                std::string_view(req.target().data(), req.target().size()), req.version());
    for (const auto& f : req) s += fmt::format("{}: {}\n", std::string_view(f.name_string().data(), f.name_string().size()),
                                               std::string_view(f.value().data(), f.value().size()));
    return s + "\n" + req.body();
}

read_result read_request(std::string_view bytes, std::uint32_t split) {
    fuzz::chunked_source src(bytes, split);
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    limit_request_parser(parser, request_limit);
    read_result r;
    http::read(src, buffer, parser, r.ec);
    if (r.ec) return r;
    r.req = parser.release();
    r.request = describe(*r.req);
    r.leftover = beast::buffers_to_string(buffer.data()) + std::string(bytes.substr(bytes.size() - src.left()));
    return r;
}

/// What Beast's accept answers, as the listener's upgrade runs it.
struct accept_result {
    error_code ec;
    http::response<http::string_body> res;
};

accept_result beast_accept(const http_request& req) {
    static net::io_context ioc;
    beast::test::stream local(ioc), remote(ioc);
    local.connect(remote);
    websocket::stream<beast::test::stream> ws(std::move(local));
    accept_result a;
    ws.accept(req, a.ec);
    const std::string wire = remote.str();
    fuzz::chunked_source src(wire, 0);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    error_code ec;
    http::read(src, buffer, parser, ec);
    check(!ec, "the answer Beast wrote does not parse: " + ec.message());
    a.res = parser.release();
    return a;
}

const authenticator& auth() {
    static const authenticator a = authenticator::from_options(auth_options{
        .token = "s3cret-token",
        .jwt_secret = "jwt-secret",
        .basic_user = "user",
        .basic_pass = "pass",
        .origins = {"https://app.example", "https://*.example.com", "null"},
    });
    return a;
}

bool header_value_ok(std::string_view v) {
    for (unsigned char c : v)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    return true;
}

bool visible_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c <= 0x20 || c >= 0x7f) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);

    // The same answer however the request arrives.
    auto whole = read_request(bytes, 0);
    for (std::uint32_t split : {std::uint32_t{1}, fuzz::split_seed(bytes)}) {
        const auto pieces = read_request(bytes, split);
        // Which error an unreadable one gets may depend on the split (Beast parses the start line
        // at once when it can, else waits for the end of the header): that it fails may not.
        check(bool(pieces.ec) == bool(whole.ec), fmt::format("split {} reads '{}', whole '{}'", split, pieces.ec.message(), whole.ec.message()));
        check(pieces.request == whole.request, "a split request reads differently");
        check(pieces.leftover == whole.leftover, "a split request leaves other bytes behind");
    }
    if (whole.ec) return 0;
    const http_request& req = *whole.req;
    check(bytes.ends_with(whole.leftover), "the leftover bytes are not the end of the input");
    const std::string_view target(req.target().data(), req.target().size());

    auto verdict = auth().check(req);
    check(verdict.ok == (verdict.status == http::status::ok), "auth verdict and status disagree");
    if (!verdict.ok) {
        // 400 for a request with two Origin or Authorization fields (which one counts would be
        // ambiguous), else 401 or 403.
        const bool repeated = req.count(http::field::origin) > 1 || req.count(http::field::authorization) > 1;
        check(verdict.status == (repeated ? http::status::bad_request : verdict.status) &&
                  (repeated || verdict.status == http::status::unauthorized || verdict.status == http::status::forbidden),
              "auth refuses with an odd status");
        check(header_value_ok(verdict.body) && verdict.body.find('\n') == std::string::npos, "auth refusal is not one line");
        for (const auto& c : verdict.challenges) check(header_value_ok(c), "a WWW-Authenticate challenge is no header value");
        if (auto res = to_response(verdict)) check(res->result() == verdict.status, "to_response changed the status");
    }

    const std::string rewritten = rewrite_target(target, "/api", "/backend?v=1");
    check(rewritten.starts_with("/"), "a rewritten target does not start with '/'");
    if (visible_ascii(target)) check(visible_ascii(rewritten), "a rewritten target holds blanks or controls");

    peer_info peer{.address = "192.0.2.1", .port = 40000, .local_port = 8080};
    for (const auto& e : cgi_environment(req, peer, "/ws", {}, 1)) {
        const auto eq = e.find('=');
        check(eq != std::string::npos && eq > 0, "a CGI variable without a name");
        check(e.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == eq, "a CGI variable name with odd characters");
    }

    if (!websocket::is_upgrade(req)) return 0;
    const auto accepted = beast_accept(req);
    // Every listener (serve, relay, proxy) refuses an invalid upgrade before its filters run and
    // before the proxy connects an upstream: what that check lets through, Beast's accept takes.
    const auto early = invalid_upgrade_response(req);
    if (early) {
        check(early->result() == http::status::bad_request || early->result() == http::status::upgrade_required,
              fmt::format("an invalid upgrade refused with {}", early->result_int()));
        check(!early->keep_alive(), "an invalid upgrade's refusal keeps the connection");
        return 0;
    }
    check(!accepted.ec, "the listener's check let through an upgrade Beast's accept refuses: " + accepted.ec.message());
    check(accepted.res.result_int() == 101, "Beast accepted without a 101");
    check(accepted.res[http::field::sec_websocket_extensions].empty(), "Beast's accept negotiated an extension itself");
    // permessage-deflate, as `serve --compress` chooses it: what the server answers, a client
    // reads as the same agreement (the parameters it names, and nothing it did not choose).
    std::vector<std::string_view> offers;
    const auto [first_ext, last_ext] = req.equal_range(http::field::sec_websocket_extensions);
    for (auto f = first_ext; f != last_ext; ++f) offers.emplace_back(f->value().data(), f->value().size());
    for (const int bits : {15, 9}) {
        const deflate_options ours{.enabled = true, .window_bits = bits, .no_context_takeover = bits == 9};
        const auto chosen = pmd::choose_offer(offers, ours);
        if (!chosen) continue;
        check(chosen->params.server_max_window_bits <= bits, "the server compresses with a larger window than it may");
        const auto read = pmd::parse_answer(chosen->response, deflate_options{.enabled = true});
        check(read.status == pmd::answer_status::accepted, "the client refuses the server's answer: " + read.error);
        check(read.params.server_no_context_takeover == chosen->params.server_no_context_takeover &&
                  read.params.client_no_context_takeover == chosen->params.client_no_context_takeover,
              "client and server disagree on context takeover: " + chosen->response);
        check(read.params.server_max_window_bits >= chosen->params.server_max_window_bits,
              "the client expects a smaller server window than the server uses: " + chosen->response);
    }
    // Our client accepts what the server answers to the key the request carried.
    check(!check_upgrade_answer(accepted.res, std::string(req[http::field::sec_websocket_key])),
          "the client refuses the server's answer to the same key");
    return 0;
}
