#include "generate.hpp"

#include "help_format.hpp"
#include "version.hpp"

#include <algorithm>
#include <cctype>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

namespace wsx::cli {
namespace {

// The outputs name the program "wsx" even when CLI11 took the name from argv[0],
// so that they do not depend on where the binary was run from.
constexpr std::string_view program = "wsx";

enum class value_kind { none, text, file, directory, choice };

/// What the generators need to know about one option or positional, computed once.
struct option_doc {
    const CLI::Option* opt = nullptr;
    std::vector<std::string> shorts;  // "-H"
    std::vector<std::string> longs;   // "--header"
    std::string positional_name;      // "URL"
    std::string group;                // heading in the man page
    std::string description;
    std::string value_name;  // "FILE", "N", "POLICY": as --help shows it (help_format.hpp)
    std::vector<std::string> choices;
    value_kind kind = value_kind::none;
    bool optional_value = false;  // expected(0, 1): the value may be left out
    bool repeatable = false;
    bool is_help = false;

    bool takes_value() const { return kind != value_kind::none; }
    /// Every spelling, shorts first: {"-H", "--header"}.
    std::vector<std::string> names() const {
        auto all = shorts;
        all.insert(all.end(), longs.begin(), longs.end());
        return all;
    }
};

struct command_doc {
    std::vector<std::string> path;  // {"wsx", "connect"}
    std::vector<std::string> aliases;
    std::string description;
    std::string footer;
    std::vector<option_doc> options;  // nonpositional, help flags included
    std::vector<option_doc> positionals;
    std::vector<command_doc> children;
    bool child_required = false;  // false: the command also runs without a subcommand (bench URL)

    std::string joined() const {
        std::string s;
        for (const auto& p : path) s += (s.empty() ? "" : " ") + p;
        return s;
    }
    /// An identifier made of the path, for shell function names.
    std::string ident() const {
        std::string s;
        for (const auto& p : path) {
            if (!s.empty()) s += "__";
            for (char c : p) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
        }
        return s;
    }
};

// ---------------------------------------------------------------------------------------
// Reading the CLI11 tree

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
}

std::vector<std::string> split_lines(std::string_view s) {
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start <= s.size()) {
        auto nl = s.find('\n', start);
        if (nl == std::string_view::npos) nl = s.size();
        std::string line(s.substr(start, nl - start));
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
        start = nl + 1;
    }
    while (!lines.empty() && trim(lines.back()).empty()) lines.pop_back();
    return lines;
}

/// `app` is the command, `holder` the app that holds the option (the command itself or one
/// of its option groups, which carry a copy of the help flag).
option_doc describe_option(const CLI::App& app, const CLI::App& holder, const CLI::Option& opt,
                           const std::string& group) {
    option_doc d;
    d.opt = &opt;
    for (const auto& s : opt.get_snames()) d.shorts.push_back("-" + s);
    for (const auto& l : opt.get_lnames()) d.longs.push_back("--" + l);
    d.positional_name = opt.get_positional() ? value_name(opt) : opt.get_name(true, false);
    d.group = group;
    // As --help shows it: with its range, choices and default.
    d.description = option_help(opt);
    d.is_help = &opt == app.get_help_ptr() || &opt == app.get_help_all_ptr() || &opt == holder.get_help_ptr() ||
                &opt == holder.get_help_all_ptr();

    if (opt.get_items_expected_max() == 0) {  // a flag
        d.repeatable = opt.get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll;
        return d;
    }

    // The value's kind decides how shells complete it: choices win over any path check.
    std::vector<std::string> segments{base_type_name(opt)};
    const auto checks = check_descriptions(opt);
    segments.insert(segments.end(), checks.begin(), checks.end());
    d.kind = value_kind::text;
    d.choices = option_choices(opt);
    if (!d.choices.empty()) d.kind = value_kind::choice;
    for (const auto& seg : segments) {
        if (d.kind == value_kind::choice) break;
        if (seg == "DIR") d.kind = value_kind::directory;
        else if ((seg == "FILE" || seg == "PATH" || seg.rfind("PATH(", 0) == 0) && d.kind != value_kind::directory)
            d.kind = value_kind::file;
    }
    d.value_name = value_name(opt);
    d.optional_value = opt.get_expected_min() == 0;
    d.repeatable = opt.get_expected_max() > 1 ||
                   opt.get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll ||
                   opt.get_multi_option_policy() == CLI::MultiOptionPolicy::Join;
    return d;
}

