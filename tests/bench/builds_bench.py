#!/usr/bin/python3
"""Two builds of `wsx serve` against each other, in one run: the before/after of a change.

Each round starts one server (BEFORE or AFTER, in turns) on CPU 0 and drives it with
`wsx bench` (the AFTER build's, the same client for both) on CPU 1, so the only thing that
changes between the two columns is the server (the `open` scenario swaps the roles). Per scenario it prints the medians of the
rounds, the server's CPU time per message (from /proc) and the ratio after/before.

Every figure is of verified work: a round counts only when bench reports no error, every
connection established and as many replies received as messages sent (give or take the
messages still in flight when the window closed); any other round is printed as FAILED and
the script exits 1.

Scenarios:
  plain      32-byte text, 50 connections, 1 in flight each        (msgs/s)
  compress   4 KiB text, 50 connections, permessage-deflate         (msgs/s)
  compress1  64 KiB text, 10 connections, permessage-deflate        (msgs/s)
  open       handshake storm, 10 slots (bench -s connect)           (handshakes/s)
             Here the CLIENT is what differs: each build's `wsx bench` opens connections
             against the AFTER build's server, and the CPU column is the client's per handshake
             (the client open path is what it measures).

Usage: tests/bench/builds_bench.py --before OLD_WSX --after NEW_WSX [--seconds 4] [--rounds 3]
                                   [--only plain,compress] [--smoke]
--smoke: one round of 1 s per scenario (the new build against itself: what CTest runs,
bench_smoke.builds, so the script cannot rot).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

SCENARIOS = {
    "plain": ["-c", "50", "--size", "32"],
    "compress": ["-c", "50", "--size", "4KiB", "--compress"],
    "compress1": ["-c", "10", "--size", "64KiB", "--compress"],
    "open": ["-s", "connect", "-c", "10"],
}
CLIENT_SCENARIOS = {"open"}


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def one_round(server_bin, client_bin, scenario, seconds):
    """Returns (msgs/s, CPU us per message: the server's, or for a client scenario the client's)
    or raises benchlib.BenchError."""
    extra = ["--compress"] if "--compress" in SCENARIOS[scenario] else []
    proc, port = benchlib.start_server(benchlib.pin(0, [server_bin, "serve", "127.0.0.1:0", *extra]), os.path.basename(server_bin))
    try:
        before, client_before = benchlib.cpu_seconds(proc.pid), children_cpu()
        r = subprocess.run(benchlib.pin(1, [client_bin, "bench", f"ws://127.0.0.1:{port}/", "-d", f"{seconds}s",
                                            "--json", "-", *SCENARIOS[scenario]]),
                           capture_output=True, timeout=seconds + 60)
        benchlib.check_alive(proc, "the server")
        used = benchlib.cpu_seconds(proc.pid) - before
        if scenario in CLIENT_SCENARIOS:
            used = children_cpu() - client_before  # the bench process, reaped by run()
    finally:
        benchlib.stop(proc)
    if r.returncode != 0:
        raise benchlib.BenchError(f"bench exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}")
    j = json.loads(r.stdout)
    conns, msgs = j["connections"], j["messages"]
    if j.get("errors") or conns["failed"] or conns["established"] != conns["attempted"]:
        raise benchlib.BenchError(f"errors {j.get('errors')}, connections {conns['established']}/{conns['attempted']}")
    in_flight = conns["established"] * max(1, j["config"].get("in_flight", 1))
    if msgs["received"] == 0 or msgs["sent"] - msgs["received"] > in_flight:
        raise benchlib.BenchError(f"sent {msgs['sent']}, received {msgs['received']}")
    return msgs["received"] / j["elapsed_s"], used * 1e6 / msgs["received"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", help="the old build's wsx (--smoke: defaults to the new one)")
    ap.add_argument("--after", "--wsx", dest="after", required=True, help="the new build's wsx")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--smoke", action="store_true", help="one round of 1 s per scenario")
    a = ap.parse_args()
    if a.smoke:
        a.seconds, a.rounds = 1, 1
        a.before = a.before or a.after
    if not a.before:
        ap.error("--before is required (the build to compare against)")
    failed = 0
    print(f"{'scenario':10} {'before msgs/s':>14} {'after msgs/s':>14} {'ratio':>6}   {'before us/msg':>13} {'after us/msg':>13}")
    for scenario in a.only.split(","):
        got = {"before": [], "after": []}
        fails = {"before": 0, "after": 0}
        for _ in range(a.rounds):
            for name, build in (("before", a.before), ("after", a.after)):
                server, client = (a.after, build) if scenario in CLIENT_SCENARIOS else (build, a.after)
                try:
                    got[name].append(one_round(server, client, scenario, a.seconds))
                except benchlib.BenchError as e:
                    fails[name] += 1
                    failed += 1
                    print(f"  {scenario} {name}: FAILED: {e}")
        if not got["before"] or not got["after"]:
            print(f"{scenario:10} FAILED (no round of one build succeeded)")
            continue
        rate = {k: statistics.median(x[0] for x in v) for k, v in got.items()}
        cpu = {k: statistics.median(x[1] for x in v) for k, v in got.items()}
        note = "" if not any(fails.values()) else f"   ({fails['before']}+{fails['after']} rounds FAILED)"
        print(f"{scenario:10} {rate['before']:14,.0f} {rate['after']:14,.0f} {rate['after'] / rate['before']:6.2f}"
              f"   {cpu['before']:13.2f} {cpu['after']:13.2f}{note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
