"""wsx relay --one-connection-per-user: a user's (a token subject's) new connection replaces the
older one, which is closed with 4001 'replaced', on one relay and across relays sharing a
redis-server; connections without a token subject are never replaced."""
import json
import os
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import wsxtest
from relay_helpers import REDIS_SERVER, RelayCase, link_relays, wait_until
from wsxtest import jwt_hs256

SECRET = "k3y"
OPTIONS = ("--jwt-secret", SECRET, "--one-connection-per-user", "--echo-self", "--metrics")


def token(sub=None):
    claims = {"exp": int(time.time()) + 600}
    if sub is not None:
        claims["sub"] = sub
    return jwt_hs256(SECRET, claims)


class OneConnectionCase(RelayCase):
    def client(self, url, sub):
        return self.json_client(url, f"/?token={token(sub)}")

    def assert_works(self, c, topic="check"):
        """The connection is open and served: it subscribes and hears a message published on it."""
        self.assertEqual(c.subscribe(topic)["type"], "subscribed")
        c.send({"op": "publish", "topic": topic, "data": "ping"})
        self.assertEqual(c.next(lambda m: m.get("type") == "message")["data"], "ping")


class RelayOneConnectionTest(OneConnectionCase):
    def test_new_connection_replaces_the_old_one(self):
        p, url = self.start_relay(*OPTIONS)
        old = self.client(url, "alice")
        bob = self.client(url, "bob")
        self.assertEqual(old.id, "alice")
        self.assertEqual(old.subscribe("room")["type"], "subscribed")
        new = self.client(url, "alice")
        self.assertEqual(old.ws.expect_close(5), (4001, "replaced"))
        self.assertEqual(new.id, "alice")
        self.assert_works(new)
        self.assert_works(bob)
        # Raw connections of a user count too: the next one replaces the JSON one.
        raw = self.raw(url, f"/room?token={token('alice')}")
        self.assertEqual(new.ws.expect_close(5), (4001, "replaced"))
        bob.send({"op": "publish", "topic": "room", "data": "to the room"})
        self.assertEqual(raw.recv_message(5), (1, b"to the room"))
        self.assertEqual(self.metrics(url)["wsx_relay_replaced_total"], 2)

    def test_connections_without_a_token_subject_are_not_replaced(self):
        p, url = self.start_relay(*OPTIONS)
        first = self.client(url, None)
        second = self.client(url, None)
        self.assertNotEqual(first.id, second.id)  # anonymous identities
        # No authentication at all: ?id= names are chosen by clients, not held by users.
        p2, url2 = self.start_relay("--one-connection-per-user", "--echo-self")
        named = [self.json_client(url2, "/?id=carol") for _ in range(2)]
        self.assertEqual([c.id for c in named], ["carol", "carol"])
        for c in (first, second, *named):
            self.assert_works(c)
        self.assertEqual(self.metrics(url)["wsx_relay_replaced_total"], 0)

    def test_without_the_option_a_user_may_hold_many(self):
        p, url = self.start_relay("--jwt-secret", SECRET, "--echo-self")
        a1 = self.client(url, "alice")
        a2 = self.client(url, "alice")
        self.assert_works(a1)
        self.assert_works(a2)


@unittest.skipUnless(os.access(REDIS_SERVER, os.X_OK), "redis-server is not installed")
class RelayOneConnectionRedisTest(OneConnectionCase):
    def start_pair(self):
        redis = self.start_redis()
        urls = [self.start_relay(*OPTIONS, "--redis", redis.url)[1] for _ in range(2)]
        for u in urls:
            wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 10, "redis connected")
        link_relays(self, urls, path=f"/?token={token()}")
        return urls

    def test_replaced_across_relays(self):
        u1, u2 = self.start_pair()
        on1 = self.client(u1, "alice")
        bob = self.client(u2, "bob")
        on2 = self.client(u2, "alice")
        self.assertEqual(on1.ws.expect_close(5), (4001, "replaced"))
        self.assert_works(on2)
        self.assert_works(bob)
        again = self.client(u1, "alice")
        self.assertEqual(on2.ws.expect_close(5), (4001, "replaced"))
        self.assert_works(again)
        self.assertEqual(self.metrics(u1)["wsx_relay_replaced_total"], 1)
        self.assertEqual(self.metrics(u2)["wsx_relay_replaced_total"], 1)

    def test_simultaneous_connections_leave_exactly_one(self):
        u1, u2 = self.start_pair()
        for n in range(5):
            user = f"racer{n}"
            # Both upgrades at once: each relay learns of the other's claim while its own is open.
            def racer(u):
                # The one replaced may be closed before its welcome went out: that is a Close
                # where the welcome would be.
                try:
                    return self.client(u, user)
                except AssertionError as e:
                    if "('close', 4001, 'replaced')" not in str(e):
                        raise
                    return None
            with ThreadPoolExecutor(2) as pool:
                a, b = pool.map(racer, (u1, u2))
            self.assertFalse(a is None and b is None, "both connections were replaced")
            # Whichever connection came last stays; the other is closed.
            closed = []
            if a is None or b is None:
                closed.append(((4001, "replaced"), a or b))
            else:
                wait_until(lambda: self.closed_one(a, b, closed), 10, "one of the two to be replaced")
            close, survivor = closed[0]
            self.assertEqual(close, (4001, "replaced"))
            # A message published on the other relay after both claims reaches the survivor:
            # Redis passed the claims on first, and none of them closed it.
            self.assertEqual(survivor.subscribe("after")["type"], "subscribed")
            pub = self.client(u1 if survivor is b else u2, f"pub{n}")
            wait_until(lambda: self.published_and_heard(pub, survivor, f"r{n}"), 10, "the survivor to hear")

    @staticmethod
    def closed_one(a, b, out):
        """Polls both: true once one of them received a Close (out gets (code, reason), the other)."""
        for x, other in ((a, b), (b, a)):
            try:
                m = x.ws.recv_message(0.05)
            except TimeoutError:
                continue
            if m[0] == "close":
                out.append(((m[1], m[2]), other))
                return True
            x.pending.append(json.loads(m[1]))
        return False

    @staticmethod
    def published_and_heard(pub, survivor, data):
        pub.send({"op": "publish", "topic": "after", "data": data})
        try:
            survivor.next(lambda m: m.get("type") == "message" and m.get("data") == data, timeout=0.3)
            return True
        except (AssertionError, TimeoutError):
            return False


if __name__ == "__main__":
    wsxtest.main()
