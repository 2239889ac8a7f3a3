"""Hostile upgrade requests get the RFC answer from every wsx listener (serve, relay, proxy):
an invalid or repeated Sec-WebSocket-Key (RFC 6455 4.2.1, 11.3.1), a repeated Authorization,
Origin or Host field, and a NUL byte in a header are answered with HTTP 400, a one-line body
naming the problem and `Connection: close`, and the connection is closed after it. Credentials
compare exactly after the scheme; a wildcard origin admits exactly one DNS label. After every
hostile request the listener still serves a fresh client."""
import base64
import re
import signal
import socket
import time

import wsxtest
from proxy_helpers import start_proxy
from relay_helpers import JsonClient, wait_until
from serve_helpers import RawWS, host_port

KEY = "dGhlIHNhbXBsZSBub25jZQ=="          # RFC 6455's sample: base64 of 16 bytes
OTHER_KEY = base64.b64encode(b"0123456789abcdef").decode()
TOKEN = "secret"
ORIGIN = "https://app.example"
# What every listener here requires, so that a hostile request differs from a good one only in
# the part under test.
CREDENTIALS = [("Authorization", f"Bearer {TOKEN}"), ("Origin", ORIGIN)]
LISTENER_AUTH = ["--token", TOKEN, "--origin", ORIGIN]


def as_bytes(v):
    return v if isinstance(v, bytes) else v.encode("latin-1")


