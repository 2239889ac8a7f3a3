#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "json_match.hpp"

using nlohmann::json;
using wsx::json_expectation;

namespace {

json_expectation parse_ok(std::string_view spec) {
    std::string error;
    auto e = json_expectation::parse(spec, &error);
    INFO("spec: " << spec << " error: " << error);
    REQUIRE(e);
    CHECK(error.empty());
    return *e;
}

std::string parse_error(std::string_view spec) {
    std::string error;
    auto e = json_expectation::parse(spec, &error);
    INFO("spec: " << spec);
    CHECK_FALSE(e);
    CHECK_FALSE(error.empty());
    return error;
}

bool match(std::string_view spec, std::string_view doc) { return parse_ok(spec).matches_text(doc); }

const char* sample = R"({
  "type": "hello",
  "n": 3,
  "ok": true,
  "nothing": null,
  "user": {"name": "alice", "id": "42", "tags": ["a", "b"]},
  "items": [{"id": 1}, {"id": 2, "sub": [[10, 11], [20, 21, 22]]}],
  "weird.key": {"x=y": "dot", "": "empty"},
  "a b": 1,
  "0": "zero-key",
  "f": 2.5
})";

}  // namespace

TEST_CASE("json path: keys, indexes and nesting", "[json_match]") {
    CHECK(match("type=hello", sample));
    CHECK(match("user.name=alice", sample));
    CHECK(match("items[0].id=1", sample));
    CHECK(match("items[1].id=2", sample));
    CHECK(match("items[1].sub[1][2]=22", sample));
    CHECK(match("user.tags[1]=b", sample));
    CHECK(match("items[-1].id=2", sample));
    CHECK(match("items[1].sub[-1][-3]=20", sample));
    CHECK(match("items.0.id=1", sample));  // digits index arrays too
    CHECK(match("0=zero-key", sample));    // and are plain keys on objects
    CHECK(match("a b=1", sample));
    CHECK(match(".user.name=alice", sample));  // jq-style leading dot
    CHECK(match(R"(["weird.key"]["x=y"]=dot)", sample));
    CHECK(match(R"(["weird.key"][""]=empty)", sample));
    CHECK(match(R"(user["name"]=alice)", sample));
    CHECK(match(R"(["user"].name=alice)", sample));
    CHECK(match(R"(["\u0075ser"].name=alice)", sample));  // JSON escapes in quoted keys
    CHECK(match(R"(items[ 0 ].id=1)", sample));
    CHECK(match("[1]=x", R"(["w","x"])"));  // the document itself may be an array
}

TEST_CASE("json path: missing keys and wrong shapes do not match", "[json_match]") {
    CHECK_FALSE(match("missing=1", sample));
    CHECK_FALSE(match("user.missing=1", sample));
    CHECK_FALSE(match("user.name.first=alice", sample));  // through a string
    CHECK_FALSE(match("items[2].id=1", sample));
    CHECK_FALSE(match("items[-3].id=1", sample));
    CHECK_FALSE(match("user[0]=alice", sample));  // index on an object
    CHECK_FALSE(match("type[0]=h", sample));      // index on a string
    CHECK_FALSE(match("items.x=1", sample));      // non-numeric key on an array
    CHECK_FALSE(match("items.99999999999999999999999=1", sample));
    CHECK_FALSE(match("n.x", sample));
    CHECK_FALSE(match("user", "[1,2]"));
    CHECK_FALSE(match("a", "\"a\""));
}

TEST_CASE("json values: JSON when it parses, otherwise a string", "[json_match]") {
    CHECK(match("n=3", sample));
    CHECK(match("n=3.0", sample));  // numbers compare by value
    CHECK_FALSE(match("n=4", sample));
    CHECK(match("f=2.5", sample));
    CHECK(match("ok=true", sample));
    CHECK_FALSE(match("ok=false", sample));
    CHECK(match("nothing=null", sample));
    CHECK(match(R"(type="hello")", sample));
    CHECK(match("type=hello", sample));
    CHECK_FALSE(match("type=Hello", sample));
    CHECK_FALSE(match("type=hell", sample));
    CHECK(match(R"(user.tags=["a","b"])", sample));
    CHECK(match(R"(user.tags=[ "a" , "b" ])", sample));
    CHECK_FALSE(match(R"(user.tags=["b","a"])", sample));
    CHECK(match(R"(items[0]={"id":1})", sample));
    CHECK(match(R"(m={"b":2,"a":1})", R"({"m":{"a":1,"b":2}})"));  // key order does not matter
    CHECK(match("s=", R"({"s":""})"));
    CHECK_FALSE(match("s=", R"({"s":null})"));
    CHECK(match("s=a=b", R"({"s":"a=b"})"));  // only the first '=' separates
}

