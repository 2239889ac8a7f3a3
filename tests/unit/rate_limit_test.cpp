#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "rate_limit.hpp"

using namespace std::chrono_literals;
using wsx::ip_rate_limiter;
using wsx::parse_rate_limit;
using wsx::token_bucket;
using clock_type = std::chrono::steady_clock;

namespace {
const clock_type::time_point t0 = clock_type::time_point{} + 1000h;

/// Successes when try_take is called at t0, t0+step, ... up to t0+span inclusive.
long count_successes(token_bucket& b, std::chrono::nanoseconds step, std::chrono::nanoseconds span) {
    long ok = 0;
    for (auto t = 0ns; t <= span; t += step) ok += b.try_take(t0 + t) ? 1 : 0;
    return ok;
}
}  // namespace

TEST_CASE("token_bucket starts full and refuses past the burst", "[rate_limit]") {
    token_bucket b(1, 5);
    CHECK(b.tokens(t0) == 5);
    for (int i = 0; i < 5; ++i) CHECK(b.try_take(t0));
    CHECK_FALSE(b.try_take(t0));
    CHECK(b.tokens(t0) == Approx(0).margin(1e-12));
}

TEST_CASE("token_bucket refills at the rate, capped at the burst", "[rate_limit]") {
    token_bucket b(10, 2);
    REQUIRE(b.try_take(t0));
    REQUIRE(b.try_take(t0));
    CHECK_FALSE(b.try_take(t0 + 50ms));
    CHECK(b.tokens(t0 + 50ms) == Approx(0.5));
    CHECK(b.try_take(t0 + 100ms));           // exactly one token due
    CHECK_FALSE(b.try_take(t0 + 100ms));
    CHECK(b.tokens(t0 + 150ms) == Approx(0.5));
    CHECK(b.tokens(t0 + 1h) == 2);           // long idle: capped
    CHECK(b.try_take(t0 + 1h));
    CHECK(b.try_take(t0 + 1h));
    CHECK_FALSE(b.try_take(t0 + 1h));
}

TEST_CASE("token_bucket: a refused take takes nothing; n may exceed 1", "[rate_limit]") {
    token_bucket b(1, 10);
    CHECK(b.try_take(t0, 7));
    CHECK_FALSE(b.try_take(t0, 4));
    CHECK(b.tokens(t0) == Approx(3));
    CHECK(b.try_take(t0, 3));
    CHECK_FALSE(b.try_take(t0 + 1500ms, 2));
    CHECK(b.try_take(t0 + 2s, 2));
    CHECK_FALSE(b.try_take(t0 + 1h, 11));   // more than the burst: never
}

TEST_CASE("token_bucket: no drift however often it is asked", "[rate_limit]") {
    SECTION("1000/s polled every microsecond for 10 s") {
        token_bucket b(1000, 1);
        CHECK(count_successes(b, 1us, 10s) == 1 + 10000);
    }
    SECTION("3/s polled every millisecond for 10 s (token times fall between polls)") {
        // A burst above what accrues between polls: the fractions carry over exactly.
        token_bucket b(3, 5);
        CHECK(count_successes(b, 1ms, 10s) == 5 + 30);
    }
    SECTION("a rate that is not a binary fraction, polled exactly when tokens are due") {
        token_bucket b(1 / 0.3, 5);   // one token every 300 ms
        CHECK(count_successes(b, 5ms, 30s) == 5 + 100);
    }
    SECTION("what accrues beyond a full bucket is discarded") {
        // Burst 1 at 3/s polled every ms: the bucket is full from k/3 s until the next
        // poll, so each token takes 334 ms to be granted, not 333.3.
        token_bucket b(3, 1);
        CHECK(count_successes(b, 1ms, 10s) == 1 + 10000 / 334);
    }
    SECTION("polled every 1 us, every 997 us, or once, the bucket holds the same") {
        token_bucket fine(7, 100), coarse(7, 100), once(7, 100);
        for (int i = 0; i < 100; ++i) {
            REQUIRE(fine.try_take(t0));
            REQUIRE(coarse.try_take(t0));
            REQUIRE(once.try_take(t0));
        }
        for (auto t = 0ns; t <= 5s; t += 1us) fine.try_take(t0 + t, 1000);   // refused: takes nothing
        for (auto t = 0ns; t <= 5s; t += 997us) coarse.try_take(t0 + t, 1000);
        CHECK(fine.tokens(t0 + 5s) == Approx(35).epsilon(1e-12));
        CHECK(coarse.tokens(t0 + 5s) == Approx(35).epsilon(1e-12));
        CHECK(once.tokens(t0 + 5s) == Approx(35).epsilon(1e-12));
    }
    SECTION("drained continuously for three hours (past the internal re-basing)") {
        token_bucket b(1, 1);
        CHECK(count_successes(b, 500ms, 3h) == 1 + 3 * 3600);
    }
}

TEST_CASE("token_bucket: time going backwards grants nothing", "[rate_limit]") {
    token_bucket b(1, 1);
    REQUIRE(b.try_take(t0 + 10s));
    CHECK_FALSE(b.try_take(t0));
    CHECK_FALSE(b.try_take(t0 + 10s));
    CHECK(b.tokens(t0 + 10s) == Approx(0).margin(1e-12));
    CHECK(b.try_take(t0 + 11s));
}

TEST_CASE("token_bucket rejects unusable parameters", "[rate_limit]") {
    CHECK_THROWS_AS(token_bucket(0, 1), std::invalid_argument);
    CHECK_THROWS_AS(token_bucket(-1, 1), std::invalid_argument);
    CHECK_THROWS_AS(token_bucket(1, 0.5), std::invalid_argument);
    CHECK_THROWS_AS(token_bucket(std::numeric_limits<double>::infinity(), 1), std::invalid_argument);
    CHECK_THROWS_AS(token_bucket(1, std::numeric_limits<double>::quiet_NaN()), std::invalid_argument);
}

