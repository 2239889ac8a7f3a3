"""-L/--location: redirects of the upgrade request, followed by `wsx connect` and `wsx bench`,
against a small asyncio HTTP server on loopback that answers 3xx with a Location.

Behaviour these tests rely on:
- with -L a 301/302/303/307/308 with a Location opens a new connection to where it points,
  resolved against the URL that redirected (a relative reference stays on that host), with
  http:// taken as ws:// and https:// as wss://;
- without -L a redirect is exit 6, and the error line names the Location and -L;
- more than --max-redirs redirects (default 5), a loop, or a redirect from wss:// to ws://
  without --allow-insecure-redirect is exit 6 with one error line naming the cause and the fix;
- credentials (--token, --auth, --cookie, -H Authorization/Cookie) go only to the original
  host and port: 127.0.0.1 and localhost, or another port, are another host;
- -v prints every redirect followed; --stats-json lists them;
- bench -L follows the redirects once, then opens every connection to the URL they lead to.
"""
import asyncio
import base64
import hashlib
import json
import os
import ssl
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsxtest  # noqa: E402
from wsxtest import WsxTestCase, certs  # noqa: E402

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Redirector:
    """An asyncio HTTP server in a thread, on one or more loopback ports. `routes` maps a request
    target to (status, Location) for a redirect, or to "final": a 101 answer, a text frame
    naming the target, then a Close 1000. Every request's target and headers are recorded
    (header names lower-cased)."""

    def __init__(self, routes, ports=1, tls=None):
        self.routes = routes
        self.requests = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.ports = []
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ports, tls, ready), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise AssertionError("the redirect server did not start")
        self.port = self.ports[0]

    def _run(self, ports, tls, ready):
        asyncio.set_event_loop(self.loop)
        self.servers = []
        for _ in range(ports):
            server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls))
            self.servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        ready.set()
        self.loop.run_forever()

    async def _serve(self, reader, writer):
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            target = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            port = writer.get_extra_info("sockname")[1]
            with self.lock:
                self.requests.append({"target": target, "headers": headers, "port": port})
            route = self.routes.get(target, (404, None))
            if isinstance(route, bytes):  # a whole answer, as it is
                writer.write(route)
                await writer.drain()
            elif route == "final":
                accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest())
                greeting = f"final {target}".encode()
                writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" +
                             bytes([0x81, len(greeting)]) + greeting + bytes([0x88, 2]) + struct.pack("!H", 1000))
                await writer.drain()
                # Wait for the client's Close (or its hang-up), at most 10 s.
                await asyncio.wait_for(reader.read(1024), 10)
            else:
                status, location = route
                writer.write(f"HTTP/1.1 {status} Redirect\r\n".encode() +
                             (f"Location: {location}\r\n".encode() if location else b"") +
                             b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def recorded(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        def stop():
            for s in self.servers:
                s.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class RedirectTest(WsxTestCase):
    def redirector(self, routes, ports=1, tls=None):
        r = Redirector(routes, ports, tls)
        self.addCleanup(r.close)
        return r

    def echo_port(self, *extra):
        _, url = self.start_server(*extra)
        return int(url.rsplit(":", 1)[1].strip("/"))

    # Following ------------------------------------------------------------
    def test_302_to_an_echo_server(self):
        echo = self.echo_port()
        red = self.redirector({"/": (302, f"ws://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/", input=b"hello through a redirect\n", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hello through a redirect\n")
        self.assertEqual(self.error_lines(r), [])

    def test_307_with_an_http_location(self):
        echo = self.echo_port()
        red = self.redirector({"/ws": (307, f"http://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "--location", f"ws://127.0.0.1:{red.port}/ws", input=b"via 307\n", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"via 307\n")

    def test_every_followed_status(self):
        for status in (301, 302, 303, 307, 308):
            with self.subTest(status=status):
                red = self.redirector({"/": (status, "/final"), "/final": "final"})
                r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/", timeout=15)
                self.assertExit(r, 0)
                self.assertEqual(r.stdout, b"final /final\n")

    def test_relative_location(self):
        red = self.redirector({"/a/b?x=1": (302, "c?y=2#frag"), "/a/c?y=2": "final"})
        r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/a/b?x=1", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"final /a/c?y=2\n")
        self.assertEqual([q["target"] for q in red.recorded()], ["/a/b?x=1", "/a/c?y=2"])
        # The Host of the second request is the redirector's still.
        self.assertEqual(red.recorded()[1]["headers"]["host"], f"127.0.0.1:{red.port}")

    def test_a_location_in_utf8_is_percent_encoded(self):
        red = self.redirector({"/": (302, "/fïnal?q=é"), "/f%C3%AFnal?q=%C3%A9": "final"})
        r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"final /f%C3%AFnal?q=%C3%A9\n")

    def test_token_query_is_not_repeated_when_the_location_keeps_it(self):
        red = self.redirector({"/?token=t0k": (302, "/final?token=t0k"), "/final?token=t0k": "final"})
        r = self.wsx("connect", "-L", "--token", "t0k", "--token-query", "token", f"ws://127.0.0.1:{red.port}/",
                     timeout=15)
        self.assertExit(r, 0)
        self.assertEqual([q["target"] for q in red.recorded()], ["/?token=t0k", "/final?token=t0k"])

    def test_verbose_names_every_redirect_and_stats_json_lists_them(self):
        red = self.redirector({"/1": (301, "/2"), "/2": (308, "/3"), "/3": "final"})
        base = f"ws://127.0.0.1:{red.port}"
        r = self.wsx("connect", "-L", "-v", "--stats-json", f"{base}/1", timeout=15)
        self.assertExit(r, 0)
        err = r.stderr.decode()
        self.assertIn(f"* redirect 1 of at most 5: HTTP 301 from {base}/1 to {base}/2 (", err)
        self.assertIn(f"* redirect 2 of at most 5: HTTP 308 from {base}/2 to {base}/3 (", err)
        self.assertIn("< Location: /2", err)
        stats = json.loads([l for l in err.splitlines() if l.startswith("{")][-1])
        self.assertEqual([(h["status"], h["url"]) for h in stats["redirects"]], [(301, f"{base}/2"), (308, f"{base}/3")])

    def test_an_https_location_is_wss(self):
        c = certs()
        echo = self.echo_port("--tls-cert", c["server"], "--tls-key", c["server_key"])
        red = self.redirector({"/": (302, f"https://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "-L", "--cacert", c["ca"], f"ws://127.0.0.1:{red.port}/", input=b"now over tls\n",
                     timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"now over tls\n")

    # Not following ----------------------------------------------------------
    def test_without_L_a_redirect_names_the_location_and_L(self):
        elsewhere = f"ws://127.0.0.1:{wsxtest.refused_port(self)}/elsewhere"
        red = self.redirector({"/": (302, elsewhere)})
        r = self.wsx("connect", f"ws://127.0.0.1:{red.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, f"upgrade rejected by ws://127.0.0.1:{red.port}/: HTTP 302",
                            f"it redirects to {elsewhere}", "-L")
        self.assertEqual(len(red.recorded()), 1)

    def test_a_long_location_is_still_a_redirect(self):
        # Fields past Beast's 8 KiB default: the answer is still read as the redirect it is.
        echo = self.echo_port()
        location = f"ws://127.0.0.1:{echo}/?pad=" + "a" * 50_000
        red = self.redirector({"/": (302, location)})
        r = self.wsx("connect", f"ws://127.0.0.1:{red.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "HTTP 302", f"it redirects to ws://127.0.0.1:{echo}/?pad=aaaa", "-L")
        # Past 60 KiB of header the answer is refused, saying so (not "not HTTP", not a crash).
        red = self.redirector({"/": (302, location + "a" * 70_000)})
        r = self.wsx("connect", f"ws://127.0.0.1:{red.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "the answer's header is larger than 60 KiB")

    def test_a_refusal_with_a_long_or_cut_body_keeps_its_status(self):
        body = b"<html>" + b"x" * 70_000 + b"</html>"
        answers = {
            "/long": b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body,
            "/cut": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 500\r\n\r\nnot all of it",
        }
        red = self.redirector(answers)
        for target, status in (("/long", "HTTP 401"), ("/cut", "HTTP 403")):
            with self.subTest(target=target):
                r = self.wsx("connect", f"ws://127.0.0.1:{red.port}{target}", input=b"x\n", timeout=15)
                self.assertExit(r, 6)
                line = self.assertOneError(r, status)
                self.assertNotIn("not HTTP", line)

    def test_other_3xx_are_not_followed(self):
        for status in (300, 304):
            with self.subTest(status=status):
                red = self.redirector({"/": (status, "/final"), "/final": "final"})
                r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/", input=b"x\n", timeout=15)
                self.assertExit(r, 6)
                self.assertOneError(r, f"HTTP {status}")
                self.assertEqual([q["target"] for q in red.recorded()], ["/"])

    def test_too_many_redirects(self):
        routes = {f"/{i}": (302, f"/{i + 1}") for i in range(10)}
        routes["/3"] = "final"
        red = self.redirector(routes)
        url = f"ws://127.0.0.1:{red.port}/0"
        r = self.wsx("connect", "-L", "--max-redirs", "3", url, timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"final /3\n")
        r = self.wsx("connect", "-L", "--max-redirs", "2", url, timeout=15)
        self.assertExit(r, 6)
        self.assertEqual(self.error_lines(r), [
            f"wsx: error: too many redirects: 2 followed from {url}, and ws://127.0.0.1:{red.port}/2 redirects to "
            f"ws://127.0.0.1:{red.port}/3 (at most 2: raise --max-redirs)"])
        # The default is 5.
        routes["/3"] = (302, "/4")
        r = self.wsx("connect", "-L", url, timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "too many redirects: 5 followed", "(at most 5: raise --max-redirs)")

    def test_loop(self):
        red = self.redirector({"/a": (302, "/b"), "/b": (307, "/a")})
        base = f"ws://127.0.0.1:{red.port}"
        r = self.wsx("connect", "-L", "--max-redirs", "50", f"{base}/a", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, f"redirect loop: {base}/b redirects to {base}/a")
        self.assertEqual(len(red.recorded()), 2)

    def test_reconnect_does_not_retry_a_redirect_it_cannot_follow(self):
        red = self.redirector({"/a": (302, "/b"), "/b": (307, "/a")})
        r = self.wsx("connect", "-L", "--reconnect", "--backoff-initial", "30s", f"ws://127.0.0.1:{red.port}/a",
                     timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "redirect loop")
        self.assertEqual(len(red.recorded()), 2, "no second attempt")

    def test_unusable_location(self):
        red = self.redirector({"/": (302, "ftp://127.0.0.1/x")})
        r = self.wsx("connect", "-L", f"ws://127.0.0.1:{red.port}/", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "cannot follow the redirect (HTTP 302)", "'ftp://127.0.0.1/x'")

    def test_options_need_L(self):
        r = self.wsx("connect", "--max-redirs", "3", f"ws://127.0.0.1:{wsxtest.refused_port(self)}/")
        self.assertExit(r, 2)
        self.assertIn("--max-redirs and --allow-insecure-redirect need -L/--location", r.stderr.decode())

    # TLS downgrade -----------------------------------------------------------
    def tls_redirector(self, routes):
        c = certs()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(c["server"], c["server_key"])
        return self.redirector(routes, tls=ctx), c

    def test_wss_to_ws_is_refused(self):
        echo = self.echo_port()
        red, c = self.tls_redirector({"/": (302, f"ws://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "-L", "--cacert", c["ca"], f"wss://127.0.0.1:{red.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertEqual(self.error_lines(r), [
            f"wsx: error: refusing the redirect from wss://127.0.0.1:{red.port}/ to ws://127.0.0.1:{echo}/: it leaves "
            "TLS (allow it with --allow-insecure-redirect)"])
        # An http:// Location is ws:// too.
        red2, _ = self.tls_redirector({"/": (302, f"http://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "-L", "--cacert", c["ca"], f"wss://127.0.0.1:{red2.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "refusing the redirect", "--allow-insecure-redirect")

    def test_wss_to_ws_with_allow_insecure_redirect(self):
        echo = self.echo_port()
        red, c = self.tls_redirector({"/": (302, f"ws://127.0.0.1:{echo}/")})
        r = self.wsx("connect", "-L", "--allow-insecure-redirect", "--cacert", c["ca"], f"wss://127.0.0.1:{red.port}/",
                     input=b"in the clear\n", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"in the clear\n")

    # Credentials -------------------------------------------------------------
    def test_credentials_stay_with_the_original_host_and_port(self):
        red = self.redirector({}, ports=2)
        p1, p2 = red.ports
        red.routes.update({
            "/same": (302, "/final"),
            "/localhost": (302, f"ws://localhost:{p1}/final"),
            "/port": (302, f"ws://127.0.0.1:{p2}/final"),
            "/final": "final",
        })
        creds = [("--token", "sekrit"), ("--cookie", "session=1"), ("-H", "X-Trace: t1")]
        cases = {"/same": True, "/localhost": False, "/port": False}
        for start, kept in cases.items():
            with self.subTest(start=start):
                before = len(red.recorded())
                args = [a for pair in creds for a in pair]
                r = self.wsx("connect", "-L", *args, f"ws://127.0.0.1:{p1}{start}", timeout=15)
                self.assertExit(r, 0)
                first, final = red.recorded()[before:]
                self.assertEqual(first["headers"]["authorization"], "Bearer sekrit")
                self.assertEqual(first["headers"]["cookie"], "session=1")
                self.assertEqual(final["target"], "/final")
                self.assertEqual(final["headers"]["x-trace"], "t1", "other headers go everywhere")
                if kept:
                    self.assertEqual(final["headers"].get("authorization"), "Bearer sekrit")
                    self.assertEqual(final["headers"].get("cookie"), "session=1")
                else:
                    self.assertNotIn("authorization", final["headers"])
                    self.assertNotIn("cookie", final["headers"])

    def test_header_and_url_credentials_stay_too(self):
        red = self.redirector({}, ports=2)
        p1, p2 = red.ports
        red.routes.update({"/": (302, f"ws://127.0.0.1:{p2}/final"), "/final": "final"})
        r = self.wsx("connect", "-L", "-H", "Authorization: Basic eDp5", "-H", "Cookie: a=b",
                     f"ws://127.0.0.1:{p1}/", timeout=15)
        self.assertExit(r, 0)
        first, final = red.recorded()
        self.assertEqual(first["headers"]["authorization"], "Basic eDp5")
        self.assertNotIn("authorization", final["headers"])
        self.assertNotIn("cookie", final["headers"])
        r = self.wsx("connect", "-L", f"ws://user:pw@127.0.0.1:{p1}/", timeout=15)
        self.assertExit(r, 0)
        first, final = red.recorded()[2:]
        basic = "Basic " + base64.b64encode(b"user:pw").decode()
        self.assertEqual(first["headers"]["authorization"], basic)
        self.assertNotIn("authorization", final["headers"])
        # On the same host and port (a relative Location), URL credentials go along.
        red.routes["/here"] = (302, "/final")
        r = self.wsx("connect", "-L", f"ws://user:pw@127.0.0.1:{p1}/here", timeout=15)
        self.assertExit(r, 0)
        first, final = red.recorded()[4:]
        self.assertEqual((first["target"], final["target"]), ("/here", "/final"))
        self.assertEqual(first["headers"]["authorization"], basic)
        self.assertEqual(final["headers"].get("authorization"), basic)

    def test_host_option_stays_with_the_original_host(self):
        red = self.redirector({}, ports=2)
        p1, p2 = red.ports
        red.routes.update({"/": (302, f"ws://127.0.0.1:{p2}/final"), "/final": "final"})
        r = self.wsx("connect", "-L", "--host", "front.test", f"ws://127.0.0.1:{p1}/", timeout=15)
        self.assertExit(r, 0)
        first, final = red.recorded()
        self.assertEqual(first["headers"]["host"], "front.test")
        self.assertEqual((final["port"], final["headers"]["host"]), (p2, f"127.0.0.1:{p2}"))

    # bench -------------------------------------------------------------------
    def test_bench_follows_once_then_measures_the_final_url(self):
        _, echo_url = self.start_server()
        red = self.redirector({"/": (302, echo_url)})
        r, j = self.bench_json(f"ws://127.0.0.1:{red.port}/", "-L", "-c", "4", "-n", "400")
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["messages"]["sent"], 400)
        self.assertEqual(j["messages"]["received"], 400)
        self.assertEqual(j["connections"]["established"], 4)
        self.assertEqual(j["config"]["url"], echo_url)
        self.assertEqual(len(red.recorded()), 1, "the redirect is followed once, not by every connection")
        self.assertIn(f"ws://127.0.0.1:{red.port}/ redirects to {echo_url}", r.stderr.decode())

    def test_bench_without_L_fails_on_the_redirect(self):
        _, echo_url = self.start_server()
        red = self.redirector({"/": (302, echo_url)})
        r = self.wsx("bench", f"ws://127.0.0.1:{red.port}/", "-c", "1", "-n", "10", timeout=60)
        self.assertExit(r, 6)
        self.assertOneError(r, "HTTP 302", "-L")


if __name__ == "__main__":
    wsxtest.main()