/// Collects the visible options of `app` and of its unnamed option groups.
void collect_options(const CLI::App& app, const CLI::App& owner, const std::string* group_override,
                     command_doc& cmd) {
    for (const CLI::Option* opt : app.get_options({})) {
        if (opt->get_group().empty()) continue;  // hidden, as in --help
        const std::string& group = group_override ? *group_override : opt->get_group();
        // An option group's copy of the help flag would list --help twice.
        if (&app != &owner && (opt == app.get_help_ptr() || opt == app.get_help_all_ptr())) continue;
        if (opt->nonpositional()) cmd.options.push_back(describe_option(owner, app, *opt, group));
        else if (opt->get_positional()) cmd.positionals.push_back(describe_option(owner, app, *opt, group));
    }
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App* s) { return s->get_name().empty(); })) {
        if (sub->get_group().empty()) continue;
        collect_options(*sub, owner, &sub->get_group(), cmd);
    }
}

command_doc describe_command(const CLI::App& app, std::vector<std::string> path) {
    command_doc cmd;
    cmd.path = std::move(path);
    cmd.aliases = app.get_aliases();
    cmd.description = app.get_description();
    cmd.footer = app.get_footer();
    // CLI11 copies the parent's footer into subcommands made after it was set; once is enough.
    if (app.get_parent() != nullptr && cmd.footer == app.get_parent()->get_footer()) cmd.footer.clear();
    collect_options(app, app, nullptr, cmd);
    cmd.child_required = app.get_require_subcommand_min() > 0;
    auto visible = [](const CLI::App* s) {
        return !s->get_name().empty() && !s->get_group().empty() && !s->get_disabled();
    };
    for (const CLI::App* sub : app.get_subcommands(visible)) {
        auto child_path = cmd.path;
        child_path.push_back(sub->get_name());
        cmd.children.push_back(describe_command(*sub, std::move(child_path)));
    }
    return cmd;
}

command_doc describe_root(const CLI::App& root) { return describe_command(root, {std::string(program)}); }

/// Root first, then every subcommand depth-first, in definition order.
void flatten(const command_doc& cmd, std::vector<const command_doc*>& out) {
    out.push_back(&cmd);
    for (const auto& c : cmd.children) flatten(c, out);
}

std::vector<const command_doc*> all_commands(const command_doc& root) {
    std::vector<const command_doc*> out;
    flatten(root, out);
    return out;
}

/// One line for completion menus: the first line of a description, without a final period.
std::string summary(std::string_view text) {
    auto lines = split_lines(text);
    std::string s = lines.empty() ? std::string{} : trim(lines.front());
    if (!s.empty() && s.back() == '.' && (s.size() < 2 || s[s.size() - 2] != '.')) s.pop_back();
    return s;
}

// ---------------------------------------------------------------------------------------
// roff

/// Escapes text for roff: backslashes print as such, and every '-' is a real minus so
/// that options copied from the rendered page work.
std::string roff(std::string_view s) {
    constexpr std::string_view en_dash = "\u2013";  // ranges in option_help: "9–15"
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (s.substr(i, en_dash.size()) == en_dash) {
            out += "\\(en";
            i += en_dash.size() - 1;
        } else if (c == '\\') out += "\\e";
        else if (c == '-') out += "\\-";
        else out += c;
    }
    return out;
}

/// A text line: a leading '.' or '\'' would be read as a request.
std::string roff_line(std::string_view s) {
    auto e = roff(s);
    if (!e.empty() && (e.front() == '.' || e.front() == '\'')) e.insert(0, "\\&");
    return e;
}

