"""Helpers for tests driving scripted peers (tests/e2e/peers/raw_ws_server.py): the peer's event
lines, a raw WebSocket client whose socket buffers can be sized before it connects, and the
kernel's view of a TCP connection's queues. Every wait has a deadline."""
import base64
import os
import select
import socket
import struct
import subprocess
import time

import wsxtest
from wsxtest import wait_until  # noqa: F401 (tests import it from here)
from serve_helpers import read_at_least


def start_raw_server(tc, *args):
    """Starts peers/raw_ws_server.py ARGS...; returns (process, port, events), where events is a
    LineCollector of the peer's event lines (bytes)."""
    p, port = tc.start_peer("raw_ws_server.py", *args)
    return p, port, wsxtest.LineCollector(p.proc.stdout)


def event_lines(events, prefix):
    """The event lines (str) starting with `prefix`, in order."""
    return [l.decode() for l in events.lines if l.decode().startswith(prefix)]


class RawClient:
    """A WebSocket client over a plain socket. `rcvbuf`/`sndbuf` are set before connecting, so the
    TCP window is what they say from the start."""

    def __init__(self, port, path="/", rcvbuf=None, sndbuf=None, headers=None, timeout=10.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.timeout = timeout
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self.buf = read_at_least(self.sock, self.buf, len(self.buf) + 1, deadline)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.response_head = head.decode("latin-1")
        if not self.response_head.startswith("HTTP/1.1 101"):
            raise AssertionError(f"upgrade refused: {self.response_head!r}")

    @staticmethod
    def frame(op, payload=b"", key=None):
        """A masked client frame. key=b"\\0\\0\\0\\0" leaves the payload as it is (for bulk data)."""
        key = os.urandom(4) if key is None else key
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | op, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | op, 0x80 | 127, n)
        if key != b"\0\0\0\0":
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        return head + key + payload

    def send_frame(self, op, payload=b""):
        self.sock.sendall(self.frame(op, payload))

    def recv_frame(self, timeout=None):
        """(opcode, payload) of the next frame; TimeoutError when none came in time."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self.buf = read_at_least(self.sock, self.buf, 2, deadline)
        n, head = self.buf[1] & 0x7F, 2
        if n == 126:
            self.buf = read_at_least(self.sock, self.buf, 4, deadline)
            n, head = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self.buf = read_at_least(self.sock, self.buf, 10, deadline)
            n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
        self.buf = read_at_least(self.sock, self.buf, head + n, deadline)
        op, payload, self.buf = self.buf[0] & 0x0F, self.buf[head:head + n], self.buf[head + n:]
        return op, payload

    def recv_bytes(self, n, timeout=30.0):
        """Reads the payloads of binary frames until n payload bytes came; returns the count."""
        deadline = time.monotonic() + timeout
        got = 0
        view = bytearray()
        while got < n:
            while True:  # take whole frames from what is buffered
                if len(view) < 2:
                    break
                ln, head = view[1] & 0x7F, 2
                if ln == 126:
                    if len(view) < 4:
                        break
                    ln, head = struct.unpack("!H", view[2:4])[0], 4
                elif ln == 127:
                    if len(view) < 10:
                        break
                    ln, head = struct.unpack("!Q", view[2:10])[0], 10
                if len(view) < head + ln:
                    break
                if view[0] & 0x0F not in (0x0, 0x2):
                    raise AssertionError(f"unexpected frame {view[:16].hex()} after {got} bytes")
                got += ln
                del view[:head + ln]
            if got >= n:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{got} of {n} bytes within {timeout}s")
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise AssertionError(f"connection closed after {got} of {n} bytes")
            view += chunk
        return got

    def write_until_stalled(self, data, limit, quiet=1.0, timeout=30.0):
        """Writes `data` over and over without blocking until `limit` bytes are written or the
        socket has taken nothing for `quiet` seconds. Returns (bytes written, stalled). An error
        (the peer closed) raises AssertionError."""
        self.sock.setblocking(False)
        written = 0
        deadline = time.monotonic() + timeout
        try:
            while written < limit:
                if time.monotonic() > deadline:
                    raise AssertionError(f"still writing after {timeout}s ({written} bytes)")
                _, ready, _ = select.select([], [self.sock], [], quiet)
                if not ready:
                    return written, True
                at = written % len(data)
                try:
                    written += self.sock.send(data[at:])
                except BlockingIOError:
                    continue
                except OSError as e:
                    raise AssertionError(f"the connection failed after {written} bytes: {e}")
            return written, False
        finally:
            self.sock.settimeout(self.timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tcp_sockets():
    """Every IPv4 TCP socket the kernel lists: dicts with local_port, remote_port, state (hex, "01"
    is established), tx_queue (bytes not yet acknowledged, unsent included) and rx_queue (bytes
    received and not yet read)."""
    out = []
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
            tx, rx = queues.split(":")
            out.append({"local_port": int(local.split(":")[1], 16), "remote_port": int(remote.split(":")[1], 16),
                        "state": state, "tx_queue": int(tx, 16), "rx_queue": int(rx, 16)})
    return out


def tcp_socket(local_port, remote_port):
    """The established loopback socket from local_port to remote_port (a dict as tcp_sockets()
    gives), or None."""
    for s in tcp_sockets():
        if s["local_port"] == local_port and s["remote_port"] == remote_port and s["state"] == "01":
            return s
    return None


def sockets_to(remote_port, exclude_local=()):
    """The established sockets whose far end is remote_port (e.g. a proxy's connections to an
    upstream), leaving out local ports in exclude_local."""
    return [s for s in tcp_sockets()
            if s["remote_port"] == remote_port and s["state"] == "01" and s["local_port"] not in exclude_local]


def run_wsx_timed(*args, timeout=30):
    """Runs wsx with a stdin held open (as WsxTestCase.wsx_open_stdin does); returns
    (CompletedProcess, seconds from start to exit)."""
    r, w = os.pipe()
    t0 = time.monotonic()
    try:
        p = subprocess.Popen([wsxtest.WSX, *args], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        os.close(r)
    try:
        out, err = p.communicate(timeout=timeout)
        took = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"wsx {' '.join(args)} still running after {timeout}s; stderr: {err.decode(errors='replace')}")
    finally:
        os.close(w)
    return subprocess.CompletedProcess([wsxtest.WSX, *args], p.returncode, out, err), took
