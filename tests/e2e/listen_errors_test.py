#!/usr/bin/python3
"""A listener that cannot be set up (its port is taken) ends serve, relay and proxy at once with
exit 1 and one error line that says what to do, and nothing else on stderr."""

import socket
import unittest

import wsxtest


class ListenErrorsTest(wsxtest.WsxTestCase):
    def setUp(self):
        super().setUp()
        self.taken = socket.socket()
        self.taken.bind(("127.0.0.1", 0))
        self.taken.listen(1)
        self.addCleanup(self.taken.close)
        self.port = self.taken.getsockname()[1]

    def check(self, *args):
        r = self.wsx(*args, timeout=20)
        self.assertExit(r, 1)
        lines = [l for l in r.stderr.decode().splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, lines)  # no summary or notice around it
        self.assertRegex(lines[0], rf"^wsx: error: .*cannot listen on 127\.0\.0\.1:{self.port}: .*in use.*"
                                   r"choose another port \(0 picks a free one\)")

    def test_serve(self):
        self.check("serve", f"127.0.0.1:{self.port}")

    def test_relay(self):
        self.check("relay", f"127.0.0.1:{self.port}")

    def test_proxy_tcp_listener(self):
        self.check("proxy", "--listen", f"tcp://127.0.0.1:{self.port}", "--to", "ws://127.0.0.1:1/")

    def test_proxy_ws_listener(self):
        self.check("proxy", "--listen", f"ws://127.0.0.1:{self.port}", "--to", "ws://127.0.0.1:1/")


if __name__ == "__main__":
    unittest.main()
