#pragma once
/// Hints appended to connection errors, shared by the client and the load generator.
#include <string>

#include "net.hpp"

namespace wsx {

/// " (is a server listening on that port?)" for a refused connection (the proxy, when going
/// through one); "" for any other error.
std::string refused_hint(const error_code& ec, bool via_proxy);

}  // namespace wsx
