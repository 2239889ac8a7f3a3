#include "help_format.hpp"

#include <algorithm>
#include <cctype>
#include <regex>
#include <string_view>

namespace wsx::cli {
namespace {

std::string trim(std::string_view s) {
    auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    auto e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
}

/// Splits at `sep` outside brackets, so a choice like "[a,b]" stays whole.
std::vector<std::string> split_top_level(std::string_view s, char sep) {
    std::vector<std::string> out(1);
    int depth = 0;
    for (char c : s) {
        if (c == '{' || c == '[' || c == '(') ++depth;
        if ((c == '}' || c == ']' || c == ')') && depth > 0) --depth;
        if (c == sep && depth == 0) {
            out.emplace_back();
            continue;
        }
        out.back() += c;
    }
    return out;
}

/// The names a user may type, from the description of CLI::IsMember ("{a,b}"),
/// CLI::Transformer ("{a->1,b->2}") or CLI::CheckedTransformer ("value in {a->1} OR {1}").
std::vector<std::string> parse_choices(std::string_view seg) {
    constexpr std::string_view checked = "value in ";
    if (seg.substr(0, checked.size()) == checked) seg.remove_prefix(checked.size());
    if (seg.empty() || seg.front() != '{') return {};
    int depth = 0;
    std::size_t end = std::string_view::npos;
    for (std::size_t i = 0; i < seg.size(); ++i) {
        if (seg[i] == '{') ++depth;
        if (seg[i] == '}' && --depth == 0) {
            end = i;
            break;
        }
    }
    if (end == std::string_view::npos) return {};
    std::vector<std::string> choices;
    for (auto& item : split_top_level(seg.substr(1, end - 1), ',')) {
        auto arrow = item.find("->");
        auto name = trim(arrow == std::string::npos ? item : item.substr(0, arrow));
        if (!name.empty()) choices.push_back(std::move(name));
    }
    return choices;
}

std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
}

/// True when `word` occurs in `text` on its own, not inside a longer word.
bool mentions(std::string_view text, std::string_view word) {
    auto part_of_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
    for (auto at = text.find(word); at != std::string_view::npos; at = text.find(word, at + 1)) {
        const bool before = at > 0 && part_of_word(text[at - 1]);
        const bool after = at + word.size() < text.size() && part_of_word(text[at + word.size()]);
        if (!before && !after) return true;
    }
    return false;
}

/// "a", "a or b", "a, b or c".
std::string either(const std::vector<std::string>& words) {
    std::string s;
    for (std::size_t i = 0; i < words.size(); ++i)
        s += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + words[i];
    return s;
}

class formatter : public CLI::Formatter {
public:
    formatter() {
        label("Positionals", "Arguments");
        label("SUBCOMMAND", "COMMAND");
        label("SUBCOMMANDS", "COMMANDS");
    }

    std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
        if (is_positional) return value_name(*opt);
        return opt->get_name(false, true);
    }

    std::string make_option_opts(const CLI::Option* opt) const override {
        if (opt->get_positional() || opt->get_items_expected_max() == 0) return {};
        return " " + value_name(*opt);
    }

    std::string make_option_desc(const CLI::Option* opt) const override {
        std::string d = option_help(*opt);
        if (opt->get_required() && opt->nonpositional()) d += " (required)";
        return d;
    }
};

}  // namespace

std::vector<std::string> check_descriptions(const CLI::Option& opt) {
    // CLI11 2.1 gives access to an option's checks only through a non-const accessor that
    // throws past the last one; they are only read here.
    auto& mutable_opt = const_cast<CLI::Option&>(opt);
    std::vector<std::string> out;
    for (int i = 0;; ++i) {
        const CLI::Validator* v = nullptr;
        try {
            v = mutable_opt.get_validator(i);
        } catch (const CLI::OptionNotFound&) {
            break;
        }
        out.push_back(v->get_description());
    }
    return out;
}

std::string base_type_name(const CLI::Option& opt) {
    // CLI11's type name is the option's own ("USER:PASS", "TEXT") followed by ":<description>"
    // of each check; take those off so that a ':' of the first stays.
    const auto checks = check_descriptions(opt);
    std::string base = opt.get_type_name();
    for (auto it = checks.rbegin(); it != checks.rend(); ++it) {
        const std::string suffix = ":" + *it;
        if (!it->empty() && base.size() >= suffix.size() &&
            base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0)
            base.erase(base.size() - suffix.size());
    }
    return base;
}

std::vector<std::string> option_choices(const CLI::Option& opt) {
    for (const auto& d : check_descriptions(opt))
        if (auto c = parse_choices(d); !c.empty()) return c;
    return parse_choices(base_type_name(opt));
}

std::optional<std::pair<std::string, std::string>> option_range(const CLI::Option& opt) {
    static const std::regex range(R"(\w+ in \[(\S+) - (\S+)\])");
    for (const auto& d : check_descriptions(opt)) {
        std::smatch m;
        if (std::regex_match(d, m, range)) return std::pair{m[1].str(), m[2].str()};
    }
    return std::nullopt;
}

std::string value_name(const CLI::Option& opt) {
    if (opt.get_items_expected_max() == 0) return {};  // a flag
    if (!opt.get_option_text().empty()) return trim(opt.get_option_text());
    const std::string base = base_type_name(opt);
    // CLI11's names for C++ types say what the program stores, not what the user writes.
    if (base == "INT" || base == "UINT") return "N";
    if (base == "FLOAT" || base == "NUMBER") return "NUMBER";
    if (base.empty() || base == "TEXT" || base == "ENUM" || base == "BOOLEAN" || base == "CHAR")
        return opt.get_positional() ? upper(opt.get_name(true, false)) : "VALUE";
    return base;
}

std::string option_help(const CLI::Option& opt) {
    std::string d = trim(opt.get_description());
    if (auto r = option_range(opt)) {
        // "9–15", unless the description gives the bounds itself.
        if (!mentions(d, r->first) || !mentions(d, r->second)) d += ", " + r->first + "\u2013" + r->second;
    }
    std::vector<std::string> extra;
    const auto choices = option_choices(opt);
    if (!choices.empty() && !std::all_of(choices.begin(), choices.end(), [&](const auto& c) { return mentions(d, c); }))
        extra.push_back(either(choices));
    const std::string def = opt.get_default_str();
    if (!def.empty() && d.find("(default") == std::string::npos && opt.get_items_expected_max() != 0)
        extra.push_back("default " + def);
    if (!extra.empty()) {
        // "(-1: never) (default -1)" reads better as one: "(-1: never; default -1)"; not when
        // that parenthesis is a list of its own already, nor when it is one of several (it
        // may speak of one choice: "..., fanout (publish/subscribe)").
        const auto open = d.rfind('(');
        const bool join = !d.empty() && d.back() == ')' && open != std::string::npos &&
                          d.find('(') == open && d.find(';', open) == std::string::npos;
        d += join ? "; " : " (";
        if (join) d.erase(d.size() - 3, 1);
        for (std::size_t i = 0; i < extra.size(); ++i) d += (i ? "; " : "") + extra[i];
        d += ")";
    }
    return d;
}

std::shared_ptr<CLI::Formatter> help_formatter() { return std::make_shared<formatter>(); }

}  // namespace wsx::cli
