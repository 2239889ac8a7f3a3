"""wsx proxy: Ping and Pong frames pass through as they came, both ways, answered by the far end
(never by the proxy), with raw-socket peers on both sides; the proxy's own heartbeat stays its
own; --fault-stall-pongs stalls only the client's pings; an upstream the proxy fails for a
protocol error leaves the client with a Close that says so."""
import asyncio
import threading
import time
import zlib

import websockets

import serve_helpers
import wsxtest
from peer_tools import start_raw_server
from proxy_helpers import RawUpstream, TcpEchoServer, run, start_proxy

PING, PONG, TEXT, CLOSE = 0x9, 0xA, 0x1, 0x8


class RawPair:
    def pair(self, *proxy_args):
        """A proxy in front of a raw upstream, and a raw client joined through it."""
        up = RawUpstream()
        self.addCleanup(up.close)
        proxy, url = start_proxy(self, "--to", up.url, "--health-interval", "1h", *proxy_args)
        accepted = threading.Thread(target=up.accept, daemon=True)
        accepted.start()
        client = serve_helpers.RawWS(url)
        self.addCleanup(client.close)
        accepted.join(10)
        self.assertIsNotNone(up.conn, "the upstream was connected")
        return proxy, up, client


async def ping_answered(url, **kw):
    async with websockets.connect(url, open_timeout=5, ping_interval=None, **kw) as ws:
        try:
            await asyncio.wait_for(await ws.ping(b"p"), 5)
            return True
        except asyncio.TimeoutError:
            return False


