#!/usr/bin/python3
"""`wsx relay` fan-out beside a node `ws` broadcast server, in one run.

Load: `wsx bench -s fanout` (one publisher, 1,000 subscribers, 32-byte text messages).
Targets, measured in turns round after round:
  embedded   one `wsx relay --threads 1`
  redis2     two `wsx relay --threads 1 --redis ...` instances: the publisher on one, the
             subscribers on the other, so every delivery crosses Redis
  cluster2   the same pair over a Redis Cluster of three masters (`--redis redis+cluster://...`):
             the topic's shard channel on its master (SPUBLISH/SSUBSCRIBE)
  node       tests/bench/node_broadcast_server.js (node `ws`, one thread)
  redis2-durable
             the Redis pair with `--durable`: deliveries between the instances go through a Redis
             Stream (XADD, then XREAD by the other instance) instead of pub/sub
  embedded-batch, redis2-batch
             the same, the subscribers asking for batches (`?batch=--batch`, default 100,10ms;
             `wsx bench --unbatch` counts every message of a batch frame as one delivery)
Servers (and redis-server) run on CPU 0, the load generator on CPU 1 (taskset).

Scenarios:
  throughput  the publisher offers --rate-high msgs/s (default 5,000 → 5M deliveries/s asked):
              deliveries/s = the median of the per-second delivery counts of the run (first and
              last second left out), i.e. what the server actually pushed out per second
  latency     --rate-low msgs/s (default 100 → 100,000 deliveries/s): delivery p50/p99

Every figure is of verified work: each run writes its own JSON report and log, its exit status
is checked, and it must have no error (`wsx bench`'s error kinds: lost, corrupt, duplicate, ...),
no failed connection, every expected delivery received, and enough whole per-second samples for
a rate (throughput). A round that fails is printed as FAILED with the reason, its figure is left
out (the cell says how many rounds failed, or FAILED when all did), and the script exits 1.

The servers' CPU time (user + system of every relay and redis-server of the target, read from
/proc before and after the load) per 1,000 deliveries says what a delivery costs the server; the
batch gain is the ratio of deliveries per server CPU-second with and without batches.

Prints the medians of the rounds and the ratios wsx/node.
Usage: tests/bench/relay_bench.py [--wsx PATH] [--seconds 4] [--rounds 3] [--subscribers 1000] [--batch 100,10ms]
                                  [--only embedded,embedded-batch,redis2,redis2-batch,redis2-durable,cluster2,node] [--smoke]
Needs: node with the npm package `ws` (tests/node_modules), redis-server (and redis-cli for cluster2), taskset;
a missing peer: exit 77.
--smoke: one round, 3 s runs, 50 subscribers, lighter rates: what CTest runs (bench_smoke.relay).
"""
import argparse
import json
import os
import random
import resource
import shutil
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
LISTENING = r"listening on ws://127\.0\.0\.1:(\d+)"


