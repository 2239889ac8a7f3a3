"""wsx relay on serve's listener: TLS, metrics, limits and graceful shutdown come from the
same options as `wsx serve`."""
import asyncio
import json
import signal
import ssl

import websockets

import wsxtest
from relay_helpers import RelayCase


class RelayListenerTest(RelayCase):
    def test_tls_and_graceful_shutdown(self):
        p, url = self.start_relay("--tls-self-signed", "--max-message-size", "1KiB")
        self.assertTrue(url.startswith("wss://"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

        async def run():
            b = await websockets.connect(url + "/?id=b", ssl=ctx, subprotocols=["wsx.relay.v1"])
            self.assertEqual(json.loads(await b.recv())["type"], "welcome")
            await b.send(json.dumps({"op": "subscribe", "topic": "t"}))
            self.assertEqual(json.loads(await b.recv()), {"type": "subscribed", "topic": "t"})
            a = await websockets.connect(url + "/t?id=a", ssl=ctx)
            await a.send("over tls")
            m = json.loads(await asyncio.wait_for(b.recv(), 10))
            self.assertEqual(m, {"type": "join", "topic": "t", "member": "a"})
            m = json.loads(await asyncio.wait_for(b.recv(), 10))
            self.assertEqual((m["from"], m["data"]), ("a", "over tls"))
            # Serve's limits apply: a message over --max-message-size closes with 1009.
            await a.send("x" * 2000)
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                await asyncio.wait_for(a.recv(), 10)
            self.assertEqual(cm.exception.rcvd.code, 1009)
            # SIGTERM: every client gets Close 1001, the relay exits 0.
            p.proc.send_signal(signal.SIGTERM)
            with self.assertRaises(websockets.ConnectionClosed) as cm:
                while True:  # a's leave event may come first
                    await asyncio.wait_for(b.recv(), 10)
            self.assertEqual(cm.exception.rcvd.code, 1001)
        asyncio.run(run())
        self.assertEqual(p.proc.wait(10), 0)
        self.assertIn("relay: published=1", p.rest_of_stderr())


if __name__ == "__main__":
    wsxtest.main()
