"""wsx proxy front-door policy: the listener options of `wsx serve` apply before any upstream
is contacted (origin allow-list, max connections, message rate limit, max message size)."""
import asyncio

import websockets

import serve_helpers
import wsxtest
from proxy_helpers import run, start_proxy


class PolicyTest(wsxtest.WsxTestCase):
    def test_origin_allow_list(self):
        _, up = self.start_server("-q")
        _, url = start_proxy(self, "--to", up, "--origin", "https://good.example")
        bad = serve_helpers.RawWS(url, headers={"Origin": "https://evil.example"}, expect_upgrade=False)
        self.assertEqual(bad.status, 403)
        bad.close()
        good = serve_helpers.RawWS(url, headers={"Origin": "https://good.example"})
        good.send_text("ok")
        self.assertEqual(good.recv_message(), (0x1, b"ok"))
        good.close()

    def test_max_connections(self):
        _, up = self.start_server("-q")
        _, url = start_proxy(self, "--to", up, "--max-connections", "1")
        first = serve_helpers.RawWS(url)
        try:
            second = serve_helpers.RawWS(url, expect_upgrade=False)
            self.assertEqual(second.status, 503)
            second.close()
        finally:
            first.close()

    def test_rate_limit_and_message_size(self):
        _, up = self.start_server("-q")
        _, url = start_proxy(self, "--to", up, "--rate-limit", "5/s,burst=5", "--max-message-size", "1KiB")

        async def flood():
            async with websockets.connect(url, open_timeout=5) as ws:
                try:
                    for i in range(50):
                        await ws.send(str(i))
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return ws.close_code

        async def big():
            async with websockets.connect(url, open_timeout=5) as ws:
                await ws.send("x" * 2000)
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return ws.close_code
        self.assertEqual(run(flood()), 1008)
        self.assertEqual(run(big()), 1009)


if __name__ == "__main__":
    wsxtest.main()