/// A double-quoted macro argument.
std::string roff_arg(std::string_view s) {
    std::string out = "\"";
    for (char c : roff(s)) {
        if (c == '"') out += "\\(dq";
        else out += c;
    }
    return out + "\"";
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

/// Writes plain text as roff: blank lines separate paragraphs (started with `para`, e.g.
/// ".PP", or ".IP" inside a tagged paragraph); lines starting with two spaces or a tab are
/// verbatim, indented and unfilled. With `para_first` the first paragraph also gets `para`.
void write_body(std::ostream& out, std::string_view text, std::string_view para, bool para_first) {
    bool first = !para_first;
    bool in_para = false;
    bool in_verbatim = false;
    auto close_verbatim = [&] {
        if (!in_verbatim) return;
        out << ".fi\n.RE\n";
        in_verbatim = false;
        in_para = false;
    };
    for (const auto& line : split_lines(text)) {
        if (trim(line).empty()) {
            close_verbatim();
            in_para = false;
            continue;
        }
        const bool verbatim = line.rfind("  ", 0) == 0 || line.front() == '\t';
        if (verbatim) {
            if (!in_verbatim) {
                if (!in_para && !first) out << para << '\n';
                out << ".RS 4\n.nf\n";
                in_verbatim = true;
            }
            out << roff_line(line.front() == '\t' ? line.substr(1) : line.substr(2)) << '\n';
        } else {
            close_verbatim();
            if (!in_para) {
                if (!first) out << para << '\n';
                in_para = true;
            }
            out << roff_line(trim(line)) << '\n';
        }
        first = false;
    }
    close_verbatim();
}

std::string bold(std::string_view s) { return "\\fB" + roff(s) + "\\fR"; }
std::string italic(std::string_view s) { return "\\fI" + roff(s) + "\\fR"; }

std::string synopsis(const command_doc& cmd) {
    std::string s;
    for (std::size_t i = 0; i < cmd.path.size(); ++i) s += (i ? " " : "") + bold(cmd.path[i]);
    if (!cmd.options.empty()) s += " [" + italic("OPTIONS") + "]";
    for (const auto& p : cmd.positionals) {
        std::string item = italic(p.positional_name);
        if (p.opt->get_expected_max() > 1) item += "...";
        s += " " + (p.opt->get_required() ? item : "[" + item + "]");
    }
    if (!cmd.children.empty()) {
        const std::string sub = italic("COMMAND") + " [" + italic("ARGS") + "]";
        s += " " + (cmd.child_required ? sub : "[" + sub + "]");
    }
    return s;
}

std::string sentence_end(std::string s) {
    if (!s.empty() && std::string_view(".!?:").find(s.back()) == std::string_view::npos) s += '.';
    return s;
}

/// Facts CLI11 keeps outside the description (and option_help does not add), as sentences.
std::vector<std::string> option_notes(const option_doc& o) {
    std::vector<std::string> notes;
    const CLI::Option& opt = *o.opt;
    if (opt.get_required()) notes.push_back("Required.");
    // Descriptions often say "(repeatable)" themselves.
    auto lower = o.description;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (o.repeatable && opt.nonpositional() && lower.find("repeat") == std::string::npos)
        notes.push_back("May be repeated.");
    if (!opt.get_envname().empty()) notes.push_back("Environment: " + opt.get_envname() + ".");
    auto names_of = [](const std::set<CLI::Option*>& set) {
        std::vector<std::string> names;
        for (const CLI::Option* x : set) names.push_back(x->get_name());
        std::sort(names.begin(), names.end());  // the set is ordered by address
        std::string s;
        for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
        return s;
    };
    if (!opt.get_needs().empty()) notes.push_back("Requires " + names_of(opt.get_needs()) + ".");
    if (!opt.get_excludes().empty()) notes.push_back("Cannot be combined with " + names_of(opt.get_excludes()) + ".");
    return notes;
}

void write_option_entry(std::ostream& out, const option_doc& o, bool positional) {
    out << ".TP\n";
    std::string tag;
    if (positional) {
        tag = italic(o.positional_name);
    } else {
        for (const auto& n : o.names()) tag += (tag.empty() ? "" : ", ") + bold(n);
        if (o.takes_value()) {
            auto v = italic(o.value_name);
            tag += " " + (o.optional_value ? "[" + v + "]" : v);
        }
    }
    out << tag << '\n';
    std::string text = trim(o.description);
    auto notes = option_notes(o);
    if (!notes.empty()) {
        // Notes continue the description's last paragraph; a trailing example block would
        // swallow them, so they then get a paragraph of their own.
        auto lines = split_lines(text);
        const bool ends_verbatim = !lines.empty() && (lines.back().rfind("  ", 0) == 0 || lines.back()[0] == '\t');
        text = sentence_end(text);
        for (const auto& n : notes) text += (text.empty() ? "" : ends_verbatim ? "\n\n" : " ") + n;
    }
    write_body(out, text, ".IP", false);
}

/// Options grouped by heading, in order of first appearance.
std::vector<std::pair<std::string, std::vector<const option_doc*>>> by_group(const std::vector<option_doc>& opts,
                                                                             bool skip_help) {
    std::vector<std::pair<std::string, std::vector<const option_doc*>>> groups;
    for (const auto& o : opts) {
        if (skip_help && o.is_help) continue;
        auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == o.group; });
        if (it == groups.end()) {
            groups.emplace_back(o.group, std::vector<const option_doc*>{});
            it = std::prev(groups.end());
        }
        it->second.push_back(&o);
    }
    return groups;
}