def start_redis():
    """A private redis-server on a random port; a port already taken is another try, so the
    server answering is the one started here. Returns (process, port)."""
    last = None
    for _ in range(8):
        port = random.randrange(20000, 60000)
        r = subprocess.Popen(benchlib.pin(0, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                              "--appendonly", "no"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            benchlib.read_line(r, r.stdout, r"Ready to accept connections", 10, "redis-server")
            benchlib.drain(r.stdout)
            return r, port
        except BenchError as e:
            last = e
            benchlib.stop(r)
    raise BenchError(f"redis-server did not start: {last}")


def start_redis_cluster(tmp, masters=3):
    """`masters` redis-server processes with --cluster-enabled, joined by redis-cli --cluster
    create (no replicas); returns (processes, ports) once every node says cluster_state:ok."""
    procs, ports = [], []
    try:
        for _ in range(masters):
            for _ in range(8):
                port = random.randrange(20000, 60000)
                r = subprocess.Popen(benchlib.pin(0, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                                      "--appendonly", "no", "--cluster-enabled", "yes",
                                                      "--cluster-config-file", os.path.join(tmp, f"nodes-{port}.conf"),
                                                      "--dir", tmp]),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                try:
                    benchlib.read_line(r, r.stdout, r"Ready to accept connections", 10, "redis-server")
                    benchlib.drain(r.stdout)
                    procs.append(r)
                    ports.append(port)
                    break
                except BenchError:
                    benchlib.stop(r)
            else:
                raise BenchError("a cluster redis-server did not start")
        c = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                            "--cluster-yes"], capture_output=True, text=True, timeout=60)
        if c.returncode != 0:
            raise BenchError(f"redis-cli --cluster create failed: {benchlib.tail((c.stdout + c.stderr).encode())}")
        deadline = time.monotonic() + 30
        for p in ports:
            while b"cluster_state:ok" not in subprocess.run(["redis-cli", "-p", str(p), "CLUSTER", "INFO"],
                                                            capture_output=True, timeout=10).stdout:
                if time.monotonic() > deadline:
                    raise BenchError(f"redis cluster node {p}: no cluster_state:ok within 30s")
                time.sleep(0.1)
    except BaseException:
        stop(procs)
        raise
    return procs, ports


def start_target(kind, wsx, batch, tmp=None):
    """Returns (processes, publish_url, subscribe_url)."""
    if kind.endswith("-batch"):
        procs, pub, sub = start_target(kind[:-len("-batch")], wsx, batch, tmp)
        return procs, pub, f"{sub}?batch={batch}"
    if kind == "redis2-durable":
        return start_redis_pair(wsx, ["--durable"])
    if kind == "cluster2":
        return start_redis_pair(wsx, [], cluster_dir=tempfile.mkdtemp(prefix="cluster-", dir=tmp))
    if kind == "node":
        p, port = benchlib.start_server(benchlib.pin(0, ["node", os.path.join(HERE, "node_broadcast_server.js")]),
                                        "node broadcast server", LISTENING, env=benchlib.node_env())
        return [p], f"ws://127.0.0.1:{port}/bench", f"ws://127.0.0.1:{port}/bench"
    if kind == "embedded":
        p, port = benchlib.start_server(benchlib.pin(0, [wsx, "relay", "127.0.0.1:0", "--threads", "1", "-q"]),
                                        "wsx relay", LISTENING)
        return [p], f"ws://127.0.0.1:{port}/bench", f"ws://127.0.0.1:{port}/bench"
    return start_redis_pair(wsx, [])


def start_redis_pair(wsx, extra, cluster_dir=None):
    """redis-server (a cluster of three with `cluster_dir`) and two `wsx relay --redis` instances;
    returns (processes, publish_url, subscribe_url)."""
    procs, urls = [], []
    try:
        if cluster_dir:
            rs, rports = start_redis_cluster(cluster_dir)
            procs += rs
            # Each relay seeded with another node.
            seeds = [f"redis+cluster://127.0.0.1:{rports[0]}", f"redis+cluster://127.0.0.1:{rports[-1]}"]
        else:
            r, rport = start_redis()
            procs.append(r)
            seeds = [f"redis://127.0.0.1:{rport}"] * 2
        for seed in seeds:
            p, port = benchlib.start_server(
                benchlib.pin(0, [wsx, "relay", "127.0.0.1:0", "--threads", "1", "-q", "--redis", seed, *extra]),
                "wsx relay --redis", LISTENING)
            procs.append(p)
            urls.append(f"ws://127.0.0.1:{port}/bench")
    except BaseException:
        stop(procs)
        raise
    # Both instances subscribe to Redis as they start; the bench's own --settle follows. A
    # delivery that does not cross Redis is counted as lost, so the round fails rather than
    # reporting less.
    time.sleep(0.5)
    return procs, urls[0], urls[1]


def stop(procs):
    for p in procs:
        benchlib.stop(p)


