"""--max-connections-policy (serve, relay, proxy): refuse answers 503 past the limit; evict-oldest
closes the connection idle longest (no data message either way) with 1013 and serves the new one,
across worker threads."""
import time

import serve_helpers
import wsxtest
from proxy_helpers import start_proxy
from relay_helpers import RelayCase, wait_until
from serve_helpers import RawWS


def echo(ws, text):
    ws.send_text(text)
    return ws.recv_message(5)


class MaxConnectionsPolicyTest(RelayCase):
    def open(self, url, path="/"):
        ws = RawWS(url, path)
        self.addCleanup(ws.close)
        return ws

    def test_serve_evicts_the_idle_connection_not_the_busy_older_one(self):
        p, url = self.start_server("--max-connections", "2", "--max-connections-policy", "evict-oldest",
                                   "--threads", "2")
        busy = self.open(url)   # connected first, but it talks
        idle = self.open(url)   # connected later, and says nothing
        self.assertEqual(echo(busy, "still here"), (1, b"still here"))
        new = self.open(url)
        self.assertEqual(idle.expect_close(5), (1013, "evicted: connection limit"))
        self.assertEqual(echo(new, "hello"), (1, b"hello"))
        self.assertEqual(echo(busy, "and here"), (1, b"and here"))
        # Next time the least recently active is `new` (busy spoke after it).
        self.assertEqual(echo(busy, "again"), (1, b"again"))
        latest = self.open(url)
        self.assertEqual(new.expect_close(5), (1013, "evicted: connection limit"))
        self.assertEqual(echo(latest, "x"), (1, b"x"))
        self.assertEqual(echo(busy, "y"), (1, b"y"))
        p.wait_for(r'code=1013')  # the access log names the close

    def test_the_order_of_recent_activity_survives_the_servers_look_at_it(self):
        # The server looks at what connections sent every 100 ms. A look that falls between two
        # connections' messages must not reorder them: `first` spoke before `second`, so
        # `first` is the least recently active. The pause is not a wait for anything: the
        # eviction must be the same whether a look happened in it or not.
        p, url = self.start_server("--max-connections", "2", "--max-connections-policy", "evict-oldest",
                                   "--threads", "1")
        second = self.open(url)
        first = self.open(url)
        self.assertEqual(echo(first, "a"), (1, b"a"))
        self.assertEqual(echo(second, "b"), (1, b"b"))
        time.sleep(0.25)
        new = self.open(url)
        self.assertEqual(first.expect_close(5), (1013, "evicted: connection limit"))
        self.assertEqual(echo(second, "c"), (1, b"c"))
        self.assertEqual(echo(new, "d"), (1, b"d"))

    def test_receiving_counts_as_activity(self):
        # A relay subscriber that only receives is busy too; the one that never hears anything is idle.
        p, url = self.start_relay("--max-connections", "3", "--max-connections-policy", "evict-oldest",
                                  "--threads", "2")
        listener = self.open(url, "/news?id=listener")  # oldest; it never sends
        quiet = self.open(url, "/other?id=quiet")       # nothing is published to its topic
        pub = self.open(url, "/news?id=pub")
        # Traffic to `listener` for half a second: the relay notices sends within 100 ms.
        until = time.monotonic() + 0.5
        i = 0
        while time.monotonic() < until:
            pub.send_text(f"n{i}")
            self.assertEqual(listener.recv_message(5), (1, f"n{i}".encode()))
            i += 1
        newcomer = self.open(url, "/news?id=newcomer")
        self.assertEqual(quiet.expect_close(5), (1013, "evicted: connection limit"))
        # The newcomer is served: it hears the topic once its subscription is in place (its 101
        # may come before that), and so does the listener, which was not evicted.
        tags = []

        def newcomer_hears():
            tags.append(f"after{len(tags)}")
            pub.send_text(tags[-1])
            try:
                return newcomer.recv_message(0.3)[0] == 1
            except TimeoutError:
                return False
        wait_until(newcomer_hears, 10, "the newcomer to hear the topic")
        self.assertEqual([listener.recv_message(5) for _ in tags], [(1, t.encode()) for t in tags])

    def test_each_upgrade_evicts_a_different_connection(self):
        p, url = self.start_server("--max-connections", "4", "--max-connections-policy", "evict-oldest",
                                   "--threads", "2", "-q")
        old = [self.open(url) for _ in range(4)]
        new = [self.open(url) for _ in range(4)]
        closes = [ws.expect_close(5) for ws in old]
        self.assertEqual(closes, [(1013, "evicted: connection limit")] * 4)
        for i, ws in enumerate(new):
            self.assertEqual(echo(ws, f"n{i}"), (1, f"n{i}".encode()))

    def test_proxy_evicts_too(self):
        _, up = self.start_server("-q")
        _, url = start_proxy(self, "--to", up, "--max-connections", "1", "--max-connections-policy", "evict-oldest")
        first = self.open(url)
        self.assertEqual(echo(first, "one"), (1, b"one"))
        second = self.open(url)
        self.assertEqual(first.expect_close(5), (1013, "evicted: connection limit"))
        self.assertEqual(echo(second, "two"), (1, b"two"))

    def test_refuse_is_the_default_and_unchanged(self):
        p, url = self.start_server("--max-connections", "1", "--max-connections-policy", "refuse")
        first = self.open(url)
        second = serve_helpers.RawWS(url, expect_upgrade=False)
        self.addCleanup(second.close)
        self.assertEqual(second.status, 503)
        self.assertEqual(echo(first, "kept"), (1, b"kept"))

    def test_bad_values_are_usage_errors(self):
        r = self.wsx("serve", "127.0.0.1:0", "--max-connections-policy", "evict-oldest", timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "--max-connections-policy evict-oldest needs a limit", "add --max-connections N")
        r = self.wsx("relay", "127.0.0.1:0", "--max-connections", "5", "--max-connections-policy", "lru", timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "--max-connections-policy", "refuse", "evict-oldest")


if __name__ == "__main__":
    wsxtest.main()