/// A footer that opens with an "Examples:" block, taken apart: the block's lines (without the
/// heading) and the rest. A footer without one is all rest.
std::pair<std::string, std::string> split_examples(std::string_view footer) {
    auto lines = split_lines(footer);
    std::size_t i = 0;
    while (i < lines.size() && trim(lines[i]).empty()) ++i;
    if (i == lines.size() || trim(lines[i]) != "Examples:") return {"", std::string(footer)};
    std::string examples, rest;
    for (++i; i < lines.size() && !trim(lines[i]).empty(); ++i) examples += lines[i] + '\n';
    for (; i < lines.size(); ++i) rest += lines[i] + '\n';
    return {examples, rest};
}

/// EXAMPLES: the "Examples:" block of each command's help, one subsection per command.
void write_examples(std::ostream& out, const std::vector<const command_doc*>& commands) {
    bool any = false;
    for (const auto* cmd : commands) {
        const auto examples = split_examples(cmd->footer).first;
        if (examples.empty()) continue;
        if (!any) out << ".SH EXAMPLES\n";
        any = true;
        out << ".SS " << roff_arg(cmd->joined()) << '\n';
        write_body(out, examples, ".PP", false);
    }
}

void write_command_section(std::ostream& out, const command_doc& cmd) {
    out << ".SH " << roff_arg(upper(cmd.joined())) << '\n';
    out << synopsis(cmd) << '\n';
    write_body(out, cmd.description, ".PP", true);
    if (!cmd.aliases.empty()) {
        out << ".PP\n" << (cmd.aliases.size() == 1 ? "Alias: " : "Aliases: ");
        for (std::size_t i = 0; i < cmd.aliases.size(); ++i) out << (i ? ", " : "") << bold(cmd.aliases[i]);
        out << ".\n";
    }
    if (!cmd.positionals.empty()) {
        out << ".SS Arguments\n";
        for (const auto& p : cmd.positionals) write_option_entry(out, p, true);
    }
    // `-h, --help` is the same everywhere; it is listed once, under OPTIONS.
    for (const auto& [group, opts] : by_group(cmd.options, true)) {
        out << ".SS " << roff_arg(group) << '\n';
        for (const auto* o : opts) write_option_entry(out, *o, false);
    }
    if (!cmd.children.empty()) {
        out << ".SS Commands\n";
        for (const auto& c : cmd.children) {
            out << ".TP\n" << bold(c.joined()) << '\n';
            write_body(out, summary(c.description), ".IP", false);
        }
    }
    // Its examples are under EXAMPLES.
    const auto rest = split_examples(cmd.footer).second;
    if (!trim(rest).empty()) write_body(out, rest, ".PP", true);
}

// ---------------------------------------------------------------------------------------
// Shell quoting

/// A single-quoted POSIX shell word (bash, zsh).
std::string sh_quote(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

/// A single-quoted fish word: inside, only backslash and quote are special.
std::string fish_quote(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\\' || c == '\'') out += '\\';
        out += c;
    }
    return out + "'";
}

/// A word that survives the expansion compgen -W and fish's -a apply to their list.
std::string escape_word(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("._,+:@%/=-").find(c) == std::string_view::npos)
            out += '\\';
        out += c;
    }
    return out;
}

std::string word_list(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + escape_word(w);
    return s;
}

// ---------------------------------------------------------------------------------------
// bash

/// The shell code that completes a value of `kind` from "$cur".
std::string bash_action(const option_doc& o) {
    switch (o.kind) {
    case value_kind::file: return "_wsx_files \"$cur\"";
    case value_kind::directory: return "_wsx_dirs \"$cur\"";
    case value_kind::choice: return "_wsx_words " + sh_quote(word_list(o.choices)) + " \"$cur\"";
    default: return "COMPREPLY=()";
    }
}

