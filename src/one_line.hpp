#pragma once
/// Remote text quoted inside a one-line message (an error naming a server's Location, a URL):
/// escaped for a terminal (escape_for_terminal), with its line breaks and tabs written as \n
/// and \t, so that the message stays one line.
#include <string>
#include <string_view>

#include "codec.hpp"

namespace wsx {

inline std::string escape_one_line(std::string_view text) {
    std::string out;
    for (const char c : escape_for_terminal(text)) {
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else out += c;
    }
    return out;
}

}  // namespace wsx
