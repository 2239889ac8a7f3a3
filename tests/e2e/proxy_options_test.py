"""`wsx proxy`: wrong option values are reported together, one line each, with exit 2, before
anything listens or connects."""
import os

import wsxtest


class ProxyOptionsTest(wsxtest.WsxTestCase):
    def test_bad_values_are_reported_together(self):
        r = self.wsx("proxy", "--listen", "ftp://127.0.0.1:1", "--to", "ws://127.0.0.1:1", "--sticky", "bogus",
                     "--fault-drop", "150%", "--fault-close-after", "x", "--fault-delay", "zz",
                     "--health-interval", "-1s")
        self.assertExit(r, 2)
        err = r.stderr.decode()
        for expected in ("--listen 'ftp://127.0.0.1:1': use ws://, wss:// or tcp://",
                         "--sticky 'bogus': use ip, header:NAME, cookie:NAME or query:NAME",
                         "--fault-drop '150%': not a share",
                         "--fault-close-after 'x'",
                         "--fault-delay 'zz': not a duration",
                         "--health-interval '-1s': not a duration"):
            self.assertIn(expected, err)
        self.assertEqual(len(self.error_lines(r)), 6, err)

    def test_values_that_cannot_work_are_refused(self):
        r = self.wsx("proxy", "--to", "ws://127.0.0.1:1", "--connect-timeout", "0", "--health-timeout", "0s",
                     "--fault-close-after", "0", "--fault-close-code", "1005")
        self.assertExit(r, 2)
        err = r.stderr.decode()
        for expected in ("--connect-timeout must be more than 0",
                         "--health-timeout must be more than 0",
                         "--fault-close-after '0': would close nothing",
                         "--fault-close-code 1005: not a code a Close frame may carry"):
            self.assertIn(expected, err)
        self.assertEqual(len(self.error_lines(r)), 4, err)

    def test_close_codes_that_may_not_be_sent(self):
        for code in ("999", "1004", "1006", "1015", "1016", "2999", "5000"):
            with self.subTest(code=code):
                r = self.wsx("proxy", "--to", "ws://127.0.0.1:1", "--fault-close-code", code)
                self.assertExit(r, 2)
                self.assertEqual(self.error_lines(r),
                                 [f"wsx: error: --fault-close-code {code}: not a code a Close frame may carry; "
                                  "use 1000-1003, 1007-1014 or 3000-4999"])

    def test_fault_close_after_out_of_range_is_one_line(self):
        for value, expected in (("99999999999999999999999", "too many messages"), ("0ms", "would close nothing")):
            with self.subTest(value=value):
                r = self.wsx("proxy", "--to", "ws://127.0.0.1:1", "--fault-close-after", value)
                self.assertExit(r, 2)
                lines = self.error_lines(r)
                self.assertEqual(len(lines), 1, r.stderr)
                self.assertIn(f"--fault-close-after '{value}': {expected}", lines[0])

    def test_tcp_listener_refuses_threads(self):
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "ws://127.0.0.1:1", "--threads", "4")
        self.assertExit(r, 2)
        self.assertIn("--threads: a tcp:// listener runs its tunnels on one thread", r.stderr.decode())

    def test_upstream_required(self):
        r = self.wsx("proxy", "--listen", "ws://127.0.0.1:0")
        self.assertExit(r, 2)
        self.assertIn("--to is required", r.stderr.decode())

    def test_unknown_balance_mode(self):
        r = self.wsx("proxy", "--to", "ws://127.0.0.1:1", "--balance", "nope")
        self.assertExit(r, 2)
        self.assertIn("wsx: error: proxy: --balance: 'nope' is not one of round-robin, least-conn, random", r.stderr.decode())

    def test_tcp_listener_needs_websocket_upstreams(self):
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "tcp://127.0.0.1:2")
        self.assertExit(r, 2)
        self.assertIn("a tcp:// listener needs ws:// or wss:// upstreams", r.stderr.decode())

    def test_wss_listener_needs_a_certificate(self):
        r = self.wsx("proxy", "--listen", "wss://127.0.0.1:0", "--to", "ws://127.0.0.1:1")
        self.assertExit(r, 2)
        self.assertIn("--listen wss://: give --tls-cert and --tls-key, or --tls-self-signed", r.stderr.decode())

    def test_upstream_tls_files_are_checked_before_listening(self):
        # Not at the first client's connect, which would give every client a 502.
        missing = os.path.join(self.tmp, "missing.pem")
        r = self.wsx("proxy", "--listen", "ws://127.0.0.1:0", "--to", "wss://127.0.0.1:1", "--cacert", missing)
        self.assertExit(r, 2)
        self.assertIn(f"--cacert '{missing}': cannot read the file", r.stderr.decode())
        self.assertNotIn("listening on", r.stderr.decode())


if __name__ == "__main__":
    wsxtest.main()