void write_bash_impl(const command_doc& root, std::ostream& out) {
    const auto commands = all_commands(root);
    out << "# bash completion for wsx. Generated by `wsx generate bash`; do not edit.\n"
           "# Install: source it, or copy it to /usr/share/bash-completion/completions/wsx\n\n"
           "_wsx_words() { mapfile -t COMPREPLY < <(compgen -W \"$1\" -- \"$2\"); }\n"
           "_wsx_files() { mapfile -t COMPREPLY < <(compgen -f -- \"$1\"); compopt -o filenames 2>/dev/null; }\n"
           "_wsx_dirs() { mapfile -t COMPREPLY < <(compgen -d -- \"$1\"); compopt -o filenames 2>/dev/null; }\n\n"
           "_wsx() {\n"
           "    local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
           "    local path=wsx valopt='' skip=0 npos=0 endopts=0 i w\n"
           "    COMPREPLY=()\n"
           "    # Find the subcommand and the number of positional arguments before the cursor;\n"
           "    # the words after an option that takes a value are that value (\"=\" is a word\n"
           "    # of its own when COMP_WORDBREAKS splits --opt=value).\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        w=\"${COMP_WORDS[i]}\"\n"
           "        if ((skip > 0)); then\n"
           "            skip=$((skip - 1))\n"
           "            continue\n"
           "        fi\n"
           "        if ((endopts)); then\n"
           "            npos=$((npos + 1))\n"
           "            continue\n"
           "        fi\n"
           "        case \"$path $w\" in\n";
    for (const auto* cmd : commands) {
        for (const auto& child : cmd->children) {
            std::vector<std::string> patterns{cmd->joined() + " " + child.path.back()};
            for (const auto& a : child.aliases) patterns.push_back(cmd->joined() + " " + a);
            out << "        ";
            for (std::size_t i = 0; i < patterns.size(); ++i) out << (i ? " | " : "") << sh_quote(patterns[i]);
            out << ")\n            path=" << sh_quote(child.joined()) << "\n            npos=0\n            ;;\n";
        }
        std::vector<std::string> patterns;
        for (const auto& o : cmd->options)
            if (o.takes_value())
                for (const auto& n : o.names()) patterns.push_back(cmd->joined() + " " + n);
        if (!patterns.empty()) {
            out << "        ";
            for (std::size_t i = 0; i < patterns.size(); ++i)
                out << (i ? " | \\\n        " : "") << sh_quote(patterns[i]);
            out << ")\n"
                   "            valopt=\"$w\"\n"
                   "            if [[ ${COMP_WORDS[i + 1]} == = ]]; then skip=2; else skip=1; fi\n"
                   "            ;;\n";
        }
    }
    out << "        *)\n"
           "            if [[ $w == -- ]]; then\n"
           "                endopts=1\n"
           "            elif [[ $w != -* ]]; then\n"
           "                npos=$((npos + 1))\n"
           "            fi\n"
           "            ;;\n"
           "        esac\n"
           "    done\n\n"
           "    if ((skip > 0)); then\n"
           "        [[ $cur == = ]] && cur=''\n"
           "        case \"$path $valopt\" in\n";
    for (const auto* cmd : commands) {
        for (const auto& o : cmd->options) {
            if (o.kind != value_kind::file && o.kind != value_kind::directory && o.kind != value_kind::choice)
                continue;
            out << "        ";
            auto names = o.names();
            for (std::size_t i = 0; i < names.size(); ++i)
                out << (i ? " | " : "") << sh_quote(cmd->joined() + " " + names[i]);
            out << ") " << bash_action(o) << " ;;\n";
        }
    }
    out << "        esac\n"
           "        return 0\n"
           "    fi\n\n"
           "    case \"$path\" in\n";
    for (const auto* cmd : commands) {
        std::vector<std::string> opts;
        for (const auto& o : cmd->options)
            for (const auto& n : o.names()) opts.push_back(n);
        out << "    " << sh_quote(cmd->joined()) << ")\n";
        out << "        if [[ $cur == -* ]] && ((!endopts)); then\n"
            << "            _wsx_words " << sh_quote(word_list(opts)) << " \"$cur\"\n";
        if (!cmd->children.empty()) {
            std::vector<std::string> names;
            for (const auto& c : cmd->children) {
                names.push_back(c.path.back());
                names.insert(names.end(), c.aliases.begin(), c.aliases.end());
            }
            out << "        elif ((npos == 0)); then\n"
                << "            _wsx_words " << sh_quote(word_list(names)) << " \"$cur\"\n";
        } else {
            // Positional N completes like the Nth positional; a list takes all the rest.
            for (std::size_t i = 0; i < cmd->positionals.size(); ++i) {
                const auto& p = cmd->positionals[i];
                const bool rest = p.opt->get_expected_max() > 1;
                out << "        elif ((npos " << (rest ? ">=" : "==") << " " << i << ")); then\n"
                    << "            " << bash_action(p) << "\n";
                if (rest) break;
            }
        }
        out << "        fi\n        ;;\n";
    }
    out << "    esac\n"
           "    return 0\n"
           "}\n\n"
           "complete -F _wsx wsx\n";
}

