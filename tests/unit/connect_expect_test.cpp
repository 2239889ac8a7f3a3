#include <catch2/catch.hpp>

#include <string>

#include "connect_app.hpp"

using wsx::expectation;

TEST_CASE("an --expect pattern that does not compile says why", "[connect]") {
    std::string error;
    CHECK_FALSE(expectation::regex("(unclosed", &error));
    CHECK_FALSE(error.empty());
    CHECK(error.find("  ") == std::string::npos);  // one sentence, not Boost's paragraph
}

TEST_CASE("expect patterns: ECMAScript syntax, searched in the message", "[connect]") {
    auto x = expectation::regex(R"(^\d+ ok$)", nullptr);
    REQUIRE(x);
    CHECK(x->matches("200 ok"));
    CHECK_FALSE(x->matches("200 ok!"));
    CHECK(expectation::regex("o+k", nullptr)->matches("status: ook"));
}

TEST_CASE("expect patterns on a 1 MiB message neither crash nor hang", "[connect]") {
    const std::string big = R"({"status":)" + std::string(1 << 20, 'a') + "ok}";
    std::string error;
    CHECK(expectation::regex(R"("status":.*ok)", nullptr)->matches(big, &error));
    CHECK(error.empty());
    CHECK_FALSE(expectation::regex("^.*z", nullptr)->matches(big, &error));
    CHECK(error.empty());
    // Too costly for this message: no match, and the reason for the caller to report.
    CHECK_FALSE(expectation::regex("a+z", nullptr)->matches(big, &error));
    CHECK_FALSE(error.empty());
}
