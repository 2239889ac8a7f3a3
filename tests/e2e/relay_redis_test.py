"""wsx relay over a real redis-server (started here on a free loopback port): two and three
instances form one hub (exactly-once delivery, shared history, presence and direct messages),
and a Redis that dies and comes back mid-traffic is survived without help."""
import os
import signal
import threading
import time
import unittest

import wsxtest
from relay_helpers import REDIS_SERVER, RedisServer, RelayCase, link_relays, wait_until


@unittest.skipUnless(os.access(REDIS_SERVER, os.X_OK), "redis-server is not installed")
class RelayRedisTest(RelayCase):
    def start_cluster(self, redis, n, *extra):
        urls = []
        procs = []
        for _ in range(n):
            p, url = self.start_relay("--redis", redis.url, "--metrics", "--presence-ttl", "3s", *extra)
            procs.append(p)
            urls.append(url)
        for url in urls:
            wait_until(lambda: self.metrics(url).get("wsx_relay_redis_up") == 1, 10, "redis connected")
        link_relays(self, urls)
        return procs, urls

    def test_two_instances_exactly_once_with_shared_history_presence_and_direct(self):
        redis = self.start_redis()
        procs, (u1, u2) = self.start_cluster(redis, 2, "--history", "50")
        a = self.json_client(u1, "/?id=alice")
        b = self.json_client(u2, "/?id=bob")
        a.subscribe("room")
        b.subscribe("room")
        raw1 = self.raw(u1, "/room?id=r1")
        raw2 = self.raw(u2, "/room?id=r2")
        wait_until(lambda: a.presence("room") == ["alice", "bob", "r1", "r2"], 10, "shared presence")
        self.assertEqual(b.presence("room"), ["alice", "bob", "r1", "r2"])
        n = 50
        for i in range(n):
            a.send({"op": "publish", "topic": "room", "data": f"a{i}"})
            b.send({"op": "publish", "topic": "room", "data": f"b{i}"})
        want_from = {"alice": [f"a{i}" for i in range(n)], "bob": [f"b{i}" for i in range(n)]}
        got_a = a.messages("room", n)  # alice gets bob's only (no echo)
        got_b = b.messages("room", n)
        self.assertEqual([m["data"] for m in got_a], want_from["bob"])
        self.assertEqual([m["data"] for m in got_b], want_from["alice"])
        for raw in (raw1, raw2):
            got = [raw.recv_message()[1].decode() for _ in range(2 * n)]
            self.assertEqual(sorted(got), sorted(want_from["alice"] + want_from["bob"]))
            self.assertEqual([x for x in got if x[0] == "a"], want_from["alice"])  # per-publisher order
        # Exactly once: a marker published after everything is the very next thing each receives.
        a.send({"op": "publish", "topic": "room", "data": "end"})
        for raw in (raw1, raw2):
            self.assertEqual(raw.recv_message(), (1, b"end"))
        self.assertEqual(b.messages("room", 1)[0]["data"], "end")
        # History lives in Redis: ids are shared, and a subscriber on either instance can resume.
        ids = sorted(m["id"] for m in got_a + got_b)
        self.assertEqual(ids, list(range(ids[0], ids[0] + 2 * n)))
        c = self.json_client(u2)
        c.subscribe("room", since=ids[-1] - 3)
        self.assertEqual([m["id"] for m in c.messages("room", 4)], [ids[-1] - 2, ids[-1] - 1, ids[-1], ids[-1] + 1])
        # Direct messages find their addressee on the other instance; unknown ones are refused.
        a.send({"op": "send", "to": "bob", "data": "over there"})
        self.assertEqual(a.next(lambda m: m.get("type") in ("sent", "error")), {"type": "sent", "to": "bob"})
        self.assertEqual(b.next(lambda m: m.get("type") == "direct"), {"type": "direct", "from": "alice", "data": "over there"})
        a.send({"op": "send", "to": "r2", "data": "raw there"})
        a.next(lambda m: m.get("type") == "sent")
        self.assertEqual(raw2.recv_message(), (1, b"raw there"))
        a.send({"op": "send", "to": "nobody", "data": "x"})
        self.assertEqual(a.next(lambda m: m.get("type") == "error")["error"], "no client with id 'nobody'")
        # Leaving on one instance shows on the other.
        raw2.send_close()
        raw2.expect_close()
        raw2.sock.close()
        self.assertEqual(a.next(lambda m: m.get("type") == "leave"), {"type": "leave", "topic": "room", "member": "r2"})
        self.assertEqual(a.presence("room"), sorted(["alice", "bob", "r1", c.id]))
        # An instance that dies is dropped from presence once its heartbeat expires.
        procs[1].stop(9)
        wait_until(lambda: a.presence("room") == ["alice", "r1"], 15, "dead instance to leave presence")

    def test_three_instances_every_subscriber_gets_every_message_once(self):
        redis = self.start_redis()
        procs, urls = self.start_cluster(redis, 3)
        subs = [[self.raw(u, f"/fan?id=s{k}-{i}") for i in range(5)] for k, u in enumerate(urls)]
        pubs = [self.raw(u, f"/fan?id=p{k}") for k, u in enumerate(urls)]
        q = self.json_client(urls[0])
        wait_until(lambda: len(q.presence("fan")) == 18, 10, "18 members across 3 instances")
        n = 100
        for i in range(n):
            for k, p in enumerate(pubs):
                p.send_text(f"p{k}:{i}")
        for k, group in enumerate(subs):
            for ws in group:
                got = [ws.recv_message()[1].decode() for _ in range(3 * n)]
                for src in range(3):
                    self.assertEqual([x for x in got if x.startswith(f"p{src}:")], [f"p{src}:{i}" for i in range(n)])
        for k, p in enumerate(pubs):
            p.send_text(f"end{k}")
        for group in subs:
            for ws in group:
                self.assertEqual(sorted(ws.recv_message()[1] for _ in range(3)), [b"end0", b"end1", b"end2"])
        total = [self.metrics(u) for u in urls]
        self.assertEqual(sum(m["wsx_relay_redis_out_total"] for m in total), 3 * (n + 1) + 6)  # + link probes

    def test_relay_started_before_redis(self):
        redis = RedisServer()  # its port, not started yet
        p1, u1 = self.start_relay("--redis", redis.url, "--metrics")
        a = self.json_client(u1, "/?id=a")
        b = self.json_client(u1, "/?id=b")
        a.subscribe("t")
        b.send({"op": "publish", "topic": "t", "data": "without redis"})
        self.assertEqual(a.messages("t", 1)[0]["data"], "without redis")
        p1.wait_for(r"relay: redis 127\.0\.0\.1:\d+ unreachable \(Connection refused\): serving local subscribers only")
        redis.start()
        self.addCleanup(redis.kill)
        wait_until(lambda: self.metrics(u1).get("wsx_relay_redis_up") == 1, 15, "redis connected")
        p2, u2 = self.start_relay("--redis", redis.url, "--metrics")
        wait_until(lambda: self.metrics(u2).get("wsx_relay_redis_up") == 1, 15, "redis connected")
        link_relays(self, [u1, u2])
        c = self.json_client(u2, "/?id=c")
        c.send({"op": "publish", "topic": "t", "data": "from the other instance"})
        self.assertEqual(a.messages("t", 1)[0]["data"], "from the other instance")
        self.assertEqual(self.metrics(u1)["wsx_relay_redis_local_only_total"], 1)

    def test_redis_killed_and_restarted_mid_traffic(self):
        self.outage(freeze=False)

    def test_redis_frozen_mid_traffic(self):
        self.outage(freeze=True)

    def outage(self, freeze):
        redis = self.start_redis()
        procs, (u1, u2) = self.start_cluster(redis, 2, "--redis-timeout", "500ms")
        local = self.raw(u1, "/live?id=local")
        remote = self.raw(u2, "/live?id=remote")
        pub = self.raw(u1, "/live?id=pub")
        q = self.json_client(u1)
        wait_until(lambda: len(q.presence("live")) == 3, 10, "3 members")
        sent = []
        stop = threading.Event()

        def publish():
            i = 0
            while not stop.is_set():
                pub.send_text(f"m{i}")
                sent.append(i)
                i += 1
                time.sleep(0.002)  # pacing only: a steady trickle across the outage
        t = threading.Thread(target=publish, daemon=True)
        t.start()
        try:
            wait_until(lambda: len(sent) > 200, 10, "traffic")
            if freeze:
                # Stopped, not gone: connections stay open and nothing answers.
                os.kill(redis.proc.pid, signal.SIGSTOP)
                self.addCleanup(lambda: redis.proc.poll() is None and os.kill(redis.proc.pid, signal.SIGCONT))
            else:
                redis.kill()
            before = len(sent)
            wait_until(lambda: self.metrics(u1).get("wsx_relay_redis_local_only_total", 0) > 0, 10, "outage noticed")
            wait_until(lambda: len(sent) > before + 300, 10, "traffic during the outage")
            if freeze:
                os.kill(redis.proc.pid, signal.SIGCONT)
            else:
                again = RedisServer(redis.port).start()
                self.addCleanup(again.kill)
            for u in (u1, u2):
                wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 15, "reconnected")
            link_relays(self, [u1, u2])
            after = len(sent)
            wait_until(lambda: len(sent) > after + 200, 10, "traffic after the outage")
        finally:
            stop.set()
            t.join(5)
        total = len(sent)
        pub.send_text("end")
        # The local subscriber never missed a message.
        got = []
        while True:
            m = local.recv_message()[1].decode()
            if m == "end":
                break
            got.append(int(m[1:]))
        self.assertEqual(got, list(range(total)))
        # The remote one got messages in order, none twice, including after the outage.
        rgot = []
        while True:
            m = remote.recv_message()[1].decode()
            if m == "end":
                break
            rgot.append(int(m[1:]))
        self.assertEqual(rgot, sorted(set(rgot)))
        self.assertLess(len(rgot), total)
        self.assertGreater(rgot[-1], after)
        m1, m2 = self.metrics(u1), self.metrics(u2)
        # What did not cross is reported: by the receiving side as gaps in the ids.
        self.assertEqual(m2["wsx_relay_redis_missed_total"], total - len(rgot))
        self.assertGreaterEqual(m1["wsx_relay_redis_disconnects_total"], 1)
        self.assertGreater(m1["wsx_relay_redis_local_only_total"], 0)
        if freeze:
            # Unconfirmed ones may still have crossed once Redis woke up.
            self.assertGreaterEqual(m1["wsx_relay_redis_local_only_total"], total - len(rgot))
        else:
            # A message Redis confirmed can still be lost on its way out as Redis dies: the
            # publisher counts only what Redis never confirmed; the receiver's gaps count all.
            self.assertLessEqual(m1["wsx_relay_redis_local_only_total"], total - len(rgot))
        for p in procs:
            self.assertIsNone(p.proc.poll(), "a relay died")
        procs[1].stop()
        self.assertRegex(procs[1].rest_of_stderr(), r'topic "live": \d+ messages published through redis did not arrive here')
        procs[0].stop()
        log = procs[0].rest_of_stderr()
        self.assertIn("redis connection lost", log)
        if freeze:
            self.assertIn("no reply within 500ms", log)
        self.assertRegex(log, r"redis reconnected after [\d.]+s; \d+ messages published here meanwhile were delivered to local")


if __name__ == "__main__":
    wsxtest.main()
