#pragma once
/// Header fields that may be split over several lines of a message.
#include <string>

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/fields.hpp>

namespace wsx {

/// Every field named `name` of a message, joined into one comma-separated list (RFC 9110
/// section 5.3): an answer may split Sec-WebSocket-Extensions over several fields.
inline std::string joined_fields(const boost::beast::http::fields& fields, boost::beast::http::field name) {
    std::string out;
    const auto [first, last] = fields.equal_range(name);
    for (auto f = first; f != last; ++f) {
        if (!out.empty()) out += ", ";
        out.append(f->value().data(), f->value().size());
    }
    return out;
}

}  // namespace wsx
