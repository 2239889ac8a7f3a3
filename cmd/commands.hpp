#pragma once
// The subcommand table: each cmd/<name>.cpp defines its options on a CLI11 app and
// returns the function that validates them and runs the command.
#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

namespace wsx::cli {

using runner = std::function<int()>;

struct command {
    const char* name;
    const char* summary;
    runner (*setup)(CLI::App& app);
};

struct doc_section;
/// Prose sections of the manual that no option carries (exit status, environment).
std::vector<doc_section> manual_sections();

runner setup_connect(CLI::App& app);
runner setup_serve(CLI::App& app);
runner setup_bench(CLI::App& app);
runner setup_relay(CLI::App& app);
runner setup_proxy(CLI::App& app);

/// Problems found while validating options; all are reported together.
class problems {
public:
    void add(std::string p) { list_.push_back(std::move(p)); }
    /// Prints each problem as `wsx: error: ...` and returns true when there were any.
    bool report(const std::string& command) const;

private:
    std::vector<std::string> list_;
};

/// Option parsing helpers shared by subcommands: they record a problem and return a default.
std::chrono::nanoseconds duration_arg(problems& p, const std::string& option, const std::string& value);
std::uint64_t size_arg(problems& p, const std::string& option, const std::string& value);
/// False (and a problem naming the option, the path and why) when `path` cannot be read.
bool readable_file(problems& p, const std::string& option, const std::string& path);
/// `value` of a --header option ('Name: value', blanks after the colon skipped) as (name,
/// value); nullopt and a problem when the name is not an RFC 9110 token or the value holds a
/// line break or NUL.
std::optional<std::pair<std::string, std::string>> header_arg(problems& p, const std::string& value);
/// A secret given inline (`option`, e.g. --token, as `value`) or in a file (`file_option`, e.g.
/// --token-file, naming `file`): `value` when no file is given, else the file's one line (see
/// read_secret_file in secret_file.hpp); a one-line warning on stderr when other users may read
/// the file. Problems: both given (the empty string when either is), a file that cannot be used.
std::string secret_arg(problems& p, const std::string& option, const std::string& value, const std::string& file_option,
                       const std::string& file);
/// The environment variable `name`; empty when it is unset or empty.
std::string env_secret(const char* name);
/// A whole number in [lo, hi] ("" gives 0, for "not given"); `unset` says what leaving the
/// option out means, for the error message.
std::uint64_t count_arg(problems& p, const std::string& option, const std::string& value, std::uint64_t lo,
                        std::uint64_t hi, std::string_view unset);

}  // namespace wsx::cli
