"""wsx proxy WS→WS fidelity, checked with independent peers on both sides (python3-websockets
upstream from tests/e2e/peers/ws_server.py; python3-websockets or a raw-socket client): path,
query, subprotocol, forwarded headers, opcodes, pings and close codes and reasons both ways."""
import asyncio
import json

import websockets

import serve_helpers
import wsxtest
from proxy_helpers import run, start_proxy
from wsxtest import LineCollector


class FidelityTest(wsxtest.WsxTestCase):
    def upstream(self, *args):
        p, port = self.start_peer("ws_server.py", *args)
        return p, f"ws://127.0.0.1:{port}"

    def test_handshake_is_forwarded(self):
        _, up = self.upstream("--mode", "info", "--subprotocol", "chat.v2")
        _, url = start_proxy(self, "--to", up, "--path-prefix", "/api", "--forward-header", "X-Tenant")

        async def go():
            async with websockets.connect(url + "/api/room/7?x=1&y=2", subprotocols=["chat.v1", "chat.v2"],
                                          extra_headers={"X-Tenant": "acme", "X-Secret": "no", "Cookie": "sid=9"},
                                          open_timeout=5) as ws:
                info = json.loads(await asyncio.wait_for(ws.recv(), 5))
                return ws.subprotocol, info
        sub, info = run(go())
        self.assertEqual(info["path"], "/room/7?x=1&y=2")
        self.assertEqual(info["subprotocol"], "chat.v2")
        self.assertEqual(sub, "chat.v2", "the upstream's choice reaches the client")
        h = info["headers"]
        self.assertEqual(h["x-tenant"], "acme")
        self.assertNotIn("x-secret", h)
        self.assertEqual(h["cookie"], "sid=9")
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")

    def test_auth_at_the_door_and_stripped(self):
        _, up = self.upstream("--mode", "info")
        _, url = start_proxy(self, "--to", up, "--token", "s3cret", "--strip-auth")
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        self.assertEqual(r.status, 401)
        r.close()

        async def go():
            async with websockets.connect(url + "/p?token=s3cret&keep=1", open_timeout=5) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 5))
        info = run(go())
        self.assertEqual(info["path"], "/p?keep=1")
        self.assertNotIn("authorization", info["headers"])

    def test_opcodes_and_close_codes_pass_through(self):
        up, upurl = self.upstream("--mode", "close", "--close-after", "3", "--close-code", "4001", "--close-reason",
                                  "upstream bye")
        events = LineCollector(up.proc.stdout)
        _, url = start_proxy(self, "--to", upurl)

        async def go():
            async with websockets.connect(url, open_timeout=5, close_timeout=5) as ws:
                await ws.send("text é")
                a = await asyncio.wait_for(ws.recv(), 5)
                await ws.send(b"\x00\x01\xff")
                b = await asyncio.wait_for(ws.recv(), 5)
                await ws.send(b"")
                c = await asyncio.wait_for(ws.recv(), 5)
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return a, b, c, ws.close_code, ws.close_reason
        a, b, c, code, reason = run(go())
        self.assertEqual(a, "text é")
        self.assertEqual(b, b"\x00\x01\xff")
        self.assertEqual(c, b"")
        self.assertEqual((code, reason), (4001, "upstream bye"))
        events.wait_for_line(b"message text 6")
        events.wait_for_line(b"message binary 3")

    def test_client_close_code_reaches_the_upstream_and_late_messages_arrive(self):
        # The upstream is `wsx serve`, which answers a message and a Close that arrive together
        # in order (a python websockets echo handler may lose the echo to the Close then).
        up, upurl = self.start_server("--log-format", "json")
        _, url = start_proxy(self, "--to", upurl.rstrip("/"))
        ws = serve_helpers.RawWS(url)
        try:
            # Send and close at once: the echo still arrives before the close is answered.
            ws.send_text("last words")
            ws.send_close(4002, b"client bye")
            self.assertEqual(ws.recv_message(), (0x1, b"last words"))
            # The upstream's answer, passed on: `wsx serve` echoes the code without a reason.
            self.assertEqual(ws.recv_message(), ("close", 4002, ""))
        finally:
            ws.close()
        j = json.loads(up.wait_for(r'"type":"close"').string)
        self.assertEqual((j["code"], j["reason"], j["messages_in"], j["messages_out"]), (4002, "client bye", 1, 1))

    def test_pings_from_the_upstream_reach_the_client(self):
        _, upurl = self.upstream("--mode", "echo", "--ping-interval", "0.1")
        _, url = start_proxy(self, "--to", upurl)
        ws = serve_helpers.RawWS(url)
        try:
            fin, op, payload = ws.recv_frame(timeout=5)
            self.assertEqual(op, 0x9, "a ping frame, forwarded")
            ws.send_frame(0xA, payload)
            # The client's own ping is answered with its payload.
            ws.send_frame(0x9, b"hello?")
            while True:
                fin, op, got = ws.recv_frame(timeout=5)
                if op == 0xA:
                    break
            self.assertEqual(got, b"hello?")
        finally:
            ws.close()

    def test_large_and_many_messages_through_a_slow_reader(self):
        _, upurl = self.upstream("--mode", "burst")
        _, url = start_proxy(self, "--to", upurl, "--metrics")

        async def go():
            async with websockets.connect(url, open_timeout=5, max_size=None) as ws:
                await ws.send("20000")
                got = []
                while len(got) < 20000:
                    got.append(await asyncio.wait_for(ws.recv(), 10))
                return got
        got = run(go(), 60)
        self.assertEqual(got, [str(i) for i in range(20000)])


if __name__ == "__main__":
    wsxtest.main()
