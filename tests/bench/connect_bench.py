#!/usr/bin/env python3
"""Benchmarks for `wsx connect` against independent clients, measured in the same run.

  one-shot:   wall time of `wsx connect URL --send x -n 1`, beside `wscat -c URL -x x` (npm)
              and a python3-websockets one-liner, median of N runs each, interleaved.
  pipe:       lines/s for 100,000 lines through the client to an echo server and back,
              beside a node `ws` pipe client (tests/bench/node_pipe_client.js), median of N.

All traffic is on 127.0.0.1. The echo server is `wsx serve` pinned to core 0; this script pins
itself to core 1 and its clients inherit that, so the two never share a core and no wrapper
process (taskset) is timed with the clients. Prints medians and ratios.

usage: tests/bench/connect_bench.py [--wsx build/wsx] [--runs 20] [--lines 100000]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")


def pin(core, args):
    return (["taskset", "-c", str(core)] if shutil.which("taskset") else []) + args


def start_server(wsx):
    p = subprocess.Popen(pin(0, [wsx, "serve", "127.0.0.1:0"]), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        m = re.search(r"listening on (ws://\S+)", line)
        if m:
            return p, m.group(1) + "/"
    p.kill()
    sys.exit("server did not start")


def timed(args, stdin=None, stdout=subprocess.DEVNULL):
    t0 = time.perf_counter()
    r = subprocess.run(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=120)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{args[0]} failed ({r.returncode}): {r.stderr.decode()[-500:]}")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pipe-runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=100000)
    a = ap.parse_args()
    wscat = os.path.join(NODE_MODULES, ".bin", "wscat")
    if not os.path.exists(wscat):
        sys.exit("npm peers missing: run `tests/run.sh deps` first")
    server, url = start_server(a.wsx)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})
    try:
        py = ("import asyncio,sys,websockets\n"
              "async def m():\n"
              "  async with websockets.connect(sys.argv[1]) as w:\n"
              "    await w.send('x'); await w.recv()\n"
              "asyncio.run(m())")
        jobs = {
            "wsx connect --send x -n 1": [a.wsx, "connect", url, "--send", "x", "-n", "1"],
            "wscat -x x": [wscat, "-c", url, "-x", "x"],
            "python3 websockets": ["/usr/bin/python3", "-c", py, url],
        }
        times = {k: [] for k in jobs}
        for _ in range(a.runs):  # interleaved, so drift hits every client alike
            for k, cmd in jobs.items():
                times[k].append(timed(cmd))
        print(f"one-shot connect+send+receive, median of {a.runs} (lower is better)")
        base = statistics.median(times["wsx connect --send x -n 1"])
        for k, v in times.items():
            m = statistics.median(v)
            print(f"  {k:28} {m * 1000:8.1f} ms   {m / base:6.1f}x wsx")

        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.txt")
            with open(src, "w") as f:
                for i in range(a.lines):
                    f.write(f"line {i} " + "x" * 24 + "\n")
            pipe_jobs = {
                "wsx connect (pipe)": [a.wsx, "connect", url],
                "node ws pipe client": ["node", os.path.join(HERE, "node_pipe_client.js"), url],
            }
            rates = {k: [] for k in pipe_jobs}
            for _ in range(a.pipe_runs):
                for k, cmd in pipe_jobs.items():
                    out = os.path.join(d, "out.txt")
                    with open(src, "rb") as fi, open(out, "wb") as fo:
                        dt = timed(cmd, stdin=fi, stdout=fo)
                    if os.path.getsize(out) != os.path.getsize(src):
                        sys.exit(f"{k}: echoed {os.path.getsize(out)} bytes, sent {os.path.getsize(src)}")
                    rates[k].append(a.lines / dt)
        print(f"\npipe: {a.lines} lines through an echo server and back, median of {a.pipe_runs} (higher is better)")
        base = statistics.median(rates["node ws pipe client"])
        for k, v in rates.items():
            m = statistics.median(v)
            print(f"  {k:28} {m:10.0f} lines/s   {m / base:6.1f}x node")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
