"""wsx serve authentication and rate limits: --token, --jwt-secret, --jwt-public-key,
--basic-auth, --origin (HTTP 401/403 before the upgrade), WSX_SUB for --exec,
--rate-limit (close 1008 or drop), --connect-rate-limit (HTTP 429)."""
import base64
import json
import os
import shlex
import subprocess
import time

import wsxtest
from wsxtest import b64url, jwt_hs256
from serve_helpers import RawWS



def jwt_rs256(key_path, claims, tmp):
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signing_input = os.path.join(tmp, "signing_input")
    with open(signing_input, "w") as f:
        f.write(f"{head}.{body}")
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path, signing_input], check=True,
                         capture_output=True, timeout=30).stdout
    return f"{head}.{body}.{b64url(sig)}"


class AuthTest(wsxtest.WsxTestCase):
    def status(self, url, path="/", headers=None):
        ws = RawWS(url, path, headers=headers, expect_upgrade=False)
        status = ws.status
        body = ws.buf
        ws.close()
        return status, body

    def test_token_header_and_query(self):
        p, url = self.start_server("--token", "s3cret")
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer s3cret"})[0], 101)
        self.assertEqual(self.status(url, "/?token=s3cret")[0], 101)
        status, body = self.status(url, headers={"Authorization": "Bearer wrong"})
        self.assertEqual(status, 401)
        self.assertEqual(self.status(url)[0], 401)
        # wsx connect speaks the same language.
        r = self.wsx("connect", url, "--token", "s3cret", "--send", "hi", "-n", "1")
        self.assertExit(r, 0)
        r = self.wsx("connect", url, "--token", "nope", "--send", "hi", "-n", "1")
        self.assertExit(r, 6)

    def test_empty_secrets_are_refused(self):
        # An unset variable (--token "$UNSET") must not leave the server open to everyone.
        for cmd in ("serve", "relay", "proxy"):
            extra = ["--to", "ws://127.0.0.1:9/"] if cmd == "proxy" else []
            for args, option in ((["--token", ""], "--token"), (["--jwt-secret", ""], "--jwt-secret"),
                                 (["--basic-auth", ""], "--basic-auth"), (["--basic-auth", ":"], "--basic-auth"),
                                 (["--basic-auth", "ann:"], "--basic-auth"),
                                 (["--jwt-public-key", ""], "--jwt-public-key")):
                with self.subTest(cmd=cmd, args=args):
                    listen = ["--listen", "ws://127.0.0.1:0"] if cmd == "proxy" else ["127.0.0.1:0"]
                    r = self.wsx(cmd, *listen, *extra, *args, timeout=10)
                    self.assertExit(r, 2)
                    errors = self.error_lines(r)
                    self.assertEqual(len(errors), 1, r.stderr)
                    self.assertIn(option, errors[0])
                    self.assertIn("empty", errors[0])
                    self.assertNotIn(b"listening on", r.stderr)

    def test_basic_auth(self):
        p, url = self.start_server("--basic-auth", "ann:pw")
        good = "Basic " + base64.b64encode(b"ann:pw").decode()
        bad = "Basic " + base64.b64encode(b"ann:nope").decode()
        self.assertEqual(self.status(url, headers={"Authorization": good})[0], 101)
        self.assertEqual(self.status(url, headers={"Authorization": bad})[0], 401)

    def test_origin_allow_list(self):
        p, url = self.start_server("--origin", "https://app.example", "--origin", "https://*.good.test")
        self.assertEqual(self.status(url, headers={"Origin": "https://app.example"})[0], 101)
        self.assertEqual(self.status(url, headers={"Origin": "https://x.good.test"})[0], 101)
        self.assertEqual(self.status(url, headers={"Origin": "https://evil.example"})[0], 403)
        self.assertEqual(self.status(url)[0], 403)

    def test_jwt_hs256_and_subject_for_exec(self):
        p, url = self.start_server("--jwt-secret", "k3y", "--exec", "sh -c " + shlex.quote('echo "sub=$WSX_SUB"'))
        now = int(time.time())
        token = jwt_hs256("k3y", {"sub": "alice", "exp": now + 300})
        ws = RawWS(url, "/?token=" + token)
        self.assertEqual(ws.recv_message(), (1, b"sub=alice"))
        expired = jwt_hs256("k3y", {"sub": "alice", "exp": now - 3600})
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + expired})[0], 401)
        forged = jwt_hs256("other", {"sub": "alice", "exp": now + 300})
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + forged})[0], 401)
        not_yet = jwt_hs256("k3y", {"sub": "alice", "nbf": now + 3600})
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + not_yet})[0], 401)

    def test_jwt_rs256_public_key(self):
        key = os.path.join(self.tmp, "rsa.pem")
        pub = os.path.join(self.tmp, "rsa.pub")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True, timeout=30)
        p, url = self.start_server("--jwt-public-key", pub)
        token = jwt_rs256(key, {"sub": "bob", "exp": int(time.time()) + 300}, self.tmp)
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + token})[0], 101)
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + token[:-4] + "AAAA"})[0], 401)
        # An HS256 token "signed" with the public key text must not pass (algorithm confusion).
        with open(pub) as f:
            confused = jwt_hs256(f.read(), {"sub": "eve", "exp": int(time.time()) + 300})
        self.assertEqual(self.status(url, headers={"Authorization": "Bearer " + confused})[0], 401)

    def test_rate_limit_closes_1008(self):
        p, url = self.start_server("--rate-limit", "5/s,burst=5", "--metrics")
        ws = RawWS(url)
        for i in range(20):
            ws.send_text(f"m{i}")
        got = []
        while True:
            item = ws.recv_message()
            if item[0] == "close":
                self.assertEqual(item[1:], (1008, "rate limit exceeded"))
                break
            got.append(item)
        self.assertGreaterEqual(len(got), 5)
        self.assertLess(len(got), 20)
        ws.send_close(1008)
        ws.close()
        p.wait_for(r"code=1008 .*rate_limited=\d+")

    def test_rate_limit_drop(self):
        p, url = self.start_server("--rate-limit", "5/s,burst=5", "--rate-limit-policy", "drop")
        ws = RawWS(url)
        for i in range(20):
            ws.send_text(f"m{i}")
        ws.send_close()
        got = []
        while True:
            item = ws.recv_message()
            if item[0] == "close":
                self.assertEqual(item[1], 1000)
                break
            got.append(item[1])
        ws.close()
        self.assertEqual(got[:5], [b"m0", b"m1", b"m2", b"m3", b"m4"])
        self.assertLess(len(got), 20)
        m = p.wait_for(r"rate_limited=(\d+)")
        self.assertEqual(int(m.group(1)) + len(got), 20)

    def test_connect_rate_limit_429(self):
        p, url = self.start_server("--connect-rate-limit", "1/m,burst=2")
        self.assertEqual(self.status(url)[0], 101)
        self.assertEqual(self.status(url)[0], 101)
        status, body = self.status(url)
        self.assertEqual(status, 429)
        self.assertIn(b"too many connection attempts", body)

    def test_bad_options_reported(self):
        r = self.wsx("serve", "127.0.0.1:0", "--jwt-public-key", "/nonexistent.pem", "--rate-limit", "fast",
                     "--basic-auth", "nocolon")
        self.assertExit(r, 2)
        err = r.stderr.decode()
        self.assertIn("--jwt-public-key", err)
        self.assertIn("--rate-limit", err)
        self.assertIn("--basic-auth", err)


if __name__ == "__main__":
    wsxtest.main()
