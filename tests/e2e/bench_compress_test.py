"""wsx bench --compress: permessage-deflate against `wsx serve --compress` and python websockets,
window and context-takeover parameters honoured, payload against wire bytes, and a server that
declines compression failing the run (exit 6, Close 1010 sent)."""
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsxtest  # noqa: E402
from wsxtest import WsxTestCase, main, read_line_matching  # noqa: E402


class BenchCompress(WsxTestCase):
    def python_peer(self, *args):
        """python3-websockets echo server (tests/e2e/peers/ws_server.py); returns (process, url)."""
        p = self.start([wsxtest.PYTHON, os.path.join(wsxtest.PEERS, "ws_server.py"), *args], stdout=subprocess.PIPE)
        port = read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)", 10).group(1)
        return p, f"ws://127.0.0.1:{port}/"

    def assert_all_verified(self, j, n):
        self.assertEqual(j["messages"]["sent"], n)
        self.assertEqual(j["messages"]["received"], n)
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["latency"]["histogram"]["count"], n)

    def test_against_wsx_serve(self):
        _, url = self.start_server("--compress")
        r, j = self.bench_json(url, "--compress", "-c", "3", "-n", "1500", "--in-flight", "4", "--size", "2KiB")
        self.assertTrue(j["config"]["compress"])
        self.assertIn("permessage-deflate", j["connections"]["extensions"])
        self.assert_all_verified(j, 1500)
        m = j["messages"]
        self.assertEqual(m["bytes_sent"], 1500 * 2048)
        self.assertEqual(m["bytes_received"], 1500 * 2048)
        # The filler compresses well: far fewer bytes cross the wire than the messages hold.
        self.assertGreater(m["wire_bytes_sent"], 0)
        self.assertLess(m["wire_bytes_sent"], m["bytes_sent"] / 4)
        self.assertGreater(m["wire_bytes_received"], 0)
        self.assertLess(m["wire_bytes_received"], m["bytes_received"] / 4)
        self.assertEqual(j["close_codes"], {"1000": 3})
        out = r.stdout.decode()
        self.assertIn("permessage-deflate", out)
        self.assertIn("wire/payload", out)
        self.assertIn("extensions: permessage-deflate", out)

    def test_large_binary_messages_and_open_loop(self):
        _, url = self.start_server("--compress")
        _, j = self.bench_json(url, "--compress", "-c", "2", "-n", "60", "--binary", "--size", "300KiB", "--in-flight", "2")
        self.assert_all_verified(j, 60)
        _, j = self.bench_json(url, "--compress", "-c", "2", "--rate", "300", "-d", "1s")
        self.assertGreater(j["messages"]["received"], 200)
        self.assertEqual(j["errors"], {})

    def test_without_compress_nothing_is_offered(self):
        _, url = self.start_server("--compress")
        _, j = self.bench_json(url, "-c", "1", "-n", "100")
        self.assertFalse(j["config"]["compress"])
        self.assertEqual(j["connections"]["extensions"], "")
        m = j["messages"]
        # Uncompressed: every 32-byte message costs a 6-byte client header and a 2-byte server header.
        self.assertEqual(m["wire_bytes_sent"], 100 * (32 + 6))
        self.assertEqual(m["wire_bytes_received"], 100 * (32 + 2))

    def test_against_python_websockets(self):
        p, url = self.python_peer()
        # Random 8 KiB repeated: a match 8 KiB back is the obvious compression, but the server
        # allows only a 4 KiB window (client_max_window_bits=12), which the client must honour
        # or the server fails to inflate.
        rnd = random.Random(5)
        block = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8192))
        path = os.path.join(self.tmp, "payload.txt")
        with open(path, "w") as f:
            f.write(block * 3)
        _, j = self.bench_json(url, "--compress", "-c", "2", "-n", "400", "--in-flight", "2", "--payload-file", path)
        self.assert_all_verified(j, 400)
        self.assertIn("client_max_window_bits=12", j["connections"]["extensions"])
        read_line_matching(p.proc.stdout, r"^extensions permessage-deflate$", 10)
        read_line_matching(p.proc.stdout, r"^closed 1000", 10)

    def test_window_and_context_takeover_options(self):
        p, url = self.python_peer()
        _, j = self.bench_json(url, "--compress", "--compress-window-bits", "10", "--compress-no-context-takeover",
                             "-c", "2", "-n", "300", "--size", "4KiB")
        self.assert_all_verified(j, 300)
        ext = j["connections"]["extensions"]
        for part in ("client_max_window_bits=10", "server_max_window_bits=10", "client_no_context_takeover",
                     "server_no_context_takeover"):
            self.assertIn(part, ext)

    def test_send_compressed(self):
        _, url = self.start_server("--compress")
        _, j = self.bench_json(url, "--compress", "-s", "send", "-c", "2", "-n", "3000", "--size", "1KiB")
        self.assertEqual(j["messages"]["sent"], 3000)
        self.assertLess(j["messages"]["wire_bytes_sent"], j["messages"]["bytes_sent"] / 4)
        self.assertEqual(j["errors"], {})

    def test_connect_storm_negotiates(self):
        _, url = self.start_server("--compress")
        _, j = self.bench_json(url, "--compress", "-s", "connect", "-c", "2", "-n", "40")
        self.assertEqual(j["connections"]["established"], 40)
        self.assertIn("permessage-deflate", j["connections"]["extensions"])
        self.assertEqual(j["close_codes"], {"1000": 40})

    def test_declined_by_python_server_exits_6(self):
        p, url = self.python_peer("--no-compression")
        r = self.wsx("bench", url, "--compress", "-c", "2", "-n", "100", timeout=30)
        self.assertExit(r, 6)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("no connection could be made (2 attempted)", errors[0])
        self.assertIn("declined permessage-deflate (--compress)", errors[0])
        self.assertIn("leave out --compress", errors[0])
        self.assertEqual(r.stdout, b"")
        # The server is told why: Close 1010 (a required extension was not negotiated).
        read_line_matching(p.proc.stdout, r"^closed 1010 permessage-deflate required$", 10)

    def test_declined_by_wsx_serve_exits_6(self):
        _, url = self.start_server()
        r = self.wsx("bench", url, "--compress", "-s", "connect", "-c", "1", "-n", "5", timeout=30)
        self.assertExit(r, 6)
        self.assertIn("declined permessage-deflate", r.stderr.decode())

    def test_bad_compress_options(self):
        cases = [
            (["--compress-window-bits", "10"], "--compress-window-bits and --compress-no-context-takeover need --compress"),
            (["--compress-no-context-takeover"], "need --compress"),
            (["--compress", "--compress-window-bits", "8"], "--compress-window-bits"),
            (["--compress", "--compress-window-bits", "16"], "--compress-window-bits"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.wsx("bench", "ws://127.0.0.1:1/", *args)
                self.assertExit(r, 2)
                self.assertIn(message, r.stderr.decode())
                self.assertTrue(r.stderr.decode().startswith("wsx: error: "), r.stderr)


if __name__ == "__main__":
    main()
