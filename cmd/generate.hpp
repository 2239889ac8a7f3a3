#pragma once
// One source for `--help`, the man page and the shell completions: everything here is
// derived by walking the CLI11 definitions, so a new subcommand or option shows up in
// all of them without extra code. The generated files are committed (man/wsx.1,
// completions/wsx.bash, completions/_wsx, completions/wsx.fish) and
// tests/e2e/docs_drift_test.py fails when they no longer match `wsx generate`.
//
// What the walk sees:
// - every subcommand with a non-empty name and a non-empty group, recursively; a
//   subcommand put in group "" (like `generate` itself) is hidden everywhere;
// - every option whose group is non-empty (group "" hides it, as in `--help`), including
//   the options of unnamed option groups, which are merged into their command;
// - an option's value kind, from its type name and the descriptions of its checks:
//     file       the type name or a check is FILE, PATH, PATH(existing) or PATH(non-existing), i.e.
//                `->check(CLI::ExistingFile)`, `CLI::ExistingPath`, `CLI::NonexistentPath`,
//                or `->type_name("FILE")` / `->type_name("PATH")`;
//     directory  the type name or a check is DIR (`CLI::ExistingDirectory`, `->type_name("DIR")`);
//     choices    a check is a set `{a,b,c}` (`CLI::IsMember`), a map `{a->1,b->2}`
//                (`CLI::Transformer`) or `value in {...} OR {...}` (`CLI::CheckedTransformer`);
//                the user-facing names are completed;
//     text       anything else (no completion);
// - "may be repeated": options holding a vector, and flags that count (`add_flag` on an
//   integer, multi-option policy TakeAll).
//
// Output is deterministic (no dates, no commits, no paths): only the definitions and the version
// number matter. `generate man --identity` adds the build's identity and date to the .TH line,
// for the page that is installed with the binary (the build writes it; see CMakeLists.txt).
// The root command is always called "wsx" in the output, whatever argv[0] was.

#include <CLI/CLI.hpp>

#include <array>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace wsx::cli {

/// A hand-written man page section appended after the generated ones
/// (e.g. "EXIT STATUS", "ENVIRONMENT", "EXAMPLES").
/// `body` is plain text: paragraphs are separated by blank lines; a line starting with
/// two spaces is kept verbatim (examples, tables) with the two spaces removed.
struct doc_section {
    std::string title;
    std::string body;
};

/// Writes the wsx(1) man page (roff, man macros): NAME, SYNOPSIS, DESCRIPTION, COMMANDS,
/// OPTIONS of the root, one section per visible subcommand ("WSX CONNECT", ...) with its
/// description, arguments, options by group and footer, then `extra` in order, with EXAMPLES
/// (the "Examples:" block that opens a command's footer, per command) before SEE ALSO.
/// The root description's first line (without a leading "wsx: ") becomes the NAME line; the
/// root footer is added to DESCRIPTION.
/// With `identity`, the .TH line carries the date and "wsx VERSION (COMMIT, BUILD TYPE)";
/// without, no date and "wsx VERSION".
void write_man(const CLI::App& root, const std::vector<doc_section>& extra, std::ostream& out,
               bool identity = false);

/// Writes a bash completion script (`source` it, or install as
/// /usr/share/bash-completion/completions/wsx). Needs bash 4; does not need bash-completion.
void write_bash(const CLI::App& root, std::ostream& out);

/// Writes a zsh completion function (install as `_wsx` somewhere in $fpath).
void write_zsh(const CLI::App& root, std::ostream& out);

/// Writes fish completions (install as ~/.config/fish/completions/wsx.fish).
void write_fish(const CLI::App& root, std::ostream& out);

/// The accepted values of `wsx generate WHAT`.
inline constexpr std::array<std::string_view, 4> generate_targets{"man", "bash", "zsh", "fish"};

/// Writes the output named by `what` (one of `generate_targets`) to `out`.
/// `extra` and `identity` are only used by "man" (see write_man). Throws std::invalid_argument for an unknown name.
void generate(std::string_view what, const CLI::App& root, const std::vector<doc_section>& extra,
              std::ostream& out, bool identity = false);

/// The hidden `generate` subcommand and what it does once parsing is over.
struct generate_command {
    CLI::App* app;             ///< the subcommand, owned by the root app
    std::function<int()> run;  ///< writes the selected output to stdout; returns the exit status
};

/// Adds the hidden subcommand `generate WHAT` (WHAT in man|bash|zsh|fish) to `root`.
/// `extra` holds the hand-written man sections (EXIT STATUS, ENVIRONMENT, ...).
/// Like the other commands it only parses; the returned `run` does the work, so main wires
/// it the same way:
///     auto gen = cli::add_generate_command(app, man_sections);
///     gen.app->callback([&run, r = gen.run] { run = r; });
/// `run` returns 0, or 1 after printing `wsx: error: ...` when stdout cannot be written.
/// The tree is walked when `run` runs, so commands added later are included too.
generate_command add_generate_command(CLI::App& root, std::vector<doc_section> extra = {});

}  // namespace wsx::cli
