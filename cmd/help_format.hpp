#pragma once
// How an option reads in `--help`, the man page and the completions: a metavariable named for
// what the value is (N, SIZE, DURATION, FILE) and a description that states its range, its
// choices and its default in words ("Deflate window bits, 9–15 (default 15)"), never CLI11's
// own notation (`N:INT in [9 - 15]=15`, `POLICY:{close,drop}`, `REQUIRED`, `...`).
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace wsx::cli {

/// The descriptions of the checks on `opt`, in order ("{a,b}" for CLI::IsMember,
/// "INT in [1 - 9]" for CLI::Range, "FILE" for CLI::ExistingFile).
std::vector<std::string> check_descriptions(const CLI::Option& opt);

/// The option's own type name without the check descriptions CLI11 appends to it
/// ("POLICY" of "POLICY:{close,drop}").
std::string base_type_name(const CLI::Option& opt);

/// The values a user may type when a check lists them (CLI::IsMember, CLI::Transformer,
/// CLI::CheckedTransformer); empty otherwise.
std::vector<std::string> option_choices(const CLI::Option& opt);

/// The bounds of a CLI::Range check, as written ("9", "15"; "1", "100" for 1.0 and 100.0).
std::optional<std::pair<std::string, std::string>> option_range(const CLI::Option& opt);

/// The metavariable: "N", "SIZE", "FILE", "URL" for a positional `url`; "" for a flag.
std::string value_name(const CLI::Option& opt);

/// The description with the range, the choices and the default appended where it does not
/// state them itself: "What to do when a client's queue is full (close or drop; default close)".
std::string option_help(const CLI::Option& opt);

/// The formatter for every `--help` of wsx (set on the root before its commands are added).
std::shared_ptr<CLI::Formatter> help_formatter();

}  // namespace wsx::cli
