"""wsx relay with --redis redis+sentinel://: the master is found through Redis Sentinel (real
redis-server processes started here: a master, a replica and a sentinel on loopback ports). When
the master dies the sentinel promotes the replica, both relays follow it, say so in their log and
metrics, and messages cross between them again. A master name the sentinel does not know, and a
URL without one, are reported in one line."""
import os
import re
import unittest

import wsxtest
from wsxtest import certs
from relay_helpers import (REDIS_CLI, REDIS_SERVER, RedisNode, RelayCase, SentinelServer,
                           link_relays, redis_cli, wait_until)

HAVE_REDIS = os.access(REDIS_SERVER, os.X_OK) and os.access(REDIS_CLI, os.X_OK)


@unittest.skipUnless(HAVE_REDIS, "redis-server and redis-cli are not installed")
class RelayRedisSentinelTest(RelayCase):
    def start_group(self):
        """A master, its replica (in sync) and a sentinel that knows both."""
        master = RedisNode(None, self.tmp).start()
        self.addCleanup(master.kill)
        replica = RedisNode(master.port, self.tmp).start()
        self.addCleanup(replica.kill)
        wait_until(replica.synced, 15, "the replica to sync with the master")
        sentinel = SentinelServer(master.port, self.tmp).start()
        self.addCleanup(sentinel.kill)
        wait_until(lambda: sentinel.knows_replica(replica.port), 15, "the sentinel to know the replica")
        return master, replica, sentinel

    def node(self, url):
        """The wsx_relay_redis_node label of a relay's metrics ("" when not connected)."""
        for k in self.metrics(url):
            m = re.fullmatch(r'wsx_relay_redis_node\{node="([^"]*)"\}', k)
            if m:
                return m.group(1)
        return ""

    def test_relays_follow_a_failover_and_messages_cross_again(self):
        master, replica, sentinel = self.start_group()
        old, new = f"127.0.0.1:{master.port}", f"127.0.0.1:{replica.port}"
        self.assertEqual(sentinel.master(), old)
        relays = [self.start_relay("--redis", sentinel.url(), "--metrics") for _ in range(2)]
        (p1, u1), (p2, u2) = relays
        for p, u in relays:
            p.wait_for(rf"relay: redis {re.escape(old)} connected \(master 'mymaster' via sentinel "
                       rf"127\.0\.0\.1:{sentinel.port}, instance ")
            self.assertEqual(self.node(u), old)
            self.assertEqual(self.metrics(u)["wsx_relay_redis_failovers_total"], 0)
        link_relays(self, [u1, u2])
        sub = self.json_client(u1, "/?id=sub")
        sub.subscribe("t")
        pub = self.json_client(u2, "/?id=pub")
        for i in range(20):
            pub.send({"op": "publish", "topic": "t", "data": f"before-{i}"})
        self.assertEqual([m["data"] for m in sub.messages("t", 20)], [f"before-{i}" for i in range(20)])

        # The master dies mid-traffic; what is published meanwhile stays local to the publisher.
        for i in range(10):
            pub.send({"op": "publish", "topic": "t", "data": f"during-{i}"})
        master.kill()
        for i in range(10, 20):
            pub.send({"op": "publish", "topic": "t", "data": f"during-{i}"})
        wait_until(lambda: sentinel.master() == new, 30, "the sentinel to promote the replica")
        for p, u in relays:
            p.wait_for(rf"relay: redis failover: master 'mymaster' moved from {re.escape(old)} to {re.escape(new)}", 15)
            wait_until(lambda: self.node(u) == new, 15, "the relay to connect to the new master")
            m = self.metrics(u)
            self.assertGreaterEqual(m["wsx_relay_redis_failovers_total"], 1)
            self.assertEqual(m["wsx_relay_redis_up"], 1)

        # Both relays share the new master: new messages cross, once each and in order.
        link_relays(self, [u1, u2])
        for i in range(20):
            pub.send({"op": "publish", "topic": "t", "data": f"after-{i}"})
        pub.send({"op": "publish", "topic": "t", "data": "end"})
        got = []
        while not got or got[-1] != "end":
            got.append(sub.next(lambda m: m.get("type") == "message" and m.get("topic") == "t", 15)["data"])
            self.assertLess(len(got), 100, got)
        self.assertEqual([d for d in got if not d.startswith("during-")], [f"after-{i}" for i in range(20)] + ["end"])

    def test_a_master_demoted_while_reachable_is_left_for_the_new_one(self):
        # A failover asked of the sentinel keeps the old master running, as a replica: the relays
        # must not stay on it (the subscriber connection would never see an error there).
        master, replica, sentinel = self.start_group()
        old, new = f"127.0.0.1:{master.port}", f"127.0.0.1:{replica.port}"
        relays = [self.start_relay("--redis", sentinel.url(), "--metrics") for _ in range(2)]
        for _, u in relays:
            wait_until(lambda: self.node(u) == old, 15, "the relay to connect to the master")
        urls = [u for _, u in relays]
        link_relays(self, urls)
        wait_until(lambda: redis_cli(sentinel.port, "SENTINEL", "FAILOVER", "mymaster") == ["OK"], 15,
                   "the sentinel to accept FAILOVER")
        wait_until(lambda: sentinel.master() == new, 30, "the sentinel to promote the replica")
        for p, u in relays:
            p.wait_for(rf"relay: redis failover: master 'mymaster' moved from {re.escape(old)} to {re.escape(new)}", 15)
            wait_until(lambda: self.node(u) == new, 15, "the relay to connect to the new master")
        # The subscriber connections moved too (a replica still passes PUBLISH on to its own
        # subscribers, so delivery alone would not tell).
        channel = "wsx:relay:msg:all"
        wait_until(lambda: redis_cli(replica.port, "PUBSUB", "NUMSUB", channel) == [channel, "2"], 15,
                   "both relays to subscribe on the new master")
        wait_until(lambda: redis_cli(master.port, "PUBSUB", "NUMSUB", channel) == [channel, "0"], 15,
                   "both relays to leave the demoted master")
        link_relays(self, urls)
        sub = self.json_client(urls[0])
        sub.subscribe("t")
        pub = self.json_client(urls[1])
        for i in range(10):
            pub.send({"op": "publish", "topic": "t", "data": f"m{i}"})
        self.assertEqual([m["data"] for m in sub.messages("t", 10)], [f"m{i}" for i in range(10)])

    def test_a_read_only_master_is_left_on_its_first_refused_write(self):
        # The master turns replica behind the sentinel's back: the next write is refused with
        # READONLY, and the relay drops that connection at once to ask the sentinels again.
        master, replica, sentinel = self.start_group()
        p, u = self.start_relay("--redis", sentinel.url(), "--metrics")
        wait_until(lambda: self.node(u) == f"127.0.0.1:{master.port}", 15, "the relay to connect to the master")
        self.assertEqual(redis_cli(master.port, "REPLICAOF", "127.0.0.1", str(replica.port)), ["OK"])
        self.raw(u, "/t?id=pub").send_text("refused")
        p.wait_for(rf"relay: redis connection lost \(master 'mymaster' at 127\.0\.0\.1:{master.port}: the server is "
                   r"read-only now \(READONLY You can't write against a read only replica\.", 10)

    def test_an_unknown_master_name_is_reported(self):
        _, _, sentinel = self.start_group()
        p, u = self.start_relay("--redis", sentinel.url("nosuch"), "--metrics")
        p.wait_for(rf"relay: redis master 'nosuch' via sentinel 127\.0\.0\.1:{sentinel.port} unreachable "
                   rf"\(sentinel 127\.0\.0\.1:{sentinel.port}: no master named 'nosuch' is monitored", 10)
        m = self.metrics(u)
        self.assertEqual(m["wsx_relay_redis_up"], 0)
        self.assertEqual(self.node(u), "")
        # Still a relay: local subscribers are served.
        a = self.json_client(u)
        a.subscribe("t")
        self.json_client(u).send({"op": "publish", "topic": "t", "data": "local"})
        self.assertEqual(a.messages("t", 1)[0]["data"], "local")


