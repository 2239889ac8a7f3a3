"""wsx relay interop: python3-websockets and node `ws` clients as publishers and subscribers,
raw topics and the wsx.relay.v1 protocol."""
import asyncio
import json
import os
import subprocess
import unittest

import websockets

import wsxtest
from relay_helpers import RelayCase, wait_until

NODE_MODULES = os.path.join(wsxtest.SOURCE_DIR, "tests", "node_modules")

# node relay_peer.js URL sub N [subprotocol] | pub MSG... — a subscriber prints what it got.
NODE_PEER = r"""
const WebSocket = require('ws');
const [url, mode, ...rest] = process.argv.slice(2);
const proto = mode === 'sub' && rest[1] ? [rest[1]] : undefined;
const ws = new WebSocket(url, proto);
const got = [];
ws.on('open', () => {
  // A protocol client is ready at its welcome message, a raw one at the upgrade.
  if (mode === 'sub') { if (!proto) console.log('open'); return; }
  for (const m of rest) ws.send(m.startsWith('hex:') ? Buffer.from(m.slice(4), 'hex') : m);
  ws.close(1000);
});
ws.on('message', (data, isBinary) => {
  if (proto && got.length === 0) console.log('open');
  got.push(isBinary ? 'hex:' + Buffer.from(data).toString('hex') : data.toString());
  if (mode === 'sub' && got.length === Number(rest[0])) { console.log(JSON.stringify(got)); ws.close(1000); }
});
ws.on('close', () => process.exit(0));
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
setTimeout(() => { console.error('timeout: got ' + JSON.stringify(got)); process.exit(2); }, 20000);
"""


@unittest.skipUnless(os.path.isdir(os.path.join(NODE_MODULES, "ws")), "npm ws not installed in tests/node_modules")
class RelayInteropTest(RelayCase):
    def node(self, *args):
        script = os.path.join(self.tmp, "relay_peer.js")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(NODE_PEER)
        p = self.start(["node", script, *args], stdout=subprocess.PIPE, env=dict(os.environ, NODE_PATH=NODE_MODULES))
        return p

    def test_python_and_node_publishers_and_subscribers(self):
        p, url = self.start_relay("--threads", "2")
        n = 20
        node_subs = [self.node(f"{url}/mix?id=node{i}", "sub", str(2 * n)) for i in range(2)]
        for s in node_subs:
            self.assertEqual(s.proc.stdout.readline().strip(), b"open")
        q = self.json_client(url)

        async def run():
            subs = [await websockets.connect(f"{url}/mix?id=py{i}") for i in range(2)]
            pub = await websockets.connect(f"{url}/mix?id=pypub")
            wait_until(lambda: len(q.presence("mix")) == 5, 10, "5 members")
            node_pub = self.node(f"{url}/mix?id=nodepub", "pub",
                                 *[f"node{i}" if i % 2 == 0 else f"hex:ff{i:02x}" for i in range(n)])
            for i in range(n):
                await pub.send(f"py{i}" if i % 2 == 0 else bytes([0, i]))
            results = []
            for s in subs:
                got = [await asyncio.wait_for(s.recv(), 10) for _ in range(2 * n)]
                results.append(got)
                await s.close()
            await pub.close()
            node_pub.proc.wait(20)
            return results
        py_results = asyncio.run(run())
        want_py = [f"py{i}" if i % 2 == 0 else bytes([0, i]) for i in range(n)]
        want_node = [f"node{i}" if i % 2 == 0 else bytes([0xff, i]) for i in range(n)]
        for got in py_results:
            self.assertEqual([x for x in got if (isinstance(x, str) and x.startswith("py")) or (isinstance(x, bytes) and x[0] == 0)], want_py)
            self.assertEqual([x for x in got if (isinstance(x, str) and x.startswith("node")) or (isinstance(x, bytes) and x[0] == 0xff)], want_node)
        enc = lambda x: x if isinstance(x, str) else "hex:" + x.hex()
        for s in node_subs:
            got = json.loads(s.proc.stdout.readline())
            self.assertEqual([x for x in got if x.startswith("py") or x.startswith("hex:00")], [enc(x) for x in want_py])
            self.assertEqual([x for x in got if x.startswith("node") or x.startswith("hex:ff")], [enc(x) for x in want_node])

    def test_node_and_python_speak_the_json_protocol(self):
        p, url = self.start_relay()
        sub = self.node(f"{url}/?id=nodejs", "sub", "2", "wsx.relay.v1")
        self.assertEqual(sub.proc.stdout.readline().strip(), b"open")

        async def run():
            ws = await websockets.connect(f"{url}/?id=py", subprotocols=["wsx.relay.v1"])
            self.assertEqual(ws.subprotocol, "wsx.relay.v1")
            welcome = json.loads(await ws.recv())
            self.assertEqual(welcome["id"], "py")
            await ws.send(json.dumps({"op": "send", "to": "nodejs", "data": "direct to node"}))
            self.assertEqual(json.loads(await ws.recv()), {"type": "sent", "to": "nodejs"})
            await ws.send("not json")
            self.assertEqual(json.loads(await ws.recv())["type"], "error")
            await ws.close()
        asyncio.run(run())
        got = [json.loads(x) for x in json.loads(sub.proc.stdout.readline())]
        self.assertEqual(got[0]["type"], "welcome")
        self.assertEqual(got[1], {"type": "direct", "from": "py", "data": "direct to node"})


if __name__ == "__main__":
    wsxtest.main()
