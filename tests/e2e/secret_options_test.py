"""Secrets off the command line (where every user sees them in `ps`): --token-file and --auth-file
for connect and bench, --token-file, --jwt-secret-file and --basic-auth-file for the listeners,
and the environment (WSX_TOKEN, WSX_AUTH; WSX_SERVER_TOKEN, WSX_JWT_SECRET, WSX_BASIC_AUTH).
A secret file readable by other users gets a warning; conflicts and unusable files exit 2."""
import os

import wsxtest
from wsxtest import jwt_hs256
from serve_helpers import RawWS

# Nothing listens on port 1: a run that got past its checks would fail with exit 4, not 2.
NOWHERE = "ws://127.0.0.1:1/"
SECRET_ENV = ("WSX_TOKEN", "WSX_AUTH", "WSX_SERVER_TOKEN", "WSX_JWT_SECRET", "WSX_BASIC_AUTH")


def clean_env(**extra):
    """The test's environment without any WSX_* secret, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(extra)
    return env


class SecretCase(wsxtest.WsxTestCase):
    def secret_file(self, name, content, mode=0o600):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, mode)
        return path

    def serve(self, *args, env=None):
        """`wsx serve 127.0.0.1:0 ARGS...` (echo) in `env`; returns (process, url)."""
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", *args], env=env or clean_env())
        m = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)")
        return p, m.group(1) + "/"

    def status(self, url, headers=None, path="/"):
        ws = RawWS(url, path, headers=headers, expect_upgrade=False)
        ws.close()
        return ws.status

    def connect(self, url, *args, env=None):
        return self.wsx("connect", url, *args, "--send", "hi", "-n", "1", env=env or clean_env(), timeout=20)

    def warnings(self, text):
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        return [l for l in text.splitlines() if l.startswith("wsx: warning:")]


class ClientSecrets(SecretCase):
    def test_token_file_authenticates(self):
        p, url = self.serve("--token", "s3cret")
        path = self.secret_file("token", "s3cret\n")
        r = self.connect(url, "--token-file", path)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hi\n")
        self.assertEqual(self.warnings(r.stderr), [])
        # The file's content is what is sent: another one is refused.
        r = self.connect(url, "--token-file", self.secret_file("wrong", "nope\n"))
        self.assertExit(r, 6)
        # One trailing CRLF is dropped as well.
        self.assertExit(self.connect(url, "--token-file", self.secret_file("crlf", "s3cret\r\n")), 0)

    def test_auth_file_authenticates_and_bench_takes_it(self):
        p, url = self.serve("--basic-auth", "alice:pw")
        path = self.secret_file("auth", "alice:pw\n")
        self.assertExit(self.connect(url, "--auth-file", path), 0)
        self.assertExit(self.connect(url, "--auth-file", self.secret_file("bad", "alice:nope\n")), 6)
        r = self.wsx("bench", url, "--auth-file", path, "-c", "1", "-n", "5", timeout=60, env=clean_env())
        self.assertExit(r, 0)
        tok, turl = self.serve("--token", "t0k")
        r = self.wsx("bench", turl, "--token-file", self.secret_file("t", "t0k"), "-c", "1", "-n", "5",
                     timeout=60, env=clean_env())
        self.assertExit(r, 0)

    def test_environment(self):
        p, url = self.serve("--token", "s3cret")
        self.assertExit(self.connect(url, env=clean_env(WSX_TOKEN="s3cret")), 0)
        self.assertExit(self.connect(url, env=clean_env(WSX_TOKEN="wrong")), 6)
        # The command line wins over the environment.
        self.assertExit(self.connect(url, "--token", "s3cret", env=clean_env(WSX_TOKEN="wrong")), 0)
        b, burl = self.serve("--basic-auth", "alice:pw")
        self.assertExit(self.connect(burl, env=clean_env(WSX_AUTH="alice:pw")), 0)
        self.assertExit(self.connect(burl, env=clean_env(WSX_AUTH="alice:nope")), 6)
        # With --token-query the environment's token goes in the URL.
        r = self.connect(url, "--token-query", "token", "-v", env=clean_env(WSX_TOKEN="s3cret"))
        self.assertExit(r, 0)
        self.assertIn(b"> GET /?token=s3cret HTTP/1.1", r.stderr)
        self.assertNotIn(b"Authorization", r.stderr)

    def test_warning_for_a_file_others_can_read(self):
        p, url = self.serve("--token", "s3cret")
        path = self.secret_file("token", "s3cret\n", 0o644)
        r = self.connect(url, "--token-file", path)
        self.assertExit(r, 0)  # used all the same
        self.assertEqual(self.warnings(r.stderr),
                         [f"wsx: warning: --token-file '{path}': other users can read it (mode 0644): chmod 600 '{path}'"])
        r = self.connect(url, "--token-file", self.secret_file("group", "s3cret\n", 0o640))
        self.assertEqual(len(self.warnings(r.stderr)), 1)
        r = self.connect(url, "--token-file", self.secret_file("mine", "s3cret\n", 0o600))
        self.assertEqual(self.warnings(r.stderr), [])

    def test_conflicts_and_bad_files_are_usage_errors(self):
        token = self.secret_file("token", "t\n")
        auth = self.secret_file("auth", "u:p\n")
        cases = [
            (["--token", "t", "--token-file", token], "--token and --token-file cannot be combined"),
            (["--auth", "u:p", "--auth-file", auth], "--auth and --auth-file cannot be combined"),
            (["--auth-file", auth, "--token-file", token], "--auth-file and --token-file cannot be combined"),
            (["--token-file", os.path.join(self.tmp, "missing")],
             "--token-file '%s': cannot read the file (No such file or directory)" % os.path.join(self.tmp, "missing")),
            (["--token-file", self.secret_file("empty", "")], "is empty: put the secret in it, on one line"),
            (["--token-file", self.secret_file("newline", "\n")], "is empty"),
            (["--token-file", self.tmp], "is a directory"),
            (["--token-file", self.secret_file("two", "a\nb\n")], "holds more than one line"),
            (["--auth-file", self.secret_file("nocolon", "alice\n")], "--auth-file: expected USER:PASS"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                for cmd in ("connect", "bench"):
                    extra = ["--send", "x"] if cmd == "connect" else ["-n", "1"]
                    r = self.wsx(cmd, NOWHERE, *args, *extra, env=clean_env(), timeout=20)
                    self.assertExit(r, 2)
                    errors = self.error_lines(r)
                    self.assertEqual(len(errors), 1, errors)
                    self.assertIn(message, errors[0])
        r = self.wsx("connect", NOWHERE, "--send", "x", env=clean_env(WSX_TOKEN="t", WSX_AUTH="u:p"), timeout=20)
        self.assertExit(r, 2)
        self.assertIn("WSX_TOKEN and WSX_AUTH cannot be combined", self.error_lines(r)[0])


class ServerSecrets(SecretCase):
    def test_token_file(self):
        path = self.secret_file("token", "s3cret\n")
        p, url = self.serve("--token-file", path)
        self.assertEqual(self.warnings("\n".join(p.stderr_lines)), [])
        self.assertEqual(self.status(url, {"Authorization": "Bearer s3cret"}), 101)
        self.assertEqual(self.status(url, {"Authorization": "Bearer s3cretx"}), 401)
        self.assertEqual(self.status(url), 401)

    def test_jwt_secret_file(self):
        path = self.secret_file("jwt", "k3y\n")
        p, url = self.serve("--jwt-secret-file", path)
        self.assertEqual(self.status(url, {"Authorization": "Bearer " + jwt_hs256("k3y", {"sub": "a"})}), 101)
        self.assertEqual(self.status(url, {"Authorization": "Bearer " + jwt_hs256("other", {"sub": "a"})}), 401)

    def test_basic_auth_file_and_the_relay_takes_it(self):
        path = self.secret_file("basic", "alice:pw\n")
        p, url = self.serve("--basic-auth-file", path)
        self.assertExit(self.connect(url, "--auth", "alice:pw"), 0)
        self.assertExit(self.connect(url, "--auth", "alice:nope"), 6)
        relay = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "--basic-auth-file", path], env=clean_env())
        rurl = relay.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        self.assertEqual(self.status(rurl, path="/t"), 401)
        self.assertEqual(self.status(rurl, {"Authorization": "Basic YWxpY2U6cHc="}, path="/t"), 101)

    def test_environment(self):
        p, url = self.serve(env=clean_env(WSX_SERVER_TOKEN="s3cret"))
        self.assertEqual(self.status(url), 401)
        self.assertEqual(self.status(url, {"Authorization": "Bearer s3cret"}), 101)
        p, url = self.serve(env=clean_env(WSX_JWT_SECRET="k3y"))
        self.assertEqual(self.status(url, {"Authorization": "Bearer " + jwt_hs256("k3y", {"sub": "a"})}), 101)
        self.assertEqual(self.status(url), 401)
        p, url = self.serve(env=clean_env(WSX_BASIC_AUTH="alice:pw"))
        self.assertEqual(self.status(url, {"Authorization": "Basic YWxpY2U6cHc="}), 101)
        self.assertEqual(self.status(url), 401)
        # An authentication option on the command line is the whole policy: the environment is not used.
        p, url = self.serve("--token", "cli", env=clean_env(WSX_BASIC_AUTH="alice:pw"))
        self.assertEqual(self.status(url, {"Authorization": "Basic YWxpY2U6cHc="}), 401)
        self.assertEqual(self.status(url, {"Authorization": "Bearer cli"}), 101)
        # The client's WSX_TOKEN is not the server's.
        p, url = self.serve(env=clean_env(WSX_TOKEN="s3cret"))
        self.assertEqual(self.status(url), 101)

    def test_warning_for_a_file_others_can_read(self):
        path = self.secret_file("jwt", "k3y\n", 0o644)
        p, url = self.serve("--jwt-secret-file", path)
        self.assertEqual(self.warnings("\n".join(p.stderr_lines)),
                         [f"wsx: warning: --jwt-secret-file '{path}': other users can read it (mode 0644): chmod 600 '{path}'"])

    def test_conflicts_and_bad_files_are_usage_errors(self):
        f = self.secret_file("s", "a:b\n")
        cases = [
            (["--token", "t", "--token-file", f], "--token and --token-file cannot be combined"),
            (["--jwt-secret", "k", "--jwt-secret-file", f], "--jwt-secret and --jwt-secret-file cannot be combined"),
            (["--basic-auth", "a:b", "--basic-auth-file", f], "--basic-auth and --basic-auth-file cannot be combined"),
            (["--jwt-secret-file", self.secret_file("empty", "")], "--jwt-secret-file '%s': is empty" % os.path.join(self.tmp, "empty")),
            (["--basic-auth-file", self.secret_file("nopass", "alice:\n")],
             "--basic-auth-file: the password is empty"),
            (["--basic-auth-file", os.path.join(self.tmp, "missing")], "cannot read the file"),
        ]
        for args, message in cases:
            for cmd in ("serve", "relay"):
                with self.subTest(cmd=cmd, args=args):
                    r = self.wsx(cmd, "127.0.0.1:0", *args, env=clean_env(), timeout=20)
                    self.assertExit(r, 2)
                    errors = self.error_lines(r)
                    self.assertEqual(len(errors), 1, errors)
                    self.assertIn(message, errors[0])
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", NOWHERE, "--token-file", f, env=clean_env(), timeout=20)
        self.assertExit(r, 2)
        self.assertIn("--token-file: a tcp:// listener carries raw TCP", r.stderr.decode())


if __name__ == "__main__":
    wsxtest.main()
