#include "permessage_deflate.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/zlib/deflate_stream.hpp>
#include <boost/beast/zlib/inflate_stream.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "codec.hpp"

namespace wsx::pmd {

namespace zlib = boost::beast::zlib;

namespace {
// RFC 9110 5.6.2: tchar.
bool is_tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
}  // namespace

std::optional<std::vector<extension>> parse_extensions(std::string_view text) {
    std::vector<extension> out;
    std::size_t i = 0;
    const std::size_t n = text.size();
    auto skip_ows = [&] {
        while (i < n && (text[i] == ' ' || text[i] == '\t')) ++i;
    };
    auto token = [&](std::string& t) {
        const std::size_t start = i;
        while (i < n && is_tchar(text[i])) ++i;
        t.assign(text.substr(start, i - start));
        return i > start;
    };
    auto quoted = [&](std::string& t) {  // at the opening quote
        t.clear();
        for (++i; i < n; ++i) {
            const char c = text[i];
            if (c == '"') {
                ++i;
                return true;
            }
            if (c == '\\') {
                if (++i == n) return false;
                t.push_back(text[i]);
            } else if (c == '\t' || c == ' ' || (static_cast<unsigned char>(c) >= 0x21 && c != 0x7f)) {
                t.push_back(c);
            } else {
                return false;
            }
        }
        return false;
    };
    for (;;) {
        skip_ows();
        if (i < n && text[i] == ',') {  // an empty element
            ++i;
            continue;
        }
        if (i == n) break;
        extension e;
        if (!token(e.name)) return std::nullopt;
        for (;;) {
            skip_ows();
            if (i == n || text[i] == ',') break;
            if (text[i] != ';') return std::nullopt;
            ++i;
            skip_ows();
            std::pair<std::string, std::optional<std::string>> param;
            if (!token(param.first)) return std::nullopt;
            skip_ows();
            if (i < n && text[i] == '=') {
                ++i;
                skip_ows();
                auto& value = param.second.emplace();
                if (i < n && text[i] == '"') {
                    if (!quoted(value)) return std::nullopt;
                } else if (!token(value)) {
                    return std::nullopt;
                }
            }
            e.params.push_back(std::move(param));
        }
        out.push_back(std::move(e));
        if (i < n) ++i;  // the comma
    }
    return out;
}

std::string client_offer(const deflate_options& d) {
    std::string s = "permessage-deflate";
    if (d.window_bits < 15) s += fmt::format("; server_max_window_bits={0}; client_max_window_bits={0}", d.window_bits);
    else s += "; client_max_window_bits";
    if (d.no_context_takeover) s += "; server_no_context_takeover; client_no_context_takeover";
    return s;
}

namespace {
// A window-bits value: 1*DIGIT (RFC 7692 section 7.1.2; a quoted one arrives unquoted).
int window_bits_value(std::string_view v) {
    if (v.empty() || v.size() > 2 || v.find_first_not_of("0123456789") != std::string_view::npos) return -1;
    int n = 0;
    for (char c : v) n = n * 10 + (c - '0');
    return n;
}
}  // namespace

answer parse_answer(std::string_view header, const deflate_options& offered) {
    answer a;
    auto invalid = [&](std::string why) {
        a.status = answer_status::invalid;
        a.error = std::move(why);
        return a;
    };
    std::size_t trimmed = header.find_first_not_of(" \t");
    if (trimmed == std::string_view::npos) return a;  // no extension: declined
    const auto list = parse_extensions(header);
    if (!list) return invalid(fmt::format("cannot read Sec-WebSocket-Extensions: {}", escape_for_terminal(header)));
    bool seen = false;
    for (const auto& ext : *list) {
        const std::string_view name = ext.name;
        if (!boost::beast::iequals(name, "permessage-deflate"))
            return invalid(fmt::format("the server enabled extension '{}', which was not offered", escape_for_terminal(name)));
        if (seen) return invalid("the server answered permessage-deflate twice");
        seen = true;
        bool snct = false, cnct = false, smwb = false, cmwb = false;
        for (const auto& param : ext.params) {
            const std::string_view key = param.first;
            const std::string_view value = param.second ? std::string_view(*param.second) : std::string_view();
            const bool has_value = param.second.has_value();
            auto once = [&](bool& flag) {
                if (flag) return false;
                flag = true;
                return true;
            };
            if (boost::beast::iequals(key, "server_no_context_takeover") ||
                boost::beast::iequals(key, "client_no_context_takeover")) {
                const bool server = boost::beast::iequals(key, "server_no_context_takeover");
                if (!once(server ? snct : cnct)) return invalid(fmt::format("{} appears twice", key));
                if (has_value) return invalid(fmt::format("{} takes no value", key));
                (server ? a.params.server_no_context_takeover : a.params.client_no_context_takeover) = true;
            } else if (boost::beast::iequals(key, "server_max_window_bits") ||
                       boost::beast::iequals(key, "client_max_window_bits")) {
                const bool server = boost::beast::iequals(key, "server_max_window_bits");
                if (!once(server ? smwb : cmwb)) return invalid(fmt::format("{} appears twice", key));
                const int bits = window_bits_value(value);
                if (bits < 8 || bits > 15)
                    return invalid(fmt::format("{}={} is not a window size from 8 to 15", key, escape_for_terminal(value)));
                if (server) {
                    a.params.server_max_window_bits = bits;
                } else {
                    // 8 (a 256-byte window) is compressed without back-references (deflater).
                    a.params.client_max_window_bits = bits;
                }
            } else {
                return invalid(fmt::format("unknown parameter '{}'", escape_for_terminal(key)));
            }
        }
    }
    if (!seen) return invalid(fmt::format("cannot read Sec-WebSocket-Extensions: {}", escape_for_terminal(header)));
    // Never use a larger window than we offered, whatever the answer says.
    a.params.client_max_window_bits = std::min(a.params.client_max_window_bits, offered.window_bits);
    if (offered.no_context_takeover) a.params.client_no_context_takeover = true;
    a.status = answer_status::accepted;
    return a;
}

std::optional<acceptance> choose_offer(const std::vector<std::string_view>& fields, const deflate_options& ours) {
    if (!ours.enabled) return std::nullopt;
    for (const auto field : fields) {
        const auto list = parse_extensions(field);
        if (!list) continue;  // a field that is not an extension list offers nothing
        for (const auto& ext : *list) {
            if (!boost::beast::iequals(ext.name, "permessage-deflate")) continue;
            bool snct = false, cnct = false, smwb = false, cmwb = false, ok = true;
            int server_bits = 15, client_bits = 15;
            for (const auto& param : ext.params) {
                const std::string_view key = param.first;
                const std::string_view value = param.second ? std::string_view(*param.second) : std::string_view();
            const bool has_value = param.second.has_value();
                auto once = [&](bool& flag) { return !std::exchange(flag, true); };
                if (boost::beast::iequals(key, "server_no_context_takeover")) {
                    ok = once(snct) && !has_value;
                } else if (boost::beast::iequals(key, "client_no_context_takeover")) {
                    ok = once(cnct) && !has_value;
                } else if (boost::beast::iequals(key, "server_max_window_bits")) {
                    // A value is required here (RFC 7692 7.1.2.1); 8 is a window zlib cannot
                    // compress with (it would use 512 bytes, more than the client allows).
                    server_bits = window_bits_value(value);
                    ok = once(smwb) && server_bits >= 9 && server_bits <= 15;
                } else if (boost::beast::iequals(key, "client_max_window_bits")) {
                    // Without a value: the client can take a smaller window if asked.
                    client_bits = has_value ? window_bits_value(value) : 15;
                    ok = once(cmwb) && client_bits >= 8 && client_bits <= 15;
                } else {
                    ok = false;  // a parameter this server does not know declines the offer
                }
                if (!ok) break;
            }
            if (!ok) continue;
            acceptance a;
            a.response = "permessage-deflate";
            auto& p = a.params;
            p.server_no_context_takeover = snct || ours.no_context_takeover;
            p.client_no_context_takeover = cnct || ours.no_context_takeover;
            // Our window: never more than the client allows, nor than we were told to use. It
            // is named only when the client asked: without the parameter any window will do.
            p.server_max_window_bits = std::min(server_bits, ours.window_bits);
            if (smwb) a.response += fmt::format("; server_max_window_bits={}", p.server_max_window_bits);
            // The client's window: named only when the client said it can take a smaller one.
            p.client_max_window_bits = std::min(client_bits, ours.window_bits);
            if (cmwb && p.client_max_window_bits < 15)
                a.response += fmt::format("; client_max_window_bits={}", p.client_max_window_bits);
            if (p.server_no_context_takeover) a.response += "; server_no_context_takeover";
            if (p.client_no_context_takeover) a.response += "; client_no_context_takeover";
            return a;
        }
    }
    return std::nullopt;
}

codec::codec(const agreement& a, bool client)
    : out(std::make_unique<deflater>(client ? a.client_max_window_bits : a.server_max_window_bits,
                                     client ? a.client_no_context_takeover : a.server_no_context_takeover)),
      in(std::make_unique<inflater>(client ? a.server_no_context_takeover : a.client_no_context_takeover)) {}

// ---------------------------------------------------------------------------------------------

struct deflater::impl {
    zlib::deflate_stream zo;
    bool reset_each = false;
};

deflater::deflater(int window_bits, bool reset_each_message) : impl_(std::make_unique<impl>()) {
    // Level 8 and memLevel 4, as Beast's permessage_deflate defaults (wsx connect and serve):
    // good compression at about 64 KiB of state per connection for a 15-bit window.
    // zlib cannot deflate with a 256-byte window (8 bits): it would use 512 bytes, and the peer
    // could not follow a match from further back. Huffman coding alone refers back to nothing,
    // so its output is right for any window (RFC 7692 7.1.2.2 lets a server ask for 8).
    if (window_bits < 9) impl_->zo.reset(8, 9, 4, zlib::Strategy::huffman);
    else impl_->zo.reset(8, window_bits, 4, zlib::Strategy::normal);
    impl_->reset_each = reset_each_message;
}
deflater::~deflater() = default;

void deflater::compress(std::string_view message, std::string& out) {
    const std::size_t at = out.size();
    std::size_t used = at;
    out.resize(at + impl_->zo.upper_bound(message.size()) + 16);
    zlib::z_params zs;
    zs.next_in = message.data();
    zs.avail_in = message.size();
    for (;;) {
        if (out.size() - used < 64) out.resize(out.size() * 2 + 64);
        zs.next_out = out.data() + used;
        zs.avail_out = out.size() - used;
        const std::size_t before = zs.total_out;
        boost::beast::error_code ec;
        impl_->zo.write(zs, zlib::Flush::sync, ec);
        used += zs.total_out - before;
        // A sync flush is complete once it leaves output space unused.
        if (zs.avail_in == 0 && zs.avail_out > 0) break;
        if (ec && ec != zlib::error::need_buffers) break;
    }
    // A sync flush ends with an empty stored block, 00 00 ff ff, which RFC 7692 leaves off.
    if (used - at >= 4) used -= 4;
    out.resize(used);
    // With nothing to compress since the last flush, zlib writes nothing at all; but the receiver
    // appends 00 00 ff ff to whatever arrives, which alone would start a stored block and put it
    // out of step with every later message. An empty message is a lone 0x00 instead (RFC 7692
    // section 7.2.3.6): with the four octets added back, a whole empty stored block.
    if (used == at) out.push_back('\0');
    if (impl_->reset_each) impl_->zo.reset();
}

struct inflater::impl {
    zlib::inflate_stream zi;
    bool reset_each = false;
};

inflater::inflater(bool reset_each_message) : impl_(std::make_unique<impl>()) {
    // A 15-bit window reads data deflated with any smaller one.
    impl_->zi.reset(15);
    impl_->reset_each = reset_each_message;
}
inflater::~inflater() = default;

bool inflater::decompress(std::string_view compressed, std::string& out, std::uint64_t limit) {
    static constexpr char tail[4] = {'\x00', '\x00', '\xff', '\xff'};
    out.resize(std::max<std::size_t>(256, compressed.size() * 4));
    std::size_t used = 0;
    bool ended = false;  // the sender ended its deflate stream (a final block): start afresh next time
    int data_type = 0;   // zlib's data_type after the last write: bit 128 = between blocks
    auto feed = [&](const char* data, std::size_t n, zlib::Flush flush) {
        zlib::z_params zs;
        zs.next_in = data;
        zs.avail_in = n;
        for (;;) {
            if (out.size() - used < 1024) out.resize(out.size() * 2);
            zs.next_out = out.data() + used;
            zs.avail_out = out.size() - used;
            const std::size_t before = zs.total_out, before_in = zs.avail_in;
            boost::beast::error_code ec;
            impl_->zi.write(zs, flush, ec);
            data_type = zs.data_type;
            used += zs.total_out - before;
            if (used > limit) return false;
            if (ec == zlib::error::end_of_stream) {
                // RFC 7692 section 7.2.3.4: what may follow a final block is the start of an
                // empty stored block, which only serves receivers that carry on; we start afresh.
                ended = true;
                return true;
            }
            if (ec == zlib::error::need_buffers) {
                if (zs.avail_in == 0) return true;  // everything consumed, nothing more to produce
                if (zs.avail_out > 0 && zs.avail_in == before_in && zs.total_out == before) return false;  // stuck
                continue;
            }
            if (ec) return false;
            if (zs.avail_in == 0 && zs.avail_out > 0) return true;
        }
    };
    bool ok = feed(compressed.data(), compressed.size(), zlib::Flush::sync);
    // The tail is the end of an empty stored block (RFC 7692 section 7.2.2), so after it the
    // inflater must stand between blocks. It does not when the message was not whole deflate
    // blocks: an empty payload (the tail is then an unfinished stored-block header), or one cut
    // inside a block. Taking that as a message would leave the inflater inside the header, and
    // the next message would fail or inflate to garbage. Flush::block stops between blocks, where
    // zlib sets bit 128 of data_type.
    if (ok && !ended) ok = feed(tail, sizeof tail, zlib::Flush::block) && (ended || (data_type & 128) != 0);
    out.resize(std::min(used, out.size()));
    if (impl_->reset_each || ended || !ok) impl_->zi.reset(15);
    return ok;
}

}  // namespace wsx::pmd