@unittest.skipUnless(HAVE_REDIS, "redis-server and redis-cli are not installed")
class RelayRedisSentinelTlsTest(RelayCase):
    def test_rediss_sentinel_speaks_tls_to_the_sentinel_and_the_master(self):
        c = certs()
        tls = {"cert": c["server"], "key": c["server_key"], "ca": c["ca"]}
        master = RedisNode(None, self.tmp, tls=tls).start()
        self.addCleanup(master.kill)
        sentinel = SentinelServer(master.port, self.tmp, tls=tls).start()
        self.addCleanup(sentinel.kill)
        wait_until(lambda: sentinel.master() == f"127.0.0.1:{master.port}", 15, "the sentinel to know the master")
        p, u = self.start_relay("--redis", sentinel.url(), "--redis-cacert", c["ca"], "--metrics")
        p.wait_for(rf"relay: redis 127\.0\.0\.1:{master.port} connected \(master 'mymaster' via sentinel "
                   rf"127\.0\.0\.1:{sentinel.port}, tls, instance ")
        self.assertEqual(self.node(u), f"127.0.0.1:{master.port}")
        # The sentinel's certificate is checked too: without the test CA, it is not trusted.
        p2, _ = self.start_relay("--redis", sentinel.url())
        p2.wait_for(rf"relay: redis master 'mymaster' via sentinel 127\.0\.0\.1:{sentinel.port} unreachable \(sentinel "
                    rf"127\.0\.0\.1:{sentinel.port}: TLS certificate not verified by the system's trusted CAs", 10)

    node = RelayRedisSentinelTest.node


class RelaySentinelUrlTest(RelayCase):
    def test_a_sentinel_url_without_a_master_name_is_a_usage_error(self):
        for url, fragment in [("redis+sentinel://127.0.0.1:26379", "missing master name"),
                              ("redis+sentinel://127.0.0.1:26379/", "missing master name"),
                              ("redis+sentinel:///mymaster", "the host list is empty"),
                              ("redis+sentinel://127.0.0.1:0/mymaster", "bad port '0'")]:
            r = self.wsx("relay", "127.0.0.1:0", "--redis", url, timeout=10)
            self.assertExit(r, 2)
            line = self.assertOneError(r, "--redis", fragment, "redis+sentinel://[user:pass@]host:port")
            self.assertNotIn("\n", line)


if __name__ == "__main__":
    wsxtest.main()
