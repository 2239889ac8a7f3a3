"""wsx proxy: what an upstream's HTTP answer to the upgrade means. A busy backend (5xx) is passed
over for the next one; a 4xx about the request goes back to the client as it came; a plain web
server's 200 is not a WebSocket server, for clients and health checks alike; backends marked
down are still tried when no other is left."""
import asyncio
import json
import signal

import websockets

import serve_helpers
import wsxtest
from proxy_helpers import (PORT_BACKEND, backend_up, backends_of, metric, run, start_port_backend, start_proxy,
                           start_status_server, wait_until)



class RefusalTest(wsxtest.WsxTestCase):
    def status_server(self, status):
        return start_status_server(self, status)

    def test_busy_backend_is_passed_over(self):
        # Backend A takes one connection (--max-connections 1), held here directly; the proxy
        # must take A's 503 as "busy" and join every client to B instead.
        a = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", "--max-connections", "1",
                        *PORT_BACKEND])
        m = a.wait_for(r"listening on (ws://127\.0\.0\.1:(\d+))")
        a_url, a_port = m.group(1), int(m.group(2))
        _, b_url, b_port = start_port_backend(self)
        proxy, url = start_proxy(self, "--to", a_url, "--to", b_url, "--health-interval", "1h", "--metrics")

        async def go():
            async with websockets.connect(a_url, open_timeout=5) as held:
                self.assertEqual(int(await asyncio.wait_for(held.recv(), 5)), a_port)
                ports = []
                for _ in range(4):
                    async with websockets.connect(url, open_timeout=5) as ws:
                        ports.append(int(await asyncio.wait_for(ws.recv(), 5)))
                return ports
        self.assertEqual(run(go()), [b_port] * 4)
        proxy.wait_for(r"upstream " + a_url + r" refused a client, trying the next: .*HTTP 503")
        self.assertEqual(backend_up(url, a_url), 1, "busy is not down")

    def test_json_log_has_only_json_lines(self):
        busy = self.status_server(503)
        proxy, url = start_proxy(self, "--to", busy, "--health-interval", "1h", "--log-format", "json")
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        self.assertEqual(r.status, 503)
        r.close()
        proxy.wait_for(r"refused a client, trying the next")
        proxy.stop()
        lines = [ln for ln in proxy.stderr_lines if ln.strip() and not ln.startswith("listening on ")]
        self.assertTrue(lines)
        for line in lines:  # the listening line stays text (--announce-json gives it as JSON)
            self.assertIsInstance(json.loads(line), dict, line)

    def test_every_backend_busy_is_503(self):
        _, up = self.start_peer("ws_server.py", "--mode", "reject", "--status", "503", "--body", "full")
        _, url = start_proxy(self, "--to", f"ws://127.0.0.1:{up}", "--health-interval", "1h")
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        self.assertEqual(r.status, 503)
        self.assertRegex(r.response_head, r"(?i)(^|\r\n)retry-after: 1(\r\n|$)")  # when to try again
        r.close()

    def test_client_error_from_the_upstream_reaches_the_client(self):
        for status in (401, 403, 404):
            with self.subTest(status=status):
                _, up = self.start_peer("ws_server.py", "--mode", "reject", "--status", str(status))
                backend = f"ws://127.0.0.1:{up}/?key=s3cret"
                proxy, url = start_proxy(self, "--to", backend, "--health-interval", "1h", "--metrics")
                r = serve_helpers.RawWS(url, path="/?token=client-secret", expect_upgrade=False)
                self.assertEqual(r.status, status)
                # The client's request was refused, not the backend broken.
                self.assertEqual(metric(url, "wsx_proxy_backend_failures_total", backend), 0)
                self.assertEqual(backend_up(url, backend), 1)
                body = r.response_head + r.buf.decode(errors="replace")
                self.assertIn(f"HTTP {status}", body)
                self.assertNotIn("s3cret", body, "the upstream's URL stays with the proxy")
                r.close()
                line = proxy.wait_for(rf"refused a client: .*HTTP {status}").string
                self.assertNotIn("client-secret", line, "a client's credentials stay out of the log")
                self.assertIn("token=REDACTED", line)

    def test_plain_web_server_is_not_a_backend(self):
        # A 200 to an upgrade request is no upgrade: clients go to the real backend, and health
        # checks mark the web server down.
        web = self.status_server(200)
        _, b_url, b_port = start_port_backend(self)
        _, url = start_proxy(self, "--to", web, "--to", b_url, "--health-interval", "50ms", "--metrics")
        wait_until(lambda: backend_up(url, web) == 0, what="the web server marked down")
        self.assertEqual(backend_up(url, b_url), 1)
        self.assertEqual(backends_of(url, 3), [b_port] * 3)

    def test_plain_web_server_is_passed_over_by_clients(self):
        web = self.status_server(200)
        _, b_url, b_port = start_port_backend(self)
        _, url = start_proxy(self, "--to", web, "--to", b_url, "--health-interval", "1h")
        self.assertEqual(backends_of(url, 4), [b_port] * 4)

    def test_502_names_no_upstream(self):
        # An upstream URL may carry credentials: the client's answer shows none of it.
        b, b_url, _ = start_port_backend(self)
        secret = b_url + "/?token=s3cret"
        proxy, url = start_proxy(self, "--to", secret, "--health-interval", "1h")
        b.stop(signal.SIGKILL)
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        body = r.response_head + r.buf.decode(errors="replace")
        r.close()
        self.assertEqual(r.status, 502)
        self.assertNotIn("s3cret", body)
        self.assertNotIn(b_url.split("//")[1], body)
        proxy.wait_for(r"upstream .*s3cret is down: ")  # the operator's log has the details

    def test_down_backend_is_tried_when_no_other_is_left(self):
        # No check will bring the backend back for an hour: the next client's connect does.
        b, b_url, b_port = start_port_backend(self)
        proxy, url = start_proxy(self, "--to", b_url, "--health-interval", "1h", "--metrics")
        b.stop(signal.SIGKILL)
        r = serve_helpers.RawWS(url, expect_upgrade=False)
        self.assertEqual(r.status, 502)
        self.assertIn("no upstream", r.response_head + r.buf.decode(errors="replace"))
        r.close()
        self.assertEqual(backend_up(url, b_url), 0)
        start_port_backend(self, b_port)
        self.assertEqual(backends_of(url, 2), [b_port] * 2)
        self.assertEqual(backend_up(url, b_url), 1)
        proxy.wait_for(r"upstream " + b_url + r" is up again")


if __name__ == "__main__":
    wsxtest.main()
