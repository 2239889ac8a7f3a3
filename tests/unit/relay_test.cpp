#include <catch2/catch.hpp>

#include <thread>

#include "redis.hpp"
#include "relay.hpp"

using namespace wsx;

namespace {
/// Records what the hub delivers; runs on a test io_context.
struct fake_sub : relay_subscriber {
    std::vector<relay_message_ptr> got;
    std::vector<std::vector<relay_message_ptr>> replays;
    bool own = false;
    bool deliver(const relay_message_ptr& m) override {
        if (m->type == relay_message::kind::data && m->origin == conn_id && !own) return false;
        got.push_back(m);
        return true;
    }
    void replay_done(const std::string&, std::vector<relay_message_ptr> h) override { replays.push_back(std::move(h)); }
};

std::shared_ptr<fake_sub> make_sub(relay_hub& hub, net::io_context& ioc, std::string id, std::size_t worker = 0) {
    auto s = std::make_shared<fake_sub>();
    s->conn_id = hub.next_conn_id();
    s->identity = std::move(id);
    s->worker = worker;
    s->executor = ioc.get_executor();
    hub.attach(s);
    return s;
}

std::vector<std::string> data_of(const std::vector<relay_message_ptr>& v) {
    std::vector<std::string> out;
    for (auto& m : v)
        if (m->type == relay_message::kind::data) out.push_back(m->data);
    return out;
}
}  // namespace

TEST_CASE("topic patterns match like shell globs", "[relay]") {
    CHECK(topic_matches("chat.*", "chat.room1"));
    CHECK(topic_matches("chat.*", "chat."));
    CHECK_FALSE(topic_matches("chat.*", "news.x"));
    CHECK(topic_matches("*", "anything"));
    CHECK(topic_matches("a?c", "abc"));
    CHECK_FALSE(topic_matches("a?c", "ac"));
    CHECK(topic_matches("*.log.*", "x.log.y"));
    CHECK_FALSE(topic_matches("exact", "exact2"));
    CHECK(valid_name("chat"));
    CHECK_FALSE(valid_name(""));
    CHECK_FALSE(valid_name("a\nb"));
    CHECK_FALSE(valid_name(std::string(257, 'x')));
}

TEST_CASE("a '*' in the pattern is a wildcard even where the topic holds a '*'", "[relay]") {
    // Found by fuzzing: the pattern's '*' was matched as a literal against the topic's '*' first,
    // so "news.*" refused the topic "news.*x".
    CHECK(topic_matches("news.*", "news.*x"));
    CHECK(topic_matches("a*", "a*b"));
    CHECK(topic_matches("news.*?.", "news.*post.."));
    CHECK(topic_matches("*", "*"));
    CHECK_FALSE(topic_matches("a*c", "a*b"));
}

TEST_CASE("topic ACL comes from a JWT claim", "[relay]") {
    std::string err;
    auto none = topic_acl::from_claims(R"({"sub":"u"})", "topics", err);
    REQUIRE(none);
    CHECK(none->may_subscribe("x"));
    CHECK(none->may_publish("x"));

    auto list = topic_acl::from_claims(R"({"topics":["chat.*"]})", "topics", err);
    REQUIRE(list);
    CHECK(list->may_subscribe("chat.a"));
    CHECK(list->may_publish("chat.a"));
    CHECK_FALSE(list->may_subscribe("admin"));

    auto split = topic_acl::from_claims(R"({"topics":{"subscribe":["*"],"publish":["own.*"]}})", "topics", err);
    REQUIRE(split);
    CHECK(split->may_subscribe("news"));
    CHECK_FALSE(split->may_publish("news"));
    CHECK(split->may_publish("own.1"));

    CHECK_FALSE(topic_acl::from_claims(R"({"topics":"chat"})", "topics", err));
    CHECK(err.find("topics") != std::string::npos);
    CHECK_FALSE(topic_acl::from_claims(R"({"topics":[1,2]})", "topics", err));
}

