#!/usr/bin/env python3
"""Benchmarks for `wsx connect` against independent clients, measured in the same run.

  one-shot:   wall time of `wsx connect URL --send TOKEN -n 1`, beside a one-shot node `ws` client
              (tests/bench/node_oneshot_client.js) and a python3-websockets one-liner: each
              connects, sends TOKEN, prints the echo, closes. Median of N runs each, interleaved.
  pipe:       lines/s for 100,000 lines through the client to an echo server and back,
              beside a node `ws` pipe client (tests/bench/node_pipe_client.js), median of N.

Every run of every tool is checked before it is timed into a figure: exit status 0 and, on its
stdout, the echo of that run's own token (one-shot) or every line sent, in order (pipe). A run
that fails is printed as FAILED and the script exits 1.

wscat is not compared: `wscat -x` cannot end when the echo arrives. It closes after a fixed
wait (-w, 2 s by default) whatever happens, and with stdin at EOF and no terminal it exits 0
before the server answers, so its time is never that of the job.

All traffic is on 127.0.0.1. The echo server is `wsx serve` pinned to core 0; this script pins
itself to core 1 and its clients inherit that, so the two never share a core and no wrapper
process (taskset) is timed with the clients. Prints medians and ratios.

usage: tests/bench/connect_bench.py [--wsx build/wsx] [--runs 20] [--pipe-runs 5] [--lines 100000] [--smoke]
Needs node with the npm package `ws` (tests/node_modules) and python3-websockets; missing: exit 77.
--smoke: 3 one-shot runs, one pipe run of 2,000 lines: what CTest runs (bench_smoke.connect).
"""
import argparse
import filecmp
import os
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

PY_ONESHOT = ("import asyncio,sys,websockets\n"
              "async def m():\n"
              "  async with websockets.connect(sys.argv[1], compression=None) as w:\n"
              "    await w.send(sys.argv[2]); print(await w.recv())\n"
              "asyncio.run(m())")


def timed(args, stdin=None, stdout=subprocess.PIPE, expect=None, env=None):
    """Wall time of one client run; raises BenchError unless it exited 0 and (with `expect`)
    printed exactly the expected echo."""
    t0 = time.perf_counter()
    r = subprocess.run(args, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=stdout,
                       stderr=subprocess.PIPE, timeout=120, env=env)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"exit {r.returncode}: {benchlib.tail(r.stderr)}")
    if expect is not None and r.stdout != expect:
        raise BenchError(f"printed {r.stdout[:200]!r}, not the echo {expect!r}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pipe-runs", type=int, default=5)
    ap.add_argument("--lines", type=int, default=100000)
    benchlib.add_common_args(ap)
    a = ap.parse_args()
    if a.smoke:
        a.runs, a.pipe_runs, a.lines = 3, 1, 2000
    benchlib.require(node_ws=True, python_websockets=True)
    env = benchlib.node_env()
    server, port = benchlib.start_server(benchlib.pin(0, [a.wsx, "serve", "127.0.0.1:0"]), "wsx serve")
    url = f"ws://127.0.0.1:{port}/"
    if benchlib.can_pin():
        os.sched_setaffinity(0, {1})
    rounds = benchlib.Rounds()
    try:
        jobs = {
            "wsx connect --send T -n 1": lambda t: [a.wsx, "connect", url, "--send", t, "-n", "1"],
            "node ws one-shot": lambda t: ["node", os.path.join(HERE, "node_oneshot_client.js"), url, t],
            "python3 websockets": lambda t: ["/usr/bin/python3", "-c", PY_ONESHOT, url, t],
        }
        times = {k: [] for k in jobs}
        for i in range(a.runs):  # interleaved, so drift hits every client alike
            for k, cmd in jobs.items():
                token = f"echo-{i}-{os.getpid()}"
                times[k].append(rounds.run(f"one-shot run {i + 1} {k}", timed, cmd(token), env=env,
                                           expect=(token + "\n").encode()))
        print(f"one-shot connect+send+receive echo+close, median of {a.runs} (lower is better)")
        ok = {k: [x for x in v if x is not None] for k, v in times.items()}
        base = statistics.median(ok["wsx connect --send T -n 1"]) if ok["wsx connect --send T -n 1"] else None
        for k, v in times.items():
            cell = benchlib.figure(v, lambda m: f"{m * 1000:8.1f} ms", a.runs)
            ratio = f"   {statistics.median(ok[k]) / base:6.1f}x wsx" if base and ok[k] else ""
            print(f"  {k:28} {cell}{ratio}")

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

            def pipe_run(k, cmd):
                out = os.path.join(d, "out.txt")
                with open(src, "rb") as fi, open(out, "wb") as fo:
                    dt = timed(cmd, stdin=fi, stdout=fo, env=env)
                if not filecmp.cmp(src, out, shallow=False):
                    raise BenchError(f"echoed {os.path.getsize(out)} bytes that are not the "
                                     f"{os.path.getsize(src)} sent, line for line")
                return a.lines / dt
            for i in range(a.pipe_runs):
                for k, cmd in pipe_jobs.items():
                    rates[k].append(rounds.run(f"pipe run {i + 1} {k}", pipe_run, k, cmd))
        print(f"\npipe: {a.lines} lines through an echo server and back, median of {a.pipe_runs} (higher is better)")
        ok = {k: [x for x in v if x is not None] for k, v in rates.items()}
        base = statistics.median(ok["node ws pipe client"]) if ok["node ws pipe client"] else None
        for k, v in rates.items():
            cell = benchlib.figure(v, lambda m: f"{m:10.0f} lines/s", a.pipe_runs)
            ratio = f"   {statistics.median(ok[k]) / base:6.1f}x node" if base and ok[k] else ""
            print(f"  {k:28} {cell}{ratio}")
        benchlib.check_alive(server, "wsx serve")
    finally:
        benchlib.stop(server)
    return rounds.exit_status()


if __name__ == "__main__":
    sys.exit(main())
