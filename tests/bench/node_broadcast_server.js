// A pub/sub broadcast server on node `ws`, the baseline for tests/bench/relay_bench.py:
// clients on the same path share a topic; each message goes to every other client of it,
// with its opcode. Prints 'listening on ws://127.0.0.1:PORT' on stderr.
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2] || 0), perMessageDeflate: false });
const topics = new Map();
wss.on('listening', () => console.error('listening on ws://127.0.0.1:' + wss.address().port));
wss.on('connection', (ws, req) => {
  const topic = req.url.split('?')[0];
  if (!topics.has(topic)) topics.set(topic, new Set());
  const subs = topics.get(topic);
  subs.add(ws);
  ws.on('message', (data, isBinary) => {
    for (const other of subs) if (other !== ws && other.readyState === 1) other.send(data, { binary: isBinary });
  });
  ws.on('close', () => subs.delete(ws));
});