// ---------------------------------------------------------------------------------------
// zsh

/// Text inside `_arguments` brackets and messages: brackets and colons are syntax there.
std::string zsh_text(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '[' || c == ']' || c == ':' || c == '\\') out += '\\';
        out += c;
    }
    return out;
}

std::string zsh_action(const option_doc& o) {
    switch (o.kind) {
    case value_kind::file: return "_files";
    case value_kind::directory: return "_files -/";
    case value_kind::choice: {
        std::string s = "(";
        for (std::size_t i = 0; i < o.choices.size(); ++i) s += (i ? " " : "") + escape_word(o.choices[i]);
        return s + ")";
    }
    default: return " ";  // no completion, but show what is expected
    }
}

void write_zsh_function(const command_doc& cmd, std::ostream& out) {
    out << "_" << cmd.ident() << "() {\n";
    if (!cmd.children.empty()) out << "  local curcontext=\"$curcontext\" state state_descr line ret=1\n  typeset -A opt_args\n";
    out << "  _arguments -s -S" << (cmd.children.empty() ? "" : " -C");
    for (const auto& o : cmd.options) {
        auto names = o.names();
        std::string exclusion;
        if (o.is_help) {
            exclusion = "(- *)";  // nothing else matters after --help
        } else if (o.repeatable) {
            exclusion = "*";
        } else if (names.size() > 1) {
            exclusion = "(";
            for (std::size_t i = 0; i < names.size(); ++i) exclusion += (i ? " " : "") + names[i];
            exclusion += ")";
        }
        for (const auto& n : names) {
            std::string spec = exclusion + n;
            if (o.takes_value()) spec += n.rfind("--", 0) == 0 ? (o.optional_value ? "=-" : "=") : (o.optional_value ? "-" : "+");
            spec += "[" + zsh_text(summary(o.description)) + "]";
            if (o.takes_value()) spec += ":" + zsh_text(o.value_name) + ":" + zsh_action(o);
            out << " \\\n    " << sh_quote(spec);
        }
    }
    if (!cmd.children.empty()) {
        out << " \\\n    " << sh_quote("1:command:->command") << " \\\n    " << sh_quote("*::argument:->argument")
            << " && ret=0\n";
        out << "  case $state in\n"
               "    command)\n"
               "      local -a commands=(\n";
        for (const auto& c : cmd.children) {
            std::vector<std::string> names{c.path.back()};
            names.insert(names.end(), c.aliases.begin(), c.aliases.end());
            for (const auto& n : names)
                out << "        " << sh_quote(zsh_text(n) + ":" + summary(c.description)) << '\n';
        }
        out << "      )\n"
               "      _describe -t commands "
            << sh_quote(cmd.joined() + " command")
            << " commands && ret=0\n"
               "      ;;\n"
               "    argument)\n"
               "      curcontext=\"${curcontext%:*:*}:"
            << cmd.ident() << "-$words[1]:\"\n"
            << "      case $words[1] in\n";
        for (const auto& c : cmd.children) {
            out << "        " << sh_quote(c.path.back());
            for (const auto& a : c.aliases) out << " | " << sh_quote(a);
            out << ") _" << c.ident() << " && ret=0 ;;\n";
        }
        out << "      esac\n"
               "      ;;\n"
               "  esac\n"
               "  return ret\n";
    } else {
        for (std::size_t i = 0; i < cmd.positionals.size(); ++i) {
            const auto& p = cmd.positionals[i];
            const bool rest = p.opt->get_expected_max() > 1;
            std::string spec = rest ? "*" : std::to_string(i + 1);
            spec += ":" + zsh_text(p.positional_name) + ":" + zsh_action(p);
            out << " \\\n    " << sh_quote(spec);
            if (rest) break;
        }
        out << '\n';
    }
    out << "}\n\n";
}

void write_zsh_impl(const command_doc& root, std::ostream& out) {
    out << "#compdef wsx\n"
           "# zsh completion for wsx. Generated by `wsx generate zsh`; do not edit.\n"
           "# Install: copy it as _wsx into a directory of $fpath.\n\n";
    for (const auto* cmd : all_commands(root)) write_zsh_function(*cmd, out);
    out << "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n"
           "  _wsx \"$@\"\n"
           "else\n"
           "  compdef _wsx wsx\n"
           "fi\n";
}

