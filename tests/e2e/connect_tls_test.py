"""`wsx connect` over TLS: a test CA, verification failures, --insecure, --sni, client certificates.

Behaviour these tests rely on:
- without --cacert the system store is used, which does not trust the test CA: exit 5 and
  the error names certificate verification.
- the server certificate is verified against the URL host, or against --sni when given.
- every TLS failure is exit 5, also a client certificate refused by the server (which
  TLS 1.3 reports only after the client's side of the handshake has completed), with one
  error line naming the cause (OpenSSL's verification result, such as "unable to get local
  issuer certificate" or "hostname mismatch") and how to get past it.
- ws:// to a TLS server is no TLS failure: the upgrade failed (6), and the line says wss://.
- an unreadable --cacert/--cert/--key file is a usage error (2), reported before connecting.
- mutual TLS is tested against a python `ssl` + websockets server with CERT_REQUIRED, which
  reports the subject of the client certificate it received.
"""
import json
import os
import subprocess

import wsxtest
from wsxtest import WsxTestCase


class TlsTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.c = wsxtest.certs()

    def tls_server(self):
        _, url = self.start_server("--tls-cert", self.c["server"], "--tls-key", self.c["server_key"])
        self.assertRegex(url, r"^wss://127\.0\.0\.1:\d+/$")
        return url

    def test_cacert_round_trip(self):
        url = self.tls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], input=b"secret one\nsecret two\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"secret one\nsecret two\n")

    def test_localhost_name_verifies(self):
        url = self.tls_server().replace("127.0.0.1", "localhost")
        r = self.wsx("connect", url, "--cacert", self.c["ca"], input=b"by name\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"by name\n")

    def test_binary_over_tls(self):
        url = self.tls_server()
        data = os.urandom(300_000)
        r = self.wsx("connect", url, "--cacert", self.c["ca"], "-b", input=data)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)

    def assertTlsFailure(self, r, *fragments):
        """Exit 5 (TLS failed) and one error line naming the cause: each fragment in it."""
        self.assertExit(r, 5)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        for f in fragments:
            self.assertIn(f, errors[0])
        self.assertEqual(r.stdout, b"", "nothing was exchanged")
        return errors[0]

    def test_system_store_does_not_trust_test_ca(self):
        url = self.tls_server()
        port = url.rsplit(":", 1)[1].rstrip("/")
        r = self.wsx("connect", url, input=b"x\n")
        self.assertTlsFailure(r, f"TLS handshake with 127.0.0.1:{port} failed",
                              "certificate verification failed: unable to get local issuer certificate",
                              "(trust its CA with --cacert FILE, or skip verification with -k)")

    def test_other_ca_fails(self):
        url = self.tls_server()
        r = self.wsx("connect", url, "--cacert", self.c["otherca"], input=b"x\n")
        self.assertTlsFailure(r, "certificate verification failed: unable to get local issuer certificate",
                              "--cacert")

    def test_insecure_skips_verification(self):
        url = self.tls_server()
        for flag in ("--insecure", "-k"):
            with self.subTest(flag=flag):
                r = self.wsx("connect", url, flag, input=b"trust me\n")
                self.assertExit(r, 0)
                self.assertEqual(r.stdout, b"trust me\n")

    def test_hostname_mismatch_via_sni(self):
        url = self.tls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], "--sni", "other.name", input=b"x\n")
        # The CA is trusted: what fails is the name alone.
        line = self.assertTlsFailure(r, "certificate verification failed: hostname mismatch",
                                     "(the certificate is not for 'other.name')")
        self.assertNotIn("issuer", line)

    def test_sni_matching_certificate(self):
        url = self.tls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], "--sni", "localhost", input=b"sni ok\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"sni ok\n")

    def test_plain_client_to_tls_server_fails(self):
        # No TLS was attempted, so this is not a TLS failure: the upgrade failed (6), and the
        # line says to use wss://.
        url = self.tls_server().replace("wss://", "ws://")
        r = self.wsx("connect", url, "--connect-timeout", "3s", input=b"x\n")
        self.assertExit(r, 6)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn(f"upgrade with {url} failed", errors[0])
        self.assertIn("wss://", errors[0])

    def test_unreadable_cacert_is_usage_error(self):
        r = self.wsx("connect", "wss://127.0.0.1:1/", "--cacert", "/nonexistent/ca.pem")
        self.assertExit(r, 2)
        self.assertIn("/nonexistent/ca.pem", r.stderr.decode())

    # Mutual TLS ---------------------------------------------------------
    def mtls_server(self):
        _, port = self.start_peer("ws_server.py", "--mode", "info", "--tls-cert", self.c["server"], "--tls-key",
                                  self.c["server_key"], "--client-ca", self.c["ca"])
        return f"wss://127.0.0.1:{port}/mtls"

    def test_client_certificate_accepted(self):
        url = self.mtls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], "--cert", self.c["client"], "--key", self.c["client_key"],
                     "-n", "1", "--timeout", "10s")
        self.assertExit(r, 0)
        info = json.loads(r.stdout)
        self.assertEqual(info["path"], "/mtls")
        self.assertIn("wsx test client", info["client_cert"])

    def test_client_certificate_echo(self):
        url = self.mtls_server()
        # -n 2 (the server's info message and the echo): python-websockets answers the
        # client's Close at once, so an echo still in flight at stdin EOF could be lost.
        r = self.wsx_open_stdin("connect", url, "--cacert", self.c["ca"], "--cert", self.c["client"], "--key",
                                self.c["client_key"], "--send", "mutual", "-n", "2", "--timeout", "10s")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout.splitlines()[1:], [b"mutual"])

    def test_missing_client_certificate_fails_with_5(self):
        url = self.mtls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], input=b"x\n")
        # TLS 1.3 shows the refusal only after the client's side of the handshake, as an alert
        # or a hang-up: either way a TLS failure whose line asks for a client certificate.
        line = self.assertTlsFailure(r, "requires a client certificate, use --cert and --key")
        self.assertRegex(line, r"TLS (connection to|handshake with) 127\.0\.0\.1:\d+ ")
        self.assertNotIn("certificate verification failed", line)

    def test_client_certificate_from_wrong_ca_fails_with_5(self):
        # A self-signed client certificate the server cannot verify.
        d = self.tmp
        key = os.path.join(d, "self.key")
        crt = os.path.join(d, "self.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=stranger", "-keyout", key, "-out", crt],
                       check=True, capture_output=True, timeout=60)
        url = self.mtls_server()
        r = self.wsx("connect", url, "--cacert", self.c["ca"], "--cert", crt, "--key", key, input=b"x\n")
        # The server's certificate verified (it is the client's that was refused), and the line
        # says so.
        line = self.assertTlsFailure(r, "refused the client certificate")
        self.assertNotIn("certificate verification failed", line)


if __name__ == "__main__":
    wsxtest.main()
