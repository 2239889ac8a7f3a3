#!/usr/bin/python3
"""`wsx connect` against a server that upgrades and then neither reads nor sends: the client's
own bounds (--wait after stdin ends, --idle-timeout) end the run, with exit 8 and a line that
names the option, instead of hanging."""

import socket
import threading
import time
import unittest

import raw_peer
import wsxtest


class FrozenServer:
    """Answers the upgrade, then never reads or writes (its receive buffer is kept small so that
    a client's bytes back up at once)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                c, _ = self.listener.accept()
                self.conns.append(c)
                key = raw_peer.read_upgrade_key(c) or b""
                accept = raw_peer.accept_key(key)
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for c in self.conns:
            c.close()


class StallTest(wsxtest.WsxTestCase):
    def setUp(self):
        super().setUp()
        self.server = FrozenServer()
        self.addCleanup(self.server.close)
        self.url = f"ws://127.0.0.1:{self.server.port}/"

    def test_wait_bounds_a_close_behind_unread_data(self):
        # 5 MB of lines: more than the sockets between the two hold (about 3 MB here), less
        # than that plus the send queue (4 MiB), so stdin ends and the Close waits behind bytes
        # the server never takes.
        data = b"y" * 1023 + b"\n"
        start = time.monotonic()
        r = self.wsx("connect", self.url, "--wait", "1s", input=data * 5120, timeout=30)
        took = time.monotonic() - start
        self.assertExit(r, 8)
        self.assertIn("the server stopped reading", r.stderr.decode())
        self.assertIn("(--wait 1s)", r.stderr.decode())
        self.assertLess(took, 10)

    def test_idle_timeout_gives_up_after_about_the_timeout(self):
        start = time.monotonic()
        r = self.wsx_open_stdin("connect", self.url, "-n", "1", "--idle-timeout", "500ms", timeout=30)
        took = time.monotonic() - start
        self.assertExit(r, 8)
        self.assertIn("--idle-timeout", r.stderr.decode())
        self.assertNotIn("--wait", r.stderr.decode())
        self.assertLess(took, 4.0)  # was the timeout plus --wait (5.5 s); margin for sanitizer builds under load


if __name__ == "__main__":
    unittest.main()