// ---------------------------------------------------------------------------------------
// fish

void write_fish_impl(const command_doc& root, std::ostream& out) {
    const auto commands = all_commands(root);
    out << "# fish completion for wsx. Generated by `wsx generate fish`; do not edit.\n"
           "# Install: copy it to ~/.config/fish/completions/wsx.fish\n\n"
           "# Prints the subcommand path on the command line, e.g. \"wsx connect\"; the word after\n"
           "# an option that takes a separate value is that value, not a subcommand.\n"
           "function __wsx_path\n"
           "    set -l tokens (commandline -opc)\n"
           "    set -e tokens[1]\n"
           "    set -l path wsx\n"
           "    set -l skip 0\n"
           "    for tok in $tokens\n"
           "        if test $skip -eq 1\n"
           "            set skip 0\n"
           "            continue\n"
           "        end\n"
           "        switch \"$path $tok\"\n";
    for (const auto* cmd : commands) {
        for (const auto& child : cmd->children) {
            out << "            case " << fish_quote(cmd->joined() + " " + child.path.back());
            for (const auto& a : child.aliases) out << " " << fish_quote(cmd->joined() + " " + a);
            out << "\n                set path " << fish_quote(child.joined()) << '\n';
        }
        std::vector<std::string> patterns;
        for (const auto& o : cmd->options)
            if (o.takes_value() && !o.optional_value)
                for (const auto& n : o.names()) patterns.push_back(cmd->joined() + " " + n);
        if (!patterns.empty()) {
            out << "            case";
            for (const auto& p : patterns) out << " " << fish_quote(p);
            out << "\n                set skip 1\n";
        }
    }
    out << "        end\n"
           "    end\n"
           "    echo $path\n"
           "end\n\n"
           "function __wsx_at --description 'True when the command line is at the given subcommand path'\n"
           "    test (__wsx_path) = \"$argv\"\n"
           "end\n\n"
           "complete -c wsx -f\n";
    for (const auto* cmd : commands) {
        const std::string cond = "-n " + fish_quote("__wsx_at " + cmd->joined());
        out << "\n# " << cmd->joined() << '\n';
        for (const auto& c : cmd->children) {
            std::vector<std::string> names{c.path.back()};
            names.insert(names.end(), c.aliases.begin(), c.aliases.end());
            for (const auto& n : names)
                out << "complete -c wsx " << cond << " -a " << fish_quote(escape_word(n)) << " -d "
                    << fish_quote(summary(c.description)) << '\n';
        }
        for (const auto& o : cmd->options) {
            out << "complete -c wsx " << cond;
            for (const auto& s : o.shorts) out << " -s " << fish_quote(s.substr(1));
            for (const auto& l : o.longs) out << " -l " << fish_quote(l.substr(2));
            switch (o.kind) {
            case value_kind::file: out << " -r -F"; break;
            case value_kind::directory: out << " -x -a '(__fish_complete_directories)'"; break;
            case value_kind::choice: {
                // Each value gets its own short description (the value name): without one,
                // fish repeats the option's description beside every value.
                std::string values;
                for (const auto& c : o.choices) values += (values.empty() ? "" : " ") + escape_word(c) + "\\t" + escape_word(o.value_name);
                out << " -x -a " << fish_quote(values);
                break;
            }
            case value_kind::text: out << " -x"; break;
            case value_kind::none: break;
            }
            out << " -d " << fish_quote(summary(o.description)) << '\n';
        }
        if (cmd->children.empty()) {
            for (const auto& p : cmd->positionals) {
                if (p.kind == value_kind::file) out << "complete -c wsx " << cond << " -F\n";
                else if (p.kind == value_kind::directory)
                    out << "complete -c wsx " << cond << " -a '(__fish_complete_directories)'\n";
                else if (p.kind == value_kind::choice)
                    out << "complete -c wsx " << cond << " -a " << fish_quote(word_list(p.choices)) << '\n';
            }
        }
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------

void write_man(const CLI::App& root, const std::vector<doc_section>& extra, std::ostream& out, bool identity) {
    const command_doc doc = describe_root(root);
    const auto commands = all_commands(doc);

    // The committed page carries the version alone, so that it changes only with the
    // definitions or the version; an installed page names its build and date.
    const std::string date = identity ? std::string(build_date()) : std::string();
    const std::string source = "wsx " + (identity ? build_identity() : std::string(build_version()));
    out << ".\\\" Generated by `wsx generate man` from the command-line definitions; do not edit.\n"
        << ".TH WSX 1 " << roff_arg(date) << " " << roff_arg(source) << " \"User Commands\"\n"
        << ".SH NAME\n"
        << "wsx";
    // NAME is "wsx \- what it is"; a description that starts with "wsx: " says the name twice.
    std::string name_line = summary(doc.description);
    for (std::string_view prefix : {"wsx: ", "wsx - "})
        if (name_line.rfind(prefix, 0) == 0) name_line.erase(0, prefix.size());
    if (!name_line.empty()) out << " \\- " << roff(name_line);
    out << "\n.SH SYNOPSIS\n";
    for (std::size_t i = 0; i < commands.size(); ++i) out << (i ? ".br\n" : "") << synopsis(*commands[i]) << '\n';

    out << ".SH DESCRIPTION\n";
    write_body(out, doc.description, ".PP", false);
    const auto rest = split_examples(doc.footer).second;
    if (!trim(rest).empty()) write_body(out, rest, ".PP", true);

    if (commands.size() > 1) {
        out << ".SH COMMANDS\n";
        for (std::size_t i = 1; i < commands.size(); ++i) {
            out << ".TP\n" << bold(commands[i]->joined()) << '\n';
            write_body(out, summary(commands[i]->description), ".IP", false);
        }
    }

    if (!doc.positionals.empty()) {
        out << ".SH ARGUMENTS\n";
        for (const auto& p : doc.positionals) write_option_entry(out, p, true);
    }
    auto groups = by_group(doc.options, false);
    if (!groups.empty()) {
        out << ".SH OPTIONS\n";
        const bool several = groups.size() > 1;
        for (const auto& [group, opts] : groups) {
            if (several) out << ".SS " << roff_arg(group) << '\n';
            for (const auto* o : opts) write_option_entry(out, *o, false);
        }
        if (commands.size() > 1)
            out << ".PP\nEvery command also accepts " << bold("-h") << ", " << bold("--help") << ".\n";
    }

    for (std::size_t i = 1; i < commands.size(); ++i) write_command_section(out, *commands[i]);

    // EXAMPLES go before SEE ALSO, which ends a page.
    bool examples_written = false;
    for (const auto& s : extra) {
        if (s.title == "SEE ALSO" && !examples_written) {
            write_examples(out, commands);
            examples_written = true;
        }
        out << ".SH " << roff_arg(s.title) << '\n';
        write_body(out, s.body, ".PP", false);
    }
    if (!examples_written) write_examples(out, commands);
}

void write_bash(const CLI::App& root, std::ostream& out) { write_bash_impl(describe_root(root), out); }

void write_zsh(const CLI::App& root, std::ostream& out) { write_zsh_impl(describe_root(root), out); }

void write_fish(const CLI::App& root, std::ostream& out) { write_fish_impl(describe_root(root), out); }

void generate(std::string_view what, const CLI::App& root, const std::vector<doc_section>& extra,
              std::ostream& out, bool identity) {
    if (what == "man") write_man(root, extra, out, identity);
    else if (what == "bash") write_bash(root, out);
    else if (what == "zsh") write_zsh(root, out);
    else if (what == "fish") write_fish(root, out);
    else throw std::invalid_argument("unknown generate target: " + std::string(what));
}

generate_command add_generate_command(CLI::App& root, std::vector<doc_section> extra) {
    auto* cmd = root.add_subcommand("generate", "Write the man page or a shell completion script to stdout");
    cmd->group("");  // hidden: a tool for packaging, not for daily use
    // Shared with `run`, which outlives this function.
    auto what = std::make_shared<std::string>();
    cmd->add_option("what", *what, "What to write")
        ->required()
        ->check(CLI::IsMember(std::vector<std::string>(generate_targets.begin(), generate_targets.end())));
    auto identity = std::make_shared<bool>(false);
    cmd->add_flag("--identity", *identity, "man: put this build's identity and date in the .TH line (for installing)");
    auto run = [&root, what, identity, extra = std::move(extra)]() -> int {
        generate(*what, root, extra, std::cout, *identity);
        std::cout.flush();
        if (!std::cout) {
            std::cerr << "wsx: error: generate " << *what << ": cannot write to stdout\n";
            return 1;
        }
        return 0;
    };
    return {cmd, std::move(run)};
}

}  // namespace wsx::cli
