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

Usage: tests/bench/bench_echo_vs_node.py [--wsx PATH] [--seconds 5] [--rounds 3] [--no-floor]
The npm package `ws` is installed into ~/.cache/wsx-bench (outside the repository).
tcpkali is not compared: it is neither packaged by Debian nor published on npm.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "wsx-bench")

NODE_SERVER = r"""
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('listening', () => console.log('listening on 127.0.0.1:' + wss.address().port));
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
"""

# Each connection keeps `inflight` messages outstanding; counts echoes during the window.
NODE_LOAD = r"""
const WebSocket = require('ws');
const [url, conns, inflight, seconds] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const payload = 'x'.repeat(32);
let received = 0, open = 0, measuring = false, t0 = 0, cpu0 = null;
setTimeout(() => { if (!measuring) { console.error(`only ${open} of ${conns} connections opened`); process.exit(1); } }, 15000);
for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('open', () => {
    if (++open === conns) {
      measuring = true; t0 = process.hrtime.bigint(); cpu0 = process.cpuUsage();
      setTimeout(done, seconds * 1000);
    }
    for (let k = 0; k < inflight; k++) ws.send(payload);
  });
  ws.on('message', () => { if (measuring) received++; ws.send(payload); });
  ws.on('error', (e) => { console.error(e.message); process.exit(1); });
}
function done() {
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({ rate: received / secs, cpu_per_msg_ns: (cpu.user + cpu.system) * 1000 / received }));
  process.exit(0);
}
"""


def ensure_ws():
    mod = os.path.join(CACHE, "node_modules", "ws")
    if not os.path.isdir(mod):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", CACHE, "--no-audit", "--no-fund", "ws@8"], check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
    return os.path.join(CACHE, "node_modules")


