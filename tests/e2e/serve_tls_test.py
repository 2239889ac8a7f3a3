"""wsx serve over TLS: --tls-cert/--tls-key, --tls-self-signed (fingerprint printed) and
--client-ca (mutual TLS), with wsx connect as the client."""
import re

import wsxtest


class TlsTest(wsxtest.WsxTestCase):
    def test_self_signed_prints_fingerprint(self):
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--tls-self-signed"])
        url = p.wait_for(r"listening on (wss://127\.0\.0\.1:\d+)").group(1)
        self.assertTrue(any(re.search(r"fingerprint (?:[0-9A-F]{2}:){31}[0-9A-F]{2}$", l) for l in p.stderr_lines),
                        p.stderr_lines)
        r = self.wsx("connect", url + "/", "-k", "--send", "secure", "-n", "1", timeout=30)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"secure\n")

    def test_mutual_tls(self):
        c = wsxtest.certs()
        p, url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"], "--client-ca", c["ca"],
                                   scheme="wss")
        self.assertTrue(url.startswith("wss://"))
        ok = self.wsx("connect", url, "--cacert", c["ca"], "--cert", c["client"], "--key", c["client_key"],
                      "--send", "with cert", "-n", "1", timeout=30)
        self.assertExit(ok, 0)
        self.assertEqual(ok.stdout, b"with cert\n")
        refused = self.wsx("connect", url, "--cacert", c["ca"], "--send", "no cert", "-n", "1", timeout=30)
        self.assertExit(refused, 5)
        # The server survives and keeps serving.
        again = self.wsx("connect", url, "--cacert", c["ca"], "--cert", c["client"], "--key", c["client_key"],
                         "--send", "again", "-n", "1", timeout=30)
        self.assertExit(again, 0)

    def test_missing_key_is_a_usage_error(self):
        c = wsxtest.certs()
        r = self.wsx("serve", "127.0.0.1:0", "--tls-cert", c["server"])
        self.assertExit(r, 2)


if __name__ == "__main__":
    wsxtest.main()
