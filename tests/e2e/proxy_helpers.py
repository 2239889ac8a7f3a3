"""Helpers for the `wsx proxy` end-to-end tests: backends that say which one they are, the
proxy itself, a python3-websockets client and /metrics polling. Every wait has a deadline."""
import asyncio
import re
import socket
import subprocess
import threading
import time
import urllib.request

import websockets

import serve_helpers
import wsxtest
from wsxtest import wait_until  # noqa: F401 (the proxy tests import it from here)

# A backend whose every connection first receives the backend's own port, then an echo.
PORT_BACKEND = ["--exec", 'sh -c "echo $SERVER_PORT; cat"']


def start_port_backend(tc, port=0):
    """`wsx serve` that greets each client with its port; returns (process, url, port)."""
    p = tc.start([wsxtest.WSX, "serve", f"127.0.0.1:{port}", "-q", *PORT_BACKEND])
    m = p.wait_for(r"listening on (ws://127\.0\.0\.1:(\d+))")
    return p, m.group(1), int(m.group(2))


def start_proxy(tc, *args, listen="ws://127.0.0.1:0"):
    """`wsx proxy --listen LISTEN ARGS...`; returns (process, url without a trailing slash)."""
    p = tc.start([wsxtest.WSX, "proxy", "--listen", listen, *args])
    m = p.wait_for(r"listening on ((?:wss?|tcp)://127\.0\.0\.1:\d+)")
    return p, m.group(1)


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _greeting(url, headers=None):
    async with websockets.connect(url, extra_headers=headers or {}, open_timeout=5, close_timeout=2) as ws:
        return int(await asyncio.wait_for(ws.recv(), 5))


def backend_of(url, headers=None):
    """Connects through the proxy and returns the port of the backend that answered."""
    return run(_greeting(url, headers))


def backends_of(url, n, headers=None):
    return [backend_of(url, headers) for _ in range(n)]


async def _hold(url, n):
    conns, ports = [], []
    try:
        for _ in range(n):
            ws = await websockets.connect(url, open_timeout=5, close_timeout=2)
            conns.append(ws)
            ports.append(int(await asyncio.wait_for(ws.recv(), 5)))
        return ports
    finally:
        for ws in conns:
            await ws.close()


def held_backends_of(url, n):
    """Opens n connections that all stay open until the last one is made; their backends."""
    return run(_hold(url, n), 30)


def http_get(url, path="/metrics"):
    base = url.replace("ws://", "http://").replace("wss://", "https://")
    with urllib.request.urlopen(base + path, timeout=5) as r:
        return r.read().decode()


def backend_up(url, backend):
    """The proxy's wsx_proxy_backend_up value for a backend URL (None when absent)."""
    m = re.search(r'^wsx_proxy_backend_up\{backend="' + re.escape(backend) + r'"\} (\d)$', http_get(url), re.M)
    return int(m.group(1)) if m else None


def metric(url, name, backend):
    m = re.search("^" + name + r'\{backend="' + re.escape(backend) + r'"\} (\d+)$', http_get(url), re.M)
    return int(m.group(1)) if m else None


def recv_exactly(sock, n, timeout=10):
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(data)} of {n} bytes")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def recv_eof(sock, timeout=10):
    """Reads until the peer ends the stream; returns what arrived before the end."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no EOF within {timeout}s (got {data!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


class TcpEchoServer:
    """A plain TCP echo server on 127.0.0.1 in a thread; counts the connections it accepted.
    At a client's EOF it sends `last_words` (nothing by default) and closes."""

    last_words = b""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    def _echo(self, c):
        with c:
            c.settimeout(20)
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        if self.last_words:
                            c.sendall(self.last_words)
                        return
                    c.sendall(data)
            except OSError:
                return

    def close(self):
        self.stopped = True
        self.sock.close()


class RawUpstream:
    """A WebSocket server over a plain socket on 127.0.0.1, frame by frame (an independent peer
    for the proxy's upstream side): accept() takes one connection and answers its upgrade;
    frames are then sent and read one at a time. The upgrade request is kept in `request`."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.conn = None
        self.request = ""

    def accept(self, timeout=10):
        import base64
        import hashlib
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(timeout)
        self.buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError("no upgrade request")
            chunk = self.conn.recv(65536)
            if not chunk:
                raise AssertionError("closed before the upgrade request")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.request = head.decode("latin-1")
        key = re.search(r"(?im)^sec-websocket-key:\s*(\S+)", self.request).group(1)
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())

    def _read_exact(self, n, deadline):
        self.buf = serve_helpers.read_at_least(self.conn, self.buf, n, deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send_frame(self, opcode, payload=b""):
        import struct
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        self.conn.sendall(head + payload)

    def recv_frame(self, timeout=10):
        """(opcode, payload), unmasked."""
        import struct
        deadline = time.monotonic() + timeout
        b0, b1 = self._read_exact(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read_exact(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read_exact(8, deadline))[0]
        key = self._read_exact(4, deadline) if b1 & 0x80 else b"\0\0\0\0"
        data = self._read_exact(n, deadline)
        return b0 & 0x0F, bytes(c ^ key[i % 4] for i, c in enumerate(data))

    def close(self):
        for s in (self.conn, self.listener):
            if s:
                try:
                    s.close()
                except OSError:
                    pass


# An HTTP server that answers every request with the status given as its argument.
STATUS_SERVER = r"""
import http.server, sys
status = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"hi\n")
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("listening on 127.0.0.1:%d" % s.server_port, flush=True)
s.serve_forever()
"""


def start_status_server(tc, status):
    """An HTTP server answering every request with `status`; returns its ws:// URL."""
    p = tc.start([wsxtest.PYTHON, "-c", STATUS_SERVER, str(status)], stdout=subprocess.PIPE)
    port = wsxtest.read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)").group(1)
    return f"ws://127.0.0.1:{port}"
