// What relay clients send (relay.cpp). The first byte picks the input:
//  'p': a text message of the JSON protocol (parse_relay_request), under a token's topic ACL;
//       'b' the same in a binary frame. A request taken must be one the relay can act on:
//       valid topic and addressee names, only what the ACL allows, binary data decoded exactly.
//  'w': the wire form messages take through Redis (relay_wire_decode): what it reads, written
//       again, reads the same.
//  'g': "PATTERN\nTOPIC": topic_matches against a plain recursive glob.
//  'u': a request target for the relay's upgrade check (path, ?id=, ?history=, ?since=).
// fuzz-options: -max_len=2048
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec.hpp"
#include "fuzz_support.hpp"
#include "relay.hpp"

namespace {

using namespace wsx;

void check(bool ok, const std::string& what) {
    if (!ok) fuzz::fail("relay_request_fuzz", what);
}

topic_acl acl_of(std::uint8_t which) {
    switch (which % 3) {
    case 0: return topic_acl{};  // no claim: everything
    case 1: return topic_acl{.all = false, .subscribe = {"news.*", "chat/?"}, .publish = {"chat/*"}};
    default: return topic_acl{.all = false, .subscribe = {}, .publish = {}};
    }
}

void protocol(std::string_view payload, bool binary, const topic_acl& acl) {
    const auto parsed = parse_relay_request(payload, binary, acl);
    if (const auto* bad = std::get_if<relay_request_error>(&parsed)) {
        check(!bad->error.empty(), "an error without a message");
        if (binary) check(bad->op.empty(), "a binary frame read as a request");
        // The reply is JSON: whatever the request held, it must encode (invalid UTF-8 replaced).
        nlohmann::json j = {{"type", "error"}, {"error", bad->error}, {"op", bad->op}, {"topic", bad->topic}};
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return;
    }
    check(!binary, "a binary frame was taken as a request");
    const auto& r = std::get<relay_request>(parsed);
    const auto j = nlohmann::json::parse(payload);  // it was read as JSON: it parses
    check(j.at("op") == r.op, "the op read is not the one sent");
    if (r.op == "send") {
        check(valid_name(r.to) && j.at("to") == r.to, "a direct message to an invalid or other addressee");
    } else {
        check(valid_name(r.topic) && j.at("topic") == r.topic, "a request for an invalid or other topic");
    }
    if (r.op == "subscribe" || r.op == "presence") check(acl.may_subscribe(r.topic), "a topic the ACL forbids to read");
    if (r.op == "publish") check(acl.may_publish(r.topic), "a topic the ACL forbids to write");
    if (r.op != "subscribe") check(!r.replay, "history asked for outside subscribe");
    if (r.op == "publish" || r.op == "send") {
        const auto& d = j.at("data");
        if (r.binary) {
            check(j.at("binary") == true && d.is_string(), "binary data that was not asked for as such");
            // Decoded exactly: encoding it again gives base64 that decodes the same.
            check(base64_decode(base64_encode(r.data)) == r.data, "binary data does not survive base64");
        } else {
            check(d.is_string() ? r.data == d.get<std::string>() : r.data == d.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "text data changed on the way");
        }
    }
}

void wire(std::string_view w) {
    std::string instance;
    const auto m = relay_wire_decode(w, instance);
    if (!m) return;
    const std::string again = relay_wire_encode(*m, instance);
    std::string instance2;
    const auto m2 = relay_wire_decode(again, instance2);
    check(m2.has_value(), "a decoded message, encoded again, does not decode");
    check(instance2 == instance && m2->type == m->type && m2->topic == m->topic && m2->id == m->id && m2->from == m->from &&
              m2->binary == m->binary && m2->data == m->data,
          "a decoded message, encoded again, decodes differently");
    relay_envelope(*m);  // the JSON clients receive: must not throw on any bytes
}

/// Shell-style glob, the obvious way: '*' any run, '?' one byte.
bool glob(std::string_view p, std::string_view t) {
    if (p.empty()) return t.empty();
    if (p[0] == '*') return glob(p.substr(1), t) || (!t.empty() && glob(p, t.substr(1)));
    if (t.empty()) return false;
    return (p[0] == '?' || p[0] == t[0]) && glob(p.substr(1), t.substr(1));
}

void pattern(std::string_view s) {
    const auto nl = s.find('\n');
    if (nl == std::string_view::npos) return;
    const auto p = s.substr(0, nl), t = s.substr(nl + 1);
    // The plain glob takes exponential time on many stars: patterns and topics are short anyway
    // (a topic is at most 256 bytes), so keep to what it can do.
    if (p.size() > 24 || t.size() > 48 || std::count(p.begin(), p.end(), '*') > 4) return;
    check(topic_matches(p, t) == glob(p, t), fmt::format("topic_matches('{}', '{}') is wrong", p, t));
}

void upgrade_target(std::string_view target, std::uint8_t opts) {
    static relay_service service(relay_options{.control_path = "/control"});
    http_request req{http::verb::get, std::string(target), 11};
    if (opts & 1) req.set(http::field::sec_websocket_protocol, relay_subprotocol);
    peer_info peer;
    std::string subprotocol;
    const auto refusal = service.check_upgrade(req, peer, subprotocol);
    if (refusal) return;
    const std::string& mode = peer.vars["relay.mode"];
    check(mode == "protocol" || mode == "raw", "an upgrade in no relay mode");
    if (mode == "raw") check(valid_name(peer.vars["relay.topic"]), "a raw connection to an invalid topic");
    if (!peer.vars["relay.id"].empty()) check(valid_name(peer.vars["relay.id"]), "an invalid identity taken");
    for (const char* k : {"relay.history", "relay.since"}) {
        const std::string& v = peer.vars[k];
        if (v.empty() || v == "all") continue;
        // make_handler reads these back as 64-bit numbers, without looking.
        std::uint64_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        check(ec == std::errc() && end == v.data() + v.size(), fmt::format("{}={} is no 64-bit number", k, v));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::input in(data, size);
    const std::uint8_t mode = in.byte();
    switch (mode) {
    case 'p':
    case 'b': {
        const std::uint8_t acl = in.byte();
        protocol(in.rest(), mode == 'b', acl_of(acl));
        break;
    }
    case 'w': wire(in.rest()); break;
    case 'g': pattern(in.rest()); break;
    case 'u': {
        const std::uint8_t opts = in.byte();
        upgrade_target(in.rest(), opts);
        break;
    }
    default: break;
    }
    return 0;
}
