"""Interop: independent clients against wsx serve — python3-websockets, node `ws`, and headless
Chromium loading a page from --static whose script talks to the same server."""
import asyncio
import os
import subprocess
import unittest

import wsxtest
from serve_helpers import close_and_collect

NODE_MODULES = os.path.join(wsxtest.SOURCE_DIR, "tests", "node_modules")
CHROMIUM = wsxtest.CHROMIUM

NODE_CLIENT = r"""
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[2]);
const got = [];
ws.on('open', () => { ws.send('text from node'); ws.send(Buffer.from([0, 1, 2, 255])); });
ws.on('message', (data, isBinary) => {
  got.push(isBinary ? 'bin:' + Buffer.from(data).toString('hex') : 'txt:' + data.toString());
  if (got.length === 2) ws.close(1000, 'done');
});
ws.on('close', (code) => { console.log(got.join('\n')); console.log('close:' + code); process.exit(0); });
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
setTimeout(() => { console.error('timeout'); process.exit(2); }, 10000);
"""

PAGE = """<!doctype html>
<html><body><div id="out">pending</div>
<script>
const out = document.getElementById('out');
const ws = new WebSocket('ws://' + location.host + '/ws');
const got = [];
ws.onopen = () => { ws.send('hello from the browser'); ws.send(new Uint8Array([7, 8, 9])); };
ws.binaryType = 'arraybuffer';
ws.onmessage = (e) => {
  got.push(typeof e.data === 'string' ? e.data : 'bin:' + Array.from(new Uint8Array(e.data)).join(','));
  if (got.length === 2) ws.close(1000);
};
ws.onclose = (e) => { out.textContent = 'RESULT[' + got.join('|') + '|close:' + e.code + ']'; };
ws.onerror = () => { out.textContent = 'RESULT[error]'; };
</script></body></html>
"""


class InteropTest(wsxtest.WsxTestCase):
    def test_python_websockets_client(self):
        import websockets

        p, url = self.start_server()

        async def talk():
            async with websockets.connect(url, max_size=None) as ws:
                await ws.send("hello")
                text = await asyncio.wait_for(ws.recv(), 10)
                await ws.send(b"\x00\xff" * 5000)
                data = await asyncio.wait_for(ws.recv(), 10)
                pong = await ws.ping(b"abc")
                await asyncio.wait_for(pong, 10)
                return text, data

        text, data = asyncio.run(asyncio.wait_for(talk(), 30))
        self.assertEqual(text, "hello")
        self.assertEqual(data, b"\x00\xff" * 5000)
        p.wait_for(r"code=1000")

    def test_python_websockets_compressed(self):
        import websockets

        p, url = self.start_server("--compress")

        async def talk():
            async with websockets.connect(url, compression="deflate") as ws:
                ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
                await ws.send("z" * 10000)
                return ext, await asyncio.wait_for(ws.recv(), 10)

        ext, text = asyncio.run(asyncio.wait_for(talk(), 30))
        self.assertIn("permessage-deflate", ext)
        self.assertEqual(text, "z" * 10000)

    def test_compressed_echoes_before_the_close_are_all_answered(self):
        # A client sends 16 messages and its Close at once: every echo comes back before the
        # server's Close, as without compression (one session engine for both).
        import websockets

        p, url = self.start_server("--compress")
        data = os.urandom(65536)  # random: compression cannot make the echoes small

        async def talk():
            ws = await websockets.connect(url, compression="deflate", max_size=None)
            for _ in range(16):
                await ws.send(data)
            got, close_code = await close_and_collect(ws)
            return got, close_code

        for _ in range(3):
            got, code = asyncio.run(asyncio.wait_for(talk(), 30))
            self.assertEqual(len(got), 16)
            self.assertTrue(all(m == data for m in got))
            self.assertEqual(code, 1000)

    @unittest.skipUnless(os.path.isdir(os.path.join(NODE_MODULES, "ws")), "npm ws not installed in tests/node_modules")
    def test_node_ws_client(self):
        p, url = self.start_server()
        script = os.path.join(self.tmp, "client.js")
        with open(script, "w") as f:
            f.write(NODE_CLIENT)
        r = subprocess.run(["node", script, url], capture_output=True, timeout=30,
                           env=dict(os.environ, NODE_PATH=NODE_MODULES))
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(r.stdout.decode().split("\n")[:3], ["txt:text from node", "bin:000102ff", "close:1000"])

    @unittest.skipUnless(CHROMIUM, "chromium not installed")
    def test_headless_chromium_page_from_static(self):
        root = os.path.join(self.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write(PAGE)
        p, url = self.start_server("--static", root, "--path", "/ws")
        http_url = url.replace("ws://", "http://")
        result = wsxtest.chromium_text_when(http_url, "document.getElementById('out').textContent", "RESULT[")
        self.assertEqual(result, "RESULT[hello from the browser|bin:7,8,9|close:1000]")


if __name__ == "__main__":
    wsxtest.main()
