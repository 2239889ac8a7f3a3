#!/usr/bin/python3
"""Echo throughput driven by `wsx bench` versus a node `ws` load script, in one run.

Servers: `wsx serve` and a node `ws` echo server. Loads: 100 connections pipelined with 32
messages in flight, and 100 connections ping-pong (1 in flight), 32-byte text messages.
Servers run on CPU 0 and generators on CPU 1 (taskset), both generators single-threaded, and
the runs being compared are interleaved; the figures quoted are medians of the rounds, and
the ratio wsx/node. wsx bench's own CPU per message comes from its JSON result.

With --floor (the default), both generators also drive tests/bench/serve_floor.cpp (compiled
here with g++), an echo server doing the least work per message any server can (one recv and one
send per ping-pong message). No server lets a generator go faster on this machine, so its rates
over the node script's rate against `wsx serve` bound what any ratio can reach here.

Both generators check their work: `wsx bench` must exit 0 with no error of any kind and every
connection established; the node script checks every echo's type and payload, and when the time
is up stops sending and waits for every echo still due (lost ones are errors). A run with any
error is printed as FAILED, its figure left out (the cell says so), and the script exits 1.

Usage: tests/bench/bench_echo_vs_node.py [--wsx PATH] [--seconds 5] [--rounds 3] [--no-floor]
                                         [--floor-bin PATH] [--smoke]
The npm package `ws` comes from tests/node_modules, pinned by tests/package-lock.json
(`tests/run.sh deps`); nothing is installed at run time, and without it the script exits 77.
--smoke: one round of 1 s runs with 10 connections: what CTest runs (bench_smoke.echo_vs_node).
tcpkali is not compared: it is neither packaged by Debian nor published on npm.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import BenchError  # noqa: E402

NODE_SERVER = r"""
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('listening', () => console.log('listening on 127.0.0.1:' + wss.address().port));
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
"""

# Each connection keeps `inflight` messages outstanding; counts echoes during the window. Every
# echo must be the text payload sent; when the window ends it stops sending and waits (5 s at
# most) for the echoes still due. Prints one JSON line; exits 1 on any error.
NODE_LOAD = r"""
const WebSocket = require('ws');
const [url, conns, inflight, seconds] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const payload = 'x'.repeat(32);
let received = 0, open = 0, measuring = false, sending = true, t0 = 0, cpu0 = null, secs = 0, cpu = null;
let outstanding = 0, errors = 0;
const error = (what) => { if (++errors <= 10) console.error('node load: error: ' + what); };
setTimeout(() => { if (!measuring) { console.error(`only ${open} of ${conns} connections opened`); process.exit(1); } }, 15000);
for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('open', () => {
    if (++open === conns) {
      measuring = true; t0 = process.hrtime.bigint(); cpu0 = process.cpuUsage();
      setTimeout(done, seconds * 1000);
    }
    for (let k = 0; k < inflight; k++) { ws.send(payload); outstanding++; }
  });
  ws.on('message', (data, isBinary) => {
    outstanding--;
    if (isBinary || data.toString() !== payload) { error(`an echo that is not the message sent (${data.length} bytes)`); }
    else if (measuring && sending) received++;
    if (sending) { ws.send(payload); outstanding++; }
    else if (outstanding === 0) finish();
  });
  ws.on('close', (code) => { if (sending || outstanding) { error(`the server closed a connection (${code})`); finish(); } });
  ws.on('error', (e) => { console.error(e.message); process.exit(1); });
}
function done() {
  secs = Number(process.hrtime.bigint() - t0) / 1e9;
  cpu = process.cpuUsage(cpu0);
  sending = false;
  if (outstanding === 0) finish();
  setTimeout(finish, 5000);
}
function finish() {
  if (outstanding > 0) { error(`${outstanding} message(s) never echoed`); errors += outstanding - 1; }
  console.log(JSON.stringify({ rate: received / secs, cpu_per_msg_ns: (cpu.user + cpu.system) * 1000 / received, errors }));
  process.exit(errors ? 1 : 0);
}
"""


def start(args, what, pattern=r"listening on ws://127\.0\.0\.1:(\d+)", env=None, on="stderr"):
    """Starts a server on port 0; returns it and its URL (the port read back from its output)."""
    p, port = benchlib.start_server(args, what, pattern, on=on, env=env)
    return p, f"ws://127.0.0.1:{port}/"


def wsx_load(wsx, url, conns, inflight, seconds, tmp, label):
    out = os.path.join(tmp, f"{label}.json")
    r = subprocess.run(benchlib.pin(1, [wsx, "bench", url, "-c", str(conns), "--in-flight", str(inflight),
                                        "--threads", "1", "-d", f"{seconds + 1}s", "--warmup", "1s", "--no-progress",
                                        "--json", out]),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=seconds + 60)
    if r.returncode != 0:
        raise BenchError(f"wsx bench exit {r.returncode}: {benchlib.tail(r.stderr)}")
    with open(out) as f:
        j = json.load(f)
    errors = {k: v for k, v in (j.get("errors") or {}).items() if v}
    c = j["connections"]
    if errors or c.get("failed") or c.get("established") != conns:
        raise BenchError(f"wsx bench: errors {errors}, {c.get('established')} of {conns} connections "
                         f"established: {c.get('errors')}")
    if not j["messages"]["received"]:
        raise BenchError("wsx bench: no echo received")
    return j["messages"]["rate"], j["cpu"]["per_message_ns"]


def node_load(script, url, conns, inflight, seconds, env):
    r = subprocess.run(benchlib.pin(1, ["node", script, url, str(conns), str(inflight), str(seconds)]),
                       capture_output=True, text=True, env=env, timeout=seconds + 60)
    if r.returncode != 0:
        raise BenchError(f"node load script exit {r.returncode}: {benchlib.tail(r.stderr + r.stdout)}")
    j = json.loads(r.stdout.strip().splitlines()[-1])
    if j["errors"] or not j["rate"]:
        raise BenchError(f"node load script: {r.stdout.strip()}")
    return j["rate"], j["cpu_per_msg_ns"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.environ.get("WSX") or shutil.which("wsx")
                    or os.path.join(HERE, "..", "..", "build", "wsx"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also drive the floor server (tests/bench/serve_floor.cpp, needs g++ and libcrypto)")
    ap.add_argument("--floor-bin", help="a built tests/bench/serve_floor.cpp (default: compiled here with g++)")
    benchlib.add_common_args(ap)
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds, a.connections = 1, 1, 10
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: servers on CPU 0, generators on CPU 1")
    benchlib.require(node_ws=True)
    env = benchlib.node_env()
    tmp = tempfile.mkdtemp(prefix="wsx-bench-")
    server_js = os.path.join(tmp, "server.js")
    load_js = os.path.join(tmp, "load.js")
    with open(server_js, "w") as f:
        f.write(NODE_SERVER)
    with open(load_js, "w") as f:
        f.write(NODE_LOAD)
    floor_bin = benchlib.build_tool("serve_floor", a.floor_bin, tmp, ["-lcrypto"]) if a.floor else None

    servers = []
    rounds = benchlib.Rounds()
    try:
        p, url = start(benchlib.pin(0, [a.wsx, "serve", "127.0.0.1:0"]), "wsx serve")
        servers.append(("wsx serve", p, url))
        p, url = start(benchlib.pin(0, ["node", server_js]), "node ws server", r"listening on 127\.0\.0\.1:(\d+)",
                       env, on="stdout")
        servers.append(("node ws", p, url))
        if a.floor:
            p, url = start(benchlib.pin(0, [floor_bin, "0"]), "floor server")
            servers.append(("floor", p, url))

        rows = []
        for name, proc, url in servers:
            for mode, inflight in (("pipelined 32", 32), ("ping-pong", 1)):
                wsx_runs, node_runs = [], []
                for rnd in range(a.rounds):  # interleaved: drift hits both generators alike
                    label = f"round {rnd + 1} {name} {mode}"
                    wsx_runs.append(rounds.run(f"{label} wsx bench", wsx_load, a.wsx, url, a.connections, inflight,
                                               a.seconds, tmp, f"r{rnd}-{len(rows)}"))
                    node_runs.append(rounds.run(f"{label} node ws script", node_load, load_js, url, a.connections,
                                                inflight, a.seconds, env))
                    benchlib.check_alive(proc, name)
                rows.append((name, mode, wsx_runs, node_runs))
                w = benchlib.figure([x and x[0] for x in wsx_runs], lambda v: f"{v:,.0f} msg/s", a.rounds)
                n = benchlib.figure([x and x[0] for x in node_runs], lambda v: f"{v:,.0f} msg/s", a.rounds)
                print(f"{name:10} {mode:13} wsx bench {w}  node ws {n}", file=sys.stderr)

        def med(runs, i):
            ok = [x[i] for x in runs if x is not None]
            return statistics.median(ok) if ok else None
        print()
        print(f"{a.connections} connections, 32-byte text echo, {a.seconds:g}s per run, median of {a.rounds} "
              "interleaved rounds;")
        print("servers pinned to CPU 0, generators to CPU 1 (one thread each).")
        print()
        print(f"{'server':10} {'load':13} {'wsx bench msg/s':>16} {'node ws msg/s':>14} {'ratio':>6} "
              f"{'wsx CPU/msg':>12} {'node CPU/msg':>13}")
        num = lambda v, f: format(v, f) if v is not None else "FAILED"  # noqa: E731
        for name, mode, wr, nr in rows:
            w, n, wc, nc = med(wr, 0), med(nr, 0), med(wr, 1), med(nr, 1)
            ratio = w / n if w and n else None
            print(f"{name:10} {mode:13} {num(w, '16,.0f')} {num(n, '14,.0f')} {num(ratio, '6.2f')} "
                  f"{num(wc and f'{wc:.0f}ns', '>12')} {num(nc and f'{nc:.0f}ns', '>13')}")
        print()
        if a.floor:
            # The floor is the fastest server possible here: a generator's rate against it, over the
            # node script's against wsx serve, is the most any wsx bench/node ratio could show.
            base = {mode: med(nr, 0) for name, mode, _, nr in rows if name == "wsx serve"}
            print("Against the floor (tests/bench/serve_floor.cpp: one recv and one send per echo, the most any")
            print("server allows here), each generator's rate over the node script's rate against wsx serve:")
            print()
            print(f"{'load':13} {'wsx bench msg/s':>16} {'/ node@wsx':>11} {'node ws msg/s':>14} {'/ node@wsx':>11}")
            for name, mode, wr, nr in rows:
                if name == "floor":
                    w, n, b = med(wr, 0), med(nr, 0), base.get(mode)
                    print(f"{mode:13} {num(w, '16,.0f')} {num(w and b and w / b, '10.2f')}x {num(n, '14,.0f')} "
                          f"{num(n and b and n / b, '10.2f')}x")
            print()
        print("tcpkali: not compared (not packaged by Debian, not published on npm).")
    except BenchError as e:
        rounds.fail("start-up", e)
    finally:
        for _, p, _ in servers:
            benchlib.stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    return rounds.exit_status()


if __name__ == "__main__":
    sys.exit(main())
