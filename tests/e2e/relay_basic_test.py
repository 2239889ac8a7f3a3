"""wsx relay, one instance: fan-out across topics, the JSON protocol (malformed input too),
history and since, presence and direct messages, JWT topic ACLs."""
import base64
import json
import time

import wsxtest
from wsxtest import jwt_hs256
from relay_helpers import RelayCase, wait_until



class RelayBasicTest(RelayCase):
    def wait_members(self, url, topic, n):
        c = self.json_client(url)
        wait_until(lambda: len(c.presence(topic)) >= n, 10, f"{n} members in {topic}")

    def test_fan_out_to_many_subscribers_across_topics(self):
        p, url = self.start_relay("--threads", "2")
        topics = ["alpha", "beta", "gamma"]
        subs = {t: [self.raw(url, f"/{t}?id={t}-{i}") for i in range(15)] for t in topics}
        pubs = {t: self.raw(url, f"/{t}?id={t}-pub") for t in topics}
        for t in topics:
            self.wait_members(url, t, 16)
        n = 200
        for i in range(n):
            for t in topics:
                if i % 2:
                    pubs[t].send_frame(0x2, f"{t}:{i}".encode())
                else:
                    pubs[t].send_text(f"{t}:{i}")
        for t in topics:
            for ws in subs[t]:
                got = [ws.recv_message() for _ in range(n)]
                # Every message, in the publisher's order, with its opcode; no other topic's.
                self.assertEqual(got, [(2 if i % 2 else 1, f"{t}:{i}".encode()) for i in range(n)])
        # The publisher does not get its own messages back without --echo-self.
        pubs["alpha"].send_text("ping-self")
        self.assertEqual(subs["alpha"][0].recv_message(), (1, b"ping-self"))
        with self.assertRaises(TimeoutError):
            pubs["alpha"].recv_message(timeout=0.3)

    def test_echo_self_and_metrics(self):
        p, url = self.start_relay("--echo-self", "--metrics")
        a = self.raw(url, "/t?id=a")
        self.wait_members(url, "t", 1)
        a.send_text("mine")
        self.assertEqual(a.recv_message(), (1, b"mine"))
        m = self.metrics(url)
        self.assertEqual(m["wsx_relay_published_total"], 1)
        self.assertEqual(m["wsx_relay_delivered_total"], 1)

    def test_json_protocol_and_malformed_input(self):
        p, url = self.start_relay("--control-path", "/ctl")
        a = self.json_client(url, "/?id=alice")
        self.assertEqual(a.id, "alice")
        b = self.json_client(url, "/?id=bob")
        self.assertEqual(a.subscribe("news"), {"type": "subscribed", "topic": "news"})
        self.assertEqual(b.subscribe("news"), {"type": "subscribed", "topic": "news"})
        b.subscribe("sport")
        a.send({"op": "publish", "topic": "news", "data": "hello"})
        a.send({"op": "publish", "topic": "news", "data": base64.b64encode(b"\x00\xff").decode(), "binary": True})
        a.send({"op": "publish", "topic": "news", "data": {"k": [1, 2]}})
        got = b.messages("news", 3)
        self.assertEqual([(m["from"], m["data"], m.get("binary", False)) for m in got],
                         [("alice", "hello", False), ("alice", "AP8=", True), ("alice", '{"k":[1,2]}', False)])
        self.assertEqual([m["id"] for m in got], [1, 2, 3])
        # A raw subscriber of the same topic gets the bytes with their opcode.
        raw = self.raw(url, "/sport")
        wait_until(lambda: "anon" in " ".join(a.presence("sport")), 10, "raw subscriber")
        a.send({"op": "publish", "topic": "sport", "data": "AAE=", "binary": True})
        self.assertEqual(raw.recv_message(), (2, b"\x00\x01"))
        self.assertEqual(b.messages("sport", 1)[0]["data"], "AAE=")
        # And what the raw client sends reaches protocol subscribers as an envelope.
        raw.send_text("from raw")
        self.assertEqual(b.messages("sport", 1)[0]["data"], "from raw")

        bad = [
            ("{not json", "malformed JSON"),
            ("[1,2]", "expected a JSON object"),
            ('{"topic":"x"}', 'missing "op"'),
            ('{"op":"dance"}', "unknown op 'dance'"),
            ('{"op":"subscribe"}', 'missing "topic"'),
            ('{"op":"subscribe","topic":""}', "a topic is 1 to 256 bytes"),
            ('{"op":"publish","topic":"x"}', 'missing "data"'),
            ('{"op":"publish","topic":"x","data":"***","binary":true}', "not valid base64"),
            ('{"op":"unsubscribe","topic":"nope"}', "not subscribed"),
            ('{"op":"subscribe","topic":"x","since":"yesterday"}', '"since" is a message id'),
            ('{"op":"send","data":"x"}', 'missing "to"'),
            ('{"op":"publish","topic":"x","data":"x","binary":"yes"}', '"binary" is true or false'),
            ('{"op":"subscribe","topic":"x","history":-3}', '"history" is true or a count'),
            ('{"op":7}', 'missing "op"'),
            ('{"op":"subscribe","topic":["x"]}', 'missing "topic"'),
            ('[' * 100000 + ']' * 100000, "expected a JSON object"),
            ('{"op":"publish","topic":"' + 'x' * 300 + '","data":"x"}', "a topic is 1 to 256 bytes"),
        ]
        for text, want in bad:
            a.send(text)
            err = a.next(lambda m: m.get("type") == "error")
            self.assertIn(want, err["error"], text)
        a.ws.send_frame(0x2, b"\x01\x02")
        self.assertIn("binary frames", a.next(lambda m: m.get("type") == "error")["error"])
        # Still serving after all that.
        a.send({"op": "publish", "topic": "news", "data": "still here"})
        self.assertEqual(b.messages("news", 1)[0]["data"], "still here")
        # Unsubscribe stops deliveries.
        b.send({"op": "unsubscribe", "topic": "news"})
        b.next(lambda m: m.get("type") == "unsubscribed")
        a.send({"op": "publish", "topic": "news", "data": "after"})
        b.send({"op": "publish", "topic": "sport", "data": "marker"})
        # The control path speaks the protocol without the subprotocol header.
        from serve_helpers import RawWS
        ctl = RawWS(url, "/ctl?id=ctl")
        self.addCleanup(ctl.sock.close)
        self.assertEqual(json.loads(ctl.recv_message()[1])["type"], "welcome")
        self.assertEqual(raw.recv_message(), (1, b"marker"))

    def test_history_replay_and_since_resume(self):
        p, url = self.start_relay("--history", "5")
        pub = self.json_client(url, "/?id=pub")
        for i in range(1, 9):
            pub.send({"op": "publish", "topic": "h", "data": f"m{i}"})
        pub.presence("h")  # answered after every publish before it was handled
        # Ids are assigned in order: a subscriber with history sees the last five.
        c = self.json_client(url)
        c.subscribe("h", history=True)
        got = c.messages("h", 5)
        self.assertEqual([(m["id"], m["data"]) for m in got], [(i, f"m{i}") for i in range(4, 9)])
        d = self.json_client(url)
        d.subscribe("h", history=2)
        self.assertEqual([m["id"] for m in d.messages("h", 2)], [7, 8])
        # Resume after id 6, then live messages follow without a gap or a repeat.
        e = self.json_client(url)
        e.subscribe("h", since=6)
        pub.send({"op": "publish", "topic": "h", "data": "m9"})
        self.assertEqual([m["id"] for m in e.messages("h", 3)], [7, 8, 9])
        # Raw clients ask with the query string.
        raw = self.raw(url, "/h?since=7")
        self.assertEqual([raw.recv_message() for _ in range(2)], [(1, b"m8"), (1, b"m9")])
        raw2 = self.raw(url, "/h?history=1")
        self.assertEqual(raw2.recv_message(), (1, b"m9"))
        # A reconnecting client that saw id 6 loses nothing published while it was away.
        f = self.json_client(url)
        f.subscribe("h")
        pub.send({"op": "publish", "topic": "h", "data": "m10"})
        last = f.messages("h", 1)[0]["id"]
        f.ws.sock.close()
        for i in range(11, 13):
            pub.send({"op": "publish", "topic": "h", "data": f"m{i}"})
        pub.presence("h")
        g = self.json_client(url)
        g.subscribe("h", since=last)
        self.assertEqual([m["data"] for m in g.messages("h", 2)], ["m11", "m12"])

    def test_presence_and_direct_messages(self):
        p, url = self.start_relay()
        a = self.json_client(url, "/?id=alice")
        b = self.json_client(url, "/?id=bob")
        a.subscribe("room")
        b.subscribe("room")
        self.assertEqual(a.next(lambda m: m.get("type") == "join"), {"type": "join", "topic": "room", "member": "bob"})
        self.assertEqual(a.presence("room"), ["alice", "bob"])
        raw = self.raw(url, "/room?id=carol")
        self.assertEqual(a.next(lambda m: m.get("type") == "join")["member"], "carol")
        self.assertEqual(b.presence("room"), ["alice", "bob", "carol"])
        # Direct: to a protocol client (envelope) and to a raw client (the bytes).
        a.send({"op": "send", "to": "bob", "data": "psst"})
        self.assertEqual(a.next(lambda m: m.get("type") in ("sent", "error")), {"type": "sent", "to": "bob"})
        self.assertEqual(b.next(lambda m: m.get("type") == "direct"), {"type": "direct", "from": "alice", "data": "psst"})
        a.send({"op": "send", "to": "carol", "data": "hi carol"})
        a.next(lambda m: m.get("type") == "sent")
        self.assertEqual(raw.recv_message(), (1, b"hi carol"))
        a.send({"op": "send", "to": "nobody", "data": "x"})
        err = a.next(lambda m: m.get("type") == "error")
        self.assertEqual(err["error"], "no client with id 'nobody'")
        raw.send_close()
        self.assertEqual(raw.expect_close()[0], 1000)
        raw.sock.close()
        self.assertEqual(a.next(lambda m: m.get("type") == "leave"), {"type": "leave", "topic": "room", "member": "carol"})
        self.assertEqual(a.presence("room"), ["alice", "bob"])

    def test_jwt_subject_and_topic_acl(self):
        p, url = self.start_relay("--jwt-secret", "k3y", "--metrics")
        now = int(time.time())
        limited = jwt_hs256("k3y", {"sub": "lee", "exp": now + 300,
                                    "topics": {"subscribe": ["chat.*"], "publish": ["chat.own"]}})
        free = jwt_hs256("k3y", {"sub": "root", "exp": now + 300})
        # Raw: subscribing outside the patterns is refused at the upgrade.
        self.assertEqual(self.raw(url, "/admin?token=" + limited, expect_upgrade=False).status, 403)
        # Without a token: 401 (auth is on).
        self.assertEqual(self.raw(url, "/chat.x", expect_upgrade=False).status, 401)
        c = self.json_client(url, "/?token=" + limited)
        self.assertEqual(c.id, "lee")  # identity from the JWT subject
        self.assertEqual(c.subscribe("admin")["error"], "not allowed to subscribe to this topic")
        self.assertEqual(c.subscribe("chat.room"), {"type": "subscribed", "topic": "chat.room"})
        c.send({"op": "publish", "topic": "chat.room", "data": "x"})
        err = c.next(lambda m: m.get("type") == "error")
        self.assertEqual((err["op"], err["error"]), ("publish", "not allowed to publish to this topic"))
        r = self.json_client(url, "/?token=" + free + "&id=spoof")
        self.assertEqual(r.id, "root")  # a client-chosen id does not override the subject
        r.subscribe("chat.room")
        c.send({"op": "publish", "topic": "chat.own", "data": "ok"})
        c.presence("chat.room")  # answered once "ok" has been handled: r was not subscribed yet
        r.subscribe("chat.own")
        c.send({"op": "publish", "topic": "chat.own", "data": "ok2"})
        self.assertEqual(r.messages("chat.own", 1)[0]["data"], "ok2")
        # A raw client that may subscribe but not publish is closed with 1008 when it publishes.
        raw = self.raw(url, "/chat.room?token=" + limited)
        raw.send_text("nope")
        self.assertEqual(raw.expect_close()[0], 1008)
        self.assertGreaterEqual(self.metrics(url)["wsx_relay_acl_refusals_total"], 3)

    def test_bad_options_are_reported_together(self):
        r = self.wsx("relay", "127.0.0.1:0", "--redis", "http://x", "--subscriber-queue", "lots",
                     "--control-path", "ctl")
        self.assertExit(r, 2)
        errs = "\n".join(self.error_lines(r))
        self.assertIn("--redis", errs)
        self.assertIn("--subscriber-queue", errs)
        self.assertIn("--control-path", errs)
        # The session's overflow policy is the relay's business (--slow-consumer).
        self.assertExit(self.wsx("relay", "--overflow", "drop"), 2)


if __name__ == "__main__":
    wsxtest.main()
