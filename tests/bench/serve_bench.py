#!/usr/bin/python3
"""`wsx serve` beside a node `ws` echo server, a python websockets echo server and a floor, in one run.

Load comes from tests/bench/serve_loadgen.cpp (a small epoll client, compiled here with g++),
so no server is measured with its own code. Servers run on CPU 0, the generator on CPU 1
(taskset); the servers are measured in turns, round after round, and the medians of the rounds
and the ratios wsx/node are printed. Under each throughput figure: the server CPU time per message
(or handshake), read from /proc, since a load generator near its own ceiling hides how much
each server has left.

The floor (tests/bench/serve_floor.cpp, compiled here) is the least work any correct echo server
can do per message: one recv and one send per ping-pong message, nothing else. What it reaches is
the ceiling this machine's kernel allows, so floor/node says how far any server could get beyond
node, and wsx/floor how close wsx is to that ceiling (on the CPU line: wsx's CPU per message
over the floor's).

Scenarios (32-byte text unless stated):
  pipelined   100 connections, 32 messages in flight each         (msgs/s)
  pingpong    100 connections, 1 message in flight each           (msgs/s)
  binary16k   100 connections, 16 KiB binary, 1 in flight each    (MB/s)
  handshake   connect + upgrade + close, 10 at a time             (handshakes/s)
  latency     100 connections, 10,000 msgs/s in total (open loop)  (p50/p99 round trip, us)
  idle        RSS growth per idle connection with N connections   (KiB/conn)

Every figure is of verified work: the generator checks each handshake's 101, each echo's opcode
and payload and that every message sent was echoed, and exits non-zero on any error. A round that
fails (an error, a server that did not start or died) is printed as FAILED, its figure is left
out of the median (the cell says how many rounds failed), and the script exits 1.

Usage: tests/bench/serve_bench.py [--wsx PATH] [--seconds 3] [--rounds 3] [--only a,b] [--idle 10000]
                                  [--servers wsx,node,python,floor] [--smoke]
                                  [--loadgen PATH] [--floor-bin PATH]  (built by CMake; else g++ here)
Needs: g++, node with the npm package `ws` (tests/node_modules, see tests/package.json),
python3-websockets, taskset, OpenSSL's libcrypto headers (for the floor). A missing peer: exit 77.
--smoke: one round, 1 s per scenario, 10 connections: what CTest runs (bench_smoke.serve).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import BenchError  # noqa: E402

ROOT = benchlib.ROOT

NODE_SERVER = r"""
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 64 << 20 });
wss.on('listening', () => console.error('listening on ws://127.0.0.1:' + wss.address().port));
wss.on('connection', (ws) => ws.on('message', (d, isBinary) => ws.send(d, { binary: isBinary })));
"""

PY_SERVER = r"""
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None, compression=None) as s:
        port = s.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}", file=sys.stderr, flush=True)
        await asyncio.Future()
