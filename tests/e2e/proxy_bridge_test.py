"""wsx proxy bridges: WS→TCP (websockify) against a TCP echo server, TCP→WS (tunnel) into
`wsx serve`, and TLS termination with a client that verifies the proxy's certificate."""
import asyncio
import os
import socket
import struct
import threading
import time

import websockets

import wsxtest
from proxy_helpers import TcpEchoServer, recv_exactly, run, start_proxy, wait_until
from serve_helpers import RawWS, close_and_collect


def masked_frame(opcode, payload):
    """One masked client frame (payload under 126 bytes)."""
    key = os.urandom(4)
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + key + bytes(
        c ^ key[i % 4] for i, c in enumerate(payload))


class FinalLineServer(TcpEchoServer):
    """Echoes; on EOF sends a last line, then closes."""

    last_words = b"bye\n"


class NeverClosingServer(TcpEchoServer):
    """Echoes; on EOF notes it and keeps its end of the connection open until closed itself."""

    def __init__(self):
        self.eof = threading.Event()
        self.conns = []
        super().__init__()

    def _echo(self, c):
        self.conns.append(c)
        c.settimeout(20)
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    self.eof.set()
                    return
                c.sendall(data)
        except OSError:
            return

    def close(self):
        super().close()
        for c in self.conns:
            c.close()


class BridgeTest(wsxtest.WsxTestCase):
    def test_ws_to_tcp_each_connection_gets_its_own_socket(self):
        echo = TcpEchoServer()
        self.addCleanup(echo.close)
        _, url = start_proxy(self, "--to", f"tcp://127.0.0.1:{echo.port}")
        big = bytes(range(256)) * 1024

        async def client(tag):
            async with websockets.connect(url, open_timeout=5, max_size=None) as ws:
                await ws.send(tag.encode())
                got = await asyncio.wait_for(ws.recv(), 5)
                assert isinstance(got, bytes), "bytes from TCP arrive as binary messages"
                await ws.send(big)
                back = b""
                while len(back) < len(big):
                    back += await asyncio.wait_for(ws.recv(), 5)
                return got, back

        async def both():
            return await asyncio.gather(client("one"), client("two"))

        (a, big_a), (b, big_b) = run(both())
        self.assertEqual((a, b), (b"one", b"two"))
        self.assertEqual(big_a, big)
        self.assertEqual(big_b, big)
        self.assertEqual(echo.accepted, 2)

    def test_ws_to_tcp_client_close_waits_for_the_tcp_peers_last_bytes(self):
        # The client sends a message and its Close in one write: the TCP peer's echo and what
        # it sends on EOF (after the proxy's half-close) still reach the client before the
        # answer to its Close.
        server = FinalLineServer()
        self.addCleanup(server.close)
        _, url = start_proxy(self, "--to", f"tcp://127.0.0.1:{server.port}")
        for i in range(20):
            ws = RawWS(url)
            try:
                ws.sock.sendall(masked_frame(0x2, b"hello\n") + masked_frame(0x8, struct.pack("!H", 1000)))
                got, close = ws.messages_until_close()
            finally:
                ws.close()
            self.assertTrue(all(op == 0x2 for op, _ in got), f"round {i}: {got!r}")
            self.assertEqual(b"".join(p for _, p in got), b"hello\nbye\n", f"round {i}")
            self.assertEqual(close[:2], ("close", 1000), f"round {i}")

    def test_ws_to_tcp_compressed_client_close_waits_for_the_tcp_peers_last_bytes(self):
        # The same with permessage-deflate: the client's Close is held until the TCP peer's EOF.
        server = FinalLineServer()
        self.addCleanup(server.close)
        _, url = start_proxy(self, "--to", f"tcp://127.0.0.1:{server.port}", "--compress")

        async def talk():
            ws = await websockets.connect(url, compression="deflate", max_size=None)
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            await ws.send(b"hello\n")
            got, close_code = await close_and_collect(ws)
            return ext, got, close_code

        for i in range(5):
            ext, got, code = run(talk(), 30)
            self.assertIn("permessage-deflate", ext, f"round {i}")
            self.assertEqual(b"".join(got), b"hello\nbye\n", f"round {i}")
            self.assertEqual(code, 1000, f"round {i}")

    def test_ws_to_tcp_client_close_answered_within_the_close_timeout(self):
        # A TCP peer that never ends its side: the client's Close is answered anyway, after
        # what the peer sent, within the close timeout (5 s).
        server = NeverClosingServer()
        self.addCleanup(server.close)
        _, url = start_proxy(self, "--to", f"tcp://127.0.0.1:{server.port}")
        ws = RawWS(url, timeout=15)
        try:
            start = time.monotonic()
            ws.sock.sendall(masked_frame(0x2, b"ping me\n") + masked_frame(0x8, struct.pack("!H", 1000)))
            got, close = ws.messages_until_close()
            elapsed = time.monotonic() - start
            self.assertEqual(b"".join(p for _, p in got), b"ping me\n")
            self.assertEqual(close[:2], ("close", 1000))
            self.assertLess(elapsed, 8.0)
            self.assertTrue(ws.wait_eof(5), "the proxy ends the connection after its Close")
        finally:
            ws.close()
        # The TCP peer was half-closed (it saw EOF) when the client's Close arrived.
        wait_until(server.eof.is_set, 5, "EOF at the TCP peer")

    def test_tcp_to_ws_tunnel_into_wsx_serve(self):
        serve, surl = self.start_server("-q")
        _, url = start_proxy(self, "--to", surl, listen="tcp://127.0.0.1:0")
        port = int(url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        try:
            for i, s in enumerate(socks):
                s.sendall(f"hello {i}".encode())
            for i, s in enumerate(socks):
                self.assertEqual(recv_exactly(s, 7), f"hello {i}".encode())
            payload = b"\x00\xff" * 50000
            socks[0].sendall(payload)
            self.assertEqual(recv_exactly(socks[0], len(payload)), payload)
            # Closing the TCP side closes its WebSocket: the tunnel ends with EOF.
            socks[1].shutdown(socket.SHUT_WR)
            socks[1].settimeout(10)
            self.assertEqual(socks[1].recv(10), b"")
        finally:
            for s in socks:
                s.close()

    def test_tls_termination_verified_by_the_client(self):
        c = wsxtest.certs()
        _, surl = self.start_server("-q")
        _, url = start_proxy(self, "--to", surl, "--tls-cert", c["server"], "--tls-key", c["server_key"],
                             listen="wss://127.0.0.1:0")
        self.assertTrue(url.startswith("wss://"))
        r = self.wsx("connect", url, "--cacert", c["ca"], input=b"through tls\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"through tls\n")
        # A client that trusts another CA refuses the proxy.
        r = self.wsx("connect", url, "--cacert", c["otherca"], input=b"x\n")
        self.assertExit(r, 5)

    def test_wss_upstream_verified_by_the_proxy(self):
        c = wsxtest.certs()
        _, surl = self.start_server("-q", "--tls-cert", c["server"], "--tls-key", c["server_key"])
        _, good = start_proxy(self, "--to", surl, "--cacert", c["ca"])
        r = self.wsx("connect", good, input=b"via wss\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"via wss\n")
        _, bad = start_proxy(self, "--to", surl, "--cacert", c["otherca"], "--health-interval", "1h")
        r = self.wsx("connect", bad, input=b"x\n")
        self.assertExit(r, 6)
        self.assertIn(b"502", r.stderr)


if __name__ == "__main__":
    wsxtest.main()