def upgrade_fields(url, key=KEY, extra=CREDENTIALS):
    host, port = host_port(url)
    fields = [("Host", f"{host}:{port}"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    if key is not None:
        fields.append(("Sec-WebSocket-Key", key))
    return fields + [("Sec-WebSocket-Version", "13"), *extra]


def request_bytes(fields, path="/"):
    lines = [f"GET {path} HTTP/1.1".encode()] + [as_bytes(k) + b": " + as_bytes(v) for k, v in fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Answer:
    def __init__(self, data, closed):
        self.raw = data
        self.closed = closed  # the server closed the connection (EOF or reset) before the deadline
        self.status = None
        self.fields = []
        self.body = b""
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            return
        status_line, *lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        for line in lines:
            k, _, v = line.partition(":")
            self.fields.append((k.strip().lower(), v.strip()))
        self.body = body

    def field(self, name):
        return [v for k, v in self.fields if k == name]

    def __repr__(self):
        return f"Answer(closed={self.closed}, {self.raw!r})"


def exchange(url, raw, timeout=5.0):
    """Sends `raw` on a new connection and reads until the server closes it or the deadline."""
    host, port = host_port(url)
    data = b""
    closed = False
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    return Answer(data, closed)


def non_canonical(b64):
    """The same bytes base64-encoded with non-zero pad bits (RFC 4648 3.5): a lax decoder
    reads it as `b64`, a strict one refuses it."""
    assert b64.endswith("=")
    i = len(b64.rstrip("=")) - 1
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    return b64[:i] + alphabet[alphabet.index(b64[i]) + 1] + b64[i + 1:]


# (what, fields given the listener url, a part of the expected one-line body)
KEY_CASES = [
    ("key not base64", lambda u: upgrade_fields(u, key="not base64 at all!"), "Sec-WebSocket-Key"),
    ("key without padding", lambda u: upgrade_fields(u, key=KEY.rstrip("=")), "Sec-WebSocket-Key"),
    ("key of 8 bytes", lambda u: upgrade_fields(u, key=base64.b64encode(b"8 bytes!").decode()), "Sec-WebSocket-Key"),
    ("key of 18 bytes", lambda u: upgrade_fields(u, key=base64.b64encode(b"eighteen bytes!!!!").decode()),
     "Sec-WebSocket-Key"),
    ("key with pad bits set", lambda u: upgrade_fields(u, key=non_canonical(KEY)), "Sec-WebSocket-Key"),
    ("two keys", lambda u: upgrade_fields(u) + [("Sec-WebSocket-Key", OTHER_KEY)], "Sec-WebSocket-Key"),
]
DUPLICATE_CASES = [
    ("two Authorization, good first", lambda u: upgrade_fields(u) + [("Authorization", "Bearer wrong")], "Authorization"),
    ("two Authorization, good last",
     lambda u: upgrade_fields(u, extra=[("Authorization", "Bearer wrong"), *CREDENTIALS]), "Authorization"),
    ("two Origin, allowed first", lambda u: upgrade_fields(u) + [("Origin", "https://evil.example")], "Origin"),
    ("two Origin, allowed last",
     lambda u: upgrade_fields(u, extra=[("Origin", "https://evil.example"), *CREDENTIALS]), "Origin"),
    ("two Host", lambda u: upgrade_fields(u) + [("Host", "evil.example")], "Host"),
]
NUL_CASES = [
    ("NUL in a field value", lambda u: upgrade_fields(u) + [("X-Note", b"a\x00b")], "control character"),
    ("NUL in the Authorization value", lambda u: upgrade_fields(u, extra=[("Authorization", b"Bearer secret\x00x"),
                                                                          ("Origin", ORIGIN)]),
     "control character"),
    ("NUL in a field name", lambda u: upgrade_fields(u) + [(b"X-No\x00te", "a")], "field name"),
]


class HandshakeHardeningTest(wsxtest.WsxTestCase):
    # ---------------------------------------------------------------- listeners

    # Each returns (process, url, path, alive): a request to `path` with CREDENTIALS is
    # upgraded, and alive() checks that a fresh client gets an echo.
    def serve(self, *extra):
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", *extra])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        return p, url, "/", lambda: self.echo_works(url, CREDENTIALS)

    def relay(self, *extra):
        p = self.start([wsxtest.WSX, "relay", "127.0.0.1:0", "-q", "--echo-self", *LISTENER_AUTH, *extra])
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        return p, url, "/live", lambda: self.relay_echo_works(url)   # "/" is not a topic: 404

    def proxy(self, *extra):
        up = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "-q"])
        up_url = up.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        p, url = start_proxy(self, "--to", up_url, "-q", *LISTENER_AUTH, *extra)
        return p, url, "/", lambda: self.echo_works(url, CREDENTIALS)

    def listeners(self):
        yield ("serve", *self.serve(*LISTENER_AUTH))
        yield ("relay", *self.relay())
        yield ("proxy", *self.proxy())

    # ---------------------------------------------------------------- liveness

    def echo_works(self, url, headers, path="/"):
        ws = RawWS(url, path, headers=dict(headers))
        try:
            ws.send_text("alive")
            self.assertEqual(ws.recv_message(), (1, b"alive"))
        finally:
            ws.close()

    def relay_echo_works(self, url):
        ws = RawWS(url, "/live", headers=dict(CREDENTIALS))
        c = JsonClient(url, headers=dict(CREDENTIALS))
        try:
            wait_until(lambda: len(c.presence("live")) >= 1, 10, "the fresh client in topic live")
            ws.send_text("alive")
            self.assertEqual(ws.recv_message(), (1, b"alive"))
        finally:
            ws.close()
            c.ws.close()

    # ---------------------------------------------------------------- assertions

    def assert_bad_request(self, url, fields, body_part, alive, status=400, path="/"):
        a = exchange(url, request_bytes(fields, path))
        self.assertEqual(a.status, status, a)
        self.assertEqual([v.lower() for v in a.field("connection")], ["close"], a)
        self.assertTrue(a.body.endswith(b"\n") and a.body.count(b"\n") == 1, a)
        self.assertIn(body_part.encode(), a.body, a)
        self.assertEqual(a.field("content-length"), [str(len(a.body))], a)
        self.assertTrue(a.closed, f"the connection stayed open after the {status}: {a!r}")
        alive()

    def run_cases(self, cases):
        for name, p, url, path, alive in self.listeners():
            # The good request passes: a refusal below is about the part under test.
            ws = RawWS(url, path, headers=dict(CREDENTIALS))
            ws.close()
            for what, fields, body_part in cases:
                with self.subTest(listener=name, case=what):
                    self.assert_bad_request(url, fields(url), body_part, alive, path=path)
            # Nothing is left hanging: SIGTERM still ends the listener, cleanly.
            with self.subTest(listener=name, case="SIGTERM afterwards"):
                self.assertEqual(p.stop(signal.SIGTERM, timeout=10), 0, p.rest_of_stderr())

    # ---------------------------------------------------------------- the cases

    def test_invalid_or_repeated_key(self):
        self.run_cases(KEY_CASES)

    def test_repeated_singleton_fields(self):
        self.run_cases(DUPLICATE_CASES)

    def test_nul_in_a_header(self):
        self.run_cases(NUL_CASES)

    def test_refusals_of_the_upgrade_say_connection_close(self):
        # Refused by the WebSocket rules rather than by a filter: the same manners.
        _, url, _, alive = self.serve(*LISTENER_AUTH)
        self.assert_bad_request(url, upgrade_fields(url, key=None), "Sec-WebSocket-Key", alive)
        fields = [f for f in upgrade_fields(url) if f[0] != "Host"]
        self.assert_bad_request(url, fields, "Host", alive)
        fields = [f if f[0] != "Sec-WebSocket-Version" else (f[0], "8") for f in upgrade_fields(url)]
        self.assert_bad_request(url, fields, "Sec-WebSocket-Version", alive, status=426)
        a = exchange(url, request_bytes(fields))
        self.assertEqual(a.field("sec-websocket-version"), ["13"], a)

    def test_listener_refusals_are_counted_in_metrics(self):
        # The refusals every listener makes itself, before any filter, show in /metrics, each
        # under its own reason, apart from a filter's refusal (403: an origin not allowed).
        listeners = [("serve", *self.serve("--metrics", *LISTENER_AUTH)), ("relay", *self.relay("--metrics")),
                     ("proxy", *self.proxy("--metrics"))]
        for name, p, url, path, alive in listeners:
            with self.subTest(listener=name):
                bad = lambda fields, part: self.assert_bad_request(url, fields, part, alive, path=path)  # noqa: E731
                bad(upgrade_fields(url, key="not base64 at all!"), "Sec-WebSocket-Key")
                bad(upgrade_fields(url) + [("Host", "evil.example")], "Host")
                # HTTP/1.2 is refused by the request parser already (the upgrade check's own
                # HTTP/1.1 test is the unit tests' to prove).
                a = exchange(url, request_bytes(upgrade_fields(url), path).replace(b"HTTP/1.1", b"HTTP/1.2", 1))
                self.assertEqual((a.status, a.body), (400, b"malformed request: bad HTTP version in the request line\n"), a)
                bad(upgrade_fields(url) + [("X-Note", b"a\x00b")], "control character")
                a = exchange(url, request_bytes(upgrade_fields(url) + [("X-Big", "b" * 20000)], path))
                self.assertEqual(a.status, 431, a)
                other_origin = [f if f[0] != "Origin" else ("Origin", "https://evil.example") for f in upgrade_fields(url)]
                a = exchange(url, request_bytes(other_origin, path))
                self.assertEqual(a.status, 403, a)
                host, port = host_port(url)
                with socket.create_connection((host, port), timeout=5) as s:
                    s.sendall(f"GET /metrics HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                    text = b""
                    while chunk := s.recv(65536):
                        text += chunk
                counts = dict(re.findall(r'(?m)^wsx_rejections_total\{reason="([^"]+)"\} (\d+)$', text.decode()))
                self.assertEqual(counts, {"invalid_upgrade": "2", "malformed_request": "2", "request_too_large": "1",
                                          "403": "1"}, text)
                self.assertEqual(p.stop(signal.SIGTERM, timeout=10), 0, p.rest_of_stderr())

    def test_credentials_compare_exactly(self):
        basic_pass = "pw1"  # 7 bytes with the user: the encoding ends in padding
        _, url, _, _ = self.serve("--token", TOKEN, "--basic-auth", f"ann:{basic_pass}")
        basic = base64.b64encode(f"ann:{basic_pass}".encode()).decode()

        def status(path="/", fields=()):
            ws = RawWS(url, path, headers=dict(fields), expect_upgrade=False)
            ws.close()
            return ws.status

        accepted = [
            ("Bearer", [("Authorization", f"Bearer {TOKEN}")], "/"),
            ("scheme in any case", [("Authorization", f"bEARER {TOKEN}")], "/"),
            ("several spaces after the scheme (1*SP)", [("Authorization", f"Bearer   {TOKEN}")], "/"),
            # Whitespace around a field value is not part of it (RFC 9110 5.5): the parser drops it
            # before anything looks at the credentials.
            ("whitespace around the field value", [("Authorization", f"  Bearer {TOKEN} \t")], "/"),
            ("?token=", [], f"/?token={TOKEN}"),
            ("Basic", [("Authorization", f"Basic {basic}")], "/"),
        ]
        refused = [
            ("a tab for the space after the scheme", [("Authorization", f"Bearer\t{TOKEN}")], "/"),
            ("a space inside the credentials", [("Authorization", f"Bearer {TOKEN} x")], "/"),
            ("?token= with a trailing space", [], f"/?token={TOKEN}%20"),
            ("?token= with a trailing plus", [], f"/?token={TOKEN}+"),
            ("?token= with a trailing tab", [], f"/?token={TOKEN}%09"),
            ("Basic with pad bits set", [("Authorization", f"Basic {non_canonical(basic)}")], "/"),
            ("Basic of the password with a trailing space",
             [("Authorization", "Basic " + base64.b64encode(f"ann:{basic_pass} ".encode()).decode())], "/"),
            ("Basic with a tab for the space", [("Authorization", f"Basic\t{basic}")], "/"),
        ]
        for what, fields, path in accepted:
            with self.subTest(accepted=what):
                self.assertEqual(status(path, fields), 101)
        for what, fields, path in refused:
            with self.subTest(refused=what):
                self.assertEqual(status(path, fields), 401)
        self.echo_works(url, [("Authorization", f"Bearer {TOKEN}")])

    def test_wildcard_origin_is_one_label(self):
        _, url, _, _ = self.serve("--origin", "https://*.example.com")

        def status(origin):
            ws = RawWS(url, headers={"Origin": origin}, expect_upgrade=False)
            ws.close()
            return ws.status

        self.assertEqual(status("https://a.example.com"), 101)
        self.assertEqual(status("https://A-1.Example.COM:443"), 101)
        for origin in ("https://a.b.example.com", "https://x.y.z.example.com", "https://example.com",
                       "https://.example.com", "https://a.badexample.com", "http://a.example.com"):
            with self.subTest(origin=origin):
                self.assertEqual(status(origin), 403)
        self.echo_works(url, [("Origin", "https://live.example.com")])


if __name__ == "__main__":
    wsxtest.main()
