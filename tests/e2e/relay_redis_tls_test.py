"""wsx relay over a TLS redis-server (rediss://, started here on a free loopback port): two
relays share it, client certificates, a CA or host that does not verify, AUTH from a password
file or the environment, and a TLS Redis that restarts or freezes."""
import os
import re
import signal
import subprocess
import unittest

import wsxtest
from relay_helpers import REDIS_SERVER, RedisServer, RelayCase, link_relays, wait_until
from wsxtest import certs


@unittest.skipUnless(os.access(REDIS_SERVER, os.X_OK), "redis-server is not installed")
class RelayRedisTlsTest(RelayCase):
    def setUp(self):
        super().setUp()
        self.c = certs()
        self.tls = {"cert": self.c["server"], "key": self.c["server_key"], "ca": self.c["ca"]}

    def start_tls_redis(self, **kw):
        r = RedisServer(tls=kw.pop("tls", self.tls), **kw).start()
        self.addCleanup(r.kill)
        return r

    def start_linked(self, redis, n, *extra):
        """n relays on `redis` (with the test CA), each logging its TLS connection, linked."""
        procs, urls = [], []
        for _ in range(n):
            p, url = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"], "--metrics", *extra)
            p.wait_for(rf"relay: redis 127\.0\.0\.1:{redis.port} connected \(tls, instance [0-9a-f]+\)")
            procs.append(p)
            urls.append(url)
        link_relays(self, urls)
        return procs, urls

    def assert_crosses(self, u_from, u_to, topic, n=20):
        """n messages published on u_from reach a subscriber on u_to once each, in order."""
        sub = self.json_client(u_to)
        sub.subscribe(topic)
        pub = self.raw(u_from, f"/{topic}?id=pub")
        wait_until(lambda: len(sub.presence(topic)) == 2, 10, "publisher and subscriber in presence")
        for i in range(n):
            pub.send_text(f"m{i}")
        self.assertEqual([m["data"] for m in sub.messages(topic, n)], [f"m{i}" for i in range(n)])
        # Exactly once: a marker sent after everything is the very next message.
        pub.send_text("end")
        self.assertEqual(sub.next(lambda m: m.get("type") == "message")["data"], "end")

    def assert_serves_locally(self, url, topic="local"):
        a = self.raw(url, f"/{topic}?id=a")
        b = self.raw(url, f"/{topic}?id=b")
        q = self.json_client(url)
        wait_until(lambda: len(q.presence(topic)) == 2, 10, "two local members")
        a.send_text("here")
        self.assertEqual(b.recv_message(), (1, b"here"))

    def secret_file(self, name, text, mode=0o600):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, mode)
        return path

    def test_two_relays_share_a_tls_redis_exactly_once(self):
        redis = self.start_tls_redis()  # TLS only: no plain port to fall back on
        self.assertTrue(redis.url.startswith("rediss://"))
        _, (u1, u2) = self.start_linked(redis, 2)
        self.assert_crosses(u1, u2, "room")
        self.assert_crosses(u2, u1, "back")
        for u in (u1, u2):
            self.assertEqual(self.metrics(u)["wsx_relay_redis_up"], 1)

    def test_client_certificate_required_by_redis(self):
        tls = dict(self.tls, auth_clients=True, client_cert=self.c["client"], client_key=self.c["client_key"])
        redis = self.start_tls_redis(tls=tls)
        with_cert = ("--redis-cert", self.c["client"], "--redis-key", self.c["client_key"])
        _, (u1, u2) = self.start_linked(redis, 2, *with_cert)
        self.assert_crosses(u1, u2, "mtls")
        # Without a client certificate: said clearly, and the relay serves its own clients.
        p, u3 = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"], "--metrics")
        # The server's alert says so; or, when a reset overtakes it, the relay's own reading of it.
        p.wait_for(rf"relay: redis 127\.0\.0\.1:{redis.port} unreachable \(TLS: the server (requires a client certificate"
                   r"|dropped the connection before any reply \(.+\), as one that requires a client certificate does) "
                   r"\(use --redis-cert and --redis-key\)(: .*)?\): serving local subscribers only", 15)
        self.assert_serves_locally(u3)
        self.assertEqual(self.metrics(u3)["wsx_relay_redis_up"], 0)
        # A client certificate the server's CA did not sign is refused, naming the file.
        other = os.path.join(self.tmp, "self-signed.pem")
        key = os.path.join(self.tmp, "self-signed.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                           "-subj", "/CN=stranger", "-keyout", key, "-out", other)
        p, _ = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"], "--redis-cert", other,
                                "--redis-key", key)
        p.wait_for(rf"unreachable \(TLS: the server (refused the client certificate --redis-cert {re.escape(other)}: "
                   rf"|dropped the connection before any reply \(.+\): did it refuse the client certificate "
                   rf"--redis-cert {re.escape(other)}\?)", 15)

    def test_wrong_ca_or_host_is_named(self):
        redis = self.start_tls_redis()
        p, url = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["otherca"], "--metrics")
        line = p.wait_for(rf"relay: redis 127\.0\.0\.1:{redis.port} unreachable \(TLS certificate not verified by "
                          rf"--redis-cacert {re.escape(self.c['otherca'])}: [^)]+\): serving local subscribers only", 15)
        self.assertNotIn("\n", line.group(0))
        self.assert_serves_locally(url)
        self.assertEqual(self.metrics(url)["wsx_relay_redis_up"], 0)
        # The system store does not know the test CA either.
        p, _ = self.start_relay("--redis", redis.url)
        p.wait_for(r"unreachable \(TLS certificate not verified by the system's trusted CAs \(use --redis-cacert FILE\)", 15)
        # The right CA, but a certificate for 127.0.0.1 served on 127.0.0.2: the address is checked.
        other_host = self.start_tls_redis(bind="127.0.0.2")
        p, _ = self.start_relay("--redis", other_host.url, "--redis-cacert", self.c["ca"])
        p.wait_for(rf"relay: redis 127\.0\.0\.2:{other_host.port} unreachable \(TLS certificate not valid for "
                   r"127\.0\.0\.2: IP address mismatch\)", 15)

    def test_unusable_tls_files_are_usage_errors_naming_option_and_file(self):
        missing = os.path.join(self.tmp, "missing.pem")
        url = "rediss://127.0.0.1:1"  # never reached: the files are checked first
        for args, fragments in (
                (["--redis-cacert", missing], ["--redis-cacert", missing, "cannot read the file"]),
                (["--redis-cert", missing, "--redis-key", self.c["client_key"]], ["--redis-cert", missing]),
                (["--redis-cert", self.c["client"], "--redis-key", missing], ["--redis-key", missing]),
                (["--redis-cacert", self.c["client_key"]], ["--redis-cacert", self.c["client_key"], "not a usable PEM file"]),
                (["--redis-cert", self.c["client"], "--redis-key", self.c["server_key"]],
                 ["--redis-key", self.c["server_key"], "does not match --redis-cert"]),
                (["--redis-cert", self.c["client"]], ["--redis-cert and --redis-key go together"]),
                (["--redis-password-file", missing], ["--redis-password-file", missing])):
            with self.subTest(args=args):
                r = self.wsx("relay", "127.0.0.1:0", "--redis", url, *args, timeout=10)
                self.assertExit(r, 2)
                self.assertOneError(r, *fragments)
        r = self.wsx("relay", "127.0.0.1:0", "--redis", "redis://127.0.0.1:1", "--redis-cacert", self.c["ca"], timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "rediss://")
        r = self.wsx("relay", "127.0.0.1:0", "--redis-cacert", self.c["ca"], timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "go with --redis")
        r = self.wsx("relay", "127.0.0.1:0", "--redis", "rediss://:inline@127.0.0.1:1", "--redis-password-file",
                     self.secret_file("pw", "x"), timeout=10)
        self.assertExit(r, 2)
        self.assertOneError(r, "--redis-password-file", "cannot be combined")

    def test_password_from_a_file_or_the_environment(self):
        redis = self.start_tls_redis(password="s3cret pass")
        good = self.secret_file("good", "s3cret pass")
        p1, u1 = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"], "--redis-password-file", good,
                                  "--metrics")
        p1.wait_for(r"connected \(tls, instance")
        # From the environment when the URL has none.
        env = dict(os.environ, WSX_REDIS_PASSWORD="s3cret pass")
        p2 = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "--redis", redis.url, "--redis-cacert", self.c["ca"],
                         "--metrics"], env=env)
        u2 = p2.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        p2.wait_for(r"connected \(tls, instance")
        link_relays(self, [u1, u2])
        self.assert_crosses(u1, u2, "authed")
        # A wrong password says authentication failed; the relay serves its own clients.
        bad = self.secret_file("bad", "not it", mode=0o644)
        p3, u3 = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"], "--redis-password-file", bad,
                                  "--metrics")
        p3.wait_for(rf"relay: redis 127\.0\.0\.1:{redis.port} unreachable \(authentication failed: WRONGPASS", 15)
        warning = rf"^wsx: warning: --redis-password-file '{re.escape(bad)}': other users can read it"
        self.assertTrue(any(re.search(warning, line) for line in p3.stderr_lines), p3.stderr_lines)
        self.assert_serves_locally(u3)
        # No password at all: the server's NOAUTH, and where a password can come from.
        p4, _ = self.start_relay("--redis", redis.url, "--redis-cacert", self.c["ca"])
        p4.wait_for(r"unreachable \(authentication required: the server wants a password .*--redis-password-file", 15)
        # The file wins over the environment's wrong password; never shown in the log.
        env = dict(os.environ, WSX_REDIS_PASSWORD="wrong")
        p5 = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "--redis", redis.url, "--redis-cacert", self.c["ca"],
                         "--redis-password-file", good], env=env)
        p5.wait_for(r"connected \(tls, instance")
        for p in (p1, p2, p3, p4, p5):
            p.stop()
            self.assertNotIn("s3cret", p.rest_of_stderr())

    def test_tls_redis_restarted(self):
        redis = self.start_tls_redis()
        procs, (u1, u2) = self.start_linked(redis, 2, "--redis-timeout", "500ms")
        redis.kill()
        for p in procs:
            p.wait_for(r"relay: redis connection lost \(.+\): serving local subscribers only, reconnecting", 10)
        self.assert_serves_locally(u1)
        again = redis.again().start()
        self.addCleanup(again.kill)
        for p in procs:
            p.wait_for(r"relay: redis reconnected after [\d.]+s", 15)
        for u in (u1, u2):
            wait_until(lambda: self.metrics(u).get("wsx_relay_redis_up") == 1, 15, "reconnected")
        # Subscriptions were restored: messages cross again, both ways, once each.
        link_relays(self, [u1, u2])
        self.assert_crosses(u1, u2, "after")
        self.assert_crosses(u2, u1, "after2")
        self.assertGreaterEqual(self.metrics(u1)["wsx_relay_redis_disconnects_total"], 1)

    def test_tls_redis_frozen(self):
        redis = self.start_tls_redis()
        procs, (u1, u2) = self.start_linked(redis, 2, "--redis-timeout", "500ms")
        os.kill(redis.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: redis.proc.poll() is None and os.kill(redis.proc.pid, signal.SIGCONT))
        # Only a command in flight can go unanswered: a publish on each instance makes one.
        for u in (u1, u2):
            self.raw(u, "/poke?id=poke").send_text("poke")
        for p in procs:
            p.wait_for(r"relay: redis connection lost \(no reply within 500ms\)", 10)
        os.kill(redis.proc.pid, signal.SIGCONT)
        for p in procs:
            p.wait_for(r"relay: redis reconnected after [\d.]+s", 15)
        link_relays(self, [u1, u2])
        self.assert_crosses(u1, u2, "thawed")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


if __name__ == "__main__":
    wsxtest.main()
