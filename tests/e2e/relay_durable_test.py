"""wsx relay --durable over a real redis-server (started here): cross-instance messages go
through a Redis Stream, so a Redis that dies under traffic and comes back loses nothing. Every
message published on either relay before, during and after the outage reaches every subscriber
on both relays exactly once, in publish order, with one id per message, increasing per topic;
?since=ID resumes from the shared history on the other relay. A full outbox is refused the
documented way, and --durable without --redis is a usage error."""
import os
import signal
import threading
import time
import unittest

import wsxtest
from relay_helpers import (REDIS_SERVER, PersistentRedisServer, RedisServer, RelayCase, link_relays, stream_publishes,
                           wait_until)
from wsxtest import WSX


@unittest.skipUnless(os.access(REDIS_SERVER, os.X_OK), "redis-server is not installed")
class RelayDurableTest(RelayCase):
    def start_durable(self, redis, *extra):
        p, url = self.start_relay("--redis", redis.url, "--durable", "--metrics", "--redis-timeout", "500ms", *extra)
        return p, url

    def collect(self, client, topic, ends, timeout=30.0):
        """The data messages of `topic` a JSON client receives until it has seen every marker in
        `ends` (markers included)."""
        got, left = [], set(ends)
        deadline = time.monotonic() + timeout
        while left:
            remaining = deadline - time.monotonic()
            self.assertGreater(remaining, 0, f"markers {left} not received; got {len(got)} messages")
            try:
                m = client.next(lambda m: m.get("type") == "message" and m.get("topic") == topic, remaining)
            except TimeoutError:
                self.fail(f"markers {left} not received; got {len(got)} messages, the last {got[-3:]}")
            got.append(m)
            left.discard(m["data"])
        return got

    def test_redis_killed_and_restarted_under_traffic_loses_nothing(self):
        # Redis with an append-only file: back with everything it acknowledged.
        self.outage(PersistentRedisServer(self.tmp), pacing=0.002)

    def test_redis_restarted_without_its_data_loses_nothing(self):
        # Redis without persistence: entries not yet read when it died are gone from it; each
        # relay publishes its recent ones again, and every relay skips those it has. Faster
        # traffic, so that some entries are in flight when Redis dies.
        self.outage(RedisServer(), pacing=0.0002, same_ids=False)

    def test_redis_frozen_under_traffic_loses_nothing_and_adds_nothing_twice(self):
        # Stopped, not gone: publishes whose answers the relays gave up on are sent again once
        # it wakes up, and Redis, which had taken them, does not add them twice.
        self.outage(RedisServer(), pacing=0.002, freeze=True)

    def outage(self, redis, pacing, same_ids=True, freeze=False):
        redis.start()
        self.addCleanup(redis.kill)
        (p1, u1), (p2, u2) = self.start_durable(redis, "--history", "100000"), self.start_durable(redis, "--history", "100000")
        for u in (u1, u2):
            wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 10, "redis connected")
        link_relays(self, [u1, u2])
        subs = [self.json_client(u1, "/?id=sub1"), self.json_client(u2, "/?id=sub2")]
        for s in subs:
            self.assertEqual(s.subscribe("live")["type"], "subscribed")
        pubs = {"a": self.raw(u1, "/live?id=pa"), "b": self.raw(u2, "/live?id=pb")}
        q = self.json_client(u1)
        wait_until(lambda: len(q.presence("live")) == 4, 10, "4 members")
        sent = {"a": 0, "b": 0}
        stop = threading.Event()

        def publish(name):
            ws = pubs[name]
            while not stop.is_set():
                ws.send_text(f"{name}{sent[name]}")
                sent[name] += 1
                time.sleep(pacing)  # pacing only: a steady trickle across the outage
        threads = [threading.Thread(target=publish, args=(n,), daemon=True) for n in pubs]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: min(sent.values()) > 200, 10, "traffic")
            if freeze:
                os.kill(redis.proc.pid, signal.SIGSTOP)
                self.addCleanup(lambda: redis.proc.poll() is None and os.kill(redis.proc.pid, signal.SIGCONT))
            else:
                redis.kill()
            for u in (u1, u2):
                wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 0, 10, "the outage noticed")
            # Down for a while under traffic: each relay holds its own publishes.
            started = time.monotonic()
            for u in (u1, u2):
                wait_until(lambda: self.metrics(u).get("wsx_relay_durable_held_total", 0) >= 300, 15, "publishes held")
            wait_until(lambda: time.monotonic() - started >= 3, 5, "3 s of outage")
            held = [self.metrics(u)["wsx_relay_durable_pending"] for u in (u1, u2)]
            self.assertTrue(all(h > 0 for h in held), held)
            if freeze:
                os.kill(redis.proc.pid, signal.SIGCONT)
            else:
                again = redis.again().start()
                self.addCleanup(again.kill)
            for u in (u1, u2):
                wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 15, "reconnected")
            after = dict(sent)
            wait_until(lambda: all(sent[n] > after[n] + 200 for n in sent), 10, "traffic after the outage")
        finally:
            stop.set()
            for t in threads:
                t.join(5)
        self.assertFalse(any(t.is_alive() for t in threads), "a publisher is stuck sending")
        for name, ws in pubs.items():
            ws.send_text(f"end-{name}")
        want = {n: [f"{n}{i}" for i in range(sent[n])] + [f"end-{n}"] for n in sent}
        seen_ids = []
        for s in subs:
            got = self.collect(s, "live", {"end-a", "end-b"})
            # Exactly once, in publish order per publisher.
            for n in want:
                self.assertEqual([m["data"] for m in got if m["data"][0] == n or m["data"] == f"end-{n}"], want[n])
            ids = [m["id"] for m in got]
            self.assertEqual(ids, sorted(set(ids)), "ids increase per topic")
            seen_ids.append({m["data"]: m["id"] for m in got})
        # Redis itself added each publish once (the relays' own skipping would hide a twice-added
        # entry from subscribers): no (instance, seq) twice, each instance's seqs increasing.
        entries = stream_publishes(redis.port if freeze else again.port)
        self.assertEqual(len(entries), len(set(entries)), "an entry added twice to the stream")
        for inst in {i for i, _ in entries}:
            seqs = [q for i, q in entries if i == inst]
            self.assertEqual(seqs, sorted(seqs))
        if same_ids:
            # One id per message, the same on both relays.
            self.assertEqual(seen_ids[0], seen_ids[1])
        # Nothing more arrives: a last marker is the very next message.
        pubs["a"].send_text("last")
        for s in subs:
            self.assertEqual(s.messages("live", 1)[0]["data"], "last")
        # The history is shared: a newcomer on the other relay resumes from an id published on
        # the first one during the outage.
        by_id = sorted((i, d) for d, i in seen_ids[0].items())
        k = next(idx for idx, (i, d) in enumerate(by_id) if d == f"a{after['a'] - 50}")
        late = self.json_client(u2, "/?id=late")
        late.subscribe("live", since=by_id[k][0])
        replay = late.messages("live", 20)
        self.assertEqual([(m["id"], m["data"]) for m in replay], by_id[k + 1:k + 21])
        m1, m2 = self.metrics(u1), self.metrics(u2)
        for m in (m1, m2):
            self.assertEqual(m["wsx_relay_redis_missed_total"], 0)
            self.assertEqual(m["wsx_relay_durable_pending"], 0)
            self.assertEqual(m["wsx_relay_durable_refused_total"], 0)
            self.assertGreater(m["wsx_relay_redis_replayed_total"], 0)  # the other's held messages
            self.assertEqual(m["wsx_relay_redis_local_only_total"], 0)
        for p in (p1, p2):
            self.assertIsNone(p.proc.poll(), "a relay died")
        p1.stop()
        log = p1.rest_of_stderr()
        self.assertIn("redis connection lost", log)
        if freeze:
            self.assertIn("no reply within 500ms", log)
        self.assertIn("holding publishes", log)
        if not same_ids:
            self.assertIn("redis came back without its data (no persistence?)", log)
        self.assertRegex(log, r"redis reconnected after [\d.]+s; [1-9]\d* messages published here meanwhile were held "
                              r"and are now in the stream \(delivered here and elsewhere\); [1-9]\d* messages published "
                              r"elsewhere meanwhile were read from the stream")

    def test_full_outbox_refuses_publishes_then_delivers_what_it_took(self):
        redis = RedisServer()  # its port; not started yet
        p, u = self.start_durable(redis, "--durable-buffer", "4KiB")
        p.wait_for(r"unreachable \(Connection refused\): holding publishes until it answers")
        sub = self.json_client(u, "/?id=sub")
        sub.subscribe("t")
        pub = self.json_client(u, "/?id=pub")
        accepted, refusal = [], None
        for i in range(200):
            pub.send({"op": "publish", "topic": "t", "data": f"m{i}:" + "x" * 100})
            pub.send({"op": "presence", "topic": "t"})  # answered after the publish: its reply, if any, came first
            m = pub.next(lambda m: m.get("type") in ("presence", "error"))
            if m["type"] == "error":
                refusal = m
                pub.next(lambda m: m.get("type") == "presence")
                break
            accepted.append(f"m{i}:" + "x" * 100)
        self.assertIsNotNone(refusal, "no publish was refused with a 4 KiB buffer")
        self.assertEqual(refusal["op"], "publish")
        self.assertEqual(refusal["topic"], "t")
        self.assertRegex(refusal["error"], r"^publish refused: this relay already holds --durable-buffer \(4 KiB\) of "
                                           r"messages not yet accepted by Redis \(unreachable or slow\); retry later$")
        self.assertGreater(len(accepted), 10)
        # A raw publisher is closed with 1013.
        raw = self.raw(u, "/t?id=rawpub")
        raw.send_text("y" * 300)  # larger than what the refused publish left free
        self.assertEqual(raw.expect_close(), (1013, "redis unreachable: publish buffer full, retry later"))
        self.assertEqual(self.metrics(u)["wsx_relay_durable_refused_total"], 2)
        # Nothing was delivered yet, not even here: held messages go out once Redis has them.
        sub.presence("t")  # a round trip after every publish: what was delivered is read by now
        self.assertEqual([m for m in sub.pending if m.get("type") == "message"], [])
        redis.start()
        self.addCleanup(redis.kill)
        got = sub.messages("t", len(accepted), timeout=20)
        self.assertEqual([m["data"] for m in got], accepted)
        self.assertEqual([m["id"] for m in got], list(range(1, len(accepted) + 1)))
        wait_until(lambda: self.metrics(u)["wsx_relay_durable_pending"] == 0, 10, "the outbox emptied")
        pub.send({"op": "publish", "topic": "t", "data": "now it fits"})
        self.assertEqual(sub.messages("t", 1)[0]["data"], "now it fits")

    def test_since_while_publishing_gives_each_message_once_in_order(self):
        # The shared history is written as a message enters the stream, before this relay reads
        # it back: a replay runs ahead of the live messages, which must not come a second time.
        redis = self.start_redis()
        p, u = self.start_durable(redis, "--history", "100000")
        wait_until(lambda: self.metrics(u)["wsx_relay_redis_up"] == 1, 10, "Redis is up")
        sent, stop = [0, 0], threading.Event()
        pubs = [self.raw(u, f"/t?id=pub{k}") for k in range(2)]

        def publish(k):
            # Until every subscriber is in (bounded: 200,000 messages at most).
            for i in range(200_000):
                if stop.is_set():
                    return
                pubs[k].send_text(f"p{k}-{i}")
                sent[k] = i + 1

        threads = [threading.Thread(target=publish, args=(k,), daemon=True) for k in range(2)]
        for t in threads:
            t.start()
        subs = []
        for at in range(300, 3300, 300):
            wait_until(lambda: sum(sent) >= at, 30, f"{at} messages sent")
            c = self.json_client(u, f"/?id=sub{at}")
            c.send({"op": "subscribe", "topic": "t", "since": 0})
            subs.append(c)
        stop.set()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "a publisher is stuck sending")
        for k in range(2):  # each publisher's last: what it sent before has come by then
            pubs[k].send_text(f"end{k}")
        total = sum(sent) + 2
        for c in subs:
            got = self.collect(c, "t", {"end0", "end1"})
            for k in range(2):
                mine = [m["data"] for m in got if m["data"].startswith(f"p{k}-")]
                self.assertEqual(mine, [f"p{k}-{i}" for i in range(sent[k])])
            ids = [m["id"] for m in got]
            self.assertEqual(ids, list(range(1, total + 1)), "each message once, in id order")

    def test_a_relay_further_behind_than_maxlen_counts_and_logs_what_it_missed(self):
        redis = self.start_redis()
        (pa, ua), (pb, ub) = [self.start_durable(redis, "--durable-maxlen", "10") for _ in range(2)]
        for u in (ua, ub):
            wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 10, "redis connected")
        link_relays(self, [ua, ub])
        sub = self.json_client(ua, "/?id=behind")
        sub.subscribe("t")
        pub = self.raw(ub, "/t?id=pub")
        wait_until(lambda: len(sub.presence("t")) == 2, 10, "2 members")
        base = self.metrics(ub)["wsx_relay_redis_out_total"]
        # The reading relay stands still (its connections stay open) while the other publishes
        # far more than the stream keeps.
        pa.freeze()
        self.addCleanup(lambda: pa.proc.poll() is None and os.kill(pa.proc.pid, 18))  # SIGCONT
        n = 1000
        for i in range(n):
            pub.send_text(f"m{i}")
        wait_until(lambda: self.metrics(ub)["wsx_relay_redis_out_total"] >= base + n, 10, "all in the stream")
        os.kill(pa.proc.pid, 18)  # SIGCONT
        pub.send_text("end")
        got = [m["data"] for m in self.collect(sub, "t", {"end"})][:-1]
        self.assertLess(len(got), n, "the stream kept everything: nothing was trimmed")
        # In order, none twice, up to the newest (the first may have been on its way before the trim).
        idx = [int(d[1:]) for d in got]
        self.assertEqual(idx, sorted(set(idx)))
        self.assertEqual(idx[-1], n - 1)
        self.assertEqual(self.metrics(ua)["wsx_relay_redis_missed_total"], n - len(got))
        pa.stop()
        self.assertRegex(pa.rest_of_stderr(), rf'relay: topic "t": {n - len(got)} messages published through redis did not '
                                              rf'arrive here')

    def test_a_relay_behind_gets_again_what_redis_lost_of_another_relays_publishes(self):
        # Relay B stands still while relay A publishes and reads its own entries back; Redis then
        # restarts without its data, so B can get them only from A sending them again.
        redis = RedisServer()
        redis.start()
        self.addCleanup(redis.kill)
        (pa, ua), (pb, ub) = [self.start_durable(redis) for _ in range(2)]
        for u in (ua, ub):
            wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 10, "redis connected")
        link_relays(self, [ua, ub])
        behind, mine = self.json_client(ub, "/?id=behind"), self.json_client(ua, "/?id=mine")
        for c in (behind, mine):
            c.subscribe("t")
        pub = self.raw(ua, "/t?id=pub")
        wait_until(lambda: len(mine.presence("t")) == 3, 10, "3 members")
        pb.freeze()
        self.addCleanup(lambda: pb.proc.poll() is None and os.kill(pb.proc.pid, signal.SIGCONT))
        want = [f"m{i}" for i in range(50)]
        for d in want:
            pub.send_text(d)
        # Delivered on A: read back from the stream, no longer in A's outbox.
        self.assertEqual([m["data"] for m in mine.messages("t", 50)], want)
        redis.kill()
        again = redis.again().start()
        self.addCleanup(again.kill)
        os.kill(pb.proc.pid, signal.SIGCONT)
        self.assertEqual([m["data"] for m in behind.messages("t", 50, timeout=20)], want)
        pub.send_text("end")
        for c in (behind, mine):
            self.assertEqual(c.messages("t", 1)[0]["data"], "end")  # and nothing twice
        pa.stop()
        self.assertIn("redis came back without its data (no persistence?)", pa.rest_of_stderr())

    def test_durable_needs_redis(self):
        r = self.wsx("relay", "127.0.0.1:0", "--durable")
        self.assertExit(r, 2)
        self.assertOneError(r, "--durable needs --redis URL")
        r = self.wsx("relay", "127.0.0.1:0", "--durable-buffer", "1MiB")
        self.assertExit(r, 2)
        self.assertOneError(r, "--durable-maxlen and --durable-buffer go with --durable")


if __name__ == "__main__":
    wsxtest.main()
