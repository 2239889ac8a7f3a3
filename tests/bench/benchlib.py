"""Shared rules for the benchmarks in tests/bench: no figure without the work behind it.

- Every read of a child's output has a deadline (`read_line`); a server is started on port 0
  and its port read back from its "listening on" line (`start_server`).
- A round that fails is a failure (`Rounds.fail`), printed as FAILED and counted: the script
  exits 1 if any round failed (`Rounds.exit_status`), and its figures are never filled in from
  another target's or an earlier round's.
- A benchmark that cannot run here (a missing peer such as node or redis-server) says so and
  exits 77 (`skip`), the code CTest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
- `--smoke` (see `add_common_args`) runs each scenario for a second or two with few connections,
  still verifying the work: CTest runs it (label bench-smoke) so the scripts cannot rot.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_MODULES = os.path.join(ROOT, "tests", "node_modules")
SKIPPED_EXIT = 77

# Benchmarks talk to loopback only: a proxy set in the caller's environment must not reach them.
for _var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
             "no_proxy", "NO_PROXY"):
    os.environ.pop(_var, None)


class BenchError(Exception):
    """A round (or a start-up) that did not do the work it was asked for."""


def skip(reason):
    print(f"skipped: {reason}", file=sys.stderr, flush=True)
    sys.exit(SKIPPED_EXIT)


def require(node_ws=False, redis=False, python_websockets=False, tools=()):
    """Skips (exit 77) when a peer the benchmark needs is missing. The pinned npm packages come
    from tests/package-lock.json (`tests/run.sh deps` installs them); nothing is fetched here."""
    missing = [t for t in tools if not shutil.which(t)]
    if node_ws:
        if not shutil.which("node"):
            missing.append("node")
        if not os.path.isfile(os.path.join(NODE_MODULES, "ws", "package.json")):
            missing.append("npm package ws in tests/node_modules (tests/run.sh deps)")
    if redis and not shutil.which("redis-server"):
        missing.append("redis-server")
    if python_websockets and subprocess.run(["/usr/bin/python3", "-c", "import websockets"],
                                            capture_output=True).returncode != 0:
        missing.append("python3-websockets")
    if missing:
        skip("missing " + ", ".join(missing))


def node_env():
    return dict(os.environ, NODE_PATH=NODE_MODULES)


def can_pin():
    return shutil.which("taskset") is not None and hasattr(os, "sched_getaffinity") and \
        {0, 1} <= os.sched_getaffinity(0)


def pin(core, cmd):
    """`cmd` pinned to one CPU with taskset, or unpinned where there are not two CPUs to use."""
    return ["taskset", "-c", str(core), *cmd] if can_pin() else list(cmd)


def read_line(proc, stream, pattern, timeout=15.0, what=None):
    """Reads lines of a child's pipe (`stream`: proc.stdout or proc.stderr, binary or text) until
    one matches `pattern`; returns the match. Raises BenchError with what was read when the
    deadline passes, the pipe ends or the child exits first. Reads the descriptor directly, so the
    pipe's Python buffer must not be used for this stream afterwards (see `drain`)."""
    what = what or os.path.basename(str(proc.args[-1] if isinstance(proc.args, list) else proc.args))
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    buf, seen, rx = b"", [], re.compile(pattern)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"{what}: no line matching {pattern!r} within {timeout:g}s; got: {seen[-5:]!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            if proc.poll() is not None:
                raise BenchError(f"{what} exited ({proc.returncode}) before {pattern!r}; got: {seen[-5:]!r}")
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.poll()
            raise BenchError(f"{what}: output ended (exit {proc.returncode}) before {pattern!r}; got: {seen[-5:]!r}")
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            seen.append(text)
            m = rx.search(text)
            if m:
                return m


def drain(stream):
    """Keeps reading a child's pipe in the background, so a chatty child never blocks on it."""
    fd = stream.fileno()

    def run():
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass
    threading.Thread(target=run, daemon=True).start()


def start_server(cmd, what, pattern=r"listening on ws://127\.0\.0\.1:(\d+)", on="stderr", env=None,
                 timeout=15.0, preexec_fn=None):
    """Starts a server that listens on port 0 and reports its port; returns (process, port).
    The port comes from the server's own "listening on" line (never a port found free earlier)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE if on == "stdout" else subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=env, preexec_fn=preexec_fn)
    try:
        m = read_line(p, p.stdout if on == "stdout" else p.stderr, pattern, timeout, what)
    except BenchError:
        stop(p)
        raise
    for s in (p.stdout, p.stderr):
        if s is not None:
            drain(s)
    return p, int(m.group(1))


def stop(p):
    """Stops a child (SIGTERM, then SIGKILL after 10 s) and reaps it."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_alive(p, what):
    if p.poll() is not None:
        raise BenchError(f"{what} exited ({p.returncode}) during the run")


def tail(text, n=600):
    """A child's output, short: its first lines (the first errors) and its last (the summary)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no output)"
    if len(lines) > 4:
        lines = lines[:2] + [f"... ({len(lines) - 3} more lines)"] + lines[-1:]
    text = " | ".join(lines)
    return text if len(text) <= n else text[:n // 2] + " ... " + text[-n // 2:]


class Rounds:
    """Counts the rounds that failed; prints each failure as it happens."""

    def __init__(self):
        self.failed = []

    def fail(self, label, error):
        self.failed.append((label, str(error)))
        print(f"FAILED {label}: {error}", file=sys.stderr, flush=True)

    def run(self, label, fn, *args, **kwargs):
        """Calls fn; returns its result, or None (recorded as a failure) if it raised BenchError
        or a child ran past its timeout."""
        try:
            return fn(*args, **kwargs)
        except (BenchError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as e:
            self.fail(label, f"{type(e).__name__}: {e}" if not isinstance(e, BenchError) else e)
            return None

    def exit_status(self):
        if self.failed:
            print(f"\n{len(self.failed)} round(s) FAILED:", file=sys.stderr)
            for label, error in self.failed:
                print(f"  {label}: {error}", file=sys.stderr)
            return 1
        return 0


def figure(values, fmt, rounds):
    """A median cell: the median of the rounds that did the work, with how many failed; FAILED
    when none did."""
    import statistics
    ok = [v for v in values if v is not None]
    if not ok:
        return "FAILED"
    cell = fmt(statistics.median(ok))
    if len(ok) < rounds:
        cell += f" ({rounds - len(ok)} of {rounds} rounds FAILED)"
    return cell


def add_common_args(ap):
    ap.add_argument("--smoke", action="store_true",
                    help="a second or two per scenario with few connections, still verifying the work "
                         "(what CTest runs); exits non-zero on any failure, 77 when a peer is missing")


def build_tool(name, given, tmp, libs=()):
    """The path of tests/bench/NAME.cpp built: `given` when set (CMake builds them as bench_NAME),
    otherwise compiled here with g++ (warnings are errors, as in the CMake build)."""
    if given:
        if not os.access(given, os.X_OK):
            raise SystemExit(f"{given}: not an executable")
        return given
    out = os.path.join(tmp, name)
    r = subprocess.run(["g++", "-O2", "-std=c++20", "-Wall", "-Wextra", "-Werror", "-o", out,
                        os.path.join(HERE, f"{name}.cpp"), *libs], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"{name}.cpp did not build:\n{r.stderr}")
    return out
