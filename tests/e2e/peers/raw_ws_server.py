#!/usr/bin/python3
"""A WebSocket server over plain sockets, frame by frame, for tests that need a peer doing one
precise thing (often one thing wrong) at a chosen moment. No WebSocket library: what goes on the
wire is exactly what this script writes.

Listens on 127.0.0.1 (port 0), prints `listening on 127.0.0.1:PORT` on stdout once ready, then
one line per event (flushed); N is the connection's number, from 1:
  open N                          the handshake completed (`open N deflate` with permessage-deflate)
  message N text|binary LENGTH [TEXT]  a data message (TEXT: the first 100 characters of a text)
  ping N HEX / pong N HEX         a control frame and its payload in hex
  tick N I                        (paced) message I was sent
  sent N BYTES                    (pour) BYTES of payload written so far
  received N MESSAGES BYTES       (sink) answer to a text message "report": what came before it
  then N ACTION                   the --then action was taken
  closed N CODE                   the client's Close frame (CODE 1005 when it had none)
  end N                           the connection is gone
Modes (--mode):
  echo   send every data message back (default). --echo-first K: only the first K are echoed, the
         later ones are read and dropped; --twice: every echo is sent twice.
  paced  send --count text messages "tick I", --interval seconds apart, then say nothing more
         (a Close is still answered)
  pour   send --total bytes as binary messages of --frame-size as fast as the socket takes them,
         then only read
  sink   read and count data messages; answer nothing but pings
  deaf   never read after the handshake
Every mode answers a Ping with a Pong carrying --pong-payload (default: the ping's payload).
--after M --then ACTION: once M data messages were read, take ACTION:
  close    send Close 1000, then read until the client's Close or EOF
  hangup   end the TCP stream (FIN) without a Close frame, then read until the client leaves
  raw      write --raw HEX as it is (e.g. an invalid frame), then read until the client leaves
--deflate accepts a permessage-deflate offer (answering `permessage-deflate` without parameters);
compressed frames are echoed as they came. --rcvbuf/--sndbuf set the accepted sockets' buffers.
Each connection ends within 60 s whatever the client does; the script runs until killed.
"""
import argparse
import base64
import hashlib
import socket
import struct
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIFETIME = 60.0
lock = threading.Lock()


def log(*parts):
    with lock:
        print(*parts, flush=True)


def unmask(data, key):
    if key == b"\0\0\0\0" or not data:
        return bytes(data)
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def frame(op, payload=b"", rsv1=False):
    n = len(payload)
    b0 = 0x80 | (0x40 if rsv1 else 0) | op
    if n < 126:
        head = struct.pack("!BB", b0, n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 126, n)
    else:
        head = struct.pack("!BBQ", b0, 127, n)
    return head + payload


class Conn:
    def __init__(self, sock, number, a):
        self.sock = sock
        self.n = number
        self.a = a
        self.buf = bytearray()
        self.deflate = False

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError
            self.buf += chunk

    def take(self, n):
        self.fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def upgrade(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                raise EOFError
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError
            self.buf += chunk
        at = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:at]).decode("latin-1")
        del self.buf[:at + 4]
        fields = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            fields.setdefault(k.strip().lower(), []).append(v.strip())
        key = fields["sec-websocket-key"][0].encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        answer = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                  f"Sec-WebSocket-Accept: {accept}"]
        offers = ",".join(fields.get("sec-websocket-extensions", []))
        if self.a.deflate and "permessage-deflate" in offers:
            self.deflate = True
            answer.append("Sec-WebSocket-Extensions: permessage-deflate")
        self.sock.sendall(("\r\n".join(answer) + "\r\n\r\n").encode())
        log("open", self.n, *(["deflate"] if self.deflate else []))

    def read_frame(self):
        """(fin, rsv1, opcode, payload)."""
        b0, b1 = self.take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.take(8))[0]
        key = self.take(4) if b1 & 0x80 else b"\0\0\0\0"
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, unmask(self.take(n), key)

    def send(self, data):
        self.sock.sendall(data)

    def drain(self):
        """Reads and discards until the client leaves."""
        while self.sock.recv(65536):
            pass

    def messages(self):
        """Yields (opcode, payload, compressed) per data message; answers control frames.
        Returns at the client's Close (answered, unless we sent ours first)."""
        parts, first_op, compressed = [], None, False
        while True:
            fin, rsv1, op, payload = self.read_frame()
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                log("closed", self.n, code)
                if not getattr(self, "close_sent", False):
                    self.send(frame(0x8, payload[:2]))
                return
            if op == 0x9:
                log("ping", self.n, payload.hex())
                pong = payload if self.a.pong_payload is None else self.a.pong_payload.encode()
                self.send(frame(0xA, pong))
                continue
            if op == 0xA:
                log("pong", self.n, payload.hex())
                continue
            if op != 0:
                first_op, compressed = op, rsv1
            parts.append(payload)
            if fin:
                yield first_op, b"".join(parts), compressed
                parts = []


