#pragma once
// The HTTP side of a listener's connection (requests, refusals, the upgrade, the session's
// start), as templates over the transport layer. The heaviest code of the build: three units
// instantiate it, one layer each (server_tcp.cpp, server_tls.cpp, server_unix.cpp), so that
// they compile side by side. Included by those three only.

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/beast/http/rfc7230.hpp>

#include "server.hpp"

namespace wsx {

template <class Layer>
net::awaitable<void> server::refuse(websocket::stream<Layer>& ws, http_response res, unsigned version) {
    // The connection ends after a refusal, and the response says so.
    res.version(version);
    res.keep_alive(false);
    error_code ec;
    co_await http::async_write(ws.next_layer().next_layer(), res, net::redirect_error(net::use_awaitable, ec));
}

template <class Layer>
net::awaitable<void> server::serve_http(websocket::stream<Layer>& ws, beast::flat_buffer& buffer, const peer_info& peer) {
    auto& lowest = beast::get_lowest_layer(ws);
    for (;;) {
        http::request_parser<http::string_body> parser;
        limit_request_parser(parser, opts_.max_request_bytes);
        lowest.expires_after(opts_.handshake_timeout);
        error_code ec;
        co_await http::async_read(ws.next_layer(), buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (ec == http::error::header_limit || ec == http::error::body_limit) {
                if (opts_.on_refused) opts_.on_refused("request_too_large");
                co_await refuse(ws, make_response(http::status::request_header_fields_too_large, "request too large"), 11);
            } else if (auto res = malformed_request_response(ec)) {
                if (opts_.on_refused) opts_.on_refused("malformed_request");
                co_await refuse(ws, std::move(*res), 11);
            }
            co_return;  // timeout or the client left: nothing more to say
        }
        http_request req = parser.release();
        if (!websocket::is_upgrade(req)) {
            http_answer answer = http_ ? http_(req, peer)
                                       : http_answer(make_response(http::status::upgrade_required,
                                                                   "this is a WebSocket endpoint: connect with ws://"));
            if (auto* file = std::get_if<file_response>(&answer)) {
                file->version(req.version());
                file->keep_alive(req.keep_alive() && file->keep_alive());
                http::serializer<false, http::file_body> sr(*file);
                while (!sr.is_done()) {
                    // A bound on a stall, not on the download: a slow client gets the whole file.
                    lowest.expires_after(opts_.handshake_timeout);
                    co_await http::async_write_some(ws.next_layer().next_layer(), sr,
                                                    net::redirect_error(net::use_awaitable, ec));
                    if (ec) co_return;
                }
                if (!file->keep_alive()) co_return;
                continue;
            }
            auto& res = std::get<http_response>(answer);
            if (res.result() == http::status::upgrade_required) res.set(http::field::upgrade, "websocket");
            res.version(req.version());
            res.keep_alive(req.keep_alive() && res.keep_alive());
            co_await http::async_write(ws.next_layer().next_layer(), res, net::redirect_error(net::use_awaitable, ec));
            if (ec || !res.keep_alive()) co_return;
            continue;
        }
        // Before the filters: they read the fields this checks (Authorization, Origin), and none
        // should spend anything (a slot, an upstream connection) on a request the upgrade refuses.
        if (auto invalid = invalid_upgrade_response(req)) {
            if (opts_.on_refused) opts_.on_refused("invalid_upgrade");
            co_await refuse(ws, std::move(*invalid), req.version());
            co_return;
        }
        std::string subprotocol;
        peer_info upgraded = peer;
        for (const auto& filter : filters_) {
            if (auto refusal = filter(req, upgraded, subprotocol)) {
                upgraded.holds.clear();  // release any slot taken by an earlier filter now
                co_await refuse(ws, std::move(*refusal), req.version());
                co_return;
            }
        }
        if (async_filter_) {
            std::optional<http_response> refusal;
            try {
                refusal = co_await async_filter_(req, upgraded, subprotocol);
            } catch (const std::exception& e) {
                refusal = make_response(http::status::internal_server_error, e.what());
            }
            if (refusal) {
                upgraded.holds.clear();
                upgraded.attachment.reset();
                co_await refuse(ws, std::move(*refusal), req.version());
                co_return;
            }
        }
        lowest.expires_never();
        websocket::stream_base::timeout to{};
        to.handshake_timeout = opts_.handshake_timeout;
        to.idle_timeout = websocket::stream_base::none();
        to.keep_alive_pings = false;
        ws.set_option(to);
        // permessage-deflate is negotiated here, not by Beast (whose accept only checks the
        // request and writes the answer): the session compresses with the project's own codec.
        std::vector<std::string_view> offers;
        const auto [first_ext, last_ext] = req.equal_range(http::field::sec_websocket_extensions);
        for (auto f = first_ext; f != last_ext; ++f) offers.emplace_back(f->value().data(), f->value().size());
        const auto deflate = pmd::choose_offer(offers, opts_.deflate);
        std::string extensions = deflate ? deflate->response : std::string();
        ws.set_option(websocket::stream_base::decorator([subprotocol, extensions,
                                                         extra = &opts_.response_headers](websocket::response_type& res) {
            res.set(http::field::server, "wsx/" WSX_VERSION);
            // A refusal of the accept's own (e.g. HTTP/1.2): the connection ends after it.
            if (res.result() != http::status::switching_protocols) {
                res.keep_alive(false);
                return;
            }
            if (!subprotocol.empty()) res.set(http::field::sec_websocket_protocol, subprotocol);
            if (!extensions.empty()) res.set(http::field::sec_websocket_extensions, extensions);
            // The options refuse the handshake's own fields, so only Server can be replaced here.
            for (const auto& [name, value] : *extra)
                if (beast::iequals(name, "Server")) res.erase(http::field::server);
            for (const auto& [name, value] : *extra) res.insert(name, value);
        }));
        co_await ws.async_accept(req, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        // Frames are parsed by the session itself and Beast's stream state is let go; bytes the
        // client sent behind its upgrade request go along.
        auto s = std::make_shared<session<Layer>>(
            std::move(ws.next_layer().next_layer()), beast::buffers_to_string(buffer.data()), opts_.session,
            beast::role_type::server,
            deflate ? std::optional<pmd::agreement>(deflate->params) : std::nullopt);
        if (opts_.tls) s->hold(opts_.tls);
        for (auto& h : upgraded.holds) s->hold_until_close(std::move(h));
        upgraded.holds.clear();
        auto handler = factory_(s, req, upgraded);
        if (handler) s->start(std::move(handler));
        co_return;
    }
}

}  // namespace wsx
