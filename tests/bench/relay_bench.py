#!/usr/bin/python3
"""`wsx relay` fan-out beside a node `ws` broadcast server, in one run.

Load: `wsx bench -s fanout` (one publisher, 1,000 subscribers, 32-byte text messages).
Targets, measured in turns round after round:
  embedded   one `wsx relay --threads 1`
  redis2     two `wsx relay --threads 1 --redis ...` instances: the publisher on one, the
             subscribers on the other, so every delivery crosses Redis
  node       tests/bench/node_broadcast_server.js (node `ws`, one thread)
Servers (and redis-server) run on CPU 0, the load generator on CPU 1 (taskset).

Scenarios:
  throughput  the publisher offers --rate-high msgs/s (default 5,000 → 5M deliveries/s asked):
              deliveries/s = the median of the per-second delivery counts of the run (first and
              last second left out), i.e. what the server actually pushed out per second
  latency     --rate-low msgs/s (default 100 → 100,000 deliveries/s): delivery p50/p99

Prints the medians of the rounds and the ratios wsx/node.
Usage: tests/bench/relay_bench.py [--wsx PATH] [--seconds 3] [--rounds 3] [--subscribers 1000]
Needs: node with the npm package `ws` (tests/node_modules), redis-server, taskset.
"""
import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_listening(p, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stderr.readline().decode(errors="replace")
        if not line:
            break
        m = re.search(r"listening on (ws://127\.0\.0\.1:\d+)", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"{p.args} did not start")


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def start_target(kind, wsx):
    """Returns (processes, publish_url, subscribe_url)."""
    pin = ["taskset", "-c", "0"]
    if kind == "node":
        p = subprocess.Popen([*pin, "node", os.path.join(HERE, "node_broadcast_server.js")], stderr=subprocess.PIPE,
                             env=dict(os.environ, NODE_PATH=NODE_MODULES))
        u = wait_listening(p)
        return [p], u + "/bench", u + "/bench"
    if kind == "embedded":
        p = subprocess.Popen([*pin, wsx, "relay", "127.0.0.1:0", "--threads", "1", "-q"], stderr=subprocess.PIPE)
        u = wait_listening(p)
        return [p], u + "/bench", u + "/bench"
    port = free_port()
    r = subprocess.Popen([*pin, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.05)
    procs, urls = [r], []
    for _ in range(2):
        p = subprocess.Popen([*pin, wsx, "relay", "127.0.0.1:0", "--threads", "1", "-q", "--redis",
                              f"redis://127.0.0.1:{port}"], stderr=subprocess.PIPE)
        procs.append(p)
        urls.append(wait_listening(p))
    time.sleep(0.5)  # both instances subscribed to Redis (the bench's own settle time follows)
    return procs, urls[0] + "/bench", urls[1] + "/bench"


def run_bench(wsx, pub, sub, subscribers, rate, seconds, tmp):
    out = os.path.join(tmp, "r.json")
    cmd = ["taskset", "-c", "1", wsx, "bench", "-s", "fanout", "-c", str(subscribers), "--publishers", "1",
           "--publish-url", pub, "--rate", str(rate), "-d", f"{seconds}s", "--threads", "1", "--no-progress",
           "--settle", f"{min(1000, seconds * 500)}ms", "--json", out, sub]  # settle < -d, also for -d 1s
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds * 10 + 60)
    with open(out) as f:
        d = json.load(f)
    m, lat = d["messages"], d["latency"]
    per_second = [w["received"] for w in d["series"]][1:-1] or [m["received"]]
    return {"pushed_per_s": statistics.median(per_second), "deliveries_per_s": m["rate"], "received": m["received"], "expected": m["expected"],
            "p50_ms": lat["p50"] / 1e6, "p99_ms": lat["p99"] / 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate-high", type=int, default=5000)
    ap.add_argument("--rate-low", type=int, default=100)
    ap.add_argument("--only", default="embedded,redis2,node")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kinds = a.only.split(",")
    if "node" in kinds and not os.path.isdir(os.path.join(NODE_MODULES, "ws")):
        sys.exit("node ws is missing: cd tests && npm ci")
    if "redis2" in kinds and not shutil.which("redis-server"):
        sys.exit("redis-server is missing")
    tmp = tempfile.mkdtemp(prefix="wsx-relay-bench-")
    results = {k: {"throughput": [], "latency": []} for k in kinds}
    for rnd in range(a.rounds):
        for kind in kinds:
            for scen, rate in (("throughput", a.rate_high), ("latency", a.rate_low)):
                procs, pub, sub = start_target(kind, a.wsx)
                try:
                    r = run_bench(a.wsx, pub, sub, a.subscribers, rate, a.seconds, tmp)
                finally:
                    stop(procs)
                results[kind][scen].append(r)
                print(f"round {rnd + 1} {kind:9} {scen:10} rate={rate}/s pushed={r['pushed_per_s']:,.0f}/s "
                      f"received={r['received']:,}/{r['expected']:,} p50={r['p50_ms']:.2f}ms p99={r['p99_ms']:.2f}ms",
                      file=sys.stderr, flush=True)
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print(f"\nfan-out: 1 publisher, {a.subscribers:,} subscribers, 32-byte text, {a.seconds}s runs; "
          f"medians of {a.rounds} rounds\n")
    print(f"| target | deliveries/s (offered {a.rate_high * a.subscribers:,}/s) | p50 @ {a.rate_low * a.subscribers:,}/s "
          f"| p99 @ {a.rate_low * a.subscribers:,}/s |")
    print("|---|---|---|---|")
    for k in kinds:
        t, l = results[k]["throughput"], results[k]["latency"]
        print(f"| {k} | {med(t, 'pushed_per_s'):,.0f} | {med(l, 'p50_ms'):.1f} ms | {med(l, 'p99_ms'):.1f} ms |")
    if "node" in kinds:
        node = med(results["node"]["throughput"], "pushed_per_s")
        for k in kinds if node > 0 else []:  # a run too short for node to deliver has no ratio
            if k != "node":
                print(f"{k}/node deliveries/s: {med(results[k]['throughput'], 'pushed_per_s') / node:.2f}x")
    shutil.rmtree(tmp, True)


if __name__ == "__main__":
    main()
