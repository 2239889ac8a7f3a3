#include "permessage_deflate.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/zlib/deflate_stream.hpp>
#include <boost/beast/zlib/inflate_stream.hpp>
#include <fmt/format.h>

#include "codec.hpp"

namespace wsx::pmd {

namespace zlib = boost::beast::zlib;

std::string client_offer(const deflate_options& d) {
    std::string s = "permessage-deflate";
    if (d.window_bits < 15) s += fmt::format("; server_max_window_bits={0}; client_max_window_bits={0}", d.window_bits);
    else s += "; client_max_window_bits";
    if (d.no_context_takeover) s += "; server_no_context_takeover; client_no_context_takeover";
    return s;
}

namespace {
// A window-bits value: 1*DIGIT, possibly quoted (RFC 7692 section 7.1.2).
int window_bits_value(std::string_view v) {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
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
    bool seen = false;
    for (const auto& ext : boost::beast::http::ext_list(header)) {
        const std::string_view name(ext.first.data(), ext.first.size());
        if (!boost::beast::iequals(name, "permessage-deflate"))
            return invalid(fmt::format("the server enabled extension '{}', which was not offered", escape_for_terminal(name)));
        if (seen) return invalid("the server answered permessage-deflate twice");
        seen = true;
        bool snct = false, cnct = false, smwb = false, cmwb = false;
        for (const auto& param : ext.second) {
            const std::string_view key(param.first.data(), param.first.size());
            const std::string_view value(param.second.data(), param.second.size());
            auto once = [&](bool& flag) {
                if (flag) return false;
                flag = true;
                return true;
            };
            if (boost::beast::iequals(key, "server_no_context_takeover") ||
                boost::beast::iequals(key, "client_no_context_takeover")) {
                const bool server = boost::beast::iequals(key, "server_no_context_takeover");
                if (!once(server ? snct : cnct)) return invalid(fmt::format("{} appears twice", key));
                if (!value.empty()) return invalid(fmt::format("{} takes no value", key));
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
                    // zlib cannot deflate with a 256-byte window (it silently uses 512).
                    if (bits < 9) return invalid("client_max_window_bits=8 asks for a window wsx cannot compress with");
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

// ---------------------------------------------------------------------------------------------

struct deflater::impl {
    zlib::deflate_stream zo;
    bool reset_each = false;
};

deflater::deflater(int window_bits, bool reset_each_message) : impl_(std::make_unique<impl>()) {
    // Level 8 and memLevel 4, as Beast's permessage_deflate defaults (wsx connect and serve):
    // good compression at about 64 KiB of state per connection for a 15-bit window.
    impl_->zo.reset(8, window_bits, 4, zlib::Strategy::normal);
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
    auto feed = [&](const char* data, std::size_t n) {
        zlib::z_params zs;
        zs.next_in = data;
        zs.avail_in = n;
        for (;;) {
            if (out.size() - used < 1024) out.resize(out.size() * 2);
            zs.next_out = out.data() + used;
            zs.avail_out = out.size() - used;
            const std::size_t before = zs.total_out, before_in = zs.avail_in;
            boost::beast::error_code ec;
            impl_->zi.write(zs, zlib::Flush::sync, ec);
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
    bool ok = feed(compressed.data(), compressed.size());
    if (ok && !ended) ok = feed(tail, sizeof tail);
    out.resize(std::min(used, out.size()));
    if (impl_->reset_each || ended || !ok) impl_->zi.reset(15);
    return ok;
}

}  // namespace wsx::pmd
