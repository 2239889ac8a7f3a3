"""wsx bench against servers that misbehave: one that never answers, one that stops reading,
and echo servers that swap, corrupt or drop one echo. The servers are small raw-socket
WebSocket servers in threads of this process, on loopback."""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WsxTestCase, main  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIFETIME = 60.0  # no server thread outlives this, whatever the client does


class Conn:
    """One accepted connection: the upgrade, then frames (client frames are masked)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def upgrade(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise EOFError
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    def read_frame(self):
        b0, b1 = self.recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8))[0]
        key = self.recv_exact(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ key[i % 4] for i, c in enumerate(self.recv_exact(n)))
        return b0 & 0x0F, data

    def send_frame(self, op, data):
        n = len(data)
        if n < 126:
            head = bytes([0x80 | op, n])
        elif n < 65536:
            head = bytes([0x80 | op, 126]) + struct.pack("!H", n)
        else:
            head = bytes([0x80 | op, 127]) + struct.pack("!Q", n)
        self.sock.sendall(head + data)


class FaultyServer:
    """Accepts connections on 127.0.0.1 and serves each with `handler(conn, stop)`."""

    def __init__(self, handler, rcvbuf=None):
        self.handler = handler
        self.stop = threading.Event()
        self.listener = socket.socket()
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def accept_loop(self):
        deadline = time.monotonic() + LIFETIME
        accepted = 0
        while not self.stop.is_set() and time.monotonic() < deadline and accepted < 100:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            accepted += 1
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock):
        with sock:
            sock.settimeout(LIFETIME)
            conn = Conn(sock)
            try:
                conn.upgrade()
                self.handler(conn, self.stop)
            except (EOFError, OSError):
                pass

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


def silent(conn, stop):
    """Reads every message and answers none (a Close is answered, so the client can leave)."""
    while not stop.is_set():
        op, data = conn.read_frame()
        if op == 8:
            conn.send_frame(8, data[:2])
            return


def deaf(conn, stop):
    """Never reads again after the upgrade: the client's writes fill the socket buffers."""
    stop.wait(LIFETIME)


def faulty_echo(fault, at):
    """An echo server that, for the message with index `at` of each connection (and the one
    after it for "swap"), swaps the pair, corrupts the body's last byte, or drops it."""

    def handler(conn, stop):
        index = 0
        held = None
        while not stop.is_set():
            op, data = conn.read_frame()
            if op == 8:
                conn.send_frame(8, data[:2])
                return
            if op not in (1, 2):
                continue
            i, index = index, index + 1
            if fault == "swap" and i == at:
                held = (op, data)
                continue
            if fault == "drop" and i == at:
                continue
            if fault == "corrupt" and i == at:
                data = data[:-1] + (b"#" if data[-1:] != b"#" else b"%")
            conn.send_frame(op, data)
            if held and i == at + 1:
                conn.send_frame(*held)
                held = None

    return handler