TEST_CASE("ip_rate_limiter keeps one bucket per address", "[rate_limit]") {
    ip_rate_limiter l(1, 2);
    CHECK(l.allow("10.0.0.1", t0));
    CHECK(l.allow("10.0.0.1", t0));
    CHECK_FALSE(l.allow("10.0.0.1", t0));
    CHECK(l.allow("10.0.0.2", t0));
    CHECK(l.allow("10.0.0.1", t0 + 1s));
    CHECK_FALSE(l.allow("10.0.0.1", t0 + 1s));
}

TEST_CASE("ip_rate_limiter groups IPv6 by /64 and IPv4-mapped with IPv4", "[rate_limit]") {
    ip_rate_limiter l(0.001, 1);
    CHECK(l.allow("2001:db8::1", t0));
    CHECK_FALSE(l.allow("2001:db8::ffff:2", t0));       // same /64
    CHECK_FALSE(l.allow("[2001:db8::3]", t0));          // bracketed
    CHECK_FALSE(l.allow("2001:db8::4%eth0", t0));       // zone id
    CHECK(l.allow("2001:db8:0:1::1", t0));              // next /64
    CHECK(l.allow("192.0.2.7", t0));
    CHECK_FALSE(l.allow("::ffff:192.0.2.7", t0));
    CHECK(l.allow("::1", t0));
    CHECK(l.allow("unix-peer", t0));                   // not an address: one shared bucket
    CHECK_FALSE(l.allow("", t0));

    ip_rate_limiter per_address(0.001, 1, 1000, 128);
    CHECK(per_address.allow("2001:db8::1", t0));
    CHECK(per_address.allow("2001:db8::2", t0));
}

TEST_CASE("ip_rate_limiter memory stays bounded under a flood of addresses", "[rate_limit]") {
    ip_rate_limiter l(0.001, 1, 100);
    for (unsigned i = 0; i < 10000; ++i) {
        const std::string ip = "10." + std::to_string(i >> 16 & 255) + "." + std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255);
        CHECK(l.allow(ip, t0));   // each new address gets its first token
        REQUIRE(l.tracked() <= 100);
    }
    CHECK(l.tracked() == 100);
    // The most recent addresses are still limited; the oldest were forgotten.
    CHECK_FALSE(l.allow("10.0.39.15", t0));   // i = 9999
    CHECK(l.allow("10.0.0.0", t0));           // i = 0, evicted long ago
}

TEST_CASE("ip_rate_limiter forgets addresses whose bucket has refilled", "[rate_limit]") {
    ip_rate_limiter l(1, 1);
    for (int i = 0; i < 50; ++i) REQUIRE(l.allow("10.1.0." + std::to_string(i), t0));
    CHECK(l.tracked() == 50);
    // After two seconds all 50 are full again; each call sweeps up to two of them.
    for (int i = 0; i < 25; ++i) l.allow("10.2.0.1", t0 + 2s);
    CHECK(l.tracked() == 1);
    // A forgotten address starts afresh: nothing was lost by forgetting it.
    CHECK(l.allow("10.1.0.0", t0 + 2s));
}

TEST_CASE("ip_rate_limiter is safe to share between threads", "[rate_limit]") {
    ip_rate_limiter l(0.001, 100);
    std::atomic<int> allowed{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (l.allow("198.51.100.1", t0)) ++allowed;
        });
    for (auto& t : threads) t.join();
    CHECK(allowed == 100);
}

TEST_CASE("parse_rate_limit reads N/s and N/m with an optional burst", "[rate_limit]") {
    using pair = std::pair<double, double>;
    CHECK(parse_rate_limit("100/s") == pair{100, 100});
    CHECK(parse_rate_limit("6000/m") == pair{100, 100});
    CHECK(parse_rate_limit("30/m") == pair{0.5, 1});     // burst at least 1
    CHECK(parse_rate_limit("3600/h") == pair{1, 1});
    CHECK(parse_rate_limit("1k/s") == pair{1000, 1000});
    CHECK(parse_rate_limit("5") == pair{5, 5});          // bare number: per second
    CHECK(parse_rate_limit("100/s,burst=200") == pair{100, 200});
    CHECK(parse_rate_limit(" 10/s , burst = 2.5 ") == pair{10, 2.5});
    CHECK(parse_rate_limit("1/m,burst=10") == pair{1.0 / 60, 10});
}

TEST_CASE("parse_rate_limit explains bad specs", "[rate_limit]") {
    for (const char* bad : {"", "abc", "10/x", "-1/s", "0/s", "10/s,burst=0.5", "10/s,burst=x", "10/s,burst=", "10/s,foo=1",
                            "10/s,burst=inf", "10/s,burst=-3"}) {
        INFO("spec: '" << bad << "'");
        std::string why;
        CHECK_FALSE(parse_rate_limit(bad, &why));
        CHECK_THAT(why, Catch::Contains("bad rate limit"));
        CHECK(why.find('\n') == std::string::npos);
    }
    std::string why;
    parse_rate_limit("0/s", &why);
    CHECK_THAT(why, Catch::Contains("above zero"));
    parse_rate_limit("10/s,burst=0.5", &why);
    CHECK_THAT(why, Catch::Contains("at least 1"));
    parse_rate_limit("10/s,foo=1", &why);
    CHECK_THAT(why, Catch::Contains("unknown option 'foo=1'"));
    CHECK_FALSE(parse_rate_limit("nonsense"));   // why is optional
}