TEST_CASE("wire form round-trips binary data and refuses garbage", "[relay]") {
    relay_message m;
    m.topic = "t";
    m.id = 42;
    m.from = "alice";
    m.data = std::string("a\nb\0c", 5);
    m.binary = true;
    std::string inst;
    auto back = relay_wire_decode(relay_wire_encode(m, "inst1"), inst);
    REQUIRE(back);
    CHECK(inst == "inst1");
    CHECK(back->topic == "t");
    CHECK(back->id == 42);
    CHECK(back->from == "alice");
    CHECK(back->data == m.data);
    CHECK(back->binary);
    CHECK_FALSE(relay_wire_decode("hello", inst));
    CHECK_FALSE(relay_wire_decode("wsx1\ni\nz\nt\n1\nf\nt\n", inst));
    CHECK_FALSE(relay_wire_decode("wsx1\ni\nd\nt\nNaN\nf\nt\n", inst));
}

TEST_CASE("envelopes carry topic, id, sender and data; binary as base64", "[relay]") {
    relay_message m;
    m.topic = "t";
    m.id = 7;
    m.from = "bob";
    m.data = "hi";
    CHECK(relay_envelope(m) == R"({"data":"hi","from":"bob","id":7,"topic":"t","type":"message"})");
    m.binary = true;
    m.data = std::string("\x00\x01", 2);
    CHECK(relay_envelope(m) == R"({"binary":true,"data":"AAE=","from":"bob","id":7,"topic":"t","type":"message"})");
    m.type = relay_message::kind::join;
    CHECK(relay_envelope(m) == R"({"member":"bob","topic":"t","type":"join"})");
}

TEST_CASE("redis URLs", "[relay]") {
    std::string err;
    auto u = parse_redis_url("redis://user:pw@10.0.0.1:6380/3", err);
    REQUIRE(u);
    CHECK(u->host == "10.0.0.1");
    CHECK(u->port == 6380);
    CHECK(u->user == "user");
    CHECK(u->password == "pw");
    CHECK(u->db == 3);
    auto d = parse_redis_url("redis://localhost", err);
    REQUIRE(d);
    CHECK(d->host == "localhost");
    CHECK(d->port == 6379);
    CHECK(d->db == 0);
    CHECK_FALSE(parse_redis_url("http://x", err));
    CHECK_FALSE(parse_redis_url("redis://x:0", err));
    CHECK_FALSE(parse_redis_url("redis://x/abc", err));
}

TEST_CASE("the hub fans out to every subscriber of a topic, in order, across workers", "[relay]") {
    net::io_context ioc;
    relay_hub hub(relay_options{});
    auto pub = make_sub(hub, ioc, "pub");
    auto a = make_sub(hub, ioc, "a", 0);
    auto b = make_sub(hub, ioc, "b", 1);
    auto other = make_sub(hub, ioc, "other", 0);
    hub.subscribe("t", a, std::nullopt);
    hub.subscribe("t", b, std::nullopt);
    hub.subscribe("t", pub, std::nullopt);
    hub.subscribe("u", other, std::nullopt);
    for (int i = 0; i < 100; ++i) hub.publish("t", *pub, std::to_string(i), i % 2 == 1);
    ioc.run();
    std::vector<std::string> want;
    for (int i = 0; i < 100; ++i) want.push_back(std::to_string(i));
    CHECK(data_of(a->got) == want);
    CHECK(data_of(b->got) == want);
    CHECK(data_of(pub->got).empty());  // not to itself
    CHECK(data_of(other->got).empty());
    std::uint64_t last = 0;
    for (auto& m : a->got) {
        if (m->type != relay_message::kind::data) continue;
        CHECK(m->id == last + 1);
        CHECK(m->binary == (m->id % 2 == 0));
        last = m->id;
    }
    CHECK(hub.counters().published == 100);
    CHECK(hub.counters().delivered == 200);
}

