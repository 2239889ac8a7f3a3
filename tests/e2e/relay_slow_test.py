"""wsx relay: a subscriber that stops reading is bounded (drop-oldest) or closed with 1013, and
the other subscribers keep receiving everything at full speed."""
import base64
import os
import socket
import struct
import threading
import time

import wsxtest
from relay_helpers import RelayCase, wait_until
from urllib.parse import urlparse

N = 20000
SIZE = 1024


class SlowSocket:
    """A WebSocket client with a tiny receive buffer that reads nothing until told to."""

    def __init__(self, url, path):
        u = urlparse(url)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((u.hostname, u.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(1)  # byte by byte: leave the frames in the kernel
        assert self.buf.startswith(b"HTTP/1.1 101"), self.buf
        self.buf = b""


def parse_frames(data):
    """Complete frames in data → ([(opcode, payload)], bytes consumed)."""
    out, i = [], 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            if j + 2 > len(data):
                break
            n, j = struct.unpack("!H", data[j:j + 2])[0], j + 2
        elif n == 127:
            if j + 8 > len(data):
                break
            n, j = struct.unpack("!Q", data[j:j + 8])[0], j + 8
        if j + n > len(data):
            break
        out.append((b0 & 0x0F, bytes(data[j:j + n])))
        i = j + n
    return out, i


class FastReader(threading.Thread):
    """Reads a subscriber's socket as fast as it can; records the ids of the messages."""

    def __init__(self, ws, until):
        super().__init__(daemon=True)
        self.ws, self.until, self.ids, self.close_code = ws, until, [], None

    def run(self):
        data = bytearray(self.ws.buf)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frames, used = parse_frames(data)
            del data[:used]
            for op, payload in frames:
                if op == 0x8:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    return
                self.ids.append(int(payload[:8]))
            if self.ids and self.ids[-1] == self.until:
                return
            self.ws.sock.settimeout(1)
            try:
                chunk = self.ws.sock.recv(1 << 20)
            except (socket.timeout, TimeoutError):
                continue
            if not chunk:
                return
            data += chunk


class RelaySlowConsumerTest(RelayCase):
    def run_policy(self, policy):
        p, url = self.start_relay("--slow-consumer", policy, "--subscriber-queue", "2MiB", "--metrics", "--threads", "2")
        fast = [self.raw(url, f"/feed?id=fast{i}") for i in range(3)]
        slow = SlowSocket(url, "/feed?id=slow")
        self.addCleanup(slow.sock.close)
        pub = self.raw(url, "/feed?id=pub")
        wait_until(lambda: self.metrics(url).get("wsx_relay_subscribers") == 5, 10, "5 subscribers")
        readers = [FastReader(ws, N - 1) for ws in fast]
        for r in readers:
            r.start()
        body = b"x" * (SIZE - 8)
        # Masked with a zero key (valid, and the payload stays as it is): a quick publisher.
        frame = lambda i: struct.pack("!BBH", 0x82, 0x80 | 126, SIZE) + b"\0\0\0\0" + b"%08d" % i + body
        start = time.monotonic()
        for k in range(0, N, 500):
            # The readers may lag by about 1 MiB (they are Python); the slow one lags by everything.
            wait_until(lambda: min(len(r.ids) for r in readers) >= k - 1000, 20, "fast subscribers to keep up", 0.001)
            pub.sock.sendall(b"".join(frame(i) for i in range(k, min(N, k + 500))))
        for r in readers:
            r.join(40)
            self.assertEqual(r.ids, list(range(N)), "a fast subscriber lost messages")
        elapsed = time.monotonic() - start
        # 20 MiB to each fast subscriber: far under the deadline while the slow one is stuck.
        self.assertLess(elapsed, 20, "fast subscribers were held back")
        return p, url, slow

    def drain(self, slow):
        """Starts reading the slow subscriber at last (with a normal buffer): everything it is sent."""
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        r = FastReader(slow, N - 1)
        r.run()
        return r

    def test_drop_oldest_keeps_the_newest_and_bounds_memory(self):
        p, url, slow = self.run_policy("drop-oldest")
        m = self.metrics(url)
        rss_kib = wsxtest.rss_kib(p.proc.pid)
        # 20 MiB went to a subscriber that read nothing: what the relay holds for it stays bounded.
        if not wsxtest.SANITIZED:
            self.assertLess(rss_kib, 64 * 1024)
        self.assertGreater(m["wsx_relay_slow_dropped_total"], 0)
        self.assertEqual(m["wsx_relay_slow_closed_total"], 0)
        ids = self.drain(slow).ids
        self.assertLess(len(ids), N)
        self.assertEqual(ids, sorted(ids))
        # The oldest were dropped: what was waiting at the end is delivered, up to the last one.
        self.assertEqual(ids[-1], N - 1)
        self.assertEqual(len(ids) + m["wsx_relay_slow_dropped_total"], N)

    def test_close_policy_closes_with_1013(self):
        p, url, slow = self.run_policy("close")
        m = self.metrics(url)
        self.assertEqual(m["wsx_relay_slow_closed_total"], 1)
        r = self.drain(slow)
        self.assertLess(len(r.ids), N)
        # The Close follows what was queued before it, unless the close timeout ended it first.
        if r.close_code is not None:
            self.assertEqual(r.close_code, 1013)
        p.stop()
        self.assertRegex(p.rest_of_stderr(), r'"/feed\?id=slow".* code=1013')


if __name__ == "__main__":
    wsxtest.main()
