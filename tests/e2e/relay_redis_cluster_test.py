"""wsx relay with --redis redis+cluster://: a Redis Cluster of three masters (real redis-server
processes started here on loopback ports, joined with redis-cli --cluster create). Each topic
goes through its own shard channel on the master of its slot (SPUBLISH/SSUBSCRIBE, never classic
PUBLISH); two relays seeded with different nodes deliver every message once and in order; a slot
moved to another master during traffic loses and duplicates nothing when --history covers the
gap, and the relays say so in their log and metrics; a master restarted is reconnected to and its
topics flow again. Bad cluster URLs and --durable with one are usage errors."""
import os
import re
import threading
import time
import unittest

import wsxtest
from wsxtest import certs
from relay_helpers import (REDIS_CLI, REDIS_SERVER, RedisCluster, RelayCase, link_relays, redis_cli, redis_command,
                           wait_until)

HAVE_REDIS = os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)
PREFIX = "wsx:relay"


def channel(topic):
    return f"{PREFIX}:msg:{{{topic}}}"


@unittest.skipUnless(HAVE_REDIS, "redis-server and redis-cli are not installed")
class RelayRedisClusterTest(RelayCase):
    def start_cluster(self):
        c = RedisCluster(self.tmp).start()
        self.addCleanup(c.kill)
        return c

    def start_relays(self, cluster, *extra):
        """Two relays, the first seeded with node 1, the second with node 3."""
        procs, urls = [], []
        for seed in (0, 2):
            p, url = self.start_relay("--redis", cluster.url(seed), "--metrics", "--presence-ttl", "3s", *extra)
            procs.append(p)
            urls.append(url)
        for url in urls:
            wait_until(lambda url=url: self.metrics(url).get("wsx_relay_redis_up") == 1, 15, "redis cluster connected")
        link_relays(self, urls)
        return procs, urls

    def topics_on_each_master(self, cluster):
        """One topic name per master: the slot of its channel is on that master."""
        found = {}
        for i in range(1000):
            t = f"topic{i}"
            owner = cluster.owner(cluster.keyslot(channel(t)))
            found.setdefault(owner, t)
            if len(found) == len(cluster.nodes):
                break
        self.assertEqual(sorted(found), sorted(cluster.ports))
        return found  # port → topic

    def shard_subscribers(self, port, topic):
        r = redis_command(port, "PUBSUB", "SHARDNUMSUB", channel(topic))
        return r[1]

    def check_delivery(self, got, want_data):
        """got: the messages of one topic a subscriber received; want_data: the payloads in publish
        order. Every one once, ids consecutive, payloads in order."""
        self.assertEqual([m["data"] for m in got], want_data)
        ids = [m["id"] for m in got]
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))), "ids in order, none missing or twice")

    def test_two_relays_each_topic_on_its_own_shard_channel_exactly_once_in_order(self):
        cluster = self.start_cluster()
        procs, (u1, u2) = self.start_relays(cluster, "--history", "100")
        procs[0].wait_for(r"relay: redis cluster: 3 masters, 16384 slots \(127\.0\.0\.1:\d+, 127\.0\.0\.1:\d+, "
                          r"127\.0\.0\.1:\d+\)")
        topics = self.topics_on_each_master(cluster)
        subs = [self.json_client(u, f"/?id=sub{k}") for k, u in enumerate((u1, u2))]
        for s in subs:
            for t in topics.values():
                self.assertEqual(s.subscribe(t)["type"], "subscribed")
        # Sharding is real: each topic's channel has the two relays as subscribers on the master
        # of its slot, and none elsewhere; nothing is on classic pub/sub.
        for port, t in topics.items():
            wait_until(lambda port=port, t=t: self.shard_subscribers(port, t) == 2, 10, f"both relays on {t}'s shard channel")
            for other in cluster.ports:
                if other != port:
                    self.assertEqual(self.shard_subscribers(other, t), 0)
        for port in cluster.ports:
            self.assertEqual(redis_command(port, "PUBSUB", "CHANNELS"), [])
            self.assertEqual(redis_command(port, "PUBSUB", "NUMSUB", f"{PREFIX}:msg:all"), [f"{PREFIX}:msg:all".encode(), 0])
        # Publishers on both relays, each topic published from one of them.
        pubs = [self.json_client(u, f"/?id=pub{k}") for k, u in enumerate((u1, u2))]
        n = 100
        names = list(topics.values())
        for i in range(n):
            for k, t in enumerate(names):
                pubs[k % 2].send({"op": "publish", "topic": t, "data": f"{t}:{i}"})
        for s in subs:
            for t in names:
                self.check_delivery(s.messages(t, n), [f"{t}:{i}" for i in range(n)])
        # Exactly once: a marker published after everything is the next message of each topic.
        for k, t in enumerate(names):
            pubs[k % 2].send({"op": "publish", "topic": t, "data": "end"})
        for s in subs:
            for t in names:
                self.assertEqual(s.messages(t, 1)[0]["data"], "end")
        # Presence and direct messages across the relays (presence keys live in the topic's slot).
        self.assertEqual(subs[0].presence(names[0]), ["sub0", "sub1"])
        pubs[0].send({"op": "send", "to": "sub1", "data": "hello"})
        self.assertEqual(pubs[0].next(lambda m: m.get("type") in ("sent", "error")), {"type": "sent", "to": "sub1"})
        self.assertEqual(subs[1].next(lambda m: m.get("type") == "direct"), {"type": "direct", "from": "pub0", "data": "hello"})
        for u in (u1, u2):
            m = self.metrics(u)
            self.assertEqual(m["wsx_relay_redis_cluster_nodes"], 3)
            self.assertEqual(sum(1 for k in m if k.startswith("wsx_relay_redis_node{")), 3)
            self.assertEqual(m["wsx_relay_redis_missed_total"], 0)
            # Every command went to its slot's master at once: no redirection in a steady layout.
            for kind in ("moved", "ask"):
                self.assertEqual(m.get(f'wsx_relay_redis_redirections_total{{kind="{kind}"}}'), 0, kind)
        # Braces and % in a topic are escaped in its hash tag: its keys and channel share a slot,
        # and it stays apart from the topic its escaped form would otherwise be.
        odd, lookalike = "we{ird}%", "we%7Bird%7D%25"
        for s in subs:
            s.subscribe(odd)
            s.subscribe(lookalike)
        tag = "{we%7Bird%7D%25}"
        odd_owner = cluster.owner(cluster.keyslot(f"{PREFIX}:msg:{tag}"))
        wait_until(lambda: redis_command(odd_owner, "PUBSUB", "SHARDNUMSUB", f"{PREFIX}:msg:{tag}")[1] == 2, 10,
                   "both relays on the odd topic's channel")
        pubs[0].send({"op": "publish", "topic": odd, "data": "odd"})
        for s in subs:
            self.assertEqual([m["data"] for m in s.messages(odd, 1)], ["odd"])
        self.assertEqual(redis_command(odd_owner, "LRANGE", f"{PREFIX}:hist:{tag}", "0", "-1")[0].split(b"\n")[3],
                         odd.encode())
        pubs[1].send({"op": "publish", "topic": lookalike, "data": "lookalike"})
        for s in subs:
            self.assertEqual([m["data"] for m in s.messages(lookalike, 1)], ["lookalike"])
            self.assertFalse([m for m in s.pending if m.get("topic") == odd and m.get("type") == "message"])
        # The last subscriber of a topic leaving a relay: that relay leaves its shard channel.
        subs[0].send({"op": "unsubscribe", "topic": names[0]})
        port0 = [p for p, t in topics.items() if t == names[0]][0]
        wait_until(lambda: self.shard_subscribers(port0, names[0]) == 1, 10, "one relay left on the shard channel")

    def test_a_slot_moved_during_traffic_loses_and_duplicates_nothing(self):
        cluster = self.start_cluster()
        procs, (u1, u2) = self.start_relays(cluster, "--history", "1000")
        topic = "busy"
        slot = cluster.keyslot(channel(topic))
        src = cluster.owner(slot)
        dst = [p for p in cluster.ports if p != src][0]
        subs = [self.json_client(u, f"/?id=sub{k}") for k, u in enumerate((u1, u2))]
        for s in subs:
            s.subscribe(topic)
        wait_until(lambda: self.shard_subscribers(src, topic) == 2, 10, "both relays on the shard channel")
        pubs = [self.json_client(u, f"/?id=pub{k}") for k, u in enumerate((u1, u2))]
        n = 400
        errors = []

        def publish(k):
            try:
                for i in range(n):
                    pubs[k].send({"op": "publish", "topic": topic, "data": f"p{k}:{i}"})
                    time.sleep(0.005)  # paced, so that the move happens while messages flow
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=publish, args=(k,), daemon=True) for k in range(2)]
        for t in threads:
            t.start()
        # Moved once both relays have delivered some. Between the keys' move and the slot's
        # handover, publishes are sent to the new master with -ASK, where no relay is subscribed
        # yet: those reach subscribers from the history.
        first = [s.messages(topic, 20) for s in subs]

        def asked():
            return sum(self.metrics(u).get('wsx_relay_redis_redirections_total{kind="ask"}', 0) for u in (u1, u2))

        cluster.move_slot(slot, dst, between=lambda: wait_until(lambda: asked() >= 4, 15, "publishes sent with -ASK"))
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(cluster.owner(slot), dst)
        for s, head in zip(subs, first):
            got = head + s.messages(topic, 2 * n - len(head), timeout=30)
            ids = [m["id"] for m in got]
            self.assertEqual(ids, list(range(ids[0], ids[0] + 2 * n)), "every id once, in order")
            for k in range(2):
                self.assertEqual([m["data"] for m in got if m["data"].startswith(f"p{k}:")], [f"p{k}:{i}" for i in range(n)])
        # Nothing more: a marker is the next message on both.
        pubs[0].send({"op": "publish", "topic": topic, "data": "end"})
        for s in subs:
            self.assertEqual(s.messages(topic, 1)[0]["data"], "end")
        # The relays follow the slot: both subscribed on its new master, none on the old one.
        wait_until(lambda: self.shard_subscribers(dst, topic) == 2, 15, "both relays on the new master")
        self.assertEqual(self.shard_subscribers(src, topic), 0)
        # ... and say so: the layout change in the log, the redirections in the metrics.
        for p in procs:
            p.wait_for(r"relay: topic \"busy\": ids \d+\.\.\d+ read from the history", 15)
            p.wait_for(r"relay: redis cluster: 127\.0\.0\.1:\d+ dropped shard channel wsx:relay:msg:\{busy\} \(its slot moved\)", 15)
            p.wait_for(r"relay: redis cluster: layout changed, 1 slot moved: 3 masters, 16384 slots", 15)
        total = [self.metrics(u) for u in (u1, u2)]
        redirections = sum(m.get('wsx_relay_redis_redirections_total{kind="moved"}', 0) +
                           m.get('wsx_relay_redis_redirections_total{kind="ask"}', 0) for m in total)
        self.assertGreater(redirections, 0)
        for m in total:
            self.assertEqual(m["wsx_relay_redis_missed_total"], 0)

    def test_a_master_restarted_is_reconnected_and_its_topics_flow_again(self):
        cluster = self.start_cluster()
        procs, (u1, u2) = self.start_relays(cluster, "--history", "100")
        port = cluster.ports[1]
        topic = self.topics_on_each_master(cluster)[port]
        subs = [self.json_client(u, f"/?id=sub{k}") for k, u in enumerate((u1, u2))]
        for s in subs:
            s.subscribe(topic)
        wait_until(lambda: self.shard_subscribers(port, topic) == 2, 10, "both relays on the shard channel")
        pub = self.json_client(u1, "/?id=pub")
        pub.send({"op": "publish", "topic": topic, "data": "before"})
        before = [s.messages(topic, 1)[0] for s in subs]
        self.assertEqual([m["data"] for m in before], ["before", "before"])
        cluster.restart(1)
        for p in procs:
            p.wait_for(rf"relay: redis connection lost \(master 127\.0\.0\.1:{port} unreachable", 15)
        for n in cluster.ports:
            wait_until(lambda n=n: "cluster_state:ok" in " ".join(redis_cli(n, "CLUSTER", "INFO")), 30,
                       f"cluster_state:ok on {n}")
        for u in (u1, u2):
            wait_until(lambda u=u: self.metrics(u).get("wsx_relay_redis_up") == 1, 15, "redis cluster connected again")
        for p in procs:
            p.wait_for(r"relay: redis reconnected after \d+\.\d+s", 15)
        # The restarted master has the relays' subscriptions again, and ids go on from the last.
        wait_until(lambda: self.shard_subscribers(port, topic) == 2, 15, "both relays back on the shard channel")
        pub.send({"op": "publish", "topic": topic, "data": "after"})
        for s, b in zip(subs, before):
            m = s.messages(topic, 1)[0]
            self.assertEqual(m["data"], "after")
            self.assertEqual(m["id"], b["id"] + 1)

    def test_ids_that_went_back_after_a_restart_are_delivered(self):
        # The master restarts without its data: the topic's id counter starts again at 1. A relay
        # with no subscriber of its own (it knows no earlier id) publishes: its messages get ids
        # the subscribers' relays delivered before the restart, and must still be delivered.
        cluster = self.start_cluster()
        procs, (u1, u2) = self.start_relays(cluster, "--history", "100")
        p3, u3 = self.start_relay("--redis", cluster.url(1), "--metrics", "--history", "100")
        wait_until(lambda: self.metrics(u3).get("wsx_relay_redis_up") == 1, 15, "third relay connected")
        port = cluster.ports[1]
        topic = self.topics_on_each_master(cluster)[port]
        subs = [self.json_client(u, f"/?id=sub{k}") for k, u in enumerate((u1, u2))]
        for s in subs:
            s.subscribe(topic)
        wait_until(lambda: self.shard_subscribers(port, topic) == 2, 10, "both relays on the shard channel")
        pub = self.json_client(u1, "/?id=pub")
        for i in range(5):
            pub.send({"op": "publish", "topic": topic, "data": f"before{i}"})
        for s in subs:
            self.assertEqual([m["data"] for m in s.messages(topic, 5)], [f"before{i}" for i in range(5)])
        cluster.restart(1)
        for n in cluster.ports:
            wait_until(lambda n=n: "cluster_state:ok" in " ".join(redis_cli(n, "CLUSTER", "INFO")), 30,
                       f"cluster_state:ok on {n}")
        for u in (u1, u2, u3):
            wait_until(lambda u=u: self.metrics(u).get("wsx_relay_redis_up") == 1, 15, "redis cluster connected again")
        wait_until(lambda: self.shard_subscribers(port, topic) == 2, 15, "both relays back on the shard channel")
        for p in procs:
            p.wait_for(r"relay: topic .*: ids went back from 5 to 0", 15)
        other = self.json_client(u3, "/?id=other")
        other.send({"op": "publish", "topic": topic, "data": "after0"})
        for s in subs:
            self.assertEqual(s.messages(topic, 1)[0]["data"], "after0")
        pub.send({"op": "publish", "topic": topic, "data": "after1"})
        for s in subs:
            m = s.messages(topic, 1)[0]
            self.assertEqual(m["data"], "after1")

    def test_one_connection_per_user_across_relays(self):
        cluster = self.start_cluster()
        secret = "k3y"

        def token(sub):
            return wsxtest.jwt_hs256(secret, {"exp": int(time.time()) + 600, "sub": sub})

        urls = []
        for seed in (0, 2):
            _, url = self.start_relay("--redis", cluster.url(seed), "--metrics", "--jwt-secret", secret,
                                      "--one-connection-per-user")
            urls.append(url)
        for url in urls:
            wait_until(lambda url=url: self.metrics(url).get("wsx_relay_redis_up") == 1, 15, "redis cluster connected")
        # The claims travel on one shard channel, on the master of its slot.
        ctl = f"{PREFIX}:ctl:{{all}}"
        owner = cluster.owner(cluster.keyslot(ctl))
        wait_until(lambda: redis_command(owner, "PUBSUB", "SHARDNUMSUB", ctl)[1] == 2, 10, "both relays on the control channel")
        first = self.json_client(urls[0], f"/?token={token('alice')}")
        self.json_client(urls[1], f"/?token={token('alice')}")
        self.assertEqual(first.ws.expect_close(5), (4001, "replaced"))
        self.assertEqual(self.metrics(urls[0])["wsx_relay_replaced_total"], 1)

    def test_tls_and_a_password(self):
        c = certs()
        tls = {"cert": c["server"], "key": c["server_key"], "ca": c["ca"]}
        cluster = RedisCluster(self.tmp, tls=tls, password="s3cret").start()
        self.addCleanup(cluster.kill)
        self.assertTrue(cluster.url().startswith("rediss+cluster://"))
        urls = []
        for seed in (0, 2):
            p, url = self.start_relay("--redis", cluster.url(seed).replace("://", "://:s3cret@"), "--redis-cacert", c["ca"],
                                      "--metrics")
            p.wait_for(r"relay: redis cluster connected \(3 masters, tls, instance [0-9a-f]+\)", 15)
            urls.append(url)
        link_relays(self, urls)
        sub = self.json_client(urls[1])
        sub.subscribe("secure")
        pub = self.json_client(urls[0])
        wait_until(lambda: self.metrics(urls[1]).get("wsx_relay_redis_up") == 1, 10, "connected")
        # Once the subscriber's relay holds the channel (its first message arrives), the rest follows in order.
        wait_until(lambda: self._probe(pub, sub, "secure"), 10, "the channel to carry messages")
        # Late probes arrive before a marker published after them: then nothing else is pending.
        pub.send({"op": "publish", "topic": "secure", "data": "ready"})
        sub.next(lambda m: m.get("type") == "message" and m.get("data") == "ready")
        sub.pending.clear()
        for i in range(20):
            pub.send({"op": "publish", "topic": "secure", "data": f"m{i}"})
        self.check_delivery(sub.messages("secure", 20), [f"m{i}" for i in range(20)])
        # Without the password the relay says why it cannot use the cluster.
        p, _ = self.start_relay("--redis", cluster.url(1), "--redis-cacert", c["ca"])
        p.wait_for(r"relay: redis cluster .* unreachable \(.*(NOAUTH|authentication required)", 15)

    def test_a_refused_shard_channel_is_said_once_and_retried_calmly(self):
        # A user with keys and commands but no channels (Redis 7's default for new ACL users):
        # every SSUBSCRIBE is refused with NOPERM. The relay says so once per channel and tries
        # again at its own pace: no loop of layout questions and refusals (it made thousands a
        # second), and it still stops on SIGTERM.
        cluster = self.start_cluster()
        for port in cluster.ports:
            self.assertEqual(redis_command(port, "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "resetchannels", "+@all"), "OK")
        url = cluster.url(0).replace("://", "://nochan:pw@")
        p, relay = self.start_relay("--redis", url, "--metrics")
        wait_until(lambda: self.metrics(relay).get("wsx_relay_redis_up") == 1, 15, "redis cluster connected")
        sub = self.json_client(relay)
        sub.subscribe("quiet")
        p.wait_for(r"refused shard channel .*quiet.*NOPERM", 10)
        before = self.layout_questions(cluster)
        t0 = time.monotonic()
        # Three seconds: the tick places the channel again every second.
        wait_until(lambda: time.monotonic() - t0 > 3, 5, "three seconds")
        asked = self.layout_questions(cluster) - before
        self.assertLess(asked, 30, f"{asked} CLUSTER SLOTS in about 3 s")
        self.assertEqual(p.stop(timeout=15), 0)  # the subscriber is closed first (up to 5 s)
        log = p.rest_of_stderr()
        refusals = [l for l in log.splitlines() if "refused shard channel" in l and "quiet" in l]
        self.assertEqual(len(refusals), 1, f"said once, not at every try: {log}")

    def layout_questions(self, cluster):
        total = 0
        for port in cluster.ports:
            info = redis_command(port, "INFO", "commandstats")
            m = re.search(r"cmdstat_cluster\|slots:calls=(\d+)", info.decode() if isinstance(info, bytes) else info)
            total += int(m.group(1)) if m else 0
        return total

    def _probe(self, pub, sub, topic):
        pub.send({"op": "publish", "topic": topic, "data": "probe"})
        try:
            sub.next(lambda m: m.get("type") == "message" and m.get("data") == "probe", timeout=0.3)
            return True
        except (AssertionError, TimeoutError):
            return False


class RelayClusterUrlTest(RelayCase):
    def test_a_bad_cluster_url_is_a_usage_error_in_one_line(self):
        for url, fragment in [("redis+cluster://", "the host list is empty"),
                              ("redis+cluster://127.0.0.1:7000/2", "a Redis Cluster has database 0 only"),
                              ("redis+cluster://127.0.0.1:0", "bad port '0'"),
                              ("redis+cluster://127.0.0.1:7000,,127.0.0.1:7001", "empty entry in the cluster node list")]:
            r = self.wsx("relay", "127.0.0.1:0", "--redis", url, timeout=10)
            self.assertExit(r, 2)
            self.assertOneError(r, "--redis", fragment, "redis+cluster://[user:pass@]host:port")

    def test_durable_with_a_cluster_url_is_refused(self):
        r = self.wsx("relay", "127.0.0.1:0", "--redis", "redis+cluster://127.0.0.1:7000", "--durable", timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "--durable needs a redis:// or redis+sentinel:// URL")

    def test_a_prefix_with_braces_is_refused_with_a_cluster_url(self):
        r = self.wsx("relay", "127.0.0.1:0", "--redis", "redis+cluster://127.0.0.1:7000", "--redis-prefix", "a{b}",
                     timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "--redis-prefix 'a{b}'")


if __name__ == "__main__":
    wsxtest.main()
