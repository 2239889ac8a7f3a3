#include "exit_code.hpp"

namespace wsx {

std::string_view exit_code_name(exit_code c) noexcept {
    switch (c) {
    case exit_code::ok: return "ok";
    case exit_code::failure: return "failure";
    case exit_code::usage: return "usage";
    case exit_code::resolve: return "resolve";
    case exit_code::connect: return "connect";
    case exit_code::tls: return "tls";
    case exit_code::upgrade: return "upgrade";
    case exit_code::abnormal_close: return "abnormal-close";
    case exit_code::timeout: return "timeout";
    case exit_code::expectation: return "expectation";
    case exit_code::interrupted: return "interrupted";
    }
    return "unknown";
}

}  // namespace wsx
