"""Helpers for the `wsx relay` end-to-end tests: starting relays and a private redis-server,
JSON-protocol clients over RawWS, and polling with deadlines."""
import json
import re
import shutil
import socket
import ssl
import subprocess
import time

import wsxtest
from serve_helpers import RawWS, http_request
from wsxtest import WSX, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_ping(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_answers(port, host="127.0.0.1", tls=None, timeout=0.5):
    """Whether a redis-server answers PING (PONG, or NOAUTH when it wants a password), over TLS
    when `tls` (RedisServer's TLS settings) is given."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            if not tls:
                raw.sendall(b"PING\r\n")
                return raw.recv(64).startswith((b"+PONG", b"-NOAUTH"))
            ctx = ssl.create_default_context(cafile=tls["ca"])
            ctx.check_hostname = False  # a readiness probe: tests may serve a certificate for another address
            if tls.get("auth_clients"):
                ctx.load_cert_chain(tls["client_cert"], tls["client_key"])
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except (OSError, ssl.SSLError):
        return False


class RedisServer:
    """A redis-server on a free loopback port, without persistence.

    tls: {"cert", "key", "ca"} (and "auth_clients": True with "client_cert", "client_key" to
    require client certificates) serves TLS only, on the port; password: --requirepass;
    bind: the loopback address it listens on."""

    def __init__(self, port=None, tls=None, password=None, bind="127.0.0.1"):
        # redis-server cannot listen on port 0 and say which port it got: it is given one found
        # free, which another process may take first. A start that fails on a port of our
        # choosing is retried on a new one; a port the caller asked for (a restart) is kept.
        self.chosen = port is None
        self.port = port or free_port()
        self.proc = None
        self.tls = tls
        self.password = password
        self.bind = bind

    def again(self):
        """The same server (port, TLS, password) to start anew after this one is gone."""
        return RedisServer(self.port, tls=self.tls, password=self.password, bind=self.bind)

    def args(self):
        a = [REDIS_SERVER, "--bind", self.bind, "--save", "", "--appendonly", "no"]
        if self.tls:
            a += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls["cert"],
                  "--tls-key-file", self.tls["key"], "--tls-ca-cert-file", self.tls["ca"],
                  "--tls-auth-clients", "yes" if self.tls.get("auth_clients") else "no"]
        else:
            a += ["--port", str(self.port)]
        if self.password:
            a += ["--requirepass", self.password]
        return a

    def start(self):
        for _ in range(5):
            self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self.tls or self.password or self.bind != "127.0.0.1":
                answers = lambda: redis_answers(self.port, self.bind, self.tls)
            else:
                answers = lambda: redis_ping(self.port)
            wait_until(lambda: answers() or self.proc.poll() is not None, 10, "redis-server to answer PING")
            if self.proc.poll() is None:
                return self
            if not self.chosen:
                raise AssertionError(f"redis-server could not start on port {self.port} (exit {self.proc.returncode})")
            self.port = free_port()
        raise AssertionError("redis-server did not start on any of 5 ports")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def url(self):
        return f"{'rediss' if self.tls else 'redis'}://{self.bind}:{self.port}"


class JsonClient:
    """A wsx.relay.v1 client: sends requests, collects replies and deliveries."""

    def __init__(self, url, path="/", timeout=10.0, headers=None):
        h = {"Sec-WebSocket-Protocol": "wsx.relay.v1"}
        h.update(headers or {})
        self.ws = RawWS(url, path, headers=h, timeout=timeout)
        assert "sec-websocket-protocol: wsx.relay.v1" in self.ws.response_head.lower(), self.ws.response_head
        self.pending = []
        self.welcome = self.next(lambda m: m.get("type") == "welcome")
        self.id = self.welcome["id"]

    def send(self, obj):
        self.ws.send_text(obj if isinstance(obj, str) else json.dumps(obj))

    def recv(self, timeout=10.0):
        m = self.ws.recv_message(timeout)
        assert m[0] == 1, f"expected a text message, got {m!r}"
        return json.loads(m[1])

    def next(self, predicate=lambda m: True, timeout=10.0):
        """The first message (held back or new) matching predicate; others are kept."""
        for i, m in enumerate(self.pending):
            if predicate(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; held: {self.pending!r}")
            m = self.recv(left)
            if predicate(m):
                return m
            self.pending.append(m)

    def subscribe(self, topic, **kw):
        self.send({"op": "subscribe", "topic": topic, **kw})
        return self.next(lambda m: m.get("type") in ("subscribed", "error") and m.get("topic") == topic)

    def messages(self, topic, n, timeout=10.0):
        return [self.next(lambda m: m.get("type") == "message" and m.get("topic") == topic, timeout) for _ in range(n)]

    def presence(self, topic):
        self.send({"op": "presence", "topic": topic})
        return self.next(lambda m: m.get("type") == "presence" and m.get("topic") == topic)["members"]


class RelayCase(wsxtest.WsxTestCase):
    def start_relay(self, *extra):
        """Starts `wsx relay 127.0.0.1:0 ...`; returns (process, url without a trailing slash)."""
        p = self.start([WSX, "relay", "127.0.0.1:0", *extra])
        m = p.wait_for(r"listening on (wss?://127\.0\.0\.1:\d+)")
        return p, m.group(1)

    def start_redis(self):
        r = RedisServer().start()
        self.addCleanup(r.kill)
        return r

    def metrics(self, url):
        status, _, body = http_request(url, "/metrics")
        self.assertEqual(status, 200)
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
        return out

    def raw(self, url, path, **kw):
        ws = RawWS(url, path, **kw)
        self.addCleanup(ws.sock.close)
        return ws

    def json_client(self, url, path="/", **kw):
        c = JsonClient(url, path, **kw)
        self.addCleanup(c.ws.sock.close)
        return c


def upgrade_refusal(url, path, headers=None, timeout=10.0):
    """An upgrade the relay refuses: (status, body text), the body read whole (Content-Length)."""
    ws = RawWS(url, path, headers=headers, timeout=timeout, expect_upgrade=False)
    try:
        m = re.search(r"(?im)^content-length:\s*(\d+)", ws.response_head)
        n = int(m.group(1)) if m else 0
        body = ws._read_exact(n, time.monotonic() + timeout) if n else b""
        return ws.status, body.decode("utf-8", "replace")
    finally:
        ws.close()


def batch_frames(ws, count, timeout=10.0):
    """Reads data messages until `count` items arrived in all; each must be a text frame holding
    a JSON array. Returns the list of arrays, one per frame."""
    frames, items = [], 0
    deadline = time.monotonic() + timeout
    while items < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{items} of {count} batched messages within {timeout}s: {frames!r}")
        op, payload = ws.recv_message(left)
        assert op == 1, f"a batch is a text frame, got {op!r} {payload!r}"
        arr = json.loads(payload)
        assert isinstance(arr, list), f"a batch is a JSON array, got {payload!r}"
        frames.append(arr)
        items += len(arr)
    return frames


def link_relays(case, urls, path="/", timeout=15):
    """Waits until every relay in `urls` (sharing one Redis) receives what every other one
    publishes: their Redis subscriptions are in place. Probes connect at `path` (e.g. with a token)."""
    probes = [case.json_client(u, path) for u in urls]
    for c in probes:
        c.subscribe("_probe")
    for i, sender in enumerate(probes):
        for j, receiver in enumerate(probes):
            if i == j:
                continue
            tag = f"{i}->{j}"

            def arrived():
                sender.send({"op": "publish", "topic": "_probe", "data": tag})
                try:
                    receiver.next(lambda m: m.get("type") == "message" and m.get("data") == tag, timeout=0.2)
                    return True
                except (AssertionError, TimeoutError):
                    return False
            wait_until(arrived, timeout, f"relay {i} to reach relay {j} through redis")
    for c in probes:
        c.ws.sock.close()


class PersistentRedisServer(RedisServer):
    """A RedisServer that keeps its data in `directory` (append-only file, fsync on every write):
    killed and started again (again()), it comes back with everything it had acknowledged."""

    def __init__(self, directory, port=None, **kw):
        super().__init__(port, **kw)
        self.directory = directory

    def again(self):
        return PersistentRedisServer(self.directory, self.port, tls=self.tls, password=self.password, bind=self.bind)

    def args(self):
        a = super().args()
        a[a.index("--appendonly") + 1] = "yes"
        return a + ["--appendfsync", "always", "--dir", self.directory]


REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def redis_cli(port, *args, timeout=5, tls=None):
    """Runs `redis-cli -p PORT ARGS...` against a loopback server (over TLS with `tls`, TLS
    settings as RedisServer takes them); returns its output lines, none when it got no answer
    within `timeout` (a server busy loading or syncing, a loaded machine): callers poll with a
    deadline of their own."""
    opts = ["--tls", "--cacert", tls["ca"]] if tls else []
    try:
        r = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(port), *opts, *args], capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return []
    return r.stdout.splitlines()


class RedisNode(RedisServer):
    """A redis-server on a free loopback port that keeps its files (a replica's copy of the
    data) in `directory`, replicating `master_port` (--replicaof) when given: a master too may
    become a replica, after a failover."""

    def __init__(self, master_port, directory, port=None, tls=None):
        super().__init__(port, tls=tls)
        self.master_port = master_port
        self.directory = directory

    def args(self):
        a = super().args() + ["--dir", self.directory, "--dbfilename", f"dump-{self.port}.rdb"]
        if self.tls:
            a += ["--tls-replication", "yes"]
        return a + (["--replicaof", "127.0.0.1", str(self.master_port)] if self.master_port else [])

    def synced(self):
        return "master_link_status:up" in redis_cli(self.port, "INFO", "replication", tls=self.tls)


class SentinelServer:
    """A Redis Sentinel (redis-server --sentinel, which is what redis-sentinel runs) on a free
    loopback port, monitoring `master_port` as `name` with quorum 1 and short timeouts. Its
    config file (which it rewrites) lives in `directory`. tls (RedisServer's TLS settings): it
    serves TLS only and speaks TLS to the servers it monitors."""

    def __init__(self, master_port, directory, name="mymaster", down_after_ms=1000, failover_timeout_ms=5000, tls=None):
        self.tls = tls
        self.master_port = master_port
        self.directory = directory
        self.name = name
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.port = free_port()
        self.proc = None

    def config(self):
        if self.tls:
            listen = ["port 0", f"tls-port {self.port}", f"tls-cert-file {self.tls['cert']}",
                      f"tls-key-file {self.tls['key']}", f"tls-ca-cert-file {self.tls['ca']}", "tls-auth-clients no",
                      "tls-replication yes"]
        else:
            listen = [f"port {self.port}"]
        return "\n".join(listen + [
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"sentinel monitor {self.name} 127.0.0.1 {self.master_port} 1",
            f"sentinel down-after-milliseconds {self.name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.name} 1",
            ""])

    def start(self):
        for _ in range(5):
            path = f"{self.directory}/sentinel-{self.port}.conf"
            with open(path, "w") as f:
                f.write(self.config())
            self.proc = subprocess.Popen([REDIS_SERVER, path, "--sentinel"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            wait_until(lambda: redis_answers(self.port, tls=self.tls) or self.proc.poll() is not None, 10,
                       "redis sentinel to answer PING")
            if self.proc.poll() is None:
                return self
            self.port = free_port()
        raise AssertionError("redis sentinel did not start on any of 5 ports")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def master(self):
        """The master's "host:port" as the sentinel gives it ("" when it does not know)."""
        out = redis_cli(self.port, "SENTINEL", "get-master-addr-by-name", self.name, tls=self.tls)
        return ":".join(out) if len(out) == 2 else ""

    def knows_replica(self, port):
        return any(line == str(port) for line in redis_cli(self.port, "SENTINEL", "replicas", self.name, tls=self.tls))

    def url(self, name=None):
        return f"{'rediss' if self.tls else 'redis'}+sentinel://127.0.0.1:{self.port}/{name or self.name}"


def _read_resp(f):
    line = f.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_resp(f) for _ in range(n)]
    raise AssertionError(f"not a RESP reply: {line!r}")


def redis_command(port, *args, timeout=10):
    """One command to a loopback Redis, binary-safe (redis-cli's output is not); its reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"".join([f"*{len(args)}\r\n".encode()] +
                           [f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args]))
        return _read_resp(s.makefile("rb"))


def stream_publishes(port, prefix="wsx:relay"):
    """(instance, seq) of every entry of a --durable relay's stream, in stream order."""
    out = []
    for _id, fields in redis_command(port, "XRANGE", f"{prefix}:stream", "-", "+"):
        f = dict(zip(fields[::2], fields[1::2]))
        out.append((f[b"m"].split(b"\n")[1], int(f[b"s"])))
    return out


class RedisCluster:
    """Three (or `masters`) redis-server processes with --cluster-enabled on free loopback ports,
    their files in `directory`, joined by `redis-cli --cluster create` without replicas; start()
    waits (bounded) until every node says cluster_state:ok."""

    def __init__(self, directory, masters=3, tls=None, password=None):
        self.directory = directory
        self.tls = tls
        self.password = password
        self.nodes = [RedisServer(tls=tls, password=password) for _ in range(masters)]

    def clustered(self, n):
        """`n` (a RedisServer) started with cluster mode, its cluster config file in the directory."""
        base = n.args

        def args():
            extra = ["--tls-cluster", "yes"] if self.tls else []
            if self.password:
                extra += ["--masterauth", self.password]
            return base() + ["--cluster-enabled", "yes", "--cluster-config-file",
                             f"{self.directory}/nodes-{n.port}.conf", "--cluster-node-timeout", "5000",
                             "--dir", self.directory, *extra]
        n.args = args
        return n

    def cli(self, *args, timeout=60):
        """redis-cli with the cluster's TLS and password; its CompletedProcess (text), or None on
        a timeout."""
        import os
        opts = ["--tls", "--cacert", self.tls["ca"]] if self.tls else []
        env = dict(os.environ, REDISCLI_AUTH=self.password) if self.password else None
        try:
            return subprocess.run([REDIS_CLI, *opts, *args], capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None

    def info(self, port):
        r = self.cli("-h", "127.0.0.1", "-p", str(port), "CLUSTER", "INFO", timeout=5)
        return r.stdout if r else ""

    def restart(self, i):
        """Kills node `i` and starts it again on its port with its cluster config (its data is
        gone: no persistence)."""
        self.nodes[i].kill()
        self.nodes[i] = self.clustered(self.nodes[i].again()).start()

    def start(self):
        for n in self.nodes:
            self.clustered(n).start()
        out = self.cli("--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes], "--cluster-replicas", "0",
                       "--cluster-yes")
        if not out or out.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {out and out.stdout + out.stderr}")
        # Every node says the cluster is whole, and knows every other one.
        for n in self.nodes:
            wait_until(lambda n=n: "cluster_state:ok" in self.info(n.port) and
                       f"cluster_known_nodes:{len(self.nodes)}" in self.info(n.port), 30, f"cluster_state:ok on {n.port}")
        return self

    def kill(self):
        for n in self.nodes:
            n.kill()

    @property
    def ports(self):
        return [n.port for n in self.nodes]

    def url(self, *indexes):
        """redis+cluster:// (rediss+cluster:// with TLS) with the nodes at `indexes` (all when
        none) as seeds."""
        seeds = [self.nodes[i] for i in indexes] if indexes else self.nodes
        return f"{'rediss' if self.tls else 'redis'}+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in seeds)

    def slots(self, port):
        """{(first, last): master port} as node `port` sees the layout."""
        out = {}
        for r in redis_command(port, "CLUSTER", "SLOTS") or []:
            out[(r[0], r[1])] = r[2][1]
        return out

    def keyslot(self, key):
        return redis_command(self.nodes[0].port, "CLUSTER", "KEYSLOT", key)

    def owner(self, slot, port=None):
        """The port of the master holding `slot` (as node `port`, or the first node, sees it)."""
        for (first, last), p in self.slots(port or self.nodes[0].port).items():
            if first <= slot <= last:
                return p
        return None

    def node_id(self, port):
        return redis_command(port, "CLUSTER", "MYID").decode()

    def move_slot(self, slot, to_port, between=None, batch=10):
        """Moves `slot` and its keys to `to_port` as redis-cli --cluster reshard does: IMPORTING on
        the target, MIGRATING on the source, MIGRATE of its keys, then SETSLOT NODE on the target,
        the source and the others. `between` (if given) runs after the keys moved, before the
        slot is handed over: clients are being sent to the target with -ASK meanwhile."""
        src = self.owner(slot)
        if src == to_port:
            return
        src_id, dst_id = self.node_id(src), self.node_id(to_port)
        assert redis_command(to_port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id) == "OK"
        assert redis_command(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id) == "OK"
        for _ in range(100000):
            keys = redis_command(src, "CLUSTER", "GETKEYSINSLOT", str(slot), str(batch))
            if not keys:
                break
            r = redis_command(src, "MIGRATE", "127.0.0.1", str(to_port), "", "0", "5000", "KEYS",
                              *[k.decode() for k in keys])
            assert r in ("OK", "NOKEY"), r
        if between:
            between()
        for p in [to_port, src] + [q for q in self.ports if q not in (src, to_port)]:
            assert redis_command(p, "CLUSTER", "SETSLOT", str(slot), "NODE", dst_id) == "OK"