TEST_CASE("json values: unquoted scalars also match the same text as a string", "[json_match]") {
    CHECK(match("user.id=42", sample));        // "42" in the document
    CHECK_FALSE(match(R"(user.id="43")", sample));
    CHECK_FALSE(match(R"(n="3")", sample));    // quoted: must be the string "3"
    CHECK(match("v=true", R"({"v":"true"})"));
    CHECK(match("v=1e3", R"({"v":1000})"));
    CHECK(match("v=1e3", R"({"v":"1e3"})"));
    CHECK_FALSE(match("v=1e3", R"({"v":"1000"})"));
}

TEST_CASE("json values: blanks around path and value are ignored", "[json_match]") {
    CHECK(match("type = hello", sample));
    CHECK(match("  user.name=alice  ", sample));
    CHECK(match(R"(s=" x ")", R"({"s":" x "})"));
    CHECK_FALSE(match(R"(s=" x ")", R"({"s":"x"})"));
    const auto e = parse_ok(" a.b = c ");
    CHECK(e.path == "a.b");
    CHECK(e.raw_value == "c");
}

TEST_CASE("json existence checks", "[json_match]") {
    CHECK(match("user.name", sample));
    CHECK(match("nothing", sample));  // null exists
    CHECK(match("items[1].sub", sample));
    CHECK_FALSE(match("user.nickname", sample));
    CHECK_FALSE(match("items[5]", sample));
    const auto e = parse_ok("items[0].id");
    CHECK(e.exists_only);
    CHECK(e.raw_value.empty());
}

TEST_CASE("json_expectation parses into steps", "[json_match]") {
    const auto e = parse_ok(R"(a.b[2][-1]["c.d"].e=1)");
    using step = wsx::json_path_step;
    CHECK(e.steps == std::vector<step>{std::string("a"), std::string("b"), std::int64_t{2},
                                       std::int64_t{-1}, std::string("c.d"), std::string("e")});
    CHECK(e.path == R"(a.b[2][-1]["c.d"].e)");
    CHECK(e.value == 1);
    CHECK_FALSE(e.exists_only);
}

TEST_CASE("json_expectation rejects malformed paths with a reason", "[json_match]") {
    CHECK(parse_error("") == "empty path at position 1 in ''");
    CHECK(parse_error("=1").find("empty path") == 0);
    CHECK(parse_error("a..b").find("empty key") == 0);
    CHECK(parse_error("a.").find("empty key") == 0);
    CHECK(parse_error("a.=1").find("empty key") == 0);
    CHECK(parse_error(".").find("empty path") == 0);
    CHECK(parse_error("a[").find("bad array index") == 0);
    CHECK(parse_error("a[0").find("expected ']'") == 0);
    CHECK(parse_error("a[x]").find("bad array index 'x'") == 0);
    CHECK(parse_error("a[1.5]").find("bad array index") == 0);
    CHECK(parse_error("a[99999999999999999999]").find("bad array index") == 0);
    CHECK(parse_error("a]").find("']' without '['") == 0);
    CHECK(parse_error("a[0]b").find("expected '.', '[' or '='") == 0);
    CHECK(parse_error(R"(a["unterminated)").find("unterminated string") == 0);
    CHECK(parse_error(R"(a["bad\q"])").find("invalid quoted key") == 0);
    CHECK(parse_error(R"(a["x"y])").find("expected ']'") == 0);
    CHECK(parse_error("a!=1").find("'!=' is not supported") == 0);
    CHECK(json_expectation::parse("a..b", nullptr) == std::nullopt);  // error is optional
}

TEST_CASE("matches_text is false for text that is not JSON", "[json_match]") {
    const auto e = parse_ok("type=hello");
    CHECK_FALSE(e.matches_text("type=hello"));
    CHECK_FALSE(e.matches_text(""));
    CHECK_FALSE(e.matches_text(R"({"type":"hello")"));
    CHECK_FALSE(e.matches_text("\xff\xfe"));
    CHECK(e.matches_text(R"(  {"type":"hello"}  )"));
    const auto deep = std::string(100000, '[') + std::string(100000, ']');
    CHECK_FALSE(parse_ok("[0]=1").matches_text(deep));
}

TEST_CASE("find returns the value at the path", "[json_match]") {
    const auto doc = json::parse(sample);
    const auto* v = parse_ok("items[1].sub[0]").find(doc);
    REQUIRE(v != nullptr);
    CHECK(*v == json::array({10, 11}));
    CHECK(parse_ok("nope").find(doc) == nullptr);
}

TEST_CASE("describe", "[json_match]") {
    CHECK(parse_ok("user.name=alice").describe() == R"(user.name = "alice")");
    CHECK(parse_ok("n=3").describe() == "n = 3");
    CHECK(parse_ok(R"(t=["a",1])").describe() == R"(t = ["a",1])");
    CHECK(parse_ok("items[0].id").describe() == "items[0].id exists");
    CHECK(parse_ok("s=\xff").describe() == "s = \"\xef\xbf\xbd\"");  // invalid UTF-8 does not throw
}
