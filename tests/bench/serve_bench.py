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

Usage: tests/bench/serve_bench.py [--wsx PATH] [--seconds 3] [--rounds 3] [--only a,b] [--idle 10000]
                                  [--servers wsx,node,python,floor]
Needs: g++, node with the npm package `ws` (tests/node_modules, see tests/package.json),
python3-websockets, taskset, OpenSSL's libcrypto headers (for the floor).
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")

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


def start_server(kind, wsx, tmp):
    env = dict(os.environ, NODE_PATH=NODE_MODULES)
    if kind == "wsx":
        cmd = [wsx, "serve", "127.0.0.1:0", "-q", "--threads", "1", "--max-message-size", "64MiB"]
    elif kind == "floor":
        cmd = [os.path.join(tmp, "serve_floor"), "0"]
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
    p = subprocess.Popen(["taskset", "-c", "0", *cmd], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                         preexec_fn=raise_nofile)
    return p, listening_port(p, f"{kind} server")


def listening_port(p, what):
    """The port of a server's 'listening on ws://127.0.0.1:PORT' line (15 s at most)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = p.stderr.readline().decode()
        m = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    p.kill()
    raise SystemExit(f"{what} did not start")


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(loadgen, server_pid, port, scenario, seconds):
    """Returns (figure, server CPU microseconds per message or handshake), or None."""
    mode, conns, inflight, size, unit = SCENARIOS[scenario]
    cpu0 = cpu_seconds(server_pid)
    r = subprocess.run(["taskset", "-c", "1", loadgen, "127.0.0.1", str(port), mode, str(conns), str(inflight), str(size),
                        str(seconds)], capture_output=True, timeout=seconds * 4 + 120, preexec_fn=raise_nofile)
    cpu = cpu_seconds(server_pid) - cpu0
    if r.returncode != 0:
        return None
    j = json.loads(r.stdout)
    if mode == "latency":
        return (j["p50_us"], j["p99_us"])
    per = cpu * 1e6 / j["all"] if j.get("all") else None
    return (j["bytes"] / j["seconds"] / 1e6 if unit == "MB/s" else j["rate"]), per


def measure_idle(loadgen, kind, wsx, tmp, n):
    p, port = start_server(kind, wsx, tmp)
    try:
        time.sleep(0.5)
        before = rss_kib(p.pid)
        g = subprocess.Popen(["taskset", "-c", "1", loadgen, "127.0.0.1", str(port), "idle", str(n), "0", "0", "30"],
                             stdout=subprocess.PIPE, preexec_fn=raise_nofile)
        line = g.stdout.readline().decode()
        if not line.startswith("ready"):
            g.kill()
            return None
        time.sleep(1.0)
        after = rss_kib(p.pid)
        g.kill()
        g.wait()
        return (after - before) / n
    finally:
        stop(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="pipelined,pingpong,binary16k,handshake,latency,idle")
    ap.add_argument("--idle", type=int, default=10000, help="connections for the idle-memory scenario")
    ap.add_argument("--servers", default="wsx,node,python,floor")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="wsx-serve-bench-")
    loadgen = os.path.join(tmp, "serve_loadgen")
    subprocess.run(["g++", "-O2", "-std=c++20", "-o", loadgen, os.path.join(HERE, "serve_loadgen.cpp")], check=True)
    servers = a.servers.split(",")
    if "floor" in servers:
        subprocess.run(["g++", "-O2", "-std=c++20", "-o", os.path.join(tmp, "serve_floor"),
                        os.path.join(HERE, "serve_floor.cpp"), "-lcrypto"], check=True)
    only = a.only.split(",")
    results = {}
    for scenario in [s for s in only if s in SCENARIOS]:
        unit = SCENARIOS[scenario][4]
        per = {k: [] for k in servers}
        for _ in range(a.rounds):
            for kind in servers:
                p, port = start_server(kind, a.wsx, tmp)
                try:
                    v = run_load(loadgen, p.pid, port, scenario, a.seconds)
                finally:
                    stop(p)
                if v is not None:
                    per[kind].append(v)
        if scenario == "latency":
            # Medians of p50 and of p99 over the rounds; lower is better.
            row = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) if v else None
                   for k, v in per.items()}
            print(f"{scenario:10} " + "  ".join(f"{k} p50 {v[0]:.0f}us p99 {v[1]:.0f}us" if v else f"{k} failed"
                                                for k, v in row.items()), flush=True)
            continue
        med = {k: statistics.median(x[0] for x in v) if v else None for k, v in per.items()}
        results[scenario] = (med, unit)
        ratio = f"{med['wsx'] / med['node']:.1f}x node" if med.get("wsx") and med.get("node") else "-"
        # The floor beside wsx/node: the most any server could reach here, and wsx's share of it.
        ceiling = ""
        if med.get("floor") and med.get("node"):
            ceiling += f"   floor/node {med['floor'] / med['node']:.1f}x node"
        if med.get("floor") and med.get("wsx"):
            ceiling += f"   wsx/floor {med['wsx'] / med['floor']:.2f}"
        print(f"{scenario:10} " + "  ".join(f"{k} {v:,.0f} {unit}" if v else f"{k} failed" for k, v in med.items())
              + f"   wsx/node {ratio}" + ceiling, flush=True)
        # Server CPU per message: what each server spends, whatever the load generator's ceiling.
        cpu = {k: statistics.median(x[1] for x in v) if v and all(x[1] for x in v) else None for k, v in per.items()}
        if cpu.get("wsx") and cpu.get("node"):
            what = "handshake" if scenario == "handshake" else "msg"
            floor = f"   wsx/floor {cpu['wsx'] / cpu['floor']:.1f}x" if cpu.get("floor") else ""
            print(f"{'':10} server CPU per {what}: " + "  ".join(f"{k} {v:.2f}us" for k, v in cpu.items() if v)
                  + f"   node/wsx {cpu['node'] / cpu['wsx']:.1f}x" + floor, flush=True)
    if "idle" in only:
        row = {}
        for kind in servers:
            row[kind] = measure_idle(loadgen, kind, a.wsx, tmp, a.idle)
        print(f"{'idle':10} " + "  ".join(f"{k} {v:.2f} KiB/conn" if v is not None else f"{k} failed"
                                          for k, v in row.items()) + f"   ({a.idle} connections)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
