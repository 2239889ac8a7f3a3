#include <catch2/catch.hpp>

#include "repl_command.hpp"

using wsx::parse_repl_line;
using kind = wsx::repl_command::kind;

TEST_CASE("plain lines are text messages, sent as typed", "[repl]") {
    auto c = parse_repl_line("hello world ");
    CHECK(c.what == kind::text);
    CHECK(c.argument == "hello world ");
    CHECK(parse_repl_line(" /ping").what == kind::text);
    CHECK(parse_repl_line("{\"a\":1}").argument == "{\"a\":1}");
}

TEST_CASE("an empty line does nothing; a blank one is text", "[repl]") {
    CHECK(parse_repl_line("").what == kind::ignore);
    auto c = parse_repl_line("  ");
    CHECK(c.what == kind::text);
    CHECK(c.argument == "  ");
}

TEST_CASE("a doubled slash sends text that begins with one slash", "[repl]") {
    auto c = parse_repl_line("//ping x");
    CHECK(c.what == kind::text);
    CHECK(c.argument == "/ping x");
    CHECK(parse_repl_line("//").argument == "/");
    CHECK(parse_repl_line("///").argument == "//");
}

TEST_CASE("text that is not UTF-8 is refused", "[repl]") {
    auto c = parse_repl_line("caf\xE9");
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("UTF-8"));
    CHECK(parse_repl_line("caf\xC3\xA9").what == kind::text);
}

TEST_CASE("/ping carries optional data of at most 125 bytes", "[repl]") {
    auto c = parse_repl_line("/ping");
    CHECK(c.what == kind::ping);
    CHECK(c.argument.empty());
    c = parse_repl_line("/ping  abc def  ");
    CHECK(c.what == kind::ping);
    CHECK(c.argument == "abc def");
    CHECK(parse_repl_line("/ping\tx").argument == "x");
    CHECK(parse_repl_line("/ping " + std::string(125, 'x')).what == kind::ping);
    c = parse_repl_line("/ping " + std::string(126, 'x'));
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("125"));
}

TEST_CASE("/close defaults to 1000 and takes a code and a reason", "[repl]") {
    auto c = parse_repl_line("/close");
    CHECK(c.what == kind::close);
    CHECK(c.close_code == 1000);
    CHECK(c.close_reason.empty());

    c = parse_repl_line("/close 1000 bye");
    CHECK(c.what == kind::close);
    CHECK(c.close_code == 1000);
    CHECK(c.close_reason == "bye");

    c = parse_repl_line("/close 4000   going  away now ");
    CHECK(c.close_code == 4000);
    CHECK(c.close_reason == "going  away now");
}

TEST_CASE("/close refuses codes that may not be sent", "[repl]") {
    for (const char* bad : {"/close 1005", "/close 1006", "/close 1004", "/close 1015", "/close 999",
                            "/close 2000", "/close 5000", "/close 0", "/close -1"}) {
        INFO(bad);
        auto c = parse_repl_line(bad);
        CHECK(c.what == kind::invalid);
        CHECK_THAT(c.argument, Catch::Contains("may not be sent"));
    }
    for (const char* bad : {"/close abc", "/close 10x0", "/close 99999999999999999999"}) {
        INFO(bad);
        auto c = parse_repl_line(bad);
        CHECK(c.what == kind::invalid);
        CHECK_THAT(c.argument, Catch::Contains("not a close code"));
    }
}

TEST_CASE("/close reason must fit in a close frame and be UTF-8", "[repl]") {
    CHECK(parse_repl_line("/close 1000 " + std::string(123, 'r')).what == kind::close);
    auto c = parse_repl_line("/close 1000 " + std::string(124, 'r'));
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("123"));
    CHECK(parse_repl_line("/close 1000 \xFF").what == kind::invalid);
}

