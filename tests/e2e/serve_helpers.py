"""Helpers for the `wsx serve` end-to-end tests: a raw-socket WebSocket client that can
send anything (bad frames, no pongs) and plain HTTP requests. Every wait has a deadline."""
import base64
import os
import socket
import struct
import time
from urllib.parse import urlparse


def host_port(url):
    u = urlparse(url)
    return u.hostname, u.port


def http_request(url, path="/", method="GET", headers=None, timeout=10.0):
    """One HTTP/1.1 request (Connection: close); returns (status, headers dict lower-cased, body bytes)."""
    host, port = host_port(url)
    with socket.create_connection((host, port), timeout=timeout) as s:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *hdrs = head.decode("latin-1").split("\r\n")
    h = {}
    for line in hdrs:
        k, _, v = line.partition(":")
        h[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), h, body


def read_at_least(sock, buf, n, deadline):
    """`buf` with what `sock` sends appended until it holds n bytes; TimeoutError at the
    deadline (monotonic), EOFError when the peer closed."""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("frame timed out")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            raise TimeoutError("frame timed out")
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


class RawWS:
    """A WebSocket client over a plain socket, frame by frame."""

    def __init__(self, url, path="/", headers=None, timeout=10.0, expect_upgrade=True, split=None):
        """`split` (a raw_peer.Splitter) decides how every write is cut up; None: each in one write."""
        host, port = host_port(url)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.split = split
        if split:
            split.prepare(self.sock)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        head = self._read_until(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.status = int(status_line.split()[1])
        self.response_head = head.decode("latin-1")
        if expect_upgrade and self.status != 101:
            raise AssertionError(f"upgrade refused: {self.response_head!r} {self.buf!r}")

    def _read_until(self, marker):
        deadline = time.monotonic() + self.timeout
        while marker not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {marker!r}; have {self.buf!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before {marker!r}; have {self.buf!r}")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head

    def _read_exact(self, n, deadline):
        self._fill(n, deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def write(self, data):
        """Raw bytes to the server, cut up as `split` says."""
        if self.split:
            self.split.send(self.sock, data)
        else:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True):
        self.write(self.encode_frame(opcode, payload, fin, rsv, mask))

    def send_frames(self, frames):
        """Several frames given as (opcode, payload[, {fin, rsv, mask}]): each in its own write
        without `split`, else as one stream that `split` cuts anywhere, across frames too."""
        data = [self.encode_frame(f[0], f[1], **(f[2] if len(f) > 2 else {})) for f in frames]
        if self.split:
            self.write(b"".join(data))
        else:
            for d in data:
                self.write(d)

    def encode_frame(self, opcode, payload=b"", fin=True, rsv=0, mask=True):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            head += key
        return head + payload

    def send_text(self, text):
        self.send_frame(0x1, text)

    def send_close(self, code=1000, reason=b""):
        self.send_frame(0x8, struct.pack("!H", code) + reason)

    def recv_frame(self, timeout=None):
        """Returns (fin, opcode, payload); raises EOFError when the server closed the TCP connection,
        TimeoutError when no whole frame came in time (nothing of the frame is consumed then)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        head = 2
        if n == 126:
            self._fill(4, deadline)
            n, head = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._fill(10, deadline)
            n, head = struct.unpack("!Q", self.buf[2:10])[0], 10
        if b1 & 0x80:
            head += 4  # servers never mask; tolerate it anyway
        self._fill(head + n, deadline)
        frame, self.buf = self.buf[:head + n], self.buf[head + n:]
        payload = frame[head:]
        if b1 & 0x80:
            key = frame[head - 4:head]
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _fill(self, n, deadline):
        """Reads until at least n bytes are held, consuming none."""
        self.buf = read_at_least(self.sock, self.buf, n, deadline)

    def messages_until_close(self, limit=100000):
        """Every data message up to the Close, and the Close: ([(opcode, payload)...], ('close', code, reason))."""
        got = []
        for _ in range(limit):
            m = self.recv_message()
            if m[0] == "close":
                return got, m
            got.append(m)
        raise AssertionError(f"no Close after {limit} messages")

    def recv_message(self, timeout=None):
        """The next data message as (opcode, payload), answering pings; ('close', code, reason) at Close."""
        while True:
            fin, op, payload = self.recv_frame(timeout)
            if op == 0x9:
                self.send_frame(0xA, payload)
                continue
            if op == 0xA:
                continue
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return ("close", code, payload[2:].decode("utf-8", "replace"))
            return (op, payload)

    def expect_close(self, timeout=None):
        """Reads frames until Close; returns (code, reason). Fails on EOF without a Close."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode("utf-8", "replace")

    def wait_eof(self, timeout=None):
        """True when the server closes the TCP connection within the timeout (data is discarded)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return True
            if not chunk:
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class LineReader:
    """Reads lines from a pipe with a deadline, keeping what arrives after the line returned."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buf = b""

    def line(self, timeout=10.0):
        import select
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no complete line within {timeout}s; have {self.buf!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"stream ended; have {self.buf!r}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")


async def close_and_collect(ws, code=1000):
    """Starts the closing handshake of a python websockets client at once, and collects every
    message that arrives before the server's Close. Returns (messages, the close code)."""
    import asyncio

    import websockets
    closing = asyncio.ensure_future(ws.close(code=code))
    got = []
    try:
        async for m in ws:
            got.append(m)
    except websockets.ConnectionClosed:
        pass
    await closing
    return got, ws.close_code
