"""wsx serve limits and liveness: --max-connections, --max-message-size, --ping-interval/
--ping-timeout, --idle-timeout, --handshake-timeout, send-queue overflow, --announce-json,
--threads."""
import json
import socket
import struct
import time

import wsxtest
from serve_helpers import RawWS, http_request


class LimitsTest(wsxtest.WsxTestCase):
    def test_max_connections_503(self):
        p, url = self.start_server("--max-connections", "2")
        a, b = RawWS(url), RawWS(url)  # both held open: the third is one too many
        self.addCleanup(b.close)
        third = RawWS(url, expect_upgrade=False)
        self.assertEqual(third.status, 503)
        self.assertIn("too many connections", third.buf.decode())
        self.assertRegex(third.response_head, r"(?i)(^|\r\n)retry-after: 1(\r\n|$)")
        a.send_close()
        self.assertEqual(a.expect_close()[0], 1000)
        a.close()
        p.wait_for(r"code=1000")
        # The slot is free again.
        c = RawWS(url)
        c.send_text("x")
        self.assertEqual(c.recv_message(), (1, b"x"))

    def test_bad_numbers_are_usage_errors(self):
        cases = (
            (["--threads", "-1"], "--threads '-1'"),
            (["--threads", "0"], "--threads '0'"),
            (["--threads", "40000"], "--threads '40000'"),
            (["--max-connections", "-5"], "--max-connections '-5'"),
            (["--max-connections", "0"], "--max-connections '0'"),
            (["--max-message-size", "0"], "--max-message-size 0"),
            (["--max-forks", "-1", "--exec", "cat"], "--max-forks '-1'"),
        )
        for args, what in cases:
            with self.subTest(args=args):
                r = self.wsx("serve", "127.0.0.1:0", *args, timeout=10)
                self.assertExit(r, 2)
                errors = self.error_lines(r)
                self.assertEqual(len(errors), 1, r.stderr)
                self.assertIn(what, errors[0])
                self.assertNotIn(b"listening on", r.stderr)
        for cmd, listen in (("relay", ["127.0.0.1:0"]), ("proxy", ["--listen", "ws://127.0.0.1:0", "--to", "ws://127.0.0.1:9/"])):
            with self.subTest(cmd=cmd):
                r = self.wsx(cmd, *listen, "--threads", "-1", timeout=10)
                self.assertExit(r, 2)
                self.assertIn("--threads '-1'", self.error_lines(r)[0])

    def test_exec_options_without_double_dash_get_a_hint(self):
        r = self.wsx("serve", "127.0.0.1:0", "--exec", "sh", "-c", "cat", timeout=10)
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("--exec -- CMD ARGS", errors[0])

    def test_max_message_size_1009(self):
        p, url = self.start_server("--max-message-size", "100")
        ws = RawWS(url)
        ws.send_text("a" * 100)
        self.assertEqual(ws.recv_message(), (1, b"a" * 100))
        ws.send_text("b" * 101)
        code, reason = ws.expect_close()
        self.assertEqual(code, 1009)
        ws.send_close(1009)
        p.wait_for(r"code=1009")

    def test_1009_reaches_a_client_still_sending(self):
        # The server stops reading at the limit with most of the message unread; closing the
        # socket then would reset the connection, and the reset would destroy the Close 1009
        # waiting in the client's receive buffer (the client saw 1006).
        p, url = self.start_server("--max-message-size", "1000")
        line = b"x" * (8 << 20) + b"\n"
        for attempt in range(3):
            r = self.wsx("connect", url, input=line, timeout=30)
            self.assertExit(r, 7)
            self.assertOneError(r, "1009")
        # A client that keeps sending after the Close is cut off after a bounded wait, and the
        # server is still there for the next one.
        ws = RawWS(url)
        ws.send_text("y" * 1001)
        self.assertEqual(ws.expect_close()[0], 1009)
        deadline = time.monotonic() + 15
        with self.assertRaises(OSError):
            while time.monotonic() < deadline:
                ws.sock.sendall(b"\x82\x80\x00\x00\x00\x00" * 1000)
        self.assertLess(time.monotonic(), deadline)
        r = self.wsx("connect", url, "--send", "still up", "-n", "1", timeout=10)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"still up\n")

    def test_ping_timeout_drops_silent_client(self):
        p, url = self.start_server("--ping-interval", "200ms", "--ping-timeout", "300ms", "--metrics")
        mute = RawWS(url)       # reads nothing, answers no ping
        polite = RawWS(url)     # answers every ping
        t0 = time.monotonic()
        got_ping = False
        while time.monotonic() - t0 < 1.5:
            try:
                fin, op, payload = polite.recv_frame(timeout=0.1)
            except TimeoutError:
                continue
            if op == 0x9:
                got_ping = True
                polite.send_frame(0xA, payload)
        self.assertTrue(got_ping)
        self.assertTrue(mute.wait_eof(timeout=5), "the silent client was not dropped")
        p.wait_for(r"error=\"no pong within 300ms\"")
        polite.send_text("still here")
        self.assertEqual(polite.recv_message(), (1, b"still here"))
        text = http_request(url, "/metrics")[2].decode()
        self.assertIn("wsx_ping_timeouts_total 1\n", text)

    def test_idle_timeout_1001(self):
        p, url = self.start_server("--idle-timeout", "300ms")
        ws = RawWS(url)
        t0 = time.monotonic()
        code, reason = ws.expect_close(timeout=5)
        self.assertEqual((code, reason), (1001, "idle timeout"))
        self.assertGreater(time.monotonic() - t0, 0.2)

    def test_idle_timeout_ignores_answered_pings(self):
        # A client that answers every ping but sends nothing is still idle.
        p, url = self.start_server("--idle-timeout", "500ms", "--ping-interval", "100ms")
        ws = RawWS(url)
        pongs = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            fin, op, payload = ws.recv_frame(timeout=5)
            if op == 0x9:
                ws.send_frame(0xA, payload)
                pongs += 1
                continue
            self.assertEqual(op, 0x8)
            self.assertEqual(int.from_bytes(payload[:2], "big"), 1001)
            break
        else:
            self.fail("the idle client was not closed")
        self.assertGreater(pongs, 0)

    def test_idle_timeout_counts_messages_sent(self):
        # A stream from the server is not silence, even if the client says nothing.
        p, url = self.start_server("--idle-timeout", "600ms", "--exec", "--", "sh", "-c",
                                   "while :; do echo tick; sleep 0.1; done")
        ws = RawWS(url)
        ticks = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            fin, op, payload = ws.recv_frame(timeout=5)
            self.assertEqual((op, payload), (0x1, b"tick"), "closed while the server was still sending")
            ticks += 1
        self.assertGreaterEqual(ticks, 5)

    def test_handshake_timeout_against_slowloris(self):
        p, url = self.start_server("--handshake-timeout", "300ms")
        host, port = url.split("//")[1].rstrip("/").split(":")
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        t0 = time.monotonic()
        s.settimeout(5)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        self.assertEqual(data, b"")
        self.assertLess(time.monotonic() - t0, 3)
        s.close()

    def test_send_queue_overflow_closes_1008_and_stops_reading(self):
        p, url = self.start_server("--send-queue-limit", "64KiB")
        ws = RawWS(url)
        # Send far more than the socket buffers hold while reading nothing: the echoes overflow
        # the server's queue, it closes with 1008 and reads nothing more from this client, so
        # the client's sends stall (before, the server read and dropped everything it was sent
        # until the close timeout: hundreds of megabytes).
        # One masked binary frame of 64 KiB (a zero key leaves the payload as it is).
        frame = struct.pack("!BBQ", 0x82, 0x80 | 127, 65536) + b"\0\0\0\0" + b"x" * 65536
        ws.sock.settimeout(1.0)
        sent, stalled = 0, False
        deadline = time.monotonic() + 20
        while sent < (512 << 20) and time.monotonic() < deadline:
            try:
                ws.sock.sendall(frame)
                sent += len(frame)
            except socket.timeout:
                stalled = True  # nothing taken for a second: the server stopped reading
                break
            except (BrokenPipeError, ConnectionResetError):
                break
        self.assertTrue(stalled, f"the server kept reading: {sent} bytes taken")
        self.assertLess(sent, 128 << 20)
        p.wait_for(r"code=1008")
        # The Close cannot reach a client that reads nothing: TCP ends after the close timeout (5 s).
        ws.sock.settimeout(15)
        t0 = time.monotonic()
        try:
            while ws.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - t0, 12)
        ws.close()
        fresh = RawWS(url)
        fresh.send_text("alive")
        self.assertEqual(fresh.recv_message(), (1, b"alive"))
        fresh.close()

    def test_protocol_error_behind_a_full_queue_still_ends(self):
        # The client stops reading, so the server's Close 1002 for a bad frame waits behind
        # megabytes of echoes: failing the connection does not wait for it longer than a
        # second, and the log names the protocol error, not a timeout.
        p, url = self.start_server()
        ws = RawWS(url)
        chunk = "x" * 16384
        for _ in range(300):
            ws.send_text(chunk)
        t0 = time.monotonic()
        ws.send_frame(3, b"reserved opcode")
        line = p.wait_for(r'code=1002 error="[^"]*opcode', timeout=20).group(0)
        self.assertLess(time.monotonic() - t0, 4, line)
        ws.close()

    def test_send_queue_overflow_drop_counts(self):
        p, url = self.start_server("--send-queue-limit", "64KiB", "--overflow", "drop")
        ws = RawWS(url)
        chunk = "y" * 16384
        for _ in range(600):
            ws.send_text(chunk)
        ws.send_close()
        while True:
            item = ws.recv_message(timeout=20)
            if item[0] == "close":
                self.assertEqual(item[1], 1000)
                break
        ws.close()
        m = p.wait_for(r"dropped=(\d+)")
        self.assertGreater(int(m.group(1)), 0)

    def test_closing_handshake_ends_the_connection_at_once(self):
        # RFC 6455 7.1.1: once both Close frames have passed, the server closes the TCP
        # connection itself; a client that keeps its socket open holds neither the connection
        # nor its slot until the close timeout (5 s).
        p, url = self.start_server("--max-connections", "1")
        a = RawWS(url)
        self.addCleanup(a.close)
        a.send_close(1000)
        self.assertEqual(a.expect_close()[0], 1000)
        self.assertTrue(a.wait_eof(2), "the server did not close the connection")
        p.wait_for(r"code=1000", timeout=2)
        b = RawWS(url)
        self.addCleanup(b.close)
        b.send_text("x")
        self.assertEqual(b.recv_message(), (1, b"x"))

    def test_announce_json(self):
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--announce-json"])
        line = p.wait_for(r"^\{.*\}$").group(0)
        j = json.loads(line)
        self.assertEqual(list(j)[:3], ["ts", "type", "url"], line)
        self.assertRegex(j["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertEqual(j["type"], "listening")
        self.assertEqual(j["url"], f"ws://127.0.0.1:{j['port']}")
        self.assertEqual(j["tls"], False)
        ws = RawWS(j["url"])
        ws.send_text("ok")
        self.assertEqual(ws.recv_message(), (1, b"ok"))

    def test_threads_spread_connections(self):
        p, url = self.start_server("--threads", "3")
        clients = [RawWS(url) for _ in range(9)]
        for i, c in enumerate(clients):
            c.send_text(f"m{i}")
        for i, c in enumerate(clients):
            self.assertEqual(c.recv_message(), (1, f"m{i}".encode()))

    def test_usage_errors_reported_together(self):
        r = self.wsx("serve", "127.0.0.1:0", "--stdio", "--exec", "cat", "--ping-timeout", "nonsense",
                     "--client-ca", "/nonexistent")
        self.assertExit(r, 2)
        err = r.stderr.decode()
        self.assertIn("alternatives", err)
        self.assertIn("--ping-timeout", err)
        self.assertIn("--client-ca needs TLS", err)


if __name__ == "__main__":
    wsxtest.main()
