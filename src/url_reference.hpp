#pragma once
/// Parsing a URL or relative reference with Boost.URL, its IPv4 quirk corrected.
#include <string>
#include <string_view>

#include <boost/url/grammar/error.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace wsx {

/// boost::urls::parse_uri_reference, except that a host starting with an IPv4 address
/// ("10.0.0.1.nip.io", "1.2.3.4x:7/path") is read whole. Boost.URL 1.81 takes the address as
/// the host and the rest of the authority as the path, though the authority runs to the first
/// '/', '?' or '#' (RFC 3986 section 3.2); such a host is a name, and is read again with its
/// first digit escaped, which an IPv4 address cannot hold. And an authority followed by
/// anything but '/', '?', '#' or the end ("host:7x/", a port that is not all digits) is
/// grammar::error::invalid, where Boost.URL would take the digits as the port and the rest as
/// the path. The view may point into `storage`.
boost::urls::result<boost::urls::url_view> parse_url_reference(std::string_view text, std::string& storage);

}  // namespace wsx
