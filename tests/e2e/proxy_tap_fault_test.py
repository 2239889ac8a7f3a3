"""wsx proxy --tap (text, hex, ndjson) and each --fault-* option, observed by a client."""
import asyncio
import json
import os
import time

import websockets

import event_schema
import wsxtest
from proxy_helpers import run, start_proxy, wait_until


class TapTest(wsxtest.WsxTestCase):
    def exchange(self, url):
        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                await ws.send("hi\tthere")
                await asyncio.wait_for(ws.recv(), 5)
                await ws.send(b"\x01\xfe")
                await asyncio.wait_for(ws.recv(), 5)
                await ws.close(4000, "done")
        run(go())

    def tap_lines(self, fmt):
        _, up = self.start_server("-q")
        path = os.path.join(self.tmp, f"tap.{fmt}")
        _, url = start_proxy(self, "--to", up, "--tap", path, "--tap-format", fmt, "--health-interval", "1h")
        self.exchange(url)

        def lines():
            if not os.path.exists(path):
                return []
            with open(path, encoding="utf-8") as f:
                return f.read().splitlines()
        wait_until(lambda: len(lines()) >= 6, what="six tap lines")
        return lines()

    def test_text(self):
        lines = self.tap_lines("text")
        ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
        self.assertRegex(lines[0], "^" + ts + r" #1 > text hi\\tthere$")
        self.assertRegex(lines[1], r" #1 < text hi\\tthere$")
        self.assertRegex(lines[2], r" #1 > binary \\x01\\xfe$")
        self.assertRegex(lines[4], r" #1 > close 4000 done$")
        self.assertRegex(lines[5], r" #1 < close 4000$")  # wsx serve answers with the code only

    def test_hex(self):
        lines = self.tap_lines("hex")
        self.assertTrue(lines[0].endswith(" #1 > text " + b"hi\tthere".hex()), lines[0])
        self.assertTrue(lines[3].endswith(" #1 < binary 01fe"), lines[3])
        # A close record is the Close frame's payload: the code's two bytes, then the reason.
        self.assertTrue(lines[4].endswith(" #1 > close 0fa0" + b"done".hex()), lines[4])
        self.assertTrue(lines[5].endswith(" #1 < close 0fa0"), lines[5])

    def test_ndjson(self):
        # The one event format (as connect --jsonl), with conn and dir "up"/"down".
        lines = event_schema.check_lines("\n".join(self.tap_lines("ndjson")), dirs=event_schema.TAP_DIRS, conn=True)
        self.assertEqual({k: lines[0][k] for k in ("conn", "dir", "type", "len", "encoding", "data")},
                         {"conn": 1, "dir": "up", "type": "text", "len": 8, "encoding": "utf8", "data": "hi\tthere"})
        self.assertEqual((lines[3]["dir"], lines[3]["type"], lines[3]["encoding"], lines[3]["payload"]),
                         ("down", "binary", "base64", b"\x01\xfe"))
        self.assertEqual({k: lines[4][k] for k in ("dir", "type", "code", "reason")},
                         {"dir": "up", "type": "close", "code": 4000, "reason": "done"})
        self.assertEqual({k: lines[5][k] for k in ("dir", "type", "code", "reason")},
                         {"dir": "down", "type": "close", "code": 4000, "reason": ""})

    def test_dropped_messages_are_not_tapped(self):
        _, up = self.start_server("-q")
        path = os.path.join(self.tmp, "tap.txt")
        _, url = start_proxy(self, "--to", up, "--tap", path, "--fault-drop", "100%", "--health-interval", "1h")

        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                for i in range(3):
                    await ws.send(f"lost {i}")
                await ws.close(4000, "done")
        run(go())

        def lines():
            with open(path, encoding="utf-8") as f:
                return f.read().splitlines()
        # The close records come last: once they are there, every message would have been too.
        wait_until(lambda: os.path.exists(path) and len([l for l in lines() if " close " in l]) >= 2,
                   what="the close records")
        self.assertEqual([l.split(" ", 3)[2:] for l in lines()], [[">", "close 4000 done"], ["<", "close 4000"]])


class FaultTest(wsxtest.WsxTestCase):
    def proxy(self, *fault):
        _, up = self.start_server("-q")
        _, url = start_proxy(self, "--to", up, "--health-interval", "1h", *fault)
        return url

    def test_delay(self):
        url = self.proxy("--fault-delay", "60ms", "--fault-jitter", "20ms")

        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                rtts = []
                for i in range(5):
                    t0 = time.monotonic()
                    await ws.send(str(i))
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), str(i))
                    rtts.append(time.monotonic() - t0)
                # Order is kept even with jitter.
                for i in range(20):
                    await ws.send(str(i))
                got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(20)]
                return rtts, got
        rtts, got = run(go())
        self.assertGreaterEqual(min(rtts), 0.120, rtts)  # 60ms each way
        self.assertEqual(got, [str(i) for i in range(20)])

    def test_drop(self):
        url = self.proxy("--fault-drop", "30%")

        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                for i in range(400):
                    await ws.send(str(i))
                await ws.send("end")
                got = []
                try:
                    while True:
                        m = await asyncio.wait_for(ws.recv(), 1.0)
                        got.append(m)
                except asyncio.TimeoutError:
                    pass
                return got
        got = run(go())
        survivors = [m for m in got if m != "end"]
        # Each message survives both ways with probability 0.49: expect ~196 of 400.
        self.assertGreater(len(survivors), 120)
        self.assertLess(len(survivors), 280)
        self.assertEqual(survivors, sorted(survivors, key=int), "the rest arrive in order")

    def test_close_after_messages(self):
        url = self.proxy("--fault-close-after", "3", "--fault-close-code", "4013")

        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                got = []
                try:
                    for i in range(5):
                        await ws.send(str(i))
                        got.append(await asyncio.wait_for(ws.recv(), 5))
                except websockets.ConnectionClosed:
                    pass
                return got, ws.close_code
        got, code = run(go())
        # 1: "0" up, 2: "0" down, 3: "1" up → the client is closed.
        self.assertEqual(got, ["0"])
        self.assertEqual(code, 4013)

    def test_close_after_duration(self):
        url = self.proxy("--fault-close-after", "300ms")

        async def go():
            async with websockets.connect(url, open_timeout=5) as ws:
                t0 = time.monotonic()
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    pass
                return time.monotonic() - t0, ws.close_code
        took, code = run(go())
        self.assertEqual(code, 1011)
        self.assertGreaterEqual(took, 0.25)
        self.assertLess(took, 3)

    def test_stall_pongs(self):
        for stall in (False, True):
            with self.subTest(stall=stall):
                url = self.proxy(*(["--fault-stall-pongs"] if stall else []))

                async def go():
                    async with websockets.connect(url, open_timeout=5, ping_interval=None) as ws:
                        waiter = await ws.ping(b"p")
                        try:
                            await asyncio.wait_for(waiter, 1.0)
                            return True
                        except asyncio.TimeoutError:
                            return False
                self.assertEqual(run(go()), not stall)


if __name__ == "__main__":
    wsxtest.main()
