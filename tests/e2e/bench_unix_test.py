"""wsx bench over unix sockets (ws+unix:///path.sock:/resource) against python3-websockets
servers listening on a socket in a temporary directory: echo, send, connect and fanout,
with and without permessage-deflate, and the errors a unix URL can meet."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsxtest  # noqa: E402
from wsxtest import SOURCE_DIR, WsxTestCase, main, read_line_matching  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "tests", "data", "bench")


class BenchUnix(WsxTestCase):
    def echo_server(self, *args):
        """python3-websockets unix_serve echo server; returns (process, socket path)."""
        path = os.path.join(self.tmp, "echo.sock")
        p = self.start([wsxtest.PYTHON, os.path.join(wsxtest.PEERS, "ws_server.py"), "--unix", path, *args],
                       stdout=subprocess.PIPE)
        read_line_matching(p.proc.stdout, r"^listening on unix:", 10)
        return p, path

    def test_echo(self):
        p, path = self.echo_server()
        url = f"ws+unix://{path}:/bench/echo?x=1"
        r, j = self.bench_json(url, "-c", "3", "-n", "900", "--in-flight", "4", "--threads", "2")
        self.assertEqual(j["config"]["url"], url)
        self.assertEqual(j["connections"]["established"], 3)
        self.assertEqual(j["messages"]["sent"], 900)
        self.assertEqual(j["messages"]["received"], 900)
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["latency"]["histogram"]["count"], 900)
        self.assertEqual(j["close_codes"], {"1000": 3})
        self.assertIn(f"wsx bench: echo {url}", r.stdout.decode())
        read_line_matching(p.proc.stdout, r"^open /bench/echo\?x=1$", 10)

    def test_echo_binary_large_and_open_loop(self):
        _, path = self.echo_server()
        url = f"ws+unix://{path}:/"
        _, j = self.bench_json(url, "-c", "2", "-n", "100", "--binary", "--size", "100KiB", "--in-flight", "2")
        self.assertEqual(j["messages"]["received"], 100)
        self.assertEqual(j["errors"], {})
        # Open loop: what was sent was answered (a throughput figure is the benchmarks' business).
        _, j = self.bench_json(url, "-c", "2", "--rate", "400", "-d", "1s")
        self.assertGreater(j["messages"]["received"], 100)
        self.assertEqual(j["messages"]["sent"], j["messages"]["received"])
        self.assertEqual(j["errors"], {})

    def test_echo_compressed(self):
        p, path = self.echo_server()
        _, j = self.bench_json(f"ws+unix://{path}:/", "--compress", "-c", "2", "-n", "500", "--size", "1KiB")
        self.assertEqual(j["messages"]["received"], 500)
        self.assertEqual(j["errors"], {})
        self.assertIn("permessage-deflate", j["connections"]["extensions"])
        self.assertLess(j["messages"]["wire_bytes_sent"], j["messages"]["bytes_sent"] / 4)
        read_line_matching(p.proc.stdout, r"^extensions permessage-deflate$", 10)

    def test_send(self):
        _, path = self.echo_server()
        _, j = self.bench_json(f"ws+unix://{path}:/", "-s", "send", "-c", "2", "-n", "5000")
        self.assertEqual(j["messages"]["sent"], 5000)
        self.assertEqual(j["errors"], {})

    def test_connect_storm(self):
        _, path = self.echo_server()
        _, j = self.bench_json(f"ws+unix://{path}:/", "-s", "connect", "-c", "2", "-n", "60")
        self.assertEqual(j["connections"]["attempted"], 60)
        self.assertEqual(j["connections"]["established"], 60)
        self.assertEqual(j["close_codes"], {"1000": 60})

    def test_fanout_compressed(self):
        path = os.path.join(self.tmp, "hub.sock")
        p = self.start([wsxtest.PYTHON, os.path.join(DATA, "broadcast_server.py"), "--unix", path, "--compress"],
                       stdout=subprocess.PIPE)
        read_line_matching(p.proc.stdout, r"^listening on unix:", 10)
        _, j = self.bench_json(f"ws+unix://{path}:/", "--compress", "-s", "fanout", "-c", "3", "--publishers", "2",
                             "--rate", "200", "-n", "100", "--reply-timeout", "3s")
        self.assertEqual(j["messages"]["sent"], 100)
        self.assertEqual(j["messages"]["expected"], 300)
        self.assertEqual(j["messages"]["received"], 300)
        self.assertEqual(j["errors"], {})
        self.assertIn("permessage-deflate", j["connections"]["extensions"])

    def test_missing_socket_exits_4(self):
        path = os.path.join(self.tmp, "nobody.sock")
        r = self.wsx("bench", f"ws+unix://{path}:/", "-c", "2", "-n", "10", timeout=30)
        self.assertExit(r, 4)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn(f"cannot connect to unix socket {path}", errors[0])
        self.assertIn("is a server listening on that socket?", errors[0])

    def test_refused_socket_exits_4(self):
        # A socket file nobody listens on any more.
        import socket
        path = os.path.join(self.tmp, "stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
        r = self.wsx("bench", f"ws+unix://{path}:/", "-n", "10", timeout=30)
        self.assertExit(r, 4)
        self.assertIn("refused", r.stderr.decode().lower())

    def test_bad_unix_combinations(self):
        path = os.path.join(self.tmp, "x.sock")
        cases = [
            ([f"wss+unix://{path}:/"], "wss+unix:// is not supported: use ws+unix://"),
            ([f"ws+unix://{path}:/", "--proxy", "http://127.0.0.1:3128"], "--proxy cannot be used with a ws+unix:// URL"),
            ([f"ws+unix://{path}:/", "-s", "fanout", "--publish-url", f"wss+unix://{path}:/"],
             "--publish-url: wss+unix:// is not supported"),
            (["ws+unix://:/"], "missing socket path"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.wsx("bench", *args)
                self.assertExit(r, 2)
                self.assertIn(message, r.stderr.decode())


if __name__ == "__main__":
    main()
