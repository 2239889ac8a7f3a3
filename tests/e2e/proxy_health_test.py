"""wsx proxy: backend health. A backend killed mid-run gets no new connections, clients that
connect during the failure succeed elsewhere, and the backend returns after it recovers."""
import collections
import signal
import unittest

import wsxtest
from proxy_helpers import (backend_of, backend_up, backends_of, metric, start_port_backend, start_proxy, wait_until)


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