TEST_CASE("history replays the last N and resumes after an id", "[relay]") {
    net::io_context ioc;
    relay_options o;
    o.history = 5;
    relay_hub hub(o);
    auto pub = make_sub(hub, ioc, "pub");
    for (int i = 1; i <= 8; ++i) hub.publish("t", *pub, std::to_string(i), false);
    auto all = make_sub(hub, ioc, "all");
    auto two = make_sub(hub, ioc, "two");
    auto since = make_sub(hub, ioc, "since");
    hub.subscribe("t", all, replay_request{SIZE_MAX, std::nullopt});
    hub.subscribe("t", two, replay_request{2, std::nullopt});
    hub.subscribe("t", since, replay_request{SIZE_MAX, 6});
    ioc.run();
    REQUIRE(all->replays.size() == 1);
    CHECK(data_of(all->replays[0]) == std::vector<std::string>{"4", "5", "6", "7", "8"});
    CHECK(data_of(two->replays[0]) == std::vector<std::string>{"7", "8"});
    CHECK(data_of(since->replays[0]) == std::vector<std::string>{"7", "8"});
}

TEST_CASE("presence, join/leave events and direct messages", "[relay]") {
    net::io_context ioc;
    relay_hub hub(relay_options{});
    auto a = make_sub(hub, ioc, "alice");
    auto b = make_sub(hub, ioc, "bob");
    hub.subscribe("room", a, std::nullopt);
    hub.subscribe("room", b, std::nullopt);
    std::vector<std::string> members;
    hub.presence("room", [&](std::vector<std::string> ids) { members = std::move(ids); });
    CHECK(members == std::vector<std::string>{"alice", "bob"});
    hub.unsubscribe("room", *b);
    ioc.run();
    ioc.restart();
    std::vector<std::string> events;
    for (auto& m : a->got)
        if (m->type != relay_message::kind::data) events.push_back(m->json);
    CHECK(events == std::vector<std::string>{R"({"member":"alice","topic":"room","type":"join"})",
                                             R"({"member":"bob","topic":"room","type":"join"})",
                                             R"({"member":"bob","topic":"room","type":"leave"})"});
    std::string result = "unset";
    hub.send_direct(*a, "bob", "psst", false, [&](std::string err) { result = err; });
    CHECK(result.empty());
    hub.send_direct(*a, "nobody", "x", false, [&](std::string err) { result = err; });
    CHECK(result == "no client with id 'nobody'");
    ioc.run();
    REQUIRE(!b->got.empty());
    CHECK(b->got.back()->json == R"({"data":"psst","from":"alice","type":"direct"})");
    hub.detach(*a, {"room"});
    hub.presence("room", [&](std::vector<std::string> ids) { members = std::move(ids); });
    CHECK(members.empty());
}

TEST_CASE("concurrent publishers keep their own order", "[relay]") {
    net::io_context ioc;
    relay_hub hub(relay_options{});
    auto sub = make_sub(hub, ioc, "sub");
    hub.subscribe("t", sub, std::nullopt);
    std::vector<std::shared_ptr<fake_sub>> pubs;
    for (int p = 0; p < 4; ++p) pubs.push_back(make_sub(hub, ioc, "p" + std::to_string(p)));
    std::vector<std::thread> threads;
    for (int p = 0; p < 4; ++p)
        threads.emplace_back([&, p] {
            for (int i = 0; i < 1000; ++i) hub.publish("t", *pubs[p], std::to_string(i), false);
        });
    for (auto& t : threads) t.join();
    ioc.run();
    std::map<std::string, int> next;
    std::uint64_t last_id = 0;
    int n = 0;
    for (auto& m : sub->got) {
        if (m->type != relay_message::kind::data) continue;
        CHECK(std::stoi(m->data) == next[m->from]++);
        CHECK(m->id > last_id);
        last_id = m->id;
        ++n;
    }
    CHECK(n == 4000);
}

TEST_CASE("a topic without subscribers or history is forgotten, and comes back", "[relay]") {
    net::io_context ioc;
    relay_hub hub(relay_options{});
    auto a = make_sub(hub, ioc, "a");
    auto pub = make_sub(hub, ioc, "pub");
    hub.subscribe("t", a, std::nullopt);
    hub.unsubscribe("t", *a);
    std::string metrics;
    hub.render_metrics(metrics);
    CHECK(metrics.find("wsx_relay_topics 0\n") != std::string::npos);
    hub.publish("t", *pub, "nobody hears this", false);
    hub.subscribe("t", a, std::nullopt);
    hub.publish("t", *pub, "heard", false);
    ioc.run();
    CHECK(data_of(a->got) == std::vector<std::string>{"heard"});
}
