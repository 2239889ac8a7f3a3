// One-shot client for comparison with `wsx connect URL --send MSG -n 1` (tests/bench/connect_bench.py):
// connects, sends MSG as one text message, prints the first message received on stdout, closes
// (1000) and exits once the close handshake is done: 0 only if a message came back.
const WebSocket = require('ws');
const [url, msg] = process.argv.slice(2);
const ws = new WebSocket(url, { perMessageDeflate: false });
let got = false;
ws.on('open', () => ws.send(msg));
ws.once('message', (data) => {
  got = true;
  process.stdout.write(data.toString() + '\n', () => ws.close(1000));
});
ws.on('close', () => process.exit(got ? 0 : 1));
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
