// Pipe client for comparison: each stdin line becomes a text message, each received message
// a stdout line; after stdin ends it waits for every echo, then closes (as `wsx connect` does).
const WebSocket = require('ws');
const readline = require('readline');
const ws = new WebSocket(process.argv[2]);
let sent = 0, received = 0, ended = false;
const out = [];
ws.on('open', () => {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => { ws.send(line); sent++; });
  rl.on('close', () => { ended = true; if (received === sent) ws.close(1000); });
});
ws.on('message', (data) => {
  out.push(data.toString());
  if (out.length >= 4096) { process.stdout.write(out.join('\n') + '\n'); out.length = 0; }
  received++;
  if (ended && received === sent) ws.close(1000);
});
ws.on('close', () => { if (out.length) process.stdout.write(out.join('\n') + '\n'); });
