"""wsx serve operations: graceful shutdown (Close 1001 to every client, new connections refused, drain,
exit 0; a second signal exits at once), the access log in text and JSON, -q."""
import json
import signal
import socket
import time

import wsxtest
from serve_helpers import RawWS, host_port, read_at_least


def try_upgrade(url, timeout=5.0):
    """What a new client gets: "refused" (no TCP connection), "upgraded" (101), "status N" (another
    answer), "closed" (the connection ended without an answer) or "no answer" (within timeout)."""
    host, port = host_port(url)
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "closed"
    with s:
        try:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            head = read_at_least(s, b"", 12, time.monotonic() + timeout)
        except (ConnectionResetError, BrokenPipeError, EOFError):
            return "closed"
        except TimeoutError:
            return "no answer"
        status = head.split(b" ", 2)[1].decode("latin-1")
        return "upgraded" if status == "101" else f"status {status}"


class ShutdownTest(wsxtest.WsxTestCase):
    def test_sigterm_sends_1001_to_all(self):
        p, url = self.start_server()
        clients = [RawWS(url) for _ in range(3)]
        for c in clients:  # make sure all three are fully upgraded and served
            c.send_text("hi")
            self.assertEqual(c.recv_message(), (1, b"hi"))
        p.proc.send_signal(signal.SIGTERM)
        for c in clients:
            self.assertEqual(c.expect_close(), (1001, "server shutting down"))
            c.send_close(1001)
        self.assertEqual(p.proc.wait(10), 0)
        for c in clients:
            self.assertTrue(c.wait_eof(5))

    def test_new_connections_are_refused_during_the_drain(self):
        p, url = self.start_server("--drain-timeout", "20s")
        self.assertEqual(try_upgrade(url), "upgraded", "before the signal a new client is served")
        c = RawWS(url)
        c.send_text("hi")
        self.assertEqual(c.recv_message(), (1, b"hi"))
        p.proc.send_signal(signal.SIGTERM)
        # The drain is on: the notice is out, this client has its Close and holds the drain open
        # by not answering it yet.
        p.wait_for(r"wsx: terminated: closing connections")
        self.assertEqual(c.expect_close()[0], 1001)
        # The listener is closed before the notice is printed: every new client from then on is
        # refused outright (none let in by the kernel and dropped).
        outcomes = [try_upgrade(url) for _ in range(10)]
        self.assertEqual(outcomes, ["refused"] * 10, f"new clients during the drain: {outcomes}")
        self.assertIsNone(p.proc.poll(), "the server was still draining")
        c.send_close(1001)
        self.assertEqual(p.proc.wait(10), 0)
        self.assertEqual(try_upgrade(url), "refused", "and after the exit")

    def test_drain_timeout_bounds_the_wait(self):
        p, url = self.start_server("--drain-timeout", "500ms")
        c = RawWS(url)
        c.send_text("hi")
        self.assertEqual(c.recv_message(), (1, b"hi"))
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGINT)
        self.assertEqual(c.expect_close()[0], 1001)
        # This client never answers the Close: the server waits the drain timeout, no longer.
        self.assertEqual(p.proc.wait(10), 0)
        self.assertLess(time.monotonic() - t0, 4)

    def test_second_signal_exits_at_once(self):
        p, url = self.start_server("--drain-timeout", "60s")
        c = RawWS(url)
        c.send_text("hi")
        self.assertEqual(c.recv_message(), (1, b"hi"))
        p.proc.send_signal(signal.SIGTERM)
        self.assertEqual(c.expect_close()[0], 1001)
        p.proc.send_signal(signal.SIGTERM)
        self.assertEqual(p.proc.wait(5), 130)

    def test_access_log_text(self):
        p, url = self.start_server()
        c = RawWS(url, "/chat?x=1")
        c.send_text("hello")
        self.assertEqual(c.recv_message(), (1, b"hello"))
        c.send_close(1000, b"bye")
        c.expect_close()
        c.close()
        m = p.wait_for(r'127\.0\.0\.1:\d+ "/chat\?x=1" \S+ in=1/5B out=1/5B code=1000 reason="bye"')
        self.assertTrue(m)

    def test_access_log_json(self):
        p, url = self.start_server("--log-format", "json")
        c = RawWS(url, "/j")
        c.send_frame(0x2, b"\x01\x02\x03")
        self.assertEqual(c.recv_message(), (2, b"\x01\x02\x03"))
        c.close()  # no closing handshake: 1006
        line = p.wait_for(r'"type":"close"').string
        j = json.loads(line)
        self.assertEqual((j["path"], j["messages_in"], j["bytes_in"], j["messages_out"], j["code"]), ("/j", 1, 3, 1, 1006))
        self.assertEqual(list(j)[:4], ["ts", "type", "peer", "path"], line)
        self.assertIn("error", j)

    def test_access_log_hides_credentials(self):
        for fmt in ("text", "json"):
            with self.subTest(fmt=fmt):
                p, url = self.start_server("--token", "s3cret", "--jwt-secret", "k3y", "--log-format", fmt)
                c = RawWS(url, "/app?x=1&token=s3cret&ACCESS_TOKEN=abc.def&t%6Fken=s3cret")
                c.send_close()
                c.expect_close()
                c.close()
                p.stop()
                log = p.rest_of_stderr()
                self.assertNotIn("s3cret", log)
                self.assertNotIn("abc.def", log)
                expected = "/app?x=1&token=REDACTED&ACCESS_TOKEN=REDACTED&t%6Fken=REDACTED"
                if fmt == "json":
                    entry = json.loads([l for l in log.splitlines() if '"type":"close"' in l][0])
                    self.assertEqual(entry["path"], expected)
                else:
                    self.assertIn(f'"{expected}"', log)

    def test_json_log_has_only_json_lines(self):
        # With --log-format json, a child's stderr and the shutdown notice are JSON objects too.
        p, url = self.start_server("--log-format", "json", "--exec", "sh -c 'echo oops >&2; echo out'")
        c = RawWS(url)
        self.assertEqual(c.recv_message(), (1, b"out"))
        self.assertEqual(c.expect_close()[0], 1000)
        c.close()
        p.wait_for(r'"type":"close"')
        p.proc.send_signal(signal.SIGTERM)
        self.assertEqual(p.proc.wait(10), 0)
        lines = [l for l in p.rest_of_stderr().splitlines() if l and not l.startswith("listening on")]
        events = [json.loads(l) for l in lines]  # fails on any line that is not JSON
        stderr = [e for e in events if e["type"] == "stderr"]
        self.assertEqual(len(stderr), 1, lines)
        self.assertEqual(stderr[0]["message"], "oops")
        self.assertRegex(stderr[0]["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertIsInstance(stderr[0]["pid"], int)
        shutdown = [e for e in events if e["type"] == "shutdown"]
        self.assertEqual(len(shutdown), 1, lines)
        self.assertIn("terminated", shutdown[0]["message"])
        # Every line starts with when and what; a notice ends with its message.
        self.assertTrue(all(list(e)[:2] == ["ts", "type"] for e in events), lines)
        self.assertEqual(list(stderr[0])[-1], "message")
        self.assertEqual(list(shutdown[0])[-1], "message")

    def test_quiet(self):
        p, url = self.start_server("-q")
        c = RawWS(url)
        c.send_close()
        c.expect_close()
        c.close()
        p.proc.send_signal(signal.SIGTERM)
        rest = p.rest_of_stderr()
        self.assertNotIn("code=", rest)


if __name__ == "__main__":
    wsxtest.main()