def start(args, pattern, env=None, on_stderr=False):
    """Starts a server; returns it and the first group of `pattern` in its listening line."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 15
    stream = p.stderr if on_stderr else p.stdout
    while time.monotonic() < deadline:
        line = stream.readline()
        m = re.search(pattern, line)
        if m:
            # Keep draining: a server blocked on a full stderr pipe would stall the benchmark.
            for s in (p.stdout, p.stderr):
                threading.Thread(target=lambda s=s: [None for _ in s], daemon=True).start()
            return p, m.group(1)
    p.kill()
    raise RuntimeError(f"{args[0]} did not start")


def wsx_load(wsx, url, inflight, seconds, tmp):
    out = os.path.join(tmp, "r.json")
    subprocess.run(["taskset", "-c", "1", wsx, "bench", url, "-c", "100", "--in-flight", str(inflight), "--threads", "1",
                    "-d", f"{seconds + 1}s", "--warmup", "1s", "--json", out], check=True, stdout=subprocess.DEVNULL,
                   timeout=seconds + 60)
    with open(out) as f:
        j = json.load(f)
    return j["messages"]["rate"], j["cpu"]["per_message_ns"], j["errors"]


def node_load(script, url, inflight, seconds, env):
    r = subprocess.run(["taskset", "-c", "1", "node", script, url, "100", str(inflight), str(seconds)], check=True,
                       capture_output=True, text=True, env=env, timeout=seconds + 60)
    j = json.loads(r.stdout.strip().splitlines()[-1])
    return j["rate"], j["cpu_per_msg_ns"], {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wsx", default=os.environ.get("WSX") or shutil.which("wsx")
                    or os.path.join(HERE, "..", "..", "build", "wsx"))
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                    help="also drive the floor server (tests/bench/serve_floor.cpp, needs g++ and libcrypto)")
    a = ap.parse_args()
    if os.cpu_count() < 2:
        sys.exit("needs 2 CPUs: servers on CPU 0, generators on CPU 1")
    node_path = ensure_ws()
    env = dict(os.environ, NODE_PATH=node_path)
    tmp = tempfile.mkdtemp(prefix="wsx-bench-")
    server_js = os.path.join(tmp, "server.js")
    load_js = os.path.join(tmp, "load.js")
    open(server_js, "w").write(NODE_SERVER)
    open(load_js, "w").write(NODE_LOAD)
    floor_bin = os.path.join(tmp, "serve_floor")
    if a.floor and subprocess.run(["g++", "-O2", "-std=c++20", "-o", floor_bin, os.path.join(HERE, "serve_floor.cpp"),
                                   "-lcrypto"]).returncode != 0:
        print("floor server did not build: measuring without it", file=sys.stderr)
        a.floor = False

    servers = []
    try:
        p, url = start(["taskset", "-c", "0", a.wsx, "serve", "127.0.0.1:0"], r"listening on (ws://\S+)", on_stderr=True)
        servers.append(("wsx serve", p, url + "/"))
        p, port = start(["taskset", "-c", "0", "node", server_js], r"listening on 127\.0\.0\.1:(\d+)", env)
        servers.append(("node ws", p, f"ws://127.0.0.1:{port}/"))
        if a.floor:
            p, url = start(["taskset", "-c", "0", floor_bin, "0"], r"listening on (ws://\S+)", on_stderr=True)
            servers.append(("floor", p, url + "/"))

        rows = []
        for name, _, url in servers:
            for mode, inflight in (("pipelined 32", 32), ("ping-pong", 1)):
                wsx_rates, node_rates, wsx_cpu, node_cpu = [], [], [], []
                for _ in range(a.rounds):  # interleaved: drift hits both generators alike
                    rate, cpu, errors = wsx_load(a.wsx, url, inflight, a.seconds, tmp)
                    if errors:
                        print(f"  wsx bench errors against {name}: {errors}", file=sys.stderr)
                    wsx_rates.append(rate)
                    wsx_cpu.append(cpu)
                    rate, cpu, _ = node_load(load_js, url, inflight, a.seconds, env)
                    node_rates.append(rate)
                    node_cpu.append(cpu)
                w, n = statistics.median(wsx_rates), statistics.median(node_rates)
                rows.append((name, mode, w, n, w / n, statistics.median(wsx_cpu), statistics.median(node_cpu)))
                print(f"{name:10} {mode:13} wsx bench {w:12,.0f} msg/s  node ws {n:10,.0f} msg/s  ratio {w / n:5.2f}",
                      file=sys.stderr)
        print()
        print(f"100 connections, 32-byte text echo, {a.seconds:g}s per run, median of {a.rounds} interleaved rounds;")
        print("servers pinned to CPU 0, generators to CPU 1 (one thread each).")
        print()
        print(f"{'server':10} {'load':13} {'wsx bench msg/s':>16} {'node ws msg/s':>14} {'ratio':>6} "
              f"{'wsx CPU/msg':>12} {'node CPU/msg':>13}")
        for name, mode, w, n, ratio, wc, nc in rows:
            print(f"{name:10} {mode:13} {w:16,.0f} {n:14,.0f} {ratio:6.2f} {wc:10.0f}ns {nc:11.0f}ns")
        print()
        if a.floor:
            # The floor is the fastest server possible here: a generator's rate against it, over the
            # node script's against wsx serve, is the most any wsx bench/node ratio could show.
            base = {mode: n for name, mode, _, n, _, _, _ in rows if name == "wsx serve"}
            print("Against the floor (tests/bench/serve_floor.cpp: one recv and one send per echo, the most any")
            print("server allows here), each generator's rate over the node script's rate against wsx serve:")
            print()
            print(f"{'load':13} {'wsx bench msg/s':>16} {'/ node@wsx':>11} {'node ws msg/s':>14} {'/ node@wsx':>11}")
            for name, mode, w, n, _, _, _ in rows:
                if name == "floor":
                    print(f"{mode:13} {w:16,.0f} {w / base[mode]:10.2f}x {n:14,.0f} {n / base[mode]:10.2f}x")
            print()
        print("tcpkali: not compared (not packaged by Debian, not published on npm).")
    finally:
        for _, p, _ in servers:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