def run_bench(wsx, pub, sub, subscribers, rate, seconds, tmp, label, procs, min_samples, unbatch):
    """One `wsx bench -s fanout` run with its own report and log; returns its verified figures."""
    out = os.path.join(tmp, f"{label}.json")
    log = os.path.join(tmp, f"{label}.log")
    cmd = benchlib.pin(1, [wsx, "bench", "-s", "fanout", "-c", str(subscribers), "--publishers", "1",
                           "--publish-url", pub, "--rate", str(rate), "-d", f"{seconds}s", "--threads", "1",
                           "--no-progress", "--settle", f"{min(1000, seconds * 500)}ms", "--json", out, sub])
    if unbatch:
        cmd.append("--unbatch")
    # settle < -d, also for -d 1s
    cpu_before = sum(benchlib.cpu_seconds(p.pid) for p in procs)
    with open(log, "wb") as lf:
        r = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, timeout=seconds * 10 + 60)
    server_cpu = sum(benchlib.cpu_seconds(p.pid) for p in procs) - cpu_before
    with open(log, "rb") as lf:
        log_text = lf.read()
    for p in procs:
        benchlib.check_alive(p, "a server of the target")
    if r.returncode != 0:
        raise BenchError(f"wsx bench exit {r.returncode}: {benchlib.tail(log_text)}")
    if not os.path.exists(out):
        raise BenchError(f"wsx bench wrote no report: {benchlib.tail(log_text)}")
    with open(out) as f:
        d = json.load(f)
    m, lat, conns = d["messages"], d["latency"], d["connections"]
    errors = {k: v for k, v in (d.get("errors") or {}).items() if v}
    if errors:
        raise BenchError(f"errors {errors} (received {m['received']:,} of {m['expected']:,})")
    if conns.get("failed") or conns.get("established") != conns.get("attempted"):
        raise BenchError(f"connections: {conns.get('established')} established of {conns.get('attempted')}, "
                         f"failed {conns.get('failed')}: {conns.get('errors')}")
    if not m["expected"] or m["received"] != m["expected"]:
        raise BenchError(f"received {m['received']:,} deliveries of {m['expected']:,} expected")
    if d.get("interrupted"):
        raise BenchError("the run was interrupted")
    # Deliveries per second: whole seconds only, the first and the last left out.
    series = d["series"][1:-1]
    per_second = [w["received"] for w in series if w.get("length_s", 1) >= 0.999]
    if min_samples and len(per_second) < min_samples:
        raise BenchError(f"{len(per_second)} whole per-second sample(s) of deliveries, {min_samples} needed "
                         f"for a rate (a longer --seconds gives more)")
    if lat.get("p50") is None or lat.get("p99") is None:
        raise BenchError("no delivery latency was measured")
    return {"pushed_per_s": statistics.median(per_second) if per_second else None, "deliveries_per_s": m["rate"], "received": m["received"],
            "expected": m["expected"], "p50_ms": lat["p50"] / 1e6, "p99_ms": lat["p99"] / 1e6,
            "cpu_us_per_1000": server_cpu * 1e9 / m["received"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsx", default=os.path.join(ROOT, "build", "wsx"))
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--rate-high", type=int, default=5000)
    ap.add_argument("--rate-low", type=int, default=100)
    ap.add_argument("--batch", default="100,10ms", help="the batch the -batch targets' subscribers ask for (N,INTERVAL)")
    ap.add_argument("--only", default="embedded,embedded-batch,redis2,redis2-batch,redis2-durable,cluster2,node")
    benchlib.add_common_args(ap)
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds, a.subscribers, a.rate_high, a.rate_low = 3, 1, 50, 1000, 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    kinds = a.only.split(",")
    unknown = [k for k in kinds if k not in ("embedded", "embedded-batch", "redis2", "redis2-batch", "redis2-durable", "cluster2",
                                             "node")]
    if unknown:
        ap.error(f"--only: unknown target(s) {', '.join(unknown)}")
    benchlib.require(node_ws="node" in kinds, redis=any(k.startswith(("redis2", "cluster2")) for k in kinds),
                     tools=("redis-cli",) if "cluster2" in kinds else ())
    # The series has one entry per second, warm-up included; the first and last are left out.
    min_samples = max(1, a.seconds - 2)
    tmp = tempfile.mkdtemp(prefix="wsx-relay-bench-")
    rounds = benchlib.Rounds()
    results = {k: {"throughput": [], "latency": []} for k in kinds}
    for rnd in range(a.rounds):
        for kind in kinds:
            for scen, rate in (("throughput", a.rate_high), ("latency", a.rate_low)):
                label = f"round{rnd + 1}-{kind}-{scen}"

                def one():
                    procs, pub, sub = start_target(kind, a.wsx, a.batch, tmp)
                    try:
                        return run_bench(a.wsx, pub, sub, a.subscribers, rate, a.seconds, tmp, label, procs,
                                         min_samples if scen == "throughput" else 0, kind.endswith("-batch"))
                    finally:
                        stop(procs)
                r = rounds.run(f"round {rnd + 1} {kind} {scen}", one)
                results[kind][scen].append(r)
                if r is not None:
                    pushed = f"{r['pushed_per_s']:,.0f}/s" if r["pushed_per_s"] is not None else "-"
                    print(f"round {rnd + 1} {kind:9} {scen:10} rate={rate}/s pushed={pushed} "
                          f"received={r['received']:,}/{r['expected']:,} p50={r['p50_ms']:.2f}ms "
                          f"p99={r['p99_ms']:.2f}ms server_cpu={r['cpu_us_per_1000']:.0f}us/1000",
                          file=sys.stderr, flush=True)
    col = lambda xs, k: [x and x[k] for x in xs]  # noqa: E731
    print(f"\nfan-out: 1 publisher, {a.subscribers:,} subscribers, 32-byte text, {a.seconds}s runs; "
          f"medians of {a.rounds} rounds\n")
    print(f"| target | deliveries/s (offered {a.rate_high * a.subscribers:,}/s) | server CPU per 1,000 deliveries "
          f"| p50 @ {a.rate_low * a.subscribers:,}/s | p99 @ {a.rate_low * a.subscribers:,}/s |")
    print("|---|---|---|---|---|")
    for k in kinds:
        t, lt = results[k]["throughput"], results[k]["latency"]
        print(f"| {k} | {benchlib.figure(col(t, 'pushed_per_s'), lambda v: f'{v:,.0f}', a.rounds)} "
              f"| {benchlib.figure(col(t, 'cpu_us_per_1000'), lambda v: f'{v:,.0f} µs', a.rounds)} "
              f"| {benchlib.figure(col(lt, 'p50_ms'), lambda v: f'{v:.1f} ms', a.rounds)} "
              f"| {benchlib.figure(col(lt, 'p99_ms'), lambda v: f'{v:.1f} ms', a.rounds)} |")
    cpu = lambda k: [x["cpu_us_per_1000"] for x in results[k]["throughput"] if x is not None]  # noqa: E731
    for k in kinds:
        if k.endswith("-batch") and k[:-len("-batch")] in kinds and cpu(k) and cpu(k[:-len("-batch")]):
            gain = statistics.median(cpu(k[:-len("-batch")])) / statistics.median(cpu(k))
            print(f"batch gain ({k[:-len('-batch')]}, ?batch={a.batch}): {gain:.2f}x deliveries per server CPU-second")
    ok = lambda k: [x["pushed_per_s"] for x in results[k]["throughput"] if x is not None]  # noqa: E731
    if "node" in kinds and ok("node") and statistics.median(ok("node")) > 0:
        node = statistics.median(ok("node"))
        for k in kinds:
            if k != "node" and ok(k):
                print(f"{k}/node deliveries/s: {statistics.median(ok(k)) / node:.2f}x")
    status = rounds.exit_status()
    if status == 0:
        shutil.rmtree(tmp, True)
    else:
        print(f"reports and logs kept in {tmp}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
