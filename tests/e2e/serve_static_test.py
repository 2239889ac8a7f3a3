"""wsx serve --static, --path and --metrics: files with content types, 404s, no path
traversal, upgrades only at --path, Prometheus metrics on the same port."""
import os
import socket
import time

import wsxtest
from serve_helpers import RawWS, http_request


class StaticTest(wsxtest.WsxTestCase):
    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.tmp, "public")
        os.makedirs(os.path.join(self.root, "sub"))
        with open(os.path.join(self.root, "index.html"), "w") as f:
            f.write("<h1>home</h1>")
        with open(os.path.join(self.root, "sub", "app.js"), "w") as f:
            f.write("console.log(1)")
        with open(os.path.join(self.root, "data.bin"), "wb") as f:
            f.write(bytes(range(256)))
        with open(os.path.join(self.tmp, "secret.txt"), "w") as f:
            f.write("secret")
        os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(self.root, "link.txt"))

    def test_files_types_and_404(self):
        p, url = self.start_server("--static", self.root)
        status, h, body = http_request(url, "/")
        self.assertEqual((status, body), (200, b"<h1>home</h1>"))
        self.assertEqual(h["content-type"], "text/html; charset=utf-8")
        status, h, body = http_request(url, "/sub/app.js?v=3")
        self.assertEqual((status, body), (200, b"console.log(1)"))
        self.assertTrue(h["content-type"].startswith("text/javascript"))
        status, h, body = http_request(url, "/data.bin")
        self.assertEqual((status, body, h["content-type"]), (200, bytes(range(256)), "application/octet-stream"))
        status, h, body = http_request(url, "/missing.html")
        self.assertEqual(status, 404)
        status, h, body = http_request(url, "/sub")
        self.assertEqual((status, h.get("location")), (301, "/sub/"))
        status, h, body = http_request(url, "/", method="HEAD")
        self.assertEqual((status, h["content-length"], body), (200, "13", b""))
        status, h, body = http_request(url, "/", method="POST")
        self.assertEqual(status, 405)

    def test_redirect_stays_on_this_host(self):
        # "//sub/" in a Location is another host ("sub"): the redirect must be a path here.
        p, url = self.start_server("--static", self.root)
        for path, location in (("//sub", "/sub/"), ("///sub", "/sub/"), ("/./sub", "/./sub/"), ("//sub?x=1", "/sub/"), ("/sub#x", "/sub/")):
            with self.subTest(path=path):
                status, h, body = http_request(url, path)
                self.assertEqual((status, h.get("location")), (301, location))

    def test_slow_download_is_not_cut_at_the_handshake_timeout(self):
        size = 30 << 20
        with open(os.path.join(self.root, "big.bin"), "wb") as f:
            f.write(os.urandom(1 << 20) * 30)
        p, url = self.start_server("--static", self.root, "--handshake-timeout", "500ms")
        host, port = url[len("ws://"):].rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"GET /big.bin HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = bytearray()
            t0 = time.monotonic()
            deadline = t0 + 60
            while time.monotonic() < deadline:
                # A client that reads about 20 MB/s: the download takes well over 500 ms.
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                time.sleep(0.05)  # pacing of the slow reader, not synchronisation
            elapsed = time.monotonic() - t0
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertIn(f"content-length: {size}".encode(), head.lower())
        self.assertEqual(len(body), size, f"got {len(body)} of {size} bytes in {elapsed:.1f}s")
        with open(os.path.join(self.root, "big.bin"), "rb") as f:
            self.assertEqual(body, f.read())
        self.assertGreater(elapsed, 0.5)

    def test_large_files_are_streamed(self):
        # 256 MiB (sparse): neither HEAD nor GET holds the file in the server's memory.
        size = 256 << 20
        with open(os.path.join(self.root, "huge.bin"), "wb") as f:
            f.truncate(size)
        p, url = self.start_server("--static", self.root)
        base = wsxtest.rss_kib(p.proc.pid)
        status, h, body = http_request(url, "/huge.bin", method="HEAD")
        self.assertEqual((status, h["content-length"], body), (200, str(size), b""))
        peak = wsxtest.rss_kib(p.proc.pid)
        host, port = url[len("ws://"):].rstrip("/").split(":")
        got = 0
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"GET /huge.bin HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "connection closed in the headers")
                head += chunk
            got = len(head.partition(b"\r\n\r\n")[2])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
                if got % (32 << 20) < len(chunk):
                    peak = max(peak, wsxtest.rss_kib(p.proc.pid))
        self.assertEqual(got, size)
        if not wsxtest.SANITIZED:
            self.assertLess(peak - base, 32 * 1024, f"server grew by {peak - base} KiB")

    def test_traversal_refused(self):
        p, url = self.start_server("--static", self.root)
        for path in ("/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/sub/%2E%2E/%2e%2e/secret.txt",
                     "/..%2fsecret.txt", "/link.txt", "/a%00b", "/sub%5c..%5c..%5csecret.txt"):
            with self.subTest(path=path):
                status, h, body = http_request(url, path)
                self.assertIn(status, (400, 403, 404))
                self.assertNotIn(b"secret", body)

    def test_websocket_beside_files_and_path(self):
        p, url = self.start_server("--static", self.root, "--path", "/ws")
        ws = RawWS(url, "/ws")
        ws.send_text("ping")
        self.assertEqual(ws.recv_message(), (1, b"ping"))
        other = RawWS(url, "/elsewhere", expect_upgrade=False)
        self.assertEqual(other.status, 404)
        self.assertEqual(http_request(url, "/")[0], 200)

    def test_path_without_static(self):
        p, url = self.start_server("--path", "/ws")
        self.assertEqual(RawWS(url, "/nope", expect_upgrade=False).status, 404)
        self.assertEqual(http_request(url, "/ws")[0], 426)
        self.assertEqual(http_request(url, "/other")[0], 404)

    def test_metrics(self):
        p, url = self.start_server("--metrics", "--max-connections", "1")
        ws = RawWS(url)
        ws.send_text("hello")
        self.assertEqual(ws.recv_message(), (1, b"hello"))
        self.assertEqual(RawWS(url, expect_upgrade=False).status, 503)
        status, h, body = http_request(url, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        self.assertIn("wsx_connections_current 1\n", text)
        self.assertIn("wsx_connections_total 1\n", text)
        self.assertIn('wsx_messages_total{direction="in"} 1\n', text)
        self.assertIn('wsx_bytes_total{direction="out"} 5\n', text)
        self.assertIn('wsx_rejections_total{reason="max_connections"} 1\n', text)
        ws.send_close(1000)
        self.assertEqual(ws.expect_close()[0], 1000)
        ws.close()
        p.wait_for(r"code=1000")
        text = http_request(url, "/metrics")[2].decode()
        self.assertIn("wsx_connections_current 0\n", text)
        self.assertIn('wsx_closes_total{code="1000"} 1\n', text)

    def test_metrics_count_drops_as_they_happen(self):
        # A client that reads nothing, with --overflow drop: what the server dropped is not
        # counted as sent, and shows in /metrics while the connection is still open.
        import re
        import struct
        p, url = self.start_server("--metrics", "--send-queue-limit", "64KiB", "--overflow", "drop")
        ws = RawWS(url)
        count, size = 2000, 16384
        frame = struct.pack("!BBH", 0x82, 0x80 | 126, size) + b"\0\0\0\0" + b"x" * size  # zero mask
        ws.sock.sendall(frame * count)

        def metric(text, name):
            m = re.search("^" + re.escape(name) + r" (\d+)$", text, re.M)
            return int(m.group(1)) if m else None

        deadline = time.monotonic() + 20
        while True:
            text = http_request(url, "/metrics")[2].decode()
            if metric(text, 'wsx_messages_total{direction="in"}') == count or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # poll interval of a bounded wait
        self.assertEqual(metric(text, 'wsx_messages_total{direction="in"}'), count)
        out = metric(text, 'wsx_messages_total{direction="out"}')
        dropped = metric(text, "wsx_dropped_messages_total")
        self.assertGreater(dropped, 0)
        self.assertEqual(out + dropped, count, text)
        self.assertEqual(metric(text, 'wsx_bytes_total{direction="out"}'), out * size)
        self.assertEqual(metric(text, "wsx_connections_current"), 1)
        ws.close()
        p.wait_for(r"code=1006")
        text = http_request(url, "/metrics")[2].decode()
        self.assertEqual(metric(text, "wsx_dropped_messages_total"), dropped)  # not counted twice at the close


if __name__ == "__main__":
    wsxtest.main()
