#!/usr/bin/python3
"""`wsx proxy` against direct `wsx serve`, in one run: echo throughput at full load and round-trip
latency at a moderate fixed rate, direct to `wsx serve` and through `wsx proxy` in front of it.

Load comes from tests/bench/serve_loadgen.cpp (compiled here with g++). `wsx serve` and
`wsx proxy` (one worker thread each) share CPU 0, the generator runs on CPU 1 (taskset). The two
paths are measured in turns, round after round; medians of the rounds and the ratios are printed.

Scenarios (32-byte text):
  pipelined   100 connections, 32 messages in flight each         (msgs/s)
  pingpong    100 connections, 1 message in flight each           (msgs/s)
  latency     100 connections, 10,000 msgs/s in total (open loop)  (p50/p99 round trip, us)

Targets (issue): proxied throughput >= 0.8x direct; <= 100 us added p99 at moderate load.

The generator verifies every echo (serve_loadgen.cpp); a round with any error, or whose server or
proxy did not start or died, is printed as FAILED and makes the exit status 1.

Usage: tests/bench/proxy_bench.py [--wsx PATH] [--seconds 3] [--rounds 3] [--only a,b] [--smoke]
                                  [--loadgen PATH]  (built by CMake; default: compiled here with g++)
--smoke: one round, 1 s per scenario, 10 connections: what CTest runs (bench_smoke.proxy).
"""
import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
import serve_bench  # noqa: E402  (reuses its server start/stop and load runner)

ROOT = benchlib.ROOT


def start_proxy(wsx, port):
    return benchlib.start_server(
        benchlib.pin(0, [wsx, "proxy", "--listen", "ws://127.0.0.1:0", "--to", f"ws://127.0.0.1:{port}", "-q",
                         "--threads", "1", "--health-interval", "0"]),
        "wsx proxy", preexec_fn=serve_bench.raise_nofile)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="pipelined,pingpong,latency")
    ap.add_argument("--loadgen", help="a built tests/bench/serve_loadgen.cpp (default: compiled here with g++)")
    benchlib.add_common_args(ap)
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds = 1, 1
    tmp = tempfile.mkdtemp(prefix="wsx-proxy-bench-")
    loadgen = benchlib.build_tool("serve_loadgen", a.loadgen, tmp)
    rounds = benchlib.Rounds()
    for scenario in a.only.split(","):
        per = {"direct": [], "proxy": []}
        for rnd in range(a.rounds):
            for path in ("direct", "proxy"):
                def one():
                    server, port = serve_bench.start_server("wsx", a.wsx, tmp)
                    proxy = None
                    try:
                        if path == "proxy":
                            proxy, port = start_proxy(a.wsx, port)
                        v = serve_bench.run_load(loadgen, server, port, scenario, a.seconds, a.smoke)
                        if proxy:
                            benchlib.check_alive(proxy, "wsx proxy")
                        return v
                    finally:
                        if proxy:
                            serve_bench.stop(proxy)
                        serve_bench.stop(server)
                v = rounds.run(f"round {rnd + 1} {scenario} {path}", one)
                if v is not None:
                    per[path].append(v)
        failed = {k: a.rounds - len(v) for k, v in per.items() if len(v) < a.rounds}
        note = ("   (FAILED rounds: " + ", ".join(f"{k} {n} of {a.rounds}" for k, n in failed.items()) + ")"
                if failed else "")
        if not per["direct"] or not per["proxy"]:
            print(f"{scenario:10} FAILED{note}", flush=True)
            continue
        if scenario == "latency":
            d50, d99 = statistics.median(x[0] for x in per["direct"]), statistics.median(x[1] for x in per["direct"])
            p50, p99 = statistics.median(x[0] for x in per["proxy"]), statistics.median(x[1] for x in per["proxy"])
            print(f"{scenario:10} direct p50 {d50:.0f}us p99 {d99:.0f}us  proxy p50 {p50:.0f}us p99 {p99:.0f}us"
                  f"   added p99 {p99 - d99:+.0f}us{note}", flush=True)
            continue
        d, p = statistics.median(x[0] for x in per["direct"]), statistics.median(x[0] for x in per["proxy"])
        print(f"{scenario:10} direct {d:,.0f} msgs/s  proxy {p:,.0f} msgs/s   proxy/direct {p / d:.2f}x{note}",
              flush=True)
    return rounds.exit_status()


if __name__ == "__main__":
    sys.exit(main())
