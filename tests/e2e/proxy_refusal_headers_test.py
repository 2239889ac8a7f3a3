"""wsx proxy: an upstream's refusal of the upgrade goes back to the proxy's client with the
header fields it needs to try again: every WWW-Authenticate challenge and Retry-After. A client
can then answer a backend's challenge through the proxy."""
import base64

import serve_helpers
import wsxtest
from proxy_helpers import start_proxy


def fields(head, name):
    """The values of every `name` field of a response head, in order."""
    out = []
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


class RefusalHeadersTest(wsxtest.WsxTestCase):
    def test_challenges_reach_the_client_and_the_answer_gets_through(self):
        # A backend that takes a bearer token or Basic credentials offers both challenges.
        b = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", "--basic-auth", "u:p", "--token", "t0k"])
        backend = b.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        direct = serve_helpers.RawWS(backend, expect_upgrade=False)
        direct.close()
        expected = fields(direct.response_head, "WWW-Authenticate")
        self.assertEqual(len(expected), 2, direct.response_head)

        _, url = start_proxy(self, "--to", backend, "--health-interval", "1h")
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        r.close()
        self.assertEqual(r.status, 401)
        self.assertEqual(fields(r.response_head, "WWW-Authenticate"), expected)

        # The challenge answered through the proxy: the upgrade goes through.
        cred = base64.b64encode(b"u:p").decode()
        ok = serve_helpers.RawWS(url, headers={"Authorization": f"Basic {cred}"})
        self.assertEqual(ok.status, 101)
        ok.close()

    def test_retry_after_reaches_the_client(self):
        for status in (403, 429):
            with self.subTest(status=status):
                _, up = self.start_peer("ws_server.py", "--mode", "reject", "--status", str(status),
                                        "--header", "Retry-After: 7")
                _, url = start_proxy(self, "--to", f"ws://127.0.0.1:{up}", "--health-interval", "1h")
                r = serve_helpers.RawWS(url, expect_upgrade=False)
                r.close()
                self.assertEqual(r.status, status)
                self.assertEqual(fields(r.response_head, "Retry-After"), ["7"])

    def test_other_fields_stay_with_the_proxy(self):
        # Only the fields a client needs to try again pass: the upstream's own (cookies, its
        # server name) are not the proxy's answer.
        _, up = self.start_peer("ws_server.py", "--mode", "reject", "--status", "401",
                                "--header", 'WWW-Authenticate: Basic realm="a"',
                                "--header", 'WWW-Authenticate: Bearer realm="b"',
                                "--header", "Set-Cookie: backend=1")
        _, url = start_proxy(self, "--to", f"ws://127.0.0.1:{up}", "--health-interval", "1h")
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        r.close()
        self.assertEqual(r.status, 401)
        self.assertEqual(fields(r.response_head, "WWW-Authenticate"), ['Basic realm="a"', 'Bearer realm="b"'])
        self.assertEqual(fields(r.response_head, "Set-Cookie"), [])


if __name__ == "__main__":
    wsxtest.main()