class BenchFaults(WsxTestCase):
    def serve(self, handler, **kw):
        srv = FaultyServer(handler, **kw)
        self.addCleanup(srv.close)
        return srv.url

    def run_bench(self, *args, timeout=60):
        """Runs wsx bench with a JSON result; returns (CompletedProcess, JSON, seconds taken)."""
        path = os.path.join(self.tmp, "r.json")
        t0 = time.monotonic()
        r = self.wsx("bench", *args, "--json", path, timeout=timeout)
        took = time.monotonic() - t0
        with open(path) as f:
            return r, json.load(f), took

    # A latency gate with no latency sample must not pass.

    def test_latency_gate_fails_when_nothing_was_answered(self):
        url = self.serve(silent)
        r, j, _ = self.run_bench(url, "-c", "2", "-d", "1s", "--reply-timeout", "500ms", "--fail-if", "p99>20ms")
        self.assertExit(r, 9)
        err = r.stderr.decode()
        self.assertIn("wsx: error: --fail-if p99>20ms: p99: no message was answered\n", err)
        self.assertIn("wsx: warning: no message was answered: 2 sent, none came back", err)
        self.assertEqual(j["messages"]["received"], 0)
        self.assertEqual(j["errors"], {"timeout": 2})
        # What was sent shows as sent: the window does not collapse to nothing.
        self.assertGreater(j["messages"]["send_rate"], 0)
        self.assertNotRegex(r.stdout.decode(), r"per second +0\.00 ")

    def test_open_loop_against_a_server_that_never_answers(self):
        url = self.serve(silent)
        r, j, _ = self.run_bench(url, "-c", "1", "--rate", "50", "-d", "1s", "--reply-timeout", "500ms",
                                 "--fail-if", "max>1h", "--fail-if", "handshake_p99>1h")
        self.assertExit(r, 9)
        err = r.stderr.decode()
        self.assertIn("--fail-if max>1h: max: no message was answered", err)
        self.assertNotIn("handshake_p99", err)
        self.assertGreater(j["messages"]["sent"], 0)
        self.assertGreater(j["elapsed_s"], 0)
        self.assertGreater(j["messages"]["send_rate"], 0)

    # A server that stops reading: sends count when written, and the run ends on time.

    def test_send_to_a_server_that_stops_reading_ends_with_the_duration(self):
        url = self.serve(deaf, rcvbuf=4096)
        r, j, took = self.run_bench(url, "-s", "send", "-c", "1", "-d", "1s")
        self.assertExit(r, 0)
        # Ends near -d (it took up to 26 s), not after --reply-timeout (10 s by default).
        self.assertLess(took, 8, r.stderr.decode())
        self.assertEqual(j["errors"], {"stalled": 1})
        self.assertIn("wsx: warning: 1 connection stalled: the server took no data", r.stderr.decode())
        # Only what the kernel took was sent: a few MiB of socket buffers, not 9.9M messages.
        self.assertGreater(j["messages"]["sent"], 0)
        self.assertLess(j["messages"]["wire_bytes_sent"], 64 << 20)
        self.assertEqual(j["messages"]["wire_bytes_sent"], j["messages"]["sent"] * 38)

    def test_send_with_a_message_count_gives_up_on_a_stalled_write(self):
        url = self.serve(deaf, rcvbuf=4096)
        r, j, _ = self.run_bench(url, "-s", "send", "-c", "1", "-n", "1000000", "--reply-timeout", "500ms", timeout=30)
        self.assertExit(r, 0)
        self.assertEqual(j["errors"], {"stalled": 1})
        self.assertLess(j["messages"]["sent"], 1000000)
        self.assertIn("1 connection stalled", r.stdout.decode())

    # Echo checking: one misplaced echo is one error, and the others still count.

    def echo_run(self, fault):
        url = self.serve(faulty_echo(fault, 3))
        r, j, _ = self.run_bench(url, "-c", "1", "-n", "20", "--in-flight", "4", "--size", "64",
                                 "--reply-timeout", "500ms")
        self.assertExit(r, 9 if fault == "corrupt" else 0)
        return r, j

    def test_two_swapped_echoes_are_one_out_of_order(self):
        r, j = self.echo_run("swap")
        self.assertEqual(j["errors"], {"out_of_order": 1})
        self.assertEqual(j["messages"]["sent"], 20)
        self.assertEqual(j["messages"]["received"], 20)
        self.assertEqual(j["latency"]["histogram"]["count"], 20)
        self.assertRegex(r.stdout.decode(), r"\n  out_of_order +1\n")

    def test_one_corrupt_echo_is_corrupt_only(self):
        r, j = self.echo_run("corrupt")
        self.assertOneError(r, "answers that are not what was sent: 1 corrupt")
        self.assertEqual(j["errors"], {"corrupt": 1})
        self.assertEqual(j["messages"]["received"], 19)

    def test_one_dropped_echo_is_a_timeout_only(self):
        _, j = self.echo_run("drop")
        self.assertEqual(j["errors"], {"timeout": 1})
        self.assertEqual(j["messages"]["sent"], 20)
        self.assertEqual(j["messages"]["received"], 19)


if __name__ == "__main__":
    main()
