#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>

#include "balancer.hpp"

using wsx::balance_mode;
using wsx::balancer;
using wsx::hash_ring;

TEST_CASE("balance modes and sticky sources parse", "[balancer]") {
    CHECK(wsx::parse_balance_mode("round-robin") == balance_mode::round_robin);
    CHECK(wsx::parse_balance_mode("least-conn") == balance_mode::least_conn);
    CHECK(wsx::parse_balance_mode("random") == balance_mode::random);
    CHECK_FALSE(wsx::parse_balance_mode("fastest"));
    CHECK(wsx::parse_sticky("ip")->from == wsx::sticky_source::kind::ip);
    auto h = wsx::parse_sticky("header:X-User");
    REQUIRE(h);
    CHECK(h->from == wsx::sticky_source::kind::header);
    CHECK(h->name == "X-User");
    CHECK(wsx::parse_sticky("cookie:sid")->from == wsx::sticky_source::kind::cookie);
    CHECK(wsx::parse_sticky("query:room")->name == "room");
    CHECK_FALSE(wsx::parse_sticky("header:"));
    CHECK_FALSE(wsx::parse_sticky("body:x"));
    CHECK_FALSE(wsx::parse_sticky(""));
}

TEST_CASE("round-robin visits every backend in turn", "[balancer]") {
    balancer b({"a", "b", "c"}, balance_mode::round_robin);
    std::vector<std::size_t> firsts;
    for (int i = 0; i < 6; ++i) firsts.push_back(b.candidates(nullptr).front());
    CHECK(firsts == std::vector<std::size_t>{0, 1, 2, 0, 1, 2});
    auto all = b.candidates(nullptr);
    CHECK(std::set<std::size_t>(all.begin(), all.end()).size() == 3);
}

TEST_CASE("least-conn picks the backend with the fewest open connections", "[balancer]") {
    balancer b({"a", "b", "c"}, balance_mode::least_conn);
    b.opened(0);
    b.opened(0);
    b.opened(2);
    CHECK(b.candidates(nullptr).front() == 1);
    b.opened(1);
    b.opened(1);
    CHECK(b.candidates(nullptr).front() == 2);
    b.closed(0);
    b.closed(0);
    CHECK(b.candidates(nullptr).front() == 0);
    // Equal load: new connections spread over all of them.
    balancer e({"a", "b", "c"}, balance_mode::least_conn);
    std::map<std::size_t, int> count;
    for (int i = 0; i < 30; ++i) {
        auto c = e.candidates(nullptr).front();
        ++count[c];
        e.opened(c);
    }
    CHECK(count[0] == 10);
    CHECK(count[1] == 10);
    CHECK(count[2] == 10);
}

TEST_CASE("random spreads roughly evenly", "[balancer]") {
    balancer b({"a", "b", "c"}, balance_mode::random, 42);
    std::map<std::size_t, int> count;
    for (int i = 0; i < 3000; ++i) ++count[b.candidates(nullptr).front()];
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(count[i] > 800);
        CHECK(count[i] < 1200);
    }
}

TEST_CASE("down backends come last, or not at all", "[balancer]") {
    balancer b({"a", "b", "c"}, balance_mode::round_robin);
    b.mark_down(1);
    for (int i = 0; i < 6; ++i) {
        auto c = b.candidates(nullptr);
        CHECK(c.front() != 1);
        CHECK(c.back() == 1);
    }
    auto up_only = b.candidates(nullptr, false);
    CHECK(up_only.size() == 2);
    CHECK(std::find(up_only.begin(), up_only.end(), 1) == up_only.end());
    b.mark_up(1);
    CHECK(b.candidates(nullptr, false).size() == 3);
    b.mark_down(2);
    b.expire_down(std::chrono::milliseconds(0));
    CHECK(b.backend(2).up.load());
}

TEST_CASE("the ring keeps keys in place; a fourth member takes about a quarter", "[balancer]") {
    hash_ring three, four;
    for (std::size_t i = 0; i < 3; ++i) {
        three.add(i, "ws://127.0.0.1:" + std::to_string(9000 + i));
        four.add(i, "ws://127.0.0.1:" + std::to_string(9000 + i));
    }
    four.add(3, "ws://127.0.0.1:9003");
    const int keys = 4000;
    int moved = 0, moved_elsewhere = 0;
    std::map<std::size_t, int> share;
    for (int k = 0; k < keys; ++k) {
        const auto key = "user-" + std::to_string(k);
        auto a = three.lookup(key), b = four.lookup(key);
        REQUIRE(a);
        REQUIRE(b);
        CHECK(three.lookup(key) == a);  // stable
        ++share[*a];
        if (*a != *b) {
            ++moved;
            if (*b != 3) ++moved_elsewhere;
        }
    }
    CHECK(moved_elsewhere == 0);  // keys only ever move to the new member
    CHECK(moved > keys * 0.18);
    CHECK(moved < keys * 0.32);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(share[i] > keys * 0.25);
        CHECK(share[i] < keys * 0.42);
    }
}

TEST_CASE("sticky keys stay on their backend and fail over along the ring", "[balancer]") {
    balancer b({"a", "b", "c"}, balance_mode::round_robin);
    std::map<std::string, std::size_t> owner;
    for (int k = 0; k < 300; ++k) {
        const std::string key = "k" + std::to_string(k);
        owner[key] = b.candidates(&key).front();
        for (int r = 0; r < 3; ++r) CHECK(b.candidates(&key).front() == owner[key]);
    }
    b.mark_down(0);
    for (const auto& [key, o] : owner) {
        const auto now = b.candidates(&key).front();
        CHECK(now != 0);
        if (o != 0) CHECK(now == o);  // only the down backend's keys move
    }
    b.mark_up(0);
    for (const auto& [key, o] : owner) CHECK(b.candidates(&key).front() == o);
}

TEST_CASE("metrics name every backend", "[balancer]") {
    balancer b({"ws://x:1", "tcp://y:2"}, balance_mode::round_robin);
    b.opened(0);
    b.mark_down(1);
    ++b.backend(1).failures;
    std::string out;
    b.render_metrics(out);
    CHECK(out.find("wsx_proxy_backend_up{backend=\"ws://x:1\"} 1") != std::string::npos);
    CHECK(out.find("wsx_proxy_backend_up{backend=\"tcp://y:2\"} 0") != std::string::npos);
    CHECK(out.find("wsx_proxy_backend_connections{backend=\"ws://x:1\"} 1") != std::string::npos);
    CHECK(out.find("wsx_proxy_backend_failures_total{backend=\"tcp://y:2\"} 1") != std::string::npos);
}
