"""Shared helpers for the end-to-end tests: run the real wsx binary over loopback.

Every wait has a deadline; every process started is stopped in tearDown/cleanup.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
import unittest

WSX = os.environ.get("WSX") or shutil.which("wsx")
SOURCE_DIR = os.environ.get("WSX_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers")
PYTHON = "/usr/bin/python3"

if not WSX:
    sys.exit("WSX is not set: point it at the wsx binary")

# Tests talk to loopback only: a proxy set in the caller's environment must not reach the
# processes they start (tests that exercise proxies set their own).
for _var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
             "no_proxy", "NO_PROXY"):
    os.environ.pop(_var, None)

# The exit status CTest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
SKIPPED_EXIT = 77


_unread = weakref.WeakKeyDictionary()


def take_unread(stream):
    """What read_line_matching read from `stream` past its last match (to be read first)."""
    return _unread.pop(stream, b"")


def read_line_matching(stream, pattern, timeout=10.0, collected=None):
    """Reads lines from a pipe until one matches `pattern` (regex); returns the match.

    Raises AssertionError with what was read when the deadline passes or the stream ends.
    """
    deadline = time.monotonic() + timeout
    seen = [] if collected is None else collected
    fd = stream.fileno()
    # Bytes read past the matching line stay with the stream for the next call: lines that
    # came in the same read as the match are not lost.
    buf = _unread.pop(stream, b"")
    rx = re.compile(pattern)
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            text = line.decode("utf-8", "replace")
            seen.append(text)
            m = rx.search(text)
            if m:
                _unread[stream] = buf
                return m
        left = deadline - time.monotonic()
        if left <= 0:
            _unread[stream] = buf
            raise AssertionError(f"no line matching {pattern!r} within {timeout}s; got: {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"stream ended before a line matching {pattern!r}; got: {seen!r}")
        buf += chunk


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_text_when(url, expression, done_prefix, timeout=30.0):
    """Opens `url` in headless Chromium and returns the value of the JavaScript `expression`
    once it starts with `done_prefix`, driving the browser over its DevTools WebSocket (on
    loopback). Unlike --dump-dom, this waits for what the page itself reports, however long
    its network traffic takes, up to `timeout` seconds.
    """
    import asyncio
    import urllib.request
    import websockets

    profile = tempfile.mkdtemp(prefix="wsx-chromium-")
    log = open(os.path.join(profile, "stderr.log"), "wb")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        # Chromium writes the port it bound to into DevToolsActivePort once it listens.
        active = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(log.name, errors="replace") as f:
                    raise AssertionError("headless Chromium did not open its DevTools port: " + f.read()[-2000:])
            try:
                with open(active) as f:
                    first = f.readline().strip()
                port = int(first) if first.isdigit() else None
            except FileNotFoundError:
                pass
            if port is None:
                time.sleep(0.02)  # poll interval of a bounded wait for the file to appear
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        if not pages:
            raise AssertionError("headless Chromium opened no page")

        async def drive():
            async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                ids = iter(range(1, 1 << 30))

                async def call(method, **params):
                    mid = next(ids)
                    await ws.send(json.dumps({"id": mid, "method": method, "params": params}))
                    while True:
                        reply = json.loads(await ws.recv())
                        if reply.get("id") == mid:
                            return reply

                await call("Page.navigate", url=url)
                value = None
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    reply = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    value = reply.get("result", {}).get("result", {}).get("value")
                    if isinstance(value, str) and value.startswith(done_prefix):
                        return value
                    await asyncio.sleep(0.05)  # poll interval of a bounded wait, not synchronisation
                raise AssertionError(f"page did not report {done_prefix!r} within {timeout}s; last value: {value!r}")

        return asyncio.run(asyncio.wait_for(drive(), timeout + 5))
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(profile, True)


# Set for a sanitizer build: freed memory sits in quarantine there, so bounds on a process's
# memory are only asserted in plain builds.
SANITIZED = os.environ.get("WSX_SANITIZED") == "1"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(secret, claims):
    """A JWT signed with HS256, made independently of wsx's own JWT code."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def rss_kib(pid):
    """A process's resident memory, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(predicate, timeout=10.0, what="condition", poll=0.02):
    """Polls predicate() until it returns something true, and returns that; fails naming `what`
    at the deadline. The one bounded wait for a condition that no stream reports."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(poll)  # poll interval of a bounded wait for a condition


