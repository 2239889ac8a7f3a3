"""--auth-failure close (serve, relay, proxy): a refused client is let in and closed at once with
1008 and the reason, which a browser's WebSocket API can read (it hides a refused upgrade's
HTTP status); and a connection whose JWT `exp` passes while it is open is closed with 1008
"token expired". Headless Chromium reads both codes."""
import os
import time
import unittest

import wsxtest
from wsxtest import jwt_hs256
from serve_helpers import RawWS
from proxy_helpers import start_proxy

SECRET = "jwt-test-secret"


class AuthCloseTest(wsxtest.WsxTestCase):
    def refused(self, url, path="/", headers=None):
        """Connects; asserts the upgrade was accepted and then closed by the server.
        Returns (messages before the Close, code, reason)."""
        ws = RawWS(url, path, headers=headers)
        self.addCleanup(ws.sock.close)
        self.assertEqual(ws.status, 101)
        got, close = ws.messages_until_close()
        ws.send_close(close[1])
        return got, close[1], close[2]

    def echoes(self, url, path):
        ws = RawWS(url, path)
        self.addCleanup(ws.sock.close)
        ws.send_text("still here")
        self.assertEqual(ws.recv_message(), (0x1, b"still here"))
        ws.send_close()
        self.assertEqual(ws.expect_close()[0], 1000)

    def test_serve_token_refusals_are_close_1008_with_the_reason(self):
        p, url = self.start_server("--token", "s3cret", "--auth-failure", "close")
        got, code, reason = self.refused(url, "/?token=wrong")
        self.assertEqual((got, code, reason), ([], 1008, "invalid token"))
        got, code, reason = self.refused(url)
        self.assertEqual(code, 1008)
        self.assertTrue(reason.startswith("missing credentials"), reason)
        # The right token is still served, and the access log tells the refused apart.
        self.echoes(url, "/?token=s3cret")
        line = r'^\S+ 127\.0\.0\.1:\d+ "/.*" \S+ in=\S+ out=\S+ code=(\d+)'
        self.assertEqual(sorted(p.wait_for(line).group(1) for _ in range(3)), ["1000", "1008", "1008"])

    def test_a_wrong_mode_is_a_usage_error(self):
        for cmd in ("serve", "relay"):
            with self.subTest(cmd=cmd):
                r = self.wsx(cmd, "127.0.0.1:0", "--token", "s3cret", "--auth-failure", "bogus", timeout=10)
                self.assertExit(r, 2)
                self.assertOneError(r, "--auth-failure", "'bogus' is not one of status, close")

    def test_default_is_still_an_http_status(self):
        p, url = self.start_server("--token", "s3cret")
        ws = RawWS(url, "/?token=wrong", expect_upgrade=False)
        self.addCleanup(ws.sock.close)
        self.assertEqual(ws.status, 401)

    def test_origin_refusal_is_close_1008(self):
        p, url = self.start_server("--origin", "https://app.example", "--auth-failure", "close")
        _, code, reason = self.refused(url, headers={"Origin": "https://evil.example"})
        self.assertEqual(code, 1008)
        self.assertIn("origin not allowed", reason)
        ws = RawWS(url, headers={"Origin": "https://app.example"})
        self.addCleanup(ws.sock.close)
        ws.send_text("hi")
        self.assertEqual(ws.recv_message(), (0x1, b"hi"))

    def test_a_refused_exec_client_starts_no_process(self):
        marker = os.path.join(self.tmp, "started")
        p, url = self.start_server("--token", "s3cret", "--auth-failure", "close",
                                   "--exec", f"sh -c 'echo x >> {marker}; cat'")
        _, code, reason = self.refused(url, "/?token=wrong")
        self.assertEqual((code, reason), (1008, "invalid token"))
        self.echoes(url, "/?token=s3cret")
        with open(marker) as f:
            self.assertEqual(f.read(), "x\n")  # only the accepted client's child ran

    def test_expired_at_upgrade_is_close_1008_token_expired(self):
        p, url = self.start_server("--jwt-secret", SECRET, "--jwt-leeway", "0s", "--auth-failure", "close")
        old = jwt_hs256(SECRET, {"sub": "ann", "exp": int(time.time()) - 60})
        _, code, reason = self.refused(url, "/?token=" + old)
        self.assertEqual((code, reason), (1008, "token expired"))

    def test_a_token_expiring_while_open_closes_the_connection(self):
        # Without --auth-failure close too: the token's end is the connection's end.
        p, url = self.start_server("--jwt-secret", SECRET, "--jwt-leeway", "1s")
        exp = int(time.time()) + 2
        # A token without exp never expires: opened first, it is still served after the other ends.
        forever = RawWS(url, "/?token=" + jwt_hs256(SECRET, {"sub": "bob"}))
        self.addCleanup(forever.sock.close)
        ws = RawWS(url, "/?token=" + jwt_hs256(SECRET, {"sub": "ann", "exp": exp + 0.5}))
        self.addCleanup(ws.sock.close)
        ws.send_text("before")
        self.assertEqual(ws.recv_message(), (0x1, b"before"))
        code, reason = ws.expect_close(timeout=15)
        closed_at = time.time()
        self.assertEqual((code, reason), (1008, "token expired"))
        # Not before exp (a fraction: honoured as such) plus the leeway, and not long after.
        self.assertGreaterEqual(closed_at, exp + 1.5 - 0.05)
        self.assertLess(closed_at, exp + 1.5 + 5)
        forever.send_text("no exp")
        self.assertEqual(forever.recv_message(), (0x1, b"no exp"))

    def test_a_negative_or_huge_exp(self):
        p, url = self.start_server("--jwt-secret", SECRET, "--jwt-leeway", "0s", "--auth-failure", "close")
        for exp in (-5, -9.3e15, -1e300):
            with self.subTest(exp=exp):
                _, code, reason = self.refused(url, "/?token=" + jwt_hs256(SECRET, {"exp": exp}))
                self.assertEqual((code, reason), (1008, "token expired"))
        self.echoes(url, "/?token=" + jwt_hs256(SECRET, {"exp": 253402300799}))  # 9999-12-31

    def test_refused_clients_take_no_connection_slot(self):
        # Five refused clients that never answer the Close: the one slot left is still there for
        # a client with the right token, at once.
        p, url = self.start_server("--token", "s3cret", "--auth-failure", "close", "--max-connections", "1")
        silent = []
        for _ in range(5):
            ws = RawWS(url, "/?token=wrong")
            self.addCleanup(ws.sock.close)
            self.assertEqual(ws.status, 101)
            silent.append(ws)
        self.echoes(url, "/?token=s3cret")
        # Each was closed without waiting for its answer: TCP ends behind the Close.
        for ws in silent:
            self.assertEqual(ws.expect_close()[0], 1008)
            with self.assertRaises(EOFError):
                ws.recv_frame(timeout=5)

    def test_oneshot_waits_for_an_accepted_client(self):
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--oneshot", "--token", "s3cret", "--auth-failure", "close"])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1) + "/"
        _, code, _ = self.refused(url, "/?token=wrong")
        self.assertEqual(code, 1008)
        self.echoes(url, "/?token=s3cret")
        self.assertEqual(p.proc.wait(10), 0)

    def test_a_refused_client_is_not_read(self):
        # What a refused client sends is discarded unread, and it is cut off within a second or
        # so however much it sends: a 60 MiB frame, then more, costs no memory.
        p, url = self.start_server("--token", "s3cret", "--auth-failure", "close")
        before = wsxtest.rss_kib(p.proc.pid)
        ws = RawWS(url, "/?token=wrong")
        self.addCleanup(ws.sock.close)
        ws.sock.sendall(bytes([0x82, 0xFF]) + (60 << 20).to_bytes(8, "big") + b"\0\0\0\0")
        chunk = b"\0" * (256 << 10)
        sent, t0 = 0, time.monotonic()
        with self.assertRaises(OSError):
            while time.monotonic() - t0 < 15:
                ws.sock.sendall(chunk)
                sent += len(chunk)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(ws.expect_close()[0], 1008)
        p.wait_for(r'"/\?token=REDACTED" \S+ in=0/0B out=0/0B code=1008')
        if not wsxtest.SANITIZED:
            self.assertLess(wsxtest.rss_kib(p.proc.pid) - before, 30 * 1024, f"{sent >> 20} MiB were sent")
        self.echoes(url, "/?token=s3cret")

    def test_the_subprotocol_list_is_not_shown_to_a_refused_client(self):
        p, url = self.start_server("--token", "s3cret", "--auth-failure", "close", "--subprotocol", "secret.v2",
                                   "--require-subprotocol")
        for offer in ({}, {"Sec-WebSocket-Protocol": "secret.v2"}):
            with self.subTest(offer=offer):
                ws = RawWS(url, "/?token=wrong", headers=offer)
                self.addCleanup(ws.sock.close)
                self.assertEqual(ws.status, 101)
                self.assertNotIn("secret.v2", ws.response_head)
                self.assertEqual(ws.expect_close(), (1008, "invalid token"))

    def test_relay_refused_client_neither_subscribes_nor_publishes(self):
        p = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "--token", "s3cret", "--auth-failure", "close"])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        sub = RawWS(url, "/news?token=s3cret")
        self.addCleanup(sub.sock.close)
        bad = RawWS(url, "/news?token=wrong")
        self.addCleanup(bad.sock.close)
        self.assertEqual(bad.status, 101)
        bad.send_text("from the refused client")
        got, close = bad.messages_until_close()
        self.assertEqual(close[1:], (1008, "invalid token"))
        pub = RawWS(url, "/news?token=s3cret")
        self.addCleanup(pub.sock.close)
        pub.send_text("from the publisher")
        # The subscriber's next message is the publisher's: nothing of the refused client's.
        self.assertEqual(sub.recv_message(), (0x1, b"from the publisher"))
        self.assertEqual(got, [])

    def test_proxy_refused_client_opens_no_upstream(self):
        up = self.start([wsxtest.WSX, "serve", "127.0.0.1:0"])
        up_url = up.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        p, url = start_proxy(self, "--to", up_url, "--token", "s3cret", "--auth-failure", "close")
        _, code, reason = self.refused(url, "/?token=wrong")
        self.assertEqual((code, reason), (1008, "invalid token"))
        self.echoes(url, "/?token=s3cret")
        up.wait_for(r" code=1000\b")
        up.stop()
        lines = [l for l in up.rest_of_stderr().splitlines() if " code=" in l]
        self.assertEqual(len(lines), 1, lines)  # the accepted client only

    @unittest.skipUnless(wsxtest.CHROMIUM, "chromium not installed")
    def test_chromium_reads_both_1008_closes(self):
        root = os.path.join(self.tmp, "www")
        os.makedirs(root)
        exp = int(time.time()) + 3
        token = jwt_hs256(SECRET, {"sub": "page", "exp": exp})
        page = """<!doctype html><html><body><div id="out">pending</div><script>
const out = document.getElementById('out');
const got = [];
function open(query, then) {
  const ws = new WebSocket('ws://' + location.host + '/ws' + query);
  ws.onopen = () => ws.send('hi');
  ws.onmessage = (e) => got.push('msg:' + e.data);
  ws.onclose = (e) => { got.push(e.code + ' ' + e.reason); then(); };
}
open('?token=not-a-jwt', () => open('?token=TOKEN', () => { out.textContent = 'RESULT[' + got.join('|') + ']'; }));
</script></body></html>""".replace("TOKEN", token)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write(page)
        p, url = self.start_server("--static", root, "--path", "/ws", "--jwt-secret", SECRET, "--jwt-leeway", "0s",
                                   "--auth-failure", "close")
        result = wsxtest.chromium_text_when(url.replace("ws://", "http://"), "document.getElementById('out').textContent",
                                            "RESULT[", timeout=40)
        self.assertEqual(result, "RESULT[1008 invalid token|msg:hi|1008 token expired]")


if __name__ == "__main__":
    wsxtest.main()