class PingTest(RawPair, wsxtest.WsxTestCase):
    def test_client_ping_is_answered_by_the_upstream(self):
        for extra in ([], ["--compress"]):  # a client that does not offer compression: the same
            with self.subTest(extra=extra):
                self.ping_reaches_the_upstream_and_only_its_pong_comes_back(*extra)

    def ping_reaches_the_upstream_and_only_its_pong_comes_back(self, *proxy_args):
        # The upstream is a scripted server that logs every ping it receives and answers each with
        # a pong of its own payload, which neither the client's ping nor a proxy could make up.
        _, port, events = start_raw_server(self, "--pong-payload", "pong made upstream")
        _, url = start_proxy(self, "--to", f"ws://127.0.0.1:{port}", "--health-interval", "1h", *proxy_args)
        client = serve_helpers.RawWS(url)
        self.addCleanup(client.close)
        client.send_frame(PING, b"hello?")
        # The one pong the client gets is the upstream's: a proxy that answered itself would
        # have sent "hello?" back (first, or as a second pong).
        self.assertEqual(client.recv_frame()[1:], (PONG, b"pong made upstream"))
        # A message after the ping, echoed by the upstream, is the next thing each side sees: no
        # second pong reached the client and no second ping reached the upstream.
        client.send_text("after the ping")
        self.assertEqual(client.recv_frame()[1:], (TEXT, b"after the ping"))
        events.wait_until(lambda ls: any(l.endswith(b" text 14 after the ping") for l in ls), what="the message upstream")
        n = next(l.split()[1] for l in events.lines if l.startswith(b"message "))
        seen = [l for l in events.lines if l.split()[0] in (b"ping", b"pong", b"message")]
        self.assertEqual(seen, [b"ping " + n + b" " + b"hello?".hex().encode(), b"message " + n + b" text 14 after the ping"],
                         "the upstream saw the client's ping once, with its payload, then the message")

    def test_unsolicited_pongs_pass_both_ways(self):
        _, up, client = self.pair()
        up.send_frame(PONG, b"heartbeat")
        self.assertEqual(client.recv_frame()[1:], (PONG, b"heartbeat"))
        client.send_frame(PONG, b"client heartbeat")
        self.assertEqual(up.recv_frame(), (PONG, b"client heartbeat"))

    def test_upstream_ping_is_answered_by_the_client(self):
        _, up, client = self.pair()
        up.send_frame(PING, b"up?")
        self.assertEqual(client.recv_frame()[1:], (PING, b"up?"))
        client.send_frame(PONG, b"client's answer")
        self.assertEqual(up.recv_frame(), (PONG, b"client's answer"), "the proxy did not answer itself")

    def test_stalled_pongs_stall_only_the_clients_pings(self):
        _, up, client = self.pair("--fault-stall-pongs")
        # The upstream's ping still gets the client's answer.
        up.send_frame(PING, b"u1")
        self.assertEqual(client.recv_frame()[1:], (PING, b"u1"))
        client.send_frame(PONG, b"u1")
        self.assertEqual(up.recv_frame(), (PONG, b"u1"))
        # The client's ping goes nowhere: the message after it is the next thing to arrive.
        client.send_frame(PING, b"c1")
        client.send_text("after")
        self.assertEqual(up.recv_frame(), (TEXT, b"after"))
        up.send_frame(TEXT, b"back")
        self.assertEqual(client.recv_frame()[1:], (TEXT, b"back"), "no pong came first")

    def test_stalled_pongs_keep_a_pinging_backend(self):
        # A backend that pings every 100ms and drops a client without a pong in 1s.
        _, upurl = self.start_server("-q", "--ping-interval", "100ms", "--ping-timeout", "1s")
        _, url = start_proxy(self, "--to", upurl.rstrip("/"), "--health-interval", "1h", "--fault-stall-pongs")

        async def go():
            async with websockets.connect(url, open_timeout=5, ping_interval=None) as ws:
                # Twenty of the backend's pings come and are answered by this client.
                deadline = time.monotonic() + 2.0
                n = 0
                while time.monotonic() < deadline:
                    await ws.send(str(n))
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), str(n))
                    n += 1
                    await asyncio.sleep(0.05)
                return ws.close_code
        self.assertIsNone(run(go()), "the backend kept the connection")

    def test_proxy_heartbeat_stays_the_proxys(self):
        _, up, client = self.pair("--ping-interval", "100ms", "--ping-timeout", "2s")
        _, op, payload = client.recv_frame()
        self.assertEqual(op, PING, "the proxy's own ping")
        client.send_frame(PONG, payload)
        client.send_text("after the pong")
        # The answer to the proxy's ping is the proxy's: the upstream sees the message only.
        self.assertEqual(up.recv_frame(), (TEXT, b"after the pong"))

    def test_delay_fault_is_in_the_ping_round_trip(self):
        _, upurl = self.start_server("-q")
        _, url = start_proxy(self, "--to", upurl.rstrip("/"), "--health-interval", "1h", "--fault-delay", "100ms")

        async def go():
            async with websockets.connect(url, open_timeout=5, ping_interval=None) as ws:
                t0 = time.monotonic()
                await asyncio.wait_for(await ws.ping(b"timed"), 5)
                return time.monotonic() - t0
        self.assertGreaterEqual(run(go()), 0.2, "100ms each way")


    def test_compressed_clients_ping_reaches_the_upstream_and_only_its_pong_comes_back(self):
        # A client that negotiated compression runs on the same session engine: its ping is the
        # upstream's to answer, as without compression, and its messages are compressed.
        _, port, events = start_raw_server(self, "--pong-payload", "pong made upstream")
        _, url = start_proxy(self, "--to", f"ws://127.0.0.1:{port}", "--health-interval", "1h", "--compress")
        client = serve_helpers.RawWS(url, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        self.addCleanup(client.close)
        self.assertRegex(client.response_head, r"(?im)^Sec-WebSocket-Extensions: permessage-deflate")
        client.send_frame(PING, b"hello?")
        self.assertEqual(client.recv_frame()[1:], (PONG, b"pong made upstream"))
        client.send_text("after the ping")  # a message may go uncompressed (RSV1 clear)
        fin, op, payload = client.recv_frame()
        self.assertEqual((fin, op), (True, TEXT))
        # The echo comes back compressed: only inflated does it read as the message.
        self.assertNotEqual(payload, b"after the ping")
        self.assertEqual(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff"), b"after the ping")
        events.wait_until(lambda ls: any(l.endswith(b" text 14 after the ping") for l in ls), what="the message upstream")
        seen = [l.split()[0] for l in events.lines if l.split()[0] in (b"ping", b"pong", b"message")]
        self.assertEqual(seen, [b"ping", b"message"], "the upstream saw the client's ping once, then the message")

    def test_pings_to_a_tcp_upstream_are_answered_by_the_proxy(self):
        echo = TcpEchoServer()
        self.addCleanup(echo.close)
        _, url = start_proxy(self, "--to", f"tcp://127.0.0.1:{echo.port}", "--health-interval", "1h")
        self.assertTrue(run(ping_answered(url)))


class RequestHeadersTest(RawPair, wsxtest.WsxTestCase):
    def test_no_user_agent_is_made_up_for_a_client_that_sent_none(self):
        _, up, _ = self.pair()
        self.assertNotRegex(up.request, r"(?im)^User-Agent:")

    def test_the_clients_user_agent_is_passed_on(self):
        up = RawUpstream()
        self.addCleanup(up.close)
        _, url = start_proxy(self, "--to", up.url, "--health-interval", "1h")
        accepted = threading.Thread(target=up.accept, daemon=True)
        accepted.start()
        run(self._connect_as(url, "probe/1.0"))
        accepted.join(10)
        self.assertRegex(up.request, r"(?im)^User-Agent: probe/1\.0\r?$")

    @staticmethod
    async def _connect_as(url, agent):
        try:
            async with websockets.connect(url, open_timeout=5, user_agent_header=agent):
                pass
        except (asyncio.TimeoutError, websockets.exceptions.WebSocketException, OSError):
            pass  # the raw upstream answers the upgrade and then says nothing: only its request counts


class UpstreamFailureTest(RawPair, wsxtest.WsxTestCase):
    def test_too_big_message_from_the_upstream(self):
        proxy, up, client = self.pair("--max-message-size", "1KiB")
        up.send_frame(TEXT, b"x" * 4000)
        op, payload = up.recv_frame()
        self.assertEqual((op, int.from_bytes(payload[:2], "big")), (CLOSE, 1009))
        up.send_frame(CLOSE, payload[:2])
        up.conn.close()
        code, reason = client.expect_close()
        self.assertEqual(code, 1014)
        self.assertIn("1009", reason)
        proxy.wait_for(r"upstream failed: .*1009.*closing the client with 1014")

    def test_invalid_close_reason_from_the_upstream(self):
        proxy, up, client = self.pair()
        up.send_frame(CLOSE, (1000).to_bytes(2, "big") + b"\xff\xfe")
        op, payload = up.recv_frame()
        self.assertEqual((op, int.from_bytes(payload[:2], "big")), (CLOSE, 1007))
        up.conn.close()
        code, reason = client.expect_close()
        self.assertEqual(code, 1014)
        self.assertIn("1007", reason)

    def test_upstream_connection_lost(self):
        proxy, up, client = self.pair()
        up.conn.close()
        code, reason = client.expect_close()
        self.assertEqual(code, 1014)
        self.assertIn("connection lost", reason)
        proxy.wait_for(r"upstream failed: connection lost")


if __name__ == "__main__":
    wsxtest.main()
