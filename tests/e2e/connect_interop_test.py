"""`wsx connect` against an independent server: Debian's python3-websockets (peers/ws_server.py).

Behaviour these tests rely on:
- handshake options land in the request as: -H 'Name: value' (verbatim), --subprotocol (one
  Sec-WebSocket-Protocol list, in the order given), --origin, --cookie (joined with "; "),
  --auth / user:pass@ (Authorization: Basic), --token (Authorization: Bearer), --token-query
  NAME (?NAME=TOKEN appended to the target instead of the header), --host (Host header).
- --compress offers permessage-deflate; without it no extension is offered.
- -v prints the request as "> " lines and the response as "< " lines on stderr.
- --jsonl reports ping and pong control frames in both directions; --ping-interval sends pings.
- --stats prints a curl -w style summary on stderr, --stats-json one JSON object (last line).
- the server's close code and reason are reported; 1000/1001 exit 0, others exit 7.
- python-websockets answers a Close at once, dropping echoes it has not sent yet (RFC 6455
  allows that), so echo tests here keep stdin open until every echo has arrived, or use -n.
- keepalive pings that wsx sends and the pongs that answer them are --jsonl events, and are
  counted in --stats/--stats-json.
"""
import base64
import json
import os
import random
import select
import subprocess
import threading
import time

import event_schema
import wsxtest
from wsxtest import WSX, LineCollector, WsxTestCase, read_line_matching


