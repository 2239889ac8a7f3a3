#include <catch2/catch.hpp>

#include <string>

#include "script.hpp"

using namespace std::chrono_literals;
using wsx::parse_script;
using wsx::script_error;
using K = wsx::script_step::kind;

namespace {
std::vector<script_error> errors_of(std::string_view text) {
    std::vector<script_error> errors;
    CHECK_FALSE(parse_script(text, &errors));
    return errors;
}
}  // namespace

TEST_CASE("script: every step kind, comments and blank lines", "[script]") {
    const auto steps = parse_script(
        "# a dialogue\n"
        "\n"
        "send hello world  \n"
        "send-json {\"op\": \"sub\"}\n"
        "send-binary 48 65 6c6c 6f\n"
        "send-file ./data.bin\n"
        "\t expect ^ready$ timeout=2s\r\n"
        "expect-json user.id=7\n"
        "ping\n"
        "ping are you there\n"
        "wait 250ms\n"
        "close 4000 all done\n",
        nullptr);
    REQUIRE(steps);
    REQUIRE(steps->size() == 10);
    const auto& s = *steps;
    CHECK(s[0].op == K::send);
    CHECK(s[0].text == "hello world");
    CHECK(s[0].line == 3);
    CHECK(s[1].op == K::send_json);
    CHECK(s[1].text == "{\"op\": \"sub\"}");
    CHECK(s[2].op == K::send_binary);
    CHECK(s[2].text == "Hello");
    CHECK(s[3].op == K::send_file);
    CHECK(s[3].text == "./data.bin");
    CHECK(s[4].op == K::expect);
    CHECK(s[4].text == "^ready$");
    CHECK(s[4].timeout == std::chrono::nanoseconds(2s));
    CHECK(s[4].source == "expect ^ready$ timeout=2s");
    CHECK(s[4].line == 7);
    CHECK(s[5].op == K::expect_json);
    REQUIRE(s[5].json);
    CHECK(s[5].json->path == "user.id");
    CHECK_FALSE(s[5].timeout);
    CHECK(s[6].op == K::ping);
    CHECK(s[6].text.empty());
    CHECK(s[7].text == "are you there");
    CHECK(s[8].op == K::wait);
    CHECK(s[8].duration == std::chrono::nanoseconds(250ms));
    CHECK(s[9].op == K::close);
    CHECK(s[9].code == 4000);
    CHECK(s[9].text == "all done");
}

TEST_CASE("script: timeout= belongs to waiting steps only, elsewhere it is text", "[script]") {
    auto steps = parse_script("send a timeout=2s\nexpect-close 1000 timeout=1s\n", nullptr);
    REQUIRE(steps);
    CHECK((*steps)[0].text == "a timeout=2s");
    CHECK_FALSE((*steps)[0].timeout);
    CHECK((*steps)[1].code == 1000);
    CHECK((*steps)[1].timeout == std::chrono::nanoseconds(1s));
    steps = parse_script("expect-close timeout=300ms", nullptr);
    REQUIRE(steps);
    CHECK_FALSE((*steps)[0].code);
    CHECK((*steps)[0].timeout == std::chrono::nanoseconds(300ms));

    auto e = errors_of("wait 1s timeout=2s\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].message.find("only expect") != std::string::npos);
    e = errors_of("expect x timeout=soon\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].message.find("timeout=2s") != std::string::npos);
    CHECK(errors_of("expect x timeout=0s\n").size() == 1);
}

TEST_CASE("script: every bad line is reported with its number and a fix", "[script]") {
    const auto e = errors_of(
        "send ok\n"
        "sned typo\n"
        "send\n"
        "send-json {nope\n"
        "send-binary 4\n"
        "wait forever\n"
        "expect-json a..b=1\n"
        "close 1006\n"
        "close abc\n"
        "expect-close 99\n");
    REQUIRE(e.size() == 9);
    CHECK(e[0].line == 2);
    CHECK(e[0].message.find("unknown step 'sned'") != std::string::npos);
    CHECK(e[0].message.find("send-json") != std::string::npos);
    CHECK(e[1].line == 3);
    CHECK(e[1].message.find("send MESSAGE") != std::string::npos);
    CHECK(e[2].message.find("not valid JSON") != std::string::npos);
    CHECK(e[3].message.find("hex") != std::string::npos);
    CHECK(e[4].message.find("duration") != std::string::npos);
    CHECK(e[5].message.find("a..b") != std::string::npos);
    CHECK(e[6].message.find("1006") != std::string::npos);
    CHECK(e[7].message.find("'abc'") != std::string::npos);
    CHECK(e[8].line == 10);
}

TEST_CASE("script: nothing may follow close or expect-close", "[script]") {
    auto e = errors_of("send a\nclose\nsend b\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].line == 3);
    CHECK(e[0].message.find("line 2") != std::string::npos);
    e = errors_of("expect-close\n# fine\n\nwait 1s\n");
    REQUIRE(e.size() == 1);
    CHECK(e[0].line == 4);
}

TEST_CASE("script: empty scripts, bad bytes and long lines are refused, not crashed on", "[script]") {
    CHECK(errors_of("").size() == 1);
    CHECK(errors_of("# only a comment\n\n").size() == 1);
    const auto e = errors_of(std::string("send \xff\xfe\n"));
    REQUIRE(e.size() == 1);
    CHECK(e[0].message.find("UTF-8") != std::string::npos);
    CHECK(errors_of("ping " + std::string(126, 'x')).size() == 1);
    CHECK(parse_script("ping " + std::string(125, 'x'), nullptr));
    CHECK(errors_of("close 1000 " + std::string(124, 'r')).size() == 1);
    std::string many;
    for (int i = 0; i < 100; ++i) many += "bogus\n";
    CHECK(errors_of(many).size() == 20);
}

TEST_CASE("close codes a client may send", "[script]") {
    for (int ok : {1000, 1001, 1002, 1003, 1007, 1008, 1011, 3000, 4000, 4999}) CHECK(wsx::close_code_problem(ok).empty());
    for (int bad : {0, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000, 65535}) CHECK_FALSE(wsx::close_code_problem(bad).empty());
    CHECK(wsx::close_reason_problem(std::string(123, 'a')).empty());
    CHECK_FALSE(wsx::close_reason_problem(std::string(124, 'a')).empty());
    CHECK_FALSE(wsx::close_reason_problem("\xc3").empty());
}