def serve(sock, number, a):
    c = Conn(sock, number, a)
    try:
        c.upgrade()
        if a.mode == "deaf":
            time.sleep(LIFETIME)  # holds the connection open, reading nothing
            return
        if a.mode == "paced":
            threading.Thread(target=lambda: read_quietly(c), daemon=True).start()
            for i in range(a.count):
                c.send(frame(0x1, f"tick {i}".encode()))
                log("tick", number, i)
                if i + 1 < a.count:
                    time.sleep(a.interval)  # the pace is the behaviour under test
            time.sleep(LIFETIME)
            return
        if a.mode == "pour":
            chunk = frame(0x2, b"\0" * a.frame_size)
            sent = 0
            while sent < a.total:
                size = min(a.frame_size, a.total - sent)
                c.send(chunk if size == a.frame_size else frame(0x2, b"\0" * size))
                sent += size
                log("sent", number, sent)
            read_quietly(c)
            return
        count = total = 0
        for op, payload, compressed in c.messages():
            i, count = count, count + 1
            text = ""
            if op == 0x1 and not compressed:
                text = payload[:100].decode("utf-8", "replace")
            log("message", number, "text" if op == 0x1 else "binary", len(payload), *([text] if text else []))
            if a.mode == "sink":
                if op == 0x1 and payload == b"report":
                    log("received", number, i, total)
                total += len(payload)
            elif getattr(c, "close_sent", False):
                pass  # nothing follows our Close
            elif a.echo_first < 0 or i < a.echo_first:
                for _ in range(2 if a.twice else 1):
                    c.send(frame(op, payload, compressed))
            if a.after is not None and count == a.after:
                log("then", number, a.then)
                if a.then == "close":
                    c.close_sent = True
                    c.send(frame(0x8, struct.pack("!H", 1000) + b"enough"))
                elif a.then == "hangup":
                    c.sock.shutdown(socket.SHUT_WR)
                    c.drain()
                    return
                elif a.then == "raw":
                    c.send(bytes.fromhex(a.raw))
                    c.drain()
                    return
        # The client's Close came (and was answered unless ours went first): wait for its EOF.
        c.drain()
    except (EOFError, OSError):
        pass
    finally:
        log("end", number)
        sock.close()


def read_quietly(c):
    try:
        for _ in c.messages():
            pass
        c.drain()
    except (EOFError, OSError):
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="echo", choices=["echo", "paced", "pour", "sink", "deaf"])
    p.add_argument("--echo-first", type=int, default=-1)
    p.add_argument("--twice", action="store_true")
    p.add_argument("--after", type=int)
    p.add_argument("--then", choices=["close", "hangup", "raw"], default="close")
    p.add_argument("--raw", default="")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.3)
    p.add_argument("--total", type=int, default=1 << 20)
    p.add_argument("--frame-size", type=int, default=1 << 20)
    p.add_argument("--pong-payload")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--rcvbuf", type=int)
    p.add_argument("--sndbuf", type=int)
    a = p.parse_args()

    listener = socket.socket()
    # Set before listen(): accepted sockets inherit the sizes (and the window scale they imply).
    if a.rcvbuf:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    if a.sndbuf:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, a.sndbuf)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    log(f"listening on 127.0.0.1:{listener.getsockname()[1]}")
    number = 0
    while True:
        sock, _ = listener.accept()
        number += 1
        sock.settimeout(LIFETIME)
        threading.Thread(target=serve, args=(sock, number, a), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
