"""wsx relay: subscribers that ask for batches (?batch=N,INTERVAL, or the protocol's "batch" op)
get their messages as JSON arrays, N at most per frame or what INTERVAL collected, in order,
none lost or repeated, the last batch flushed at a close; bad values are refused."""
import base64
import json
import signal

import wsxtest
from relay_helpers import RelayCase, batch_frames, upgrade_refusal, wait_until


class RelayBatchTest(RelayCase):
    def wait_delivered(self, url, n):
        wait_until(lambda: self.metrics(url).get("wsx_relay_delivered_total", 0) >= n, 10, f"{n} deliveries")

    def wait_members(self, url, topic, n):
        c = self.json_client(url)
        wait_until(lambda: len(c.presence(topic)) >= n, 10, f"{n} members in {topic}")

    def test_raw_batches_of_n_in_order(self):
        p, url = self.start_relay("--metrics")
        sub = self.raw(url, "/feed?id=sub&batch=5,1m")
        pub = self.raw(url, "/feed?id=pub")
        self.wait_members(url, "feed", 2)
        sent = [f"m{i}" for i in range(20)]
        for m in sent:
            pub.send_text(m)
        frames = batch_frames(sub, len(sent))
        # The interval (a minute) never ran out: every frame is full, and they hold exactly what was sent.
        self.assertEqual(frames, [sent[i:i + 5] for i in range(0, 20, 5)])
        self.assertEqual(self.metrics(url)["wsx_relay_batches_total"], 4)

    def test_raw_interval_sends_a_partial_batch_with_binary_as_base64(self):
        p, url = self.start_relay()
        sub = self.raw(url, "/feed?id=sub&batch=1000,300ms")
        other = self.raw(url, "/feed?id=plain")  # no batch: one frame per message, as before
        pub = self.raw(url, "/feed?id=pub")
        self.wait_members(url, "feed", 3)
        pub.send_text("one")
        pub.send_frame(0x2, b"\x00\xffbin")
        pub.send_text("drei ✓")
        frames = batch_frames(sub, 3, timeout=10)
        self.assertLess(len(frames), 3)
        items = [x for f in frames for x in f]
        self.assertEqual(items, ["one", {"data": base64.b64encode(b"\x00\xffbin").decode(), "binary": True}, "drei ✓"])
        self.assertEqual([other.recv_message(5) for _ in range(3)],
                         [(1, b"one"), (2, b"\x00\xffbin"), (1, "drei ✓".encode())])

    def test_many_messages_none_lost_or_repeated(self):
        p, url = self.start_relay("--threads", "2")
        sub = self.raw(url, "/load?id=sub&batch=64,20ms")
        pubs = [self.raw(url, f"/load?id=pub{k}") for k in range(2)]
        self.wait_members(url, "load", 3)
        n = 1500
        for i in range(n):
            for k, pub in enumerate(pubs):
                pub.send_text(f"{k}:{i}")
        frames = batch_frames(sub, 2 * n, timeout=30)
        self.assertTrue(all(1 <= len(f) <= 64 for f in frames), [len(f) for f in frames])
        self.assertLess(len(frames), 2 * n)
        items = [x for f in frames for x in f]
        self.assertEqual(len(items), 2 * n)
        # Each publisher's messages arrive once each, in the order it sent them.
        for k in range(2):
            self.assertEqual([x for x in items if x.startswith(f"{k}:")], [f"{k}:{i}" for i in range(n)])

    def test_pending_batch_is_sent_before_the_relays_close(self):
        p, url = self.start_relay("--metrics")
        sub = self.raw(url, "/feed?id=sub&batch=100,1m")
        pub = self.raw(url, "/feed?id=pub")
        self.wait_members(url, "feed", 2)
        for m in ("a", "b", "c"):
            pub.send_text(m)
        self.wait_delivered(url, 3)
        p.proc.send_signal(signal.SIGTERM)
        got, close = sub.messages_until_close()
        self.assertEqual(got, [(1, b'["a","b","c"]')])
        self.assertEqual(close[:2], ("close", 1001))

    def test_pending_batch_is_sent_before_answering_the_clients_close(self):
        p, url = self.start_relay("--metrics")
        sub = self.raw(url, "/feed?id=sub&batch=100,1m")
        pub = self.raw(url, "/feed?id=pub")
        self.wait_members(url, "feed", 2)
        pub.send_text("x")
        pub.send_text("y")
        self.wait_delivered(url, 2)
        sub.send_close(1000)
        got, close = sub.messages_until_close()
        self.assertEqual(got, [(1, b'["x","y"]')])
        self.assertEqual(close[:2], ("close", 1000))

    def test_protocol_batch_op_and_replies_keep_their_place(self):
        p, url = self.start_relay("--metrics")
        c = self.json_client(url, "/?id=reader")
        c.send({"op": "batch", "max": 3, "interval": "1m"})
        self.assertEqual(c.next(lambda m: m.get("type") in ("batch", "error")),
                         {"type": "batch", "max": 3, "interval": "1m"})
        self.assertEqual(c.subscribe("news")["type"], "subscribed")  # replies are never held back
        pub = self.json_client(url, "/?id=writer")
        for i in range(6):
            pub.send({"op": "publish", "topic": "news", "data": f"n{i}"})
        frames = batch_frames(c.ws, 6)
        self.assertEqual([[(e["type"], e["topic"], e["from"], e["data"]) for e in f] for f in frames],
                         [[("message", "news", "writer", f"n{i}") for i in range(k, k + 3)] for k in (0, 3)])
        self.assertEqual([e["id"] for f in frames for e in f], list(range(1, 7)))
        # Two held messages, then a request: its reply follows the batch, at once.
        pub.send({"op": "publish", "topic": "news", "data": "held1"})
        pub.send({"op": "publish", "topic": "news", "data": "held2"})
        self.wait_delivered(url, 8)
        c.send({"op": "presence", "topic": "news"})
        op, payload = c.ws.recv_message(5)
        self.assertEqual([e["data"] for e in json.loads(payload)], ["held1", "held2"])
        self.assertEqual(json.loads(c.ws.recv_message(5)[1]), {"type": "presence", "topic": "news", "members": ["reader"]})
        # Off again: one envelope per frame.
        c.send({"op": "batch", "off": True})
        self.assertEqual(c.recv(), {"type": "batch", "off": True})
        pub.send({"op": "publish", "topic": "news", "data": "single"})
        m = c.recv()
        self.assertEqual((m["type"], m["data"]), ("message", "single"))

    def test_protocol_batch_from_the_url(self):
        p, url = self.start_relay()
        ws = self.raw(url, "/?id=reader&batch=2,1m", headers={"Sec-WebSocket-Protocol": "wsx.relay.v1"})
        self.assertEqual(json.loads(ws.recv_message(5)[1])["type"], "welcome")
        ws.send_text(json.dumps({"op": "subscribe", "topic": "t"}))
        self.assertEqual(json.loads(ws.recv_message(5)[1]), {"type": "subscribed", "topic": "t"})
        pub = self.raw(url, "/t?id=pub")  # its join is a delivery like the messages
        for m in ("p", "q", "r", "s", "u"):
            pub.send_text(m)
        frames = batch_frames(ws, 6)
        self.assertEqual([[e.get("data", e["type"]) for e in f] for f in frames], [["join", "p"], ["q", "r"], ["s", "u"]])
        self.assertEqual(frames[0][0], {"type": "join", "topic": "t", "member": "pub"})

    def test_a_batch_holds_no_more_than_the_subscriber_queue(self):
        # A subscriber that never reads and asked for big, slow batches: the relay does not keep
        # its messages in the batch past --subscriber-queue; the slow-consumer policy drops
        # them, and counts every message of a dropped batch.
        p, url = self.start_relay("--metrics", "--subscriber-queue", "1MiB")
        sub = self.raw(url, "/feed?id=sub&batch=10000,1m")
        pub = self.raw(url, "/feed?id=pub")
        self.wait_members(url, "feed", 2)
        before = wsxtest.rss_kib(p.proc.pid)
        payload = "a" * (128 << 10)
        for _ in range(1000):
            pub.send_text(payload)
        self.wait_delivered(url, 1000)
        m = wait_until(lambda: (lambda m: m if m.get("wsx_relay_slow_dropped_total", 0) >= 800 else None)(self.metrics(url)),
                       10, "800 messages dropped for the slow subscriber")
        self.assertLessEqual(m["wsx_relay_slow_dropped_total"], 1000)
        if not wsxtest.SANITIZED:
            self.assertLess(wsxtest.rss_kib(p.proc.pid) - before, 40 * 1024)  # 125 MiB were published
        self.assertIsNotNone(sub)

    def test_bad_batch_values_are_refused_with_the_fix(self):
        p, url = self.start_relay()
        for query, fragment in [("5", "expected N,INTERVAL"), ("0,50ms", "N must be a whole number from 1 to 10000"),
                                ("10001,50ms", "N must be a whole number from 1 to 10000"),
                                ("x,50ms", "N must be a whole number"),
                                ("5,fast", "INTERVAL must be a duration above 0 and at most 1m"),
                                ("5,0s", "INTERVAL must be a duration above 0"),
                                ("5,2m", "INTERVAL must be a duration above 0 and at most 1m")]:
            for path in (f"/feed?batch={query}", f"/?batch={query}"):
                headers = {"Sec-WebSocket-Protocol": "wsx.relay.v1"} if path.startswith("/?") else None
                status, body = upgrade_refusal(url, path, headers)
                self.assertEqual(status, 400, (path, body))
                self.assertIn(fragment, body, path)
                self.assertIn("e.g. batch=100,50ms", body, path)
                self.assertEqual(len(body.strip().splitlines()), 1, body)
        c = self.json_client(url)
        for req, fragment in [({"max": 0, "interval": "50ms"}, '"max" is a number from 1 to 10000'),
                              ({"max": 5, "interval": "soon"}, '"interval" is a duration above 0 and at most 1m'),
                              ({"max": 5, "interval": 50}, '"interval" is a duration'),
                              ({"max": 5}, 'give "max"'),
                              ({"off": False}, '"off" is true')]:
            c.send({"op": "batch", **req})
            e = c.next(lambda m: m.get("type") == "error")
            self.assertEqual(e["op"], "batch")
            self.assertIn(fragment, e["error"])


if __name__ == "__main__":
    wsxtest.main()
