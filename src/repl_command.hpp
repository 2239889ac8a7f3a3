#pragma once
/// The pure part of the interactive console: what a typed line means, which
/// close codes may be sent, where history lives. No I/O, no readline.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace wsx {

/// One typed line, decoded.
struct repl_command {
    enum class kind {
        ignore,   ///< empty line: nothing to do
        text,     ///< send `argument` as a text message
        ping,     ///< send a ping carrying `argument`
        close,    ///< close with `close_code` and `close_reason`
        binary,   ///< send `argument` (decoded bytes) as a binary message
        file,     ///< send the content of the file named `argument` as a binary message
        stats,    ///< print the statistics
        quit,     ///< close normally and exit
        help,     ///< list the commands
        invalid,  ///< a mistake; `argument` says what is wrong
    };
    kind what = kind::ignore;
    std::string argument;
    int close_code = 1000;
    std::string close_reason;
};

/// A slash command as listed by /help and offered by tab completion.
struct repl_command_info {
    std::string_view name;     ///< "/ping"
    std::string_view args;     ///< "[data]", empty when it takes none
    std::string_view summary;  ///< one line
};

/// Every slash command, in the order /help lists them.
std::span<const repl_command_info> repl_commands() noexcept;

/// Decodes a typed line:
/// - "" is ignored; any other line not starting with '/' is text, sent as typed;
/// - "//x" is the text "/x" (how to send text that begins with a slash);
/// - "/name args" is a command; arguments are trimmed of surrounding blanks.
/// Mistakes (unknown command, bad close code, bad hex, text that is not UTF-8,
/// control payloads over 125 bytes...) come back as kind::invalid with a message.
repl_command parse_repl_line(std::string_view line);

/// True for the close codes an endpoint may put in a Close frame (RFC 6455
/// section 7.4 and the IANA registry): 1000-1003, 1007-1013 and 3000-4999.
/// 1004-1006 and 1015 are reserved for reporting, never sent.
bool is_sendable_close_code(int code) noexcept;

/// The history file used when none is given: $XDG_STATE_HOME/wsx/history, else
/// $HOME/.local/state/wsx/history. Pass the variables' values (null or empty when
/// unset); an XDG_STATE_HOME that is not absolute is ignored, as the XDG spec
/// says. Returns nullopt when neither gives a place.
std::optional<std::string> default_history_file(const char* xdg_state_home, const char* home);

/// "~" and "~/..." expanded with `home` (when non-empty); other paths unchanged.
std::string expand_home(std::string_view path, const char* home);

}  // namespace wsx
