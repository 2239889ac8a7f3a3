"""The server's answer to an upgrade: `serve --subprotocol` (the first of the server's list that
the client offers; --require-subprotocol refuses clients offering none) and `--header` fields in
the 101 (serve, relay and proxy listeners), seen by an independent client (python3-websockets)."""
import asyncio

import websockets

import wsxtest
from serve_helpers import RawWS


async def handshake(url, subprotocols=None):
    """Connects, then closes; returns (chosen subprotocol, the 101's headers as a list of pairs)."""
    async with websockets.connect(url, subprotocols=subprotocols, open_timeout=5, close_timeout=2) as ws:
        return ws.subprotocol, list(ws.response_headers.raw_items())


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def refused(url, headers):
    """An upgrade request with `headers` that is expected to be refused: (status, head, body)."""
    ws = RawWS(url, headers=headers, expect_upgrade=False)
    body = ws.buf
    try:
        while True:
            ws.sock.settimeout(5)
            chunk = ws.sock.recv(65536)
            if not chunk:
                break
            body += chunk
    finally:
        ws.close()
    return ws.status, ws.response_head, body


def field(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


class SubprotocolTest(wsxtest.WsxTestCase):
    def test_the_servers_first_choice_among_those_offered(self):
        p, url = self.start_server("--subprotocol", "chat.v2", "--subprotocol", "chat.v1")
        # The server's order decides, not the client's.
        chosen, _ = run(handshake(url, ["chat.v1", "chat.v2"]))
        self.assertEqual(chosen, "chat.v2")
        chosen, _ = run(handshake(url, ["other", "chat.v1"]))
        self.assertEqual(chosen, "chat.v1")

    def test_none_offered_means_no_header(self):
        p, url = self.start_server("--subprotocol", "chat.v1")
        chosen, headers = run(handshake(url))
        self.assertIsNone(chosen)
        self.assertEqual(field(headers, "Sec-WebSocket-Protocol"), [])
        # Offering only others: still accepted, without a subprotocol.
        chosen, headers = run(handshake(url, ["other"]))
        self.assertIsNone(chosen)
        self.assertEqual(field(headers, "Sec-WebSocket-Protocol"), [])

    def test_required_subprotocol_refuses_with_400_naming_the_list(self):
        p, url = self.start_server("--subprotocol", "chat.v2", "--subprotocol", "chat.v1", "--require-subprotocol")
        with self.assertRaises(websockets.exceptions.InvalidStatusCode) as cm:
            run(handshake(url, ["other"]))
        self.assertEqual(cm.exception.status_code, 400)
        status, _, body = refused(url, {"Sec-WebSocket-Protocol": "other, chat.v3"})
        self.assertEqual(status, 400)
        self.assertEqual(len(body.rstrip(b"\n").splitlines()), 1, body)
        self.assertIn(b"this server speaks chat.v2, chat.v1", body)
        # Offering one of them still works; offering none at all is refused too.
        chosen, _ = run(handshake(url, ["chat.v1"]))
        self.assertEqual(chosen, "chat.v1")
        status, _, body = refused(url, {})
        self.assertEqual(status, 400, body)
        self.assertIn(b"this server speaks chat.v2, chat.v1", body)

    def test_exec_child_learns_the_choice(self):
        # The server's first choice among those offered, not the client's first offer.
        p, url = self.start_server("--subprotocol", "chat.v2", "--subprotocol", "chat.v1", "--exec",
                                   'sh -c "echo [$WSX_SUBPROTOCOL]"')

        async def talk():
            async with websockets.connect(url, subprotocols=["other", "chat.v1", "chat.v2"], open_timeout=5,
                                          close_timeout=2) as ws:
                return await asyncio.wait_for(ws.recv(), 5)

        self.assertEqual(run(talk()), "[chat.v2]")

    def test_bad_subprotocol_options_are_usage_errors(self):
        r = self.wsx("serve", "127.0.0.1:0", "--require-subprotocol")
        self.assertExit(r, 2)
        self.assertIn(b"--require-subprotocol needs the list it requires: add --subprotocol NAME", r.stderr)
        r = self.wsx("serve", "127.0.0.1:0", "--subprotocol", "chat v1")
        self.assertExit(r, 2)
        self.assertIn(b"--subprotocol 'chat v1': a subprotocol name is one token", r.stderr)


class HeaderTest(wsxtest.WsxTestCase):
    def test_headers_in_the_101(self):
        p, url = self.start_server("--header", "X-Served-By: wsx-test", "--header", "Set-Cookie: a=1",
                                   "--header", "Set-Cookie: b=2", "--header", "Server: custom/1")
        _, headers = run(handshake(url))
        self.assertEqual(field(headers, "X-Served-By"), ["wsx-test"])
        self.assertEqual(field(headers, "Set-Cookie"), ["a=1", "b=2"])
        self.assertEqual(field(headers, "Server"), ["custom/1"])  # replaces wsx's, not a second one

    def test_headers_with_a_subprotocol(self):
        p, url = self.start_server("--subprotocol", "chat.v1", "--header", "X-Served-By: wsx-test")
        chosen, headers = run(handshake(url, ["chat.v1"]))
        self.assertEqual(chosen, "chat.v1")
        self.assertEqual(field(headers, "X-Served-By"), ["wsx-test"])

    def test_relay_listener(self):
        p = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "--header", "X-Relay: yes"])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        _, headers = run(handshake(url + "/topic"))
        self.assertEqual(field(headers, "X-Relay"), ["yes"])

    def test_proxy_listener(self):
        backend, backend_url = self.start_server("-q")
        p = self.start([wsxtest.WSX, "proxy", "--listen", "ws://127.0.0.1:0", "--to", backend_url,
                        "--header", "X-Proxy: yes"])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        _, headers = run(handshake(url + "/"))
        self.assertEqual(field(headers, "X-Proxy"), ["yes"])

    def test_handshake_fields_and_bad_headers_are_refused(self):
        cases = [
            ("Upgrade: h2c", "--header 'Upgrade: h2c': Upgrade is written by the WebSocket handshake itself; leave it out"),
            ("sec-websocket-protocol: x",
             "Sec-WebSocket-Protocol is written by the WebSocket handshake itself; leave it out (wsx serve chooses one with --subprotocol)"),
            ("No colon", "--header 'No colon': expected 'Name: value'"),
            ("Bad Name: v", "'Bad Name' is not a header name"),
        ]
        for value, message in cases:
            with self.subTest(header=value):
                r = self.wsx("serve", "127.0.0.1:0", "--header", value)
                self.assertExit(r, 2)
                self.assertIn(message.encode(), r.stderr)
        r = self.wsx("relay", "127.0.0.1:0", "--header", "Connection: keep-alive")
        self.assertExit(r, 2)
        self.assertIn(b"Connection is written by the WebSocket handshake itself", r.stderr)
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "ws://127.0.0.1:1", "--header", "X-A: 1")
        self.assertExit(r, 2)
        self.assertIn(b"--header: a tcp:// listener carries raw TCP", r.stderr)

    def test_refusals_do_not_carry_the_headers(self):
        # Only the 101 gets them: a refused upgrade (401 here) does not.
        p, url = self.start_server("--token", "s3cret", "--header", "X-Served-By: wsx-test")
        status, head, _ = refused(url, {})
        self.assertEqual(status, 401)
        self.assertNotIn("x-served-by", head.lower())
        ws = RawWS(url, headers={"Authorization": "Bearer s3cret"})
        self.assertRegex(ws.response_head, r"(?i)(^|\r\n)x-served-by: wsx-test(\r\n|$)")
        ws.close()


if __name__ == "__main__":
    wsxtest.main()
