"""wsx proxy: graceful drain on SIGTERM (stop accepting, let connections finish up to
--drain-timeout, then close them with 1001), and the access log line of a proxied connection."""
import asyncio
import signal
import socket
import time

import websockets

import wsxtest
from proxy_helpers import start_proxy


class DrainTest(wsxtest.WsxTestCase):
    def test_sigterm_drains_then_closes_with_1001(self):
        _, up = self.start_server("-q")
        proxy, url = start_proxy(self, "--to", up, "--drain-timeout", "800ms")
        port = int(url.rsplit(":", 1)[1])

        async def go():
            async with websockets.connect(url, open_timeout=5, close_timeout=5) as ws:
                await ws.send("before")
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "before")
                t0 = time.monotonic()
                proxy.proc.send_signal(signal.SIGTERM)
                # The listener stops, but this connection keeps working while the drain lasts.
                deadline = time.monotonic() + 5
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    except OSError:
                        break
                    self.assertLess(time.monotonic(), deadline, "the listener should stop")
                    await asyncio.sleep(0.02)
                await ws.send("during")
                self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "during")
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return time.monotonic() - t0, ws.close_code
        took, code = asyncio.run(asyncio.wait_for(go(), 20))
        self.assertEqual(code, 1001)
        self.assertGreaterEqual(took, 0.7)
        self.assertEqual(proxy.proc.wait(10), 0)

    def test_access_log_names_each_connection(self):
        _, up = self.start_server("-q")
        proxy, url = start_proxy(self, "--to", up)
        r = self.wsx("connect", url + "/room?x=1", input=b"a\nb\n")
        self.assertExit(r, 0)
        m = proxy.wait_for(r'"/room\?x=1" .* in=2/2B out=2/2B code=1000 backend="([^"]*)"')
        self.assertEqual(m.group(1), up)


if __name__ == "__main__":
    wsxtest.main()
