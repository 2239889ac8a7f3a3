"""SSLKEYLOGFILE: every TLS endpoint (client and server contexts) appends the secrets of its
connections to that file in the NSS key log format, for a capture to be decrypted.

- connect and serve each log a TLS 1.3 connection: the five labels, each with the client random
  (64 hex digits) and a secret; when both ends log the same connection, randoms and secrets match.
- the file is created with mode 0600, and appended to (what was there stays).
- bench logs every connection (distinct client randoms), from several threads, in whole lines.
- proxy logs both sides (its wss:// listener and its wss:// upstream) to the one file. relay runs
  serve's listener, whose context is made in the same place.
- a file that cannot be opened: one warning line naming it and why; the connection still works.
- without SSLKEYLOGFILE nothing is written."""
import os
import re
import stat

import wsxtest
from wsxtest import WSX, WsxTestCase

LINE = re.compile(r"^([A-Z_0-9]+) ([0-9a-f]{64}) ([0-9a-f]+)$")
TLS13_LABELS = {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
                "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"}


def env_with(path=None):
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if path is not None:
        env["SSLKEYLOGFILE"] = path
    return env


class KeyLogTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.c = wsxtest.certs()

    def serve(self, keylog=None):
        p = self.start([WSX, "serve", "127.0.0.1:0", "--tls-cert", self.c["server"], "--tls-key", self.c["server_key"]],
                       env=env_with(keylog))
        m = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)")
        return p, m.group(1) + "/"

    def connect(self, url, keylog=None, data=b"secret\n"):
        r = self.wsx("connect", url, "--cacert", self.c["ca"], input=data, env=env_with(keylog), timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)
        return r

    def entries(self, path):
        """{client random: {label: secret}}; every line must be a key log line (or a # comment)."""
        with open(path) as f:
            text = f.read()
        self.assertTrue(text.endswith("\n"), repr(text[-80:]))
        out = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            m = LINE.match(line)
            self.assertTrue(m, f"not a key log line: {line!r}")
            out.setdefault(m.group(2), {})[m.group(1)] = m.group(3)
        return out

    def test_client_and_server_log_the_same_connection(self):
        client_log, server_log = os.path.join(self.tmp, "client.keys"), os.path.join(self.tmp, "server.keys")
        _, url = self.serve(server_log)
        self.connect(url, client_log)
        client = self.entries(client_log)
        self.assertEqual(len(client), 1, client)
        (random_hex, secrets), = client.items()
        self.assertEqual(set(secrets), TLS13_LABELS)
        # The server has logged its side once it answered the message; its file may still be growing
        # only if another connection came, and none did.
        wsxtest.wait_until(lambda: len(self.entries(server_log).get(random_hex, {})) == len(TLS13_LABELS),
                           timeout=10, what="the server's key log lines")
        self.assertEqual(self.entries(server_log), client)
        for path in (client_log, server_log):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    def test_client_alone_and_appends(self):
        _, url = self.serve()
        path = os.path.join(self.tmp, "keys.log")
        with open(path, "w") as f:
            f.write("# earlier capture\n")
        self.connect(url, path)
        self.connect(url, path)
        with open(path) as f:
            self.assertEqual(f.readline(), "# earlier capture\n")
        entries = self.entries(path)
        self.assertEqual(len(entries), 2)
        for secrets in entries.values():
            self.assertEqual(set(secrets), TLS13_LABELS)

    def test_server_alone_logs_every_connection(self):
        path = os.path.join(self.tmp, "server.keys")
        _, url = self.serve(path)
        for _ in range(3):
            self.connect(url)
        wsxtest.wait_until(lambda: len(self.entries(path)) == 3 and
                           all(len(s) == len(TLS13_LABELS) for s in self.entries(path).values()),
                           timeout=10, what="three connections in the server's key log")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_bench_logs_every_connection_from_several_threads(self):
        _, url = self.serve()
        path = os.path.join(self.tmp, "bench.keys")
        r = self.wsx("bench", url, "--cacert", self.c["ca"], "-c", "8", "--threads", "2", "-n", "80", env=env_with(path),
                     timeout=60)
        self.assertExit(r, 0)
        entries = self.entries(path)
        self.assertEqual(len(entries), 8)
        for secrets in entries.values():
            self.assertEqual(set(secrets), TLS13_LABELS)

    def test_proxy_logs_both_sides(self):
        """A wss:// listener and a wss:// upstream in one process: each connection is logged once,
        and the upstream's matches what the server logged of it."""
        server_log, proxy_log = os.path.join(self.tmp, "server.keys"), os.path.join(self.tmp, "proxy.keys")
        _, upstream = self.serve(server_log)
        p = self.start([WSX, "proxy", "--listen", "wss://127.0.0.1:0", "--tls-self-signed", "--to", upstream,
                        "--cacert", self.c["ca"]], env=env_with(proxy_log))
        url = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)").group(1) + "/"
        r = self.wsx("connect", url, "-k", input=b"through\n", env=env_with(), timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"through\n")
        wsxtest.wait_until(lambda: len(self.entries(server_log)) == 1 and
                           len(next(iter(self.entries(server_log).values()))) == len(TLS13_LABELS),
                           timeout=10, what="the upstream connection in the server's key log")
        wsxtest.wait_until(lambda: len(self.entries(proxy_log)) == 2 and
                           all(len(s) == len(TLS13_LABELS) for s in self.entries(proxy_log).values()),
                           timeout=10, what="both of the proxy's connections in its key log")
        (upstream_random, secrets), = self.entries(server_log).items()
        self.assertEqual(self.entries(proxy_log)[upstream_random], secrets)
        self.assertEqual(stat.S_IMODE(os.stat(proxy_log).st_mode), 0o600)

    def test_unwritable_file_warns_and_the_connection_works(self):
        missing = os.path.join(self.tmp, "no-such-dir", "keys.log")
        p, url = self.serve(missing)
        r = self.connect(url, missing)
        warnings = [l for l in r.stderr.decode().splitlines() if "SSLKEYLOGFILE" in l]
        self.assertEqual(warnings, [f"wsx: warning: SSLKEYLOGFILE '{missing}': cannot open it (No such file or "
                                    f"directory); TLS secrets are not logged"])
        self.assertIn(warnings[0], p.stderr_lines)
        self.assertFalse(os.path.exists(os.path.dirname(missing)))

    def test_unset_writes_nothing(self):
        _, url = self.serve()
        before = set(os.listdir(self.tmp))
        r = self.connect(url)
        self.assertNotIn("SSLKEYLOGFILE", r.stderr.decode())
        self.assertEqual(set(os.listdir(self.tmp)), before)


if __name__ == "__main__":
    wsxtest.main()
