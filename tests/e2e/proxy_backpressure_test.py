"""wsx proxy backpressure: a client that does not read slows the reading from its upstream instead
of filling the proxy's memory (or overflowing its send queue)."""
import time

import serve_helpers
import wsxtest
from proxy_helpers import start_proxy
from wsxtest import rss_kib

TOTAL = 40_000_000



class BackpressureTest(wsxtest.WsxTestCase):
    def test_a_stalled_client_pauses_its_upstream(self):
        # The upstream pours 40 MB at the client as fast as it can be read.
        _, up = self.start_server("-q", "--binary", "--exec", f"sh -c 'head -c {TOTAL} /dev/zero'")
        proxy, url = start_proxy(self, "--to", up, "--send-queue-limit", "4MiB", "--overflow", "close",
                                 "--health-interval", "1h")
        base = rss_kib(proxy.proc.pid)
        ws = serve_helpers.RawWS(url)
        try:
            # Read nothing for a while: the proxy must not buffer the 40 MB meanwhile.
            deadline = time.monotonic() + 1.5
            peak = base
            while time.monotonic() < deadline:
                peak = max(peak, rss_kib(proxy.proc.pid))
                time.sleep(0.05)
            if not wsxtest.SANITIZED:
                self.assertLess(peak - base, 20 * 1024, f"proxy grew by {peak - base} KiB")
            # Then everything arrives, and the queue limit (4 MiB, close) never tripped.
            got = 0
            while got < TOTAL:
                fin, op, payload = ws.recv_frame(timeout=20)
                self.assertIn(op, (0x0, 0x2), f"unexpected opcode {op}: {payload[:40]!r}")
                got += len(payload)
            self.assertEqual(got, TOTAL)
        finally:
            ws.close()


if __name__ == "__main__":
    wsxtest.main()