def free_port():
    """A loopback port nobody listened on a moment ago (bound, read back, released), for a peer
    that cannot take port 0 and must be told one: another process may take it before the peer
    does, so the peer's start must be retried on a new one (see relay_helpers.RedisServer). For
    "connection refused", use refused_port, which cannot race."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused_port(test):
    """A loopback port that refuses connections for as long as `test` runs: bound, so no other
    process can take it, and never listening, so every connection to it is refused. Released
    by the test's cleanup."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    test.addCleanup(s.close)
    return s.getsockname()[1]


class LineCollector:
    """Reads a pipe in a background thread and keeps its lines (bytes, without "\n"), so a
    test can wait for a condition on everything read so far without blocking the writer."""

    def __init__(self, stream):
        import threading
        self.lines = []
        self.partial = b""
        self.ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        fd = stream.fileno()
        first = take_unread(stream)  # lines a read_line_matching on this stream already read
        if first:
            with self._cond:
                *done, self.partial = first.split(b"\n")
                self.lines.extend(done)
                self._cond.notify_all()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self._cond:
                if not chunk:
                    self.ended = True
                    self._cond.notify_all()
                    return
                data = self.partial + chunk
                *done, self.partial = data.split(b"\n")
                self.lines.extend(done)
                self._cond.notify_all()

    def wait_until(self, predicate, timeout=10.0, what="condition"):
        """Waits until predicate(lines) is true; fails with the lines read on the deadline."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.ended and not predicate(self.lines)):
                    tail = self.lines[-5:]
                    raise AssertionError(f"{what} not reached within {timeout}s "
                                         f"({'stream ended, ' if self.ended else ''}{len(self.lines)} lines, last {tail!r})")
                self._cond.wait(left)

    def wait_for_line(self, line, timeout=10.0):
        self.wait_until(lambda ls: line in ls, timeout, f"line {line!r}")

    def wait_for_end(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"stream still open after {timeout}s")
                self._cond.wait(left)
        return self.lines + ([self.partial] if self.partial else [])


class Process:
    """A background process with its stderr captured; stopped by stop() or at cleanup."""

    def __init__(self, args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=None, **kw):
        self.args = args
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, **kw)
        self.stderr_lines = []

    def wait_for(self, pattern, timeout=10.0):
        return read_line_matching(self.proc.stderr, pattern, timeout, self.stderr_lines)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def freeze(self):
        """Stops the process with SIGSTOP and returns once it is stopped: its sockets stay
        open but nothing answers. Resume with SIGCONT, or kill it."""
        self.proc.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(self.proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"process did not stop: status {status}"

    def rest_of_stderr(self, timeout=5.0):
        """Everything left on stderr once the process has ended."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        rest = (take_unread(self.proc.stderr) + self.proc.stderr.read()).decode("utf-8", "replace")
        return "\n".join(self.stderr_lines + [rest])