class InteropTest(WsxTestCase):
    def peer(self, *args):
        p, port = self.start_peer("ws_server.py", *args)
        return p, f"ws://127.0.0.1:{port}"

    def info(self, *args, path="/", extra_peer=()):
        """Connects to an info-mode server and returns the handshake it saw."""
        p, base = self.peer("--mode", "info", *extra_peer)
        r = self.wsx("connect", base + path, *args, "-n", "1", "--timeout", "5s")
        self.assertExit(r, 0)
        return json.loads(r.stdout), r, p

    def echo_all(self, url, data, *args, timeout=30):
        """Pipes `data` through wsx, closing stdin only once as many bytes came back;
        returns (exit code, stdout, stderr)."""
        p = subprocess.Popen([WSX, "connect", url, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        writer = threading.Thread(target=lambda: (p.stdin.write(data), p.stdin.flush()), daemon=True)
        writer.start()
        out = b""
        deadline = time.monotonic() + timeout
        while len(out) < len(data):
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, f"{len(out)} of {len(data)} bytes echoed within {timeout}s")
            ready, _, _ = select.select([p.stdout], [], [], left)
            if ready:
                chunk = os.read(p.stdout.fileno(), 1 << 20)
                self.assertTrue(chunk, f"stdout ended after {len(out)} of {len(data)} bytes")
                out += chunk
        writer.join(timeout)
        p.stdin.close()
        p.wait(timeout)  # what is left on stdout and stderr is small: no pipe fills up
        rest, err = p.stdout.read(), p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        return p.returncode, out + rest, err

    # Data ---------------------------------------------------------------
    def test_text_echo(self):
        p, base = self.peer()
        data = "".join(f"línea {i} ✓\n" for i in range(2000)).encode()
        code, out, err = self.echo_all(base + "/", data)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, data)
        read_line_matching(p.proc.stdout, r"^closed 1000", 10)

    def test_text_echo_with_count(self):
        _, base = self.peer()
        data = "".join(f"n{i}\n" for i in range(500)).encode()
        r = self.wsx("connect", base + "/", "-n", "500", "--timeout", "10s", input=data)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)

    def test_binary_echo(self):
        p, base = self.peer()
        data = random.Random(7).randbytes(512 * 1024)
        code, out, err = self.echo_all(base + "/", data, "-b")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, data)
        read_line_matching(p.proc.stdout, r"^message binary \d+", 10)

    def test_large_message(self):
        p, base = self.peer()
        line = b"z" * (3 << 20)
        r = self.wsx("connect", base + "/", "-n", "1", "--timeout", "10s", input=line + b"\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, line + b"\n")

    # Control frames -----------------------------------------------------
    def test_client_ping_gets_pong(self):
        _, base = self.peer()
        client = self.start([WSX, "connect", base + "/", "--ping-interval", "50ms", "--jsonl", "--stats-json"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out = LineCollector(client.proc.stdout)
        err = LineCollector(client.proc.stderr)
        out.wait_until(lambda ls: sum(b'"type":"pong"' in l for l in ls) >= 2, 10, "two pongs")
        client.proc.stdin.close()
        self.assertEqual(client.proc.wait(10), 0)
        events = [event_schema.check_event(l, dirs=event_schema.CONNECT_DIRS) for l in out.wait_for_end(5)]
        pings = [e for e in events if e["type"] == "ping" and e["dir"] == "out"]
        pongs = [e for e in events if e["type"] == "pong" and e["dir"] == "in"]
        self.assertGreaterEqual(len(pongs), 2)
        self.assertEqual(len({e["data"] for e in pongs}), len(pongs), "each pong answers a different ping")
        self.assertEqual([e["data"] for e in pongs], [e["data"] for e in pings][:len(pongs)],
                         "every keepalive ping is reported, and each pong echoes its payload")
        first_ping = events.index(pings[0])
        self.assertLess(first_ping, events.index(pongs[0]))
        stats = json.loads(err.wait_for_end(5)[-1])
        self.assertGreaterEqual(stats["pongs_received"], len(pongs))
        self.assertGreaterEqual(stats["pings_sent"], stats["pongs_received"])
        self.assertGreater(stats["rtt_max"], 0)
        self.assertLessEqual(stats["rtt_min"], stats["rtt_max"])

    def test_server_ping_is_reported(self):
        _, base = self.peer("--ping-interval", "0.05")
        client = self.start([WSX, "connect", base + "/", "--jsonl"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out = LineCollector(client.proc.stdout)
        out.wait_until(lambda ls: any(b'"type":"ping"' in l and b'"dir":"in"' in l for l in ls), 10, "a server ping")
        client.proc.stdin.close()
        self.assertEqual(client.proc.wait(10), 0)

    # Close codes --------------------------------------------------------
    def test_client_close_code_seen_by_server(self):
        p, base = self.peer()
        r = self.wsx("connect", base + "/", input=b"bye\n")
        self.assertExit(r, 0)
        read_line_matching(p.proc.stdout, r"^closed 1000 ?$", 10)

    def test_server_close_codes(self):
        for code, reason, exit_code in ((1000, "done", 0), (1001, "going away", 0), (1011, "boom", 7),
                                        (4000, "custom app code", 7), (1008, "policy", 7)):
            with self.subTest(code=code):
                _, base = self.peer("--mode", "close", "--close-code", str(code), "--close-reason", reason)
                r = self.wsx_open_stdin("connect", base + "/", "--jsonl", timeout=15)
                self.assertExit(r, exit_code)
                events = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)
                closes = [e for e in events if e["type"] == "close"]
                self.assertEqual(len(closes), 1, events)
                self.assertEqual(closes[0]["code"], code)
                self.assertEqual(closes[0]["reason"], reason)
                if exit_code:
                    line = self.error_lines(r)[0]
                    self.assertIn(str(code), line)
                    self.assertIn(reason, line)

    # Handshake ----------------------------------------------------------
    def test_subprotocol_negotiation(self):
        info, r, _ = self.info("--subprotocol", "superchat", "--subprotocol", "chat", "--stats-json",
                               extra_peer=("--subprotocol", "other", "--subprotocol", "chat"))
        self.assertEqual(info["headers"]["sec-websocket-protocol"], "superchat, chat")
        self.assertEqual(info["subprotocol"], "chat")
        stats = json.loads(r.stderr.decode().strip().splitlines()[-1])
        self.assertEqual(stats["subprotocol"], "chat")

    def test_no_common_subprotocol(self):
        # websockets then accepts without a subprotocol; the client sees none chosen.
        info, _, _ = self.info("--subprotocol", "v9", extra_peer=("--subprotocol", "v1"))
        self.assertIsNone(info["subprotocol"])

    def test_custom_headers(self):
        info, _, _ = self.info("-H", "X-Trace: abc 123", "--header", "X-Empty-Ish:  spaced", "-H", "X-Second:two")
        h = info["headers"]
        self.assertEqual(h["x-trace"], "abc 123")
        self.assertEqual(h["x-empty-ish"], "spaced")
        self.assertEqual(h["x-second"], "two")
        self.assertTrue(h["user-agent"].startswith("wsx/"))

    def test_header_overrides_user_agent(self):
        info, _, _ = self.info("-H", "User-Agent: my-agent/1")
        self.assertEqual(info["headers"]["user-agent"], "my-agent/1")

    def test_origin_cookie_host(self):
        p, base = self.peer("--mode", "info")
        r = self.wsx("connect", base + "/", "--origin", "https://app.example", "--cookie", "session=s1", "--cookie",
                     "theme=dark", "--host", "virtual.example:8443", "-n", "1", "--timeout", "5s")
        self.assertExit(r, 0)
        h = json.loads(r.stdout)["headers"]
        self.assertEqual(h["origin"], "https://app.example")
        self.assertEqual(h["cookie"], "session=s1; theme=dark")
        self.assertEqual(h["host"], "virtual.example:8443")

    def test_basic_auth_option(self):
        info, _, _ = self.info("--auth", "alice:open sesame")
        self.assertEqual(info["headers"]["authorization"], "Basic " + base64.b64encode(b"alice:open sesame").decode())

    def test_basic_auth_in_url(self):
        p, base = self.peer("--mode", "info")
        url = base.replace("ws://", "ws://bob:pa%40ss@") + "/"
        r = self.wsx("connect", url, "-n", "1", "--timeout", "5s")
        self.assertExit(r, 0)
        h = json.loads(r.stdout)["headers"]
        self.assertEqual(h["authorization"], "Basic " + base64.b64encode(b"bob:pa@ss").decode())

    def test_bearer_token(self):
        info, _, _ = self.info("--token", "t0k3n.value")
        self.assertEqual(info["headers"]["authorization"], "Bearer t0k3n.value")

    def test_token_query(self):
        info, _, _ = self.info("--token", "a b&c", "--token-query", "access_token", path="/feed?x=1")
        self.assertEqual(info["path"], "/feed?x=1&access_token=a%20b%26c")
        self.assertNotIn("authorization", info["headers"])

    def test_path_and_query_preserved(self):
        info, _, _ = self.info(path="/a/b%20c?q=1&r=two")
        self.assertEqual(info["path"], "/a/b%20c?q=1&r=two")

    def test_compress_negotiated(self):
        info, r, p = self.info("--compress")
        self.assertEqual(info["extensions"], ["permessage-deflate"])
        self.assertIn("permessage-deflate", info["headers"]["sec-websocket-extensions"])
        read_line_matching(p.proc.stdout, r"^extensions permessage-deflate$", 10)

    def test_compress_parameters_offered(self):
        info, _, _ = self.info("--compress", "--compress-window-bits", "10", "--compress-no-context-takeover")
        offer = info["headers"]["sec-websocket-extensions"]
        self.assertIn("client_max_window_bits=10", offer)
        self.assertIn("client_no_context_takeover", offer)
        self.assertEqual(info["extensions"], ["permessage-deflate"])

    def test_no_compression_without_flag(self):
        info, _, p = self.info()
        self.assertEqual(info["extensions"], [])
        self.assertNotIn("sec-websocket-extensions", info["headers"])

    def test_compressed_round_trip(self):
        p, base = self.peer()
        data = "".join(f"{i} " + "compressible " * 50 + "\n" for i in range(500)).encode()
        code, out, err = self.echo_all(base + "/", data, "--compress")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, data)
        read_line_matching(p.proc.stdout, r"^extensions permessage-deflate$", 10)

    def test_compress_refused_by_server_still_works(self):
        p, base = self.peer("--no-compression")
        r = self.wsx("connect", base + "/", "--compress", "-n", "1", "--timeout", "10s", input=b"plain\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"plain\n")
        read_line_matching(p.proc.stdout, r"^extensions -$", 10)

    def test_unix_socket(self):
        path = os.path.join(self.tmp, "ws.sock")
        p = self.start([wsxtest.PYTHON, os.path.join(wsxtest.PEERS, "ws_server.py"), "--mode", "info", "--unix", path],
                       stdout=subprocess.PIPE)
        read_line_matching(p.proc.stdout, r"^listening on unix:", 10)
        r = self.wsx("connect", f"ws+unix://{path}:/over/unix?x=1", "-n", "2", "--send", "via unix", "--timeout", "5s")
        self.assertExit(r, 0)
        lines = r.stdout.splitlines()
        self.assertEqual(json.loads(lines[0])["path"], "/over/unix?x=1")
        self.assertEqual(lines[1], b"via unix")

    # Reporting ----------------------------------------------------------
    def test_verbose_prints_handshake(self):
        _, r, _ = self.info("-v", "-H", "X-Shown: yes", path="/v")
        err = r.stderr.decode()
        self.assertRegex(err, r"(?m)^> GET /v HTTP/1\.1$")
        self.assertRegex(err, r"(?m)^> Host: 127\.0\.0\.1:\d+$")
        self.assertRegex(err, r"(?m)^> X-Shown: yes$")
        self.assertRegex(err, r"(?m)^> Sec-WebSocket-Key: \S+$")
        self.assertRegex(err, r"(?m)^< HTTP/1\.1 101 Switching Protocols$")
        self.assertRegex(err, r"(?mi)^< Upgrade: websocket$")
        self.assertRegex(err, r"(?mi)^< Sec-WebSocket-Accept: \S+$")
        self.assertNotIn(b">", r.stdout[:1], "headers are not on stdout")

    def test_verbose_on_rejected_upgrade(self):
        _, base = self.peer("--mode", "reject", "--status", "401", "--body", "who are you")
        r = self.wsx("connect", base + "/", "-v", input=b"x\n")
        self.assertExit(r, 6)
        self.assertRegex(r.stderr.decode(), r"(?m)^< HTTP/1\.1 401 Unauthorized$")

    def test_stats_text(self):
        _, base = self.peer()
        r = self.wsx("connect", base + "/", "--stats", "-n", "3", "--timeout", "10s", input=b"one\ntwo\nthree\n")
        self.assertExit(r, 0)
        err = r.stderr.decode()
        for field in ("url", "remote", "dns", "tcp connect", "upgrade", "connect total", "first message"):
            self.assertRegex(err, rf"(?m)^{field}: +\S+", field)
        self.assertRegex(err, r"(?m)^sent: +3 messages, 11 B")
        self.assertRegex(err, r"(?m)^received: +3 messages, 11 B")
        self.assertRegex(err, r"(?m)^close: +1000")

    def test_stats_json(self):
        _, base = self.peer()
        r = self.wsx("connect", base + "/", "--stats-json", "-n", "2", "--timeout", "10s", input=b"alpha\nbeta\n")
        self.assertExit(r, 0)
        stats = json.loads(r.stderr.decode().strip().splitlines()[-1])
        for key in ("url", "remote", "subprotocol", "time_dns", "time_connect", "time_tls", "time_upgrade",
                    "time_total_connect", "time_first_message", "messages_sent", "bytes_sent", "messages_received",
                    "bytes_received", "pings_sent", "pongs_received", "rtt_min", "rtt_avg", "rtt_max", "reconnects",
                    "close_code", "close_reason", "exit_code"):
            self.assertIn(key, stats)
        self.assertEqual(stats["messages_sent"], 2)
        self.assertEqual(stats["bytes_sent"], 9)
        self.assertEqual(stats["messages_received"], 2)
        self.assertEqual(stats["bytes_received"], 9)
        self.assertEqual(stats["close_code"], 1000)
        self.assertEqual(stats["exit_code"], 0)
        self.assertGreaterEqual(stats["time_total_connect"], stats["time_upgrade"])
        self.assertIsInstance(stats["time_first_message"], float)

    def test_stats_json_on_failure(self):
        _, base = self.peer("--mode", "close", "--close-code", "1011", "--close-reason", "boom")
        r = self.wsx_open_stdin("connect", base + "/", "--stats-json", timeout=15)
        self.assertExit(r, 7)
        stats = json.loads([l for l in r.stderr.decode().splitlines() if l.startswith("{")][-1])
        self.assertEqual(stats["close_code"], 1011)
        self.assertEqual(stats["close_reason"], "boom")
        self.assertEqual(stats["exit_code"], 7)


if __name__ == "__main__":
    wsxtest.main()
