"""SSLKEYLOGFILE: every TLS endpoint (client and server contexts) appends the secrets of its
connections to that file in the NSS key log format, for a capture to be decrypted.

- connect and serve each log a TLS 1.3 connection: the five labels, each with the client random
  (64 hex digits) and a secret; when both ends log the same connection, randoms and secrets match.
- the file is created with mode 0600 (checked with umask 0, so that the mode is wsx's own), and
  appended to (what was there stays).
- bench logs every connection (distinct client randoms), from several threads, in whole lines.
- proxy logs both sides (its wss:// listener and its wss:// upstream) to the one file: exactly
  what the server behind it and the client in front of it logged. relay (--tls-cert) logs its
  listener's connections too.
- a file that cannot be opened: one warning line naming it and why; the connection still works.
- without SSLKEYLOGFILE, or with it empty, nothing is written (in the working directory, HOME or
  on stderr) and nothing is said."""
import fcntl
import os
import re
import signal
import stat
import subprocess

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


def umask0():
    """In the child before exec: a file created with 0644 would show as such."""
    os.umask(0)


class KeyLogTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.c = wsxtest.certs()

    def serve(self, keylog=None, env=None, **kw):
        p = self.start([WSX, "serve", "127.0.0.1:0", "--tls-cert", self.c["server"], "--tls-key", self.c["server_key"]],
                       env=env or env_with(keylog), preexec_fn=umask0, **kw)
        m = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)")
        return p, m.group(1) + "/"

    def connect(self, url, keylog=None, data=b"secret\n", env=None, **kw):
        r = subprocess.run([WSX, "connect", url, "--cacert", self.c["ca"]], input=data, capture_output=True, timeout=20,
                           env=env or env_with(keylog), preexec_fn=umask0, **kw)
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
        client_log = os.path.join(self.tmp, "client.keys")
        p = self.start([WSX, "proxy", "--listen", "wss://127.0.0.1:0", "--tls-self-signed", "--to", upstream,
                        "--cacert", self.c["ca"]], env=env_with(proxy_log), preexec_fn=umask0)
        url = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)").group(1) + "/"
        r = self.wsx("connect", url, "-k", input=b"through\n", env=env_with(client_log), timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"through\n")
        wsxtest.wait_until(lambda: len(self.entries(server_log)) == 1 and
                           len(next(iter(self.entries(server_log).values()))) == len(TLS13_LABELS),
                           timeout=10, what="the upstream connection in the server's key log")
        wsxtest.wait_until(lambda: len(self.entries(proxy_log)) == 2 and
                           all(len(s) == len(TLS13_LABELS) for s in self.entries(proxy_log).values()),
                           timeout=10, what="both of the proxy's connections in its key log")
        # Each side of the proxy is exactly what its peer logged of the same connection.
        self.assertEqual(len(self.entries(client_log)), 1)
        self.assertEqual(self.entries(proxy_log), {**self.entries(server_log), **self.entries(client_log)})
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

    def test_a_pipe_with_no_reader_is_not_waited_for(self):
        # Opening a FIFO for writing blocks until a reader comes: wsx must not wait for one.
        fifo = os.path.join(self.tmp, "keys.fifo")
        os.mkfifo(fifo)
        p, url = self.serve(fifo)
        r = self.connect(url, fifo)
        expected = f"wsx: warning: SSLKEYLOGFILE '{fifo}': cannot open it (a pipe with no reader); TLS secrets are not logged"
        self.assertEqual([l for l in r.stderr.decode().splitlines() if "SSLKEYLOGFILE" in l], [expected])
        self.assertIn(expected, p.stderr_lines)
        self.assertEqual(p.stop(signal.SIGTERM, timeout=10), 0)

    def test_a_pipe_whose_reader_stalls_loses_secrets_not_connections(self):
        # A reader that never reads, on the smallest pipe: the server's writes would block its
        # event loop (and SIGTERM) once the pipe is full; they must be dropped instead, said once.
        fifo = os.path.join(self.tmp, "stalled.fifo")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
        p, url = self.serve(fifo)
        for _ in range(12):  # over 5 lines of about 150 bytes a connection: the pipe fills in 6
            self.connect(url)
        p.wait_for(r"TLS secrets are being lost", 10)
        self.assertEqual(p.stop(signal.SIGTERM, timeout=10), 0)
        lost = [l for l in p.rest_of_stderr().splitlines() if "SSLKEYLOGFILE" in l]
        self.assertEqual(lost, [f"wsx: warning: SSLKEYLOGFILE '{fifo}': cannot write to it (Resource temporarily "
                                f"unavailable); TLS secrets are being lost"])
        # What did go in is whole lines.
        data = os.read(reader, 65536).decode()
        self.assertTrue(data.endswith("\n") and all(LINE.match(l) for l in data.splitlines()), data[-300:])

    def test_a_file_others_can_read_is_warned_about(self):
        _, url = self.serve()
        path = os.path.join(self.tmp, "open.keys")
        with open(path, "w"):
            pass
        os.chmod(path, 0o644)
        r = self.connect(url, path)
        self.assertIn(f"wsx: warning: SSLKEYLOGFILE '{path}' can be read by other users (mode 644): anyone who can "
                      f"read it can decrypt these connections; chmod 600 it", r.stderr.decode().splitlines())
        self.assertEqual(len(self.entries(path)), 1)

    def quiet_run(self, keylog):
        """serve and connect with cwd and HOME in a directory of their own; nothing may appear
        there, and neither may say anything of key logs."""
        home = os.path.join(self.tmp, "home")
        os.mkdir(home)
        env = env_with(keylog)
        env["HOME"] = home
        p, url = self.serve(env=env, cwd=home)
        r = self.connect(url, env=env, cwd=home)
        self.assertEqual(p.stop(signal.SIGTERM), 0)
        for err in (r.stderr.decode(), p.rest_of_stderr()):
            self.assertNotIn("SSLKEYLOGFILE", err)
            self.assertNotIn("TRAFFIC_SECRET", err)
        self.assertEqual(os.listdir(home), [])

    def test_unset_writes_nothing(self):
        self.quiet_run(None)

    def test_empty_writes_nothing(self):
        self.quiet_run("")

    def test_relay_logs_its_listener(self):
        relay_log, client_log = os.path.join(self.tmp, "relay.keys"), os.path.join(self.tmp, "client.keys")
        p = self.start([WSX, "relay", "127.0.0.1:0", "--tls-cert", self.c["server"], "--tls-key", self.c["server_key"]],
                       env=env_with(relay_log), preexec_fn=umask0)
        url = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)").group(1) + "/news"
        r = subprocess.run([WSX, "connect", url, "--cacert", self.c["ca"]], input=b"", capture_output=True,
                           timeout=20, env=env_with(client_log))
        self.assertExit(r, 0)
        client = self.entries(client_log)
        self.assertEqual(len(client), 1, client)
        wsxtest.wait_until(lambda: self.entries(relay_log) == client, timeout=10,
                           what="the client's connection in the relay's key log")
        self.assertEqual(stat.S_IMODE(os.stat(relay_log).st_mode), 0o600)


if __name__ == "__main__":
    wsxtest.main()