class WsxTestCase(unittest.TestCase):
    """Base class: starts processes that are always stopped, runs wsx with deadlines."""

    def setUp(self):
        self._procs = []
        self.tmp = tempfile.mkdtemp(prefix="wsx-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def tearDown(self):
        for p in reversed(self._procs):
            p.stop(signal.SIGKILL)
            for s in (p.proc.stderr, p.proc.stdout, p.proc.stdin):
                if s:
                    s.close()

    def start(self, args, **kw):
        p = Process(args, **kw)
        self._procs.append(p)
        return p

    def start_server(self, *extra, scheme="ws"):
        """Starts `wsx serve 127.0.0.1:0 ...` and returns (process, url)."""
        p = self.start([WSX, "serve", "127.0.0.1:0", *extra])
        m = p.wait_for(r"listening on (wss?://127\.0\.0\.1:\d+)")
        return p, m.group(1) + "/"

    def start_peer(self, script, *args):
        """Starts a python test peer from tests/e2e/peers; returns (process, port)."""
        p = self.start([PYTHON, os.path.join(PEERS, script), *args], stdout=subprocess.PIPE)
        m = read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)", 10)
        return p, int(m.group(1))

    def wsx(self, *args, input=b"", timeout=30, env=None):
        """Runs wsx to completion; returns CompletedProcess (stdout/stderr as bytes)."""
        return subprocess.run([WSX, *args], input=input, capture_output=True, timeout=timeout, env=env)

    def wsx_open_stdin(self, *args, timeout=30, env=None):
        """Runs wsx to completion with a stdin that never reaches EOF (the write end stays open
        until wsx exits), so only wsx's own rules end the run. Returns CompletedProcess; on a
        deadline the process is killed and the test fails with its stderr."""
        r, w = os.pipe()
        try:
            p = subprocess.Popen([WSX, *args], stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        finally:
            os.close(r)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise AssertionError(f"wsx {' '.join(args)} still running after {timeout}s; stderr: "
                                 f"{err.decode(errors='replace')}")
        finally:
            os.close(w)
        return subprocess.CompletedProcess([WSX, *args], p.returncode, out, err)

    def bench_json(self, *args, code=0):
        """Runs `wsx bench ARGS... --json FILE`, asserts its exit code; returns (result, the JSON)."""
        path = os.path.join(self.tmp, "bench-result.json")
        r = self.wsx("bench", *args, "--json", path, timeout=60)
        self.assertExit(r, code)
        with open(path) as f:
            return r, json.load(f)

    def error_lines(self, result):
        """The `wsx: error: ...` lines of a finished run's stderr."""
        return [l for l in result.stderr.decode(errors="replace").splitlines() if l.startswith("wsx: error:")]

    def assertOneError(self, r, *fragments):
        """Exactly one `wsx: error:` line, holding every fragment; returns it."""
        lines = self.error_lines(r)
        self.assertEqual(len(lines), 1, r.stderr.decode(errors="replace"))
        for f in fragments:
            self.assertIn(f, lines[0])
        return lines[0]

    def assertExit(self, result, code):
        self.assertEqual(result.returncode, code,
                         f"exit {result.returncode}, wanted {code}; stderr: {result.stderr.decode(errors='replace')}")


_certs = None


def certs():
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a
    second CA that signed nothing here. Made once per test process with openssl."""
    global _certs
    if _certs:
        return _certs
    d = tempfile.mkdtemp(prefix="wsx-certs-")
    def run(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)
    for ca in ("ca", "otherca"):
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30",
            "-subj", f"/CN=wsx test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "server.ext"), ("client", "client.ext")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN=wsx test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", ext, "-out", f"{name}.pem")
    _certs = {k: os.path.join(d, f"{k}.pem") for k in ("ca", "otherca", "server", "client")}
    _certs.update({k + "_key": os.path.join(d, f"{k}.key") for k in ("server", "client")})
    return _certs


def main():
    """Runs the file's tests. A run where anything was skipped exits 77, so CTest shows the
    test as skipped (and CI, which installs every dependency, fails) instead of passed."""
    program = unittest.main(verbosity=2, exit=False)
    result = program.result
    if not result.wasSuccessful():
        sys.exit(1)
    if result.skipped:
        for test, reason in result.skipped:
            print(f"skipped: {test.id()}: {reason}", file=sys.stderr)
        sys.exit(SKIPPED_EXIT)
    sys.exit(0)
