"""wsx proxy bridges: WS→TCP (websockify) against a TCP echo server, TCP→WS (tunnel) into
`wsx serve`, and TLS termination with a client that verifies the proxy's certificate."""
import asyncio
import socket

import websockets

import wsxtest
from proxy_helpers import TcpEchoServer, recv_exactly, run, start_proxy


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
