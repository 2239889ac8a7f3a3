"""`wsx connect --reconnect`: a server restarted on the same port, stdin held during the outage.

Behaviour these tests rely on:
- when the connection drops, wsx prints `wsx: ...; reconnecting in DURATION (attempt N)` on
  stderr and, once back, `wsx: reconnected to URL`.
- stdin lines read while disconnected are held (up to --buffer-limit bytes; beyond that stdin
  is paused with a warning naming --buffer-limit, never dropped) and sent in order after
  reconnecting, before anything read later.
- the delay before retry n (from 1) is drawn from [base/2, base], where
  base = min(--backoff-initial * --backoff-factor^(n-1), --backoff-max), and the next attempt
  comes after that delay.
- --send messages are sent again after every successful connect.
- --max-retries N gives up after N failed attempts in a row, with the exit code of the last
  failure (4 for a refused connection).
- a pong missing for --ping-timeout ends the connection; with --reconnect that is a reconnect.
- an upgrade refused with a 4xx other than 408/429, or a server certificate that does not
  verify, is not retried: exit with its code at once, saying --reconnect does not retry it.
"""
import re
import signal
import socket
import subprocess
import threading
import time

import wsxtest
from wsxtest import WSX, LineCollector, WsxTestCase, refused_port


def seconds(duration):
    """A duration as wsx prints it (e.g. 187ms, 1.2s, 350us) in seconds."""
    m = re.fullmatch(r"([0-9.]+)(ns|us|ms|s)", duration)
    assert m, duration
    return float(m.group(1)) * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]