asyncio.run(main())
"""

SCENARIOS = {
    # name: (mode, conns, inflight, size, unit)
    "pipelined": ("text", 100, 32, 32, "msgs/s"),
    "pingpong": ("text", 100, 1, 32, "msgs/s"),
    "binary16k": ("binary", 100, 1, 16384, "MB/s"),
    "handshake": ("handshake", 10, 0, 0, "hs/s"),
    "latency": ("latency", 100, 10000, 32, "us p50/p99"),
}


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def start_server(kind, wsx, tmp, floor_bin=None):
    """Starts one echo server on CPU 0, on port 0; returns (process, port read back from it)."""
    if kind == "wsx":
        cmd = [wsx, "serve", "127.0.0.1:0", "-q", "--threads", "1", "--max-message-size", "64MiB"]
    elif kind == "floor":
        cmd = [floor_bin or os.path.join(tmp, "serve_floor"), "0"]
    elif kind == "node":
        path = os.path.join(tmp, "node_echo.js")
        with open(path, "w") as f:
            f.write(NODE_SERVER)
        cmd = ["node", path]
    else:
        path = os.path.join(tmp, "py_echo.py")
        with open(path, "w") as f:
            f.write(PY_SERVER)
        cmd = ["/usr/bin/python3", path]
    return benchlib.start_server(benchlib.pin(0, cmd), f"{kind} server", env=benchlib.node_env(),
                                 preexec_fn=raise_nofile)


stop = benchlib.stop


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scenario_params(scenario, smoke):
    mode, conns, inflight, size, unit = SCENARIOS[scenario]
    if smoke:  # few connections, a light open-loop rate
        conns = min(conns, 10)
        if mode == "latency":
            inflight = 1000
    return mode, conns, inflight, size, unit


def run_load(loadgen, server, port, scenario, seconds, smoke=False):
    """Returns (figure, server CPU microseconds per message or handshake); for latency, (p50, p99).
    Raises BenchError unless the generator did the work without an error (see serve_loadgen.cpp)."""
    mode, conns, inflight, size, unit = scenario_params(scenario, smoke)
    cpu0 = benchlib.cpu_seconds(server.pid)
    r = subprocess.run(benchlib.pin(1, [loadgen, "127.0.0.1", str(port), mode, str(conns), str(inflight), str(size),
                                        str(seconds)]),
                       capture_output=True, timeout=seconds * 4 + 120, preexec_fn=raise_nofile)
    cpu = benchlib.cpu_seconds(server.pid) - cpu0
    benchlib.check_alive(server, "the server")
    if r.returncode != 0:
        raise BenchError(f"load generator exit {r.returncode}: {benchlib.tail(r.stderr)}")
    j = json.loads(r.stdout)
    if j.get("errors") != 0 or not j.get("messages"):
        raise BenchError(f"load generator reported no work or errors: {r.stdout.decode().strip()}")
    if mode == "latency":
        return (j["p50_us"], j["p99_us"])
    per = cpu * 1e6 / j["all"] if j.get("all") else None
    return (j["bytes"] / j["seconds"] / 1e6 if unit == "MB/s" else j["rate"]), per


def measure_idle(loadgen, kind, wsx, tmp, n, floor_bin=None, hold=1.0):
    """RSS growth per idle upgraded connection, in KiB."""
    p, port = start_server(kind, wsx, tmp, floor_bin)
    g = None
    try:
        time.sleep(0.5)
        before = rss_kib(p.pid)
        g = subprocess.Popen(benchlib.pin(1, [loadgen, "127.0.0.1", str(port), "idle", str(n), "0", "0", "60"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=raise_nofile)
        benchlib.read_line(g, g.stdout, rf"^ready {n}$", 30, "load generator (idle)")
        time.sleep(hold)
        benchlib.check_alive(p, f"{kind} server")
        after = rss_kib(p.pid)
        return (after - before) / n
    finally:
        if g is not None:
            g.kill()
            g.wait()
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="pipelined,pingpong,binary16k,handshake,latency,idle")
    ap.add_argument("--idle", type=int, default=10000, help="connections for the idle-memory scenario")
    ap.add_argument("--servers", default="wsx,node,python,floor")
    ap.add_argument("--loadgen", help="a built tests/bench/serve_loadgen.cpp (default: compiled here with g++)")
    ap.add_argument("--floor-bin", help="a built tests/bench/serve_floor.cpp (default: compiled here with g++)")
    benchlib.add_common_args(ap)
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds, a.idle = 1, 1, 100
    servers = a.servers.split(",")
    benchlib.require(node_ws="node" in servers, python_websockets="python" in servers)
    tmp = tempfile.mkdtemp(prefix="wsx-serve-bench-")
    loadgen = benchlib.build_tool("serve_loadgen", a.loadgen, tmp)
    floor_bin = benchlib.build_tool("serve_floor", a.floor_bin, tmp, ["-lcrypto"]) if "floor" in servers else None
    only = a.only.split(",")
    rounds = benchlib.Rounds()
    for scenario in [s for s in only if s in SCENARIOS]:
        unit = SCENARIOS[scenario][4]
        per = {k: [] for k in servers}
        for rnd in range(a.rounds):
            for kind in servers:
                def one():
                    p, port = start_server(kind, a.wsx, tmp, floor_bin)
                    try:
                        return run_load(loadgen, p, port, scenario, a.seconds, a.smoke)
                    finally:
                        stop(p)
                per[kind].append(rounds.run(f"round {rnd + 1} {scenario} {kind}", one))
        if scenario == "latency":
            # Medians of p50 and of p99 over the rounds; lower is better.
            cells = {k: (benchlib.figure([x and x[0] for x in v], lambda m: f"p50 {m:.0f}us", a.rounds),
                         benchlib.figure([x and x[1] for x in v], lambda m: f"p99 {m:.0f}us", a.rounds))
                     for k, v in per.items()}
            print(f"{scenario:10} " + "  ".join(f"{k} {c[0]} {c[1]}" if c[0] != "FAILED" else f"{k} FAILED"
                                                for k, c in cells.items()), flush=True)
            continue
        ok = {k: [x[0] for x in v if x is not None] for k, v in per.items()}
        med = {k: statistics.median(v) if v else None for k, v in ok.items()}
        ratio = f"{med['wsx'] / med['node']:.1f}x node" if med.get("wsx") and med.get("node") else "-"
        # The floor beside wsx/node: the most any server could reach here, and wsx's share of it.
        ceiling = ""
        if med.get("floor") and med.get("node"):
            ceiling += f"   floor/node {med['floor'] / med['node']:.1f}x node"
        if med.get("floor") and med.get("wsx"):
            ceiling += f"   wsx/floor {med['wsx'] / med['floor']:.2f}"
        print(f"{scenario:10} " + "  ".join(
            f"{k} " + benchlib.figure([x and x[0] for x in v], lambda m: f"{m:,.0f} {unit}", a.rounds)
            for k, v in per.items()) + f"   wsx/node {ratio}" + ceiling, flush=True)
        # Server CPU per message: what each server spends, whatever the load generator's ceiling.
        cpu = {k: statistics.median(x[1] for x in v if x) if v and all(x and x[1] for x in v) else None
               for k, v in per.items()}
        if cpu.get("wsx") and cpu.get("node"):
            what = "handshake" if scenario == "handshake" else "msg"
            floor = f"   wsx/floor {cpu['wsx'] / cpu['floor']:.1f}x" if cpu.get("floor") else ""
            print(f"{'':10} server CPU per {what}: " + "  ".join(f"{k} {v:.2f}us" for k, v in cpu.items() if v)
                  + f"   node/wsx {cpu['node'] / cpu['wsx']:.1f}x" + floor, flush=True)
    if "idle" in only:
        row = {}
        for kind in servers:
            row[kind] = rounds.run(f"idle {kind}", measure_idle, loadgen, kind, a.wsx, tmp, a.idle, floor_bin,
                                   0.3 if a.smoke else 1.0)
        print(f"{'idle':10} " + "  ".join(f"{k} {v:.2f} KiB/conn" if v is not None else f"{k} FAILED"
                                          for k, v in row.items()) + f"   ({a.idle} connections)", flush=True)
    return rounds.exit_status()


if __name__ == "__main__":
    sys.exit(main())