TEST_CASE("sendable close codes follow RFC 6455 7.4", "[repl]") {
    using wsx::is_sendable_close_code;
    for (int code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4000, 4999}) {
        INFO(code);
        CHECK(is_sendable_close_code(code));
    }
    for (int code : {0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 2999, 5000, 65535}) {
        INFO(code);
        CHECK_FALSE(is_sendable_close_code(code));
    }
}

TEST_CASE("/binary decodes hex", "[repl]") {
    auto c = parse_repl_line("/binary 00ff");
    CHECK(c.what == kind::binary);
    CHECK(c.argument == std::string("\x00\xff", 2));
    CHECK(parse_repl_line("/binary 48 65 6C").argument == "Hel");

    c = parse_repl_line("/binary 0g");
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("not hex"));
    CHECK(parse_repl_line("/binary abc").what == kind::invalid);  // odd digit count
    c = parse_repl_line("/binary");
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("usage"));
}

TEST_CASE("/file takes a path, blanks trimmed", "[repl]") {
    auto c = parse_repl_line("/file  /tmp/some file.bin ");
    CHECK(c.what == kind::file);
    CHECK(c.argument == "/tmp/some file.bin");
    CHECK(parse_repl_line("/file").what == kind::invalid);
}

TEST_CASE("argument-less commands", "[repl]") {
    CHECK(parse_repl_line("/stats").what == kind::stats);
    CHECK(parse_repl_line("/quit").what == kind::quit);
    CHECK(parse_repl_line("/help").what == kind::help);
    CHECK(parse_repl_line("/quit ").what == kind::quit);
    auto c = parse_repl_line("/quit now");
    CHECK(c.what == kind::invalid);
    CHECK_THAT(c.argument, Catch::Contains("no arguments"));
}

TEST_CASE("unknown commands point at /help", "[repl]") {
    for (const char* line : {"/frob", "/", "/PING", "/pingx", "/ help"}) {
        INFO(line);
        auto c = parse_repl_line(line);
        CHECK(c.what == kind::invalid);
        CHECK_THAT(c.argument, Catch::Contains("/help"));
    }
    // The name is quoted safely: no raw escape reaches the terminal.
    auto c = parse_repl_line("/fr\x1b[2Job");
    CHECK(c.argument.find('\x1b') == std::string::npos);
}

TEST_CASE("every command is listed with a summary", "[repl]") {
    std::vector<std::string> names;
    for (const auto& c : wsx::repl_commands()) {
        CHECK(c.name.starts_with("/"));
        CHECK_FALSE(c.summary.empty());
        names.emplace_back(c.name);
        // Each listed command is understood.
        const bool understood = parse_repl_line(std::string(c.name)).what != kind::invalid;
        CHECK((understood || !c.args.empty()));
    }
    CHECK(names == std::vector<std::string>{"/ping", "/close", "/binary", "/file", "/stats", "/quit", "/help"});
}

TEST_CASE("default history file follows XDG_STATE_HOME, then HOME", "[repl]") {
    using wsx::default_history_file;
    CHECK(default_history_file("/x/state", "/home/u") == "/x/state/wsx/history");
    CHECK(default_history_file(nullptr, "/home/u") == "/home/u/.local/state/wsx/history");
    CHECK(default_history_file("", "/home/u") == "/home/u/.local/state/wsx/history");
    CHECK(default_history_file("relative", "/home/u") == "/home/u/.local/state/wsx/history");
    CHECK(default_history_file(nullptr, nullptr) == std::nullopt);
    CHECK(default_history_file(nullptr, "") == std::nullopt);
}

TEST_CASE("expand_home expands ~ and ~/ only", "[repl]") {
    using wsx::expand_home;
    CHECK(expand_home("~/a/b", "/home/u") == "/home/u/a/b");
    CHECK(expand_home("~", "/home/u") == "/home/u");
    CHECK(expand_home("~bob/x", "/home/u") == "~bob/x");
    CHECK(expand_home("/abs/~/x", "/home/u") == "/abs/~/x");
    CHECK(expand_home("~/x", nullptr) == "~/x");
    CHECK(expand_home("~/x", "") == "~/x");
}