class CountingServer:
    """Answers every upgrade with 503 (a refusal worth retrying) and notes when each connection
    was accepted (time.monotonic())."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.times = []
        self.cond = threading.Condition()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.times.append(time.monotonic())
                self.cond.notify_all()
            with c:
                c.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def wait_for_attempts(self, n, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.times) >= n, timeout):
                raise AssertionError(f"{len(self.times)} of {n} attempts within {timeout}s")
            return list(self.times)

    def close(self):
        self.sock.close()



class ReconnectTest(WsxTestCase):
    def test_lasting_refusals_are_not_retried(self):
        c = wsxtest.certs()
        _, tls_url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"])
        cases = [("403", 6, None), ("401", 6, None), ("certificate", 5, tls_url)]
        for what, code, url in cases:
            with self.subTest(what=what):
                if url is None:
                    _, port = self.start_peer("ws_server.py", "--mode", "reject", "--status", what, "--body", "no")
                    url = f"ws://127.0.0.1:{port}/"
                extra = ["--cacert", c["otherca"]] if url == tls_url else []
                r = self.wsx_open_stdin("connect", url, "--reconnect", "--backoff-initial", "10ms", "--backoff-max",
                                        "20ms", "--timeout", "5s", *extra, timeout=15)
                self.assertExit(r, code)
                err = r.stderr.decode(errors="replace")
                self.assertNotIn("reconnecting", err)
                self.assertIn("--reconnect does not retry this", err)

    def test_refusals_that_ask_for_a_later_attempt_are_retried(self):
        for status in ("429", "408", "503"):
            with self.subTest(status=status):
                _, port = self.start_peer("ws_server.py", "--mode", "reject", "--status", status, "--body", "later")
                r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--reconnect", "--backoff-initial", "10ms",
                                        "--max-retries", "2", timeout=15)
                self.assertExit(r, 6)
                self.assertEqual(r.stderr.decode(errors="replace").count("reconnecting in"), 2)

    def serve_on(self, port):
        p = self.start([WSX, "serve", f"127.0.0.1:{port}"])
        p.wait_for(rf"listening on ws://127\.0\.0\.1:{port}")
        return p

    def client(self, url, *args):
        p = self.start([WSX, "connect", url, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return p, LineCollector(p.proc.stdout), LineCollector(p.proc.stderr)

    def write_lines(self, p, lines):
        p.proc.stdin.write(b"".join(l + b"\n" for l in lines))
        p.proc.stdin.flush()

    def restart_cycle(self, extra=(), during_bytes=20):
        server, url = self.start_server()
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        client, out, err = self.client(url, "--reconnect", "--backoff-initial", "50ms", "--backoff-max", "200ms", *extra)

        before = [b"before %d" % i for i in range(200)]
        self.write_lines(client, before)
        out.wait_for_line(before[-1])

        server.stop(signal.SIGKILL)
        err.wait_until(lambda ls: any(b"reconnecting in" in l for l in ls), 10, "a reconnect notice")

        during = [b"during %d %s" % (i, b"d" * during_bytes) for i in range(200)]
        self.write_lines(client, during)

        self.serve_on(port)
        err.wait_until(lambda ls: any(b"reconnected to" in l for l in ls), 10, "a reconnect")
        out.wait_for_line(during[-1])

        after = [b"after %d" % i for i in range(200)]
        self.write_lines(client, after)
        client.proc.stdin.close()
        lines = out.wait_for_end(15)
        self.assertEqual(client.proc.wait(10), 0, b"\n".join(err.lines))
        self.assertEqual(lines, before + during + after)
        return err

    def test_lines_written_during_outage_arrive_in_order(self):
        self.restart_cycle()

    def test_buffer_limit_pauses_with_a_warning_and_loses_nothing(self):
        err = self.restart_cycle(extra=("--buffer-limit", "1KiB"), during_bytes=100)
        self.assertTrue(any(b"--buffer-limit" in l for l in err.lines), err.lines)

    def test_send_is_repeated_on_every_reconnect(self):
        server, url = self.start_server()
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        client = self.start([WSX, "connect", url, "--reconnect", "--backoff-initial", "50ms", "--backoff-max", "200ms",
                             "--send", "hello", "--send", "again", "-n", "4", "--timeout", "20s"],
                            stdout=subprocess.PIPE)
        out, err = LineCollector(client.proc.stdout), LineCollector(client.proc.stderr)
        out.wait_for_line(b"again")
        server.stop(signal.SIGKILL)
        err.wait_until(lambda ls: any(b"reconnecting in" in l for l in ls), 10, "a reconnect notice")
        self.serve_on(port)
        self.assertEqual(out.wait_for_end(15), [b"hello", b"again", b"hello", b"again"])
        self.assertEqual(client.proc.wait(10), 0, b"\n".join(err.lines))

    def test_max_retries_gives_up_with_4(self):
        port = refused_port(self)
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--reconnect", "--max-retries", "2",
                                "--backoff-initial", "50ms", timeout=20)
        self.assertExit(r, 4)
        stderr = r.stderr.decode()
        self.assertEqual(stderr.count("reconnecting in"), 2, stderr)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, stderr)
        self.assertIn("refused", errors[0])
        self.assertIn("gave up after 2 retries", errors[0])

    def test_backoff_delays_grow_jitter_and_cap(self):
        # Delay n (from 1) is drawn from [base/2, base], base = min(initial * factor^(n-1), max):
        # exponential growth, jitter so that clients do not retry in lockstep, a ceiling. The
        # announced delays are checked against that, and against the gaps between the attempts
        # a server that answers every upgrade with 503 (retried: "try later") sees.
        # Each case has 4 delays at the cap: two draws from [200, 400] ms printed to 3 digits are
        # equal about once in 200 runs, four all equal once in 8 million.
        cases = [("100ms", "2", "400ms", 6), ("50ms", "3", "400ms", 6)]
        for initial, factor, cap, retries in cases:
            with self.subTest(initial=initial, factor=factor, cap=cap):
                server = CountingServer()
                self.addCleanup(server.close)
                r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{server.port}/", "--reconnect",
                                        "--backoff-initial", initial, "--backoff-factor", factor, "--backoff-max", cap,
                                        "--max-retries", str(retries), timeout=30)
                self.assertExit(r, 6)
                notes = re.findall(r"reconnecting in (\S+) \(attempt (\d+)\)", r.stderr.decode())
                self.assertEqual([int(n) for _, n in notes], list(range(1, retries + 1)))
                delays = [seconds(d) for d, _ in notes]
                bases = [min(seconds(initial) * float(factor) ** (n - 1), seconds(cap)) for n in range(1, retries + 1)]
                for n, (d, base) in enumerate(zip(delays, bases), 1):
                    # Printed with 3 significant digits: allow that rounding.
                    self.assertGreaterEqual(d, base / 2 * 0.995, f"delay {n}: {delays}")
                    self.assertLessEqual(d, base * 1.005, f"delay {n}: {delays}")
                # Jitter: the delays at the cap (same base) differ, and not every delay is its base.
                at_cap = [d for d, base in zip(delays, bases) if base == seconds(cap)]
                self.assertGreater(len(at_cap), 1)
                self.assertGreater(len(set(at_cap)), 1, f"no jitter: {delays}")
                self.assertTrue(any(d < base * 0.99 for d, base in zip(delays, bases)), f"no jitter: {delays}")
                # The server saw one attempt per delay plus the first, each after its delay.
                times = server.wait_for_attempts(retries + 1)
                gaps = [b - a for a, b in zip(times, times[1:])]
                for n, (gap, d) in enumerate(zip(gaps, delays), 1):
                    self.assertGreaterEqual(gap, d - 0.005, f"attempt {n + 1} came early: gaps {gaps}, delays {delays}")
                    self.assertLess(gap, d + 0.3, f"attempt {n + 1} came late: gaps {gaps}, delays {delays}")

    def test_max_retries_zero_means_one_attempt(self):
        port = refused_port(self)
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--reconnect", "--max-retries", "0", timeout=20)
        self.assertExit(r, 4)
        self.assertNotIn("reconnecting", r.stderr.decode())

    def test_without_reconnect_a_drop_ends_the_run(self):
        server, url = self.start_server()
        client, out, err = self.client(url)
        self.write_lines(client, [b"one"])
        out.wait_for_line(b"one")
        server.stop(signal.SIGKILL)
        self.assertEqual(client.proc.wait(10), 7)

    def test_missing_pong_reconnects(self):
        server, url = self.start_server()
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        client, out, err = self.client(url, "--reconnect", "--backoff-initial", "50ms", "--backoff-max", "200ms",
                                       "--ping-interval", "1s", "--ping-timeout", "800ms", "--connect-timeout", "2s")
        self.write_lines(client, [b"first"])
        out.wait_for_line(b"first")
        # A stopped server keeps the TCP connection but answers nothing, pings included.
        server.freeze()
        err.wait_until(lambda ls: any(b"pong" in l and b"reconnecting in" in l for l in ls), 10, "a pong timeout")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(5)
        self.serve_on(port)
        err.wait_until(lambda ls: any(b"reconnected to" in l for l in ls), 15, "a reconnect")
        self.write_lines(client, [b"second"])
        out.wait_for_line(b"second")
        client.proc.stdin.close()
        self.assertEqual(client.proc.wait(10), 0)
        self.assertEqual(out.wait_for_end(5), [b"first", b"second"])

    def test_missing_pong_without_reconnect_is_8(self):
        server, url = self.start_server()
        client, out, err = self.client(url, "--ping-interval", "1s", "--ping-timeout", "800ms")
        self.write_lines(client, [b"hi"])
        out.wait_for_line(b"hi")
        server.freeze()
        self.assertEqual(client.proc.wait(10), 8)
        err.wait_for_end(5)
        self.assertTrue(any(b"no pong within 800ms" in l for l in err.lines), err.lines)

    def test_ping_timeout_longer_than_interval(self):
        # Pings sent more often than --ping-timeout must not push the pong deadline out.
        server, url = self.start_server()
        client, out, err = self.client(url, "--ping-interval", "100ms", "--ping-timeout", "300ms")
        self.write_lines(client, [b"hi"])
        out.wait_for_line(b"hi")
        server.freeze()
        try:
            code = client.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.fail("a missing pong went unnoticed for 5s with --ping-timeout 300ms")
        self.assertEqual(code, 8)


if __name__ == "__main__":
    wsxtest.main()
