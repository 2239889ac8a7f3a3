"""wsx proxy: backend health. A backend killed mid-run gets no new connections, clients that
connect during the failure succeed elsewhere, and the backend returns after it recovers."""
import collections
import signal

import wsxtest
from proxy_helpers import (backend_up, backends_of, metric, start_port_backend, start_proxy, start_status_server,
                           wait_until)


# An HTTP server that answers every request with 503 (an independent peer that never upgrades).


class HealthTest(wsxtest.WsxTestCase):
    def test_killed_backend_is_avoided_and_returns(self):
        bs = [start_port_backend(self) for _ in range(3)]
        victim_proc, victim_url, victim_port = bs[1]
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--health-interval", "100ms",
                             "--metrics")
        self.assertEqual(set(backends_of(url, 6)), {p for _, _, p in bs})

        victim_proc.stop(signal.SIGKILL)
        wait_until(lambda: backend_up(url, victim_url) == 0, what="the killed backend marked down")
        during = backends_of(url, 9)
        self.assertNotIn(victim_port, during)
        self.assertEqual(len(during), 9)
        self.assertGreater(metric(url, "wsx_proxy_backend_failures_total", victim_url), 0)

        # The backend comes back on the same port: checks see it and it gets clients again.
        start_port_backend(self, victim_port)
        wait_until(lambda: backend_up(url, victim_url) == 1, what="the backend marked up again")
        after = collections.Counter(backends_of(url, 6))
        self.assertEqual(after[victim_port], 2, after)

    def test_failed_connect_is_retried_on_the_next_backend(self):
        # No active checks (an hour apart): only a failed connect tells the proxy.
        bs = [start_port_backend(self) for _ in range(3)]
        victim_proc, victim_url, victim_port = bs[0]
        _, url = start_proxy(self, *sum((["--to", u] for _, u, _ in bs), []), "--health-interval", "1h",
                             "--metrics")
        victim_proc.stop(signal.SIGKILL)
        # Every client connects, none reaches the dead backend, whose first failure marks it down.
        got = backends_of(url, 9)
        self.assertEqual(len(got), 9)
        self.assertNotIn(victim_port, got)
        self.assertEqual(backend_up(url, victim_url), 0)
        self.assertEqual(metric(url, "wsx_proxy_backend_failures_total", victim_url), 1)

    def test_http_refusal_below_500_counts_as_up(self):
        # A relay answers the bare path with 404 (it wants a topic): serving, so up. A server that
        # answers 503 to everything is marked down. Three failed rounds of the second mean the
        # first was checked too.
        relay = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "-q"])
        relay_url = relay.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        busy_url = start_status_server(self, 503)
        _, url = start_proxy(self, "--to", relay_url, "--to", busy_url, "--health-interval", "50ms", "--metrics")
        wait_until(lambda: (metric(url, "wsx_proxy_backend_failures_total", busy_url) or 0) >= 3,
                   what="three failed checks of the 503 backend")
        self.assertEqual(backend_up(url, busy_url), 0)
        self.assertEqual(backend_up(url, relay_url), 1)
        self.assertEqual(metric(url, "wsx_proxy_backend_failures_total", relay_url), 0)

    def test_check_timeout_names_the_health_timeout(self):
        from proxy_helpers import RawUpstream
        up = RawUpstream()  # takes the connection, never answers the upgrade
        self.addCleanup(up.close)
        proxy, _ = start_proxy(self, "--to", up.url, "--health-interval", "100ms", "--health-timeout", "200ms")
        line = proxy.wait_for(r"upstream .* is down: ").string
        self.assertIn("(raise --health-timeout)", line)

    def test_checks_say_who_they_are(self):
        from proxy_helpers import RawUpstream
        up = RawUpstream()
        self.addCleanup(up.close)
        start_proxy(self, "--to", up.url, "--health-interval", "50ms")
        up.accept()  # the first check's upgrade request
        self.assertRegex(up.request, r"(?im)^User-Agent: wsx/\S+\r?$")

    def test_all_backends_down_is_502(self):
        b, burl, _ = start_port_backend(self)
        _, url = start_proxy(self, "--to", burl, "--health-interval", "1h")
        b.stop(signal.SIGKILL)
        import serve_helpers
        ws = serve_helpers.RawWS(url, expect_upgrade=False)
        self.assertEqual(ws.status, 502)
        self.assertIn("no upstream", ws.response_head + ws.buf.decode(errors="replace"))
        ws.close()


if __name__ == "__main__":
    wsxtest.main()
