"""Unix socket listeners: `wsx serve|relay|proxy unix:PATH`, talked to with `wsx connect
ws+unix://PATH:/` and with python websockets' unix_connect as an independent peer. Sockets live
in a temporary directory; every wait has a deadline."""
import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import time

import websockets

import wsxtest
from wsxtest import WSX


def unix_http(path, request_path, headers=None, timeout=10.0):
    """One HTTP/1.1 GET over a unix socket (Connection: close); returns (status, body bytes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        lines = [f"GET {request_path} HTTP/1.1", "Host: localhost", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def run(coro, timeout=15):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class UnixListenerTest(wsxtest.WsxTestCase):
    def sock(self, name="wsx.sock"):
        return os.path.join(self.tmp, name)

    def start_unix(self, command, path, *extra):
        """Starts `wsx COMMAND unix:PATH ...` (serve, relay) and returns (process, announced URL)."""
        p = self.start([WSX, command, f"unix:{path}", *extra])
        m = p.wait_for(r"listening on (\S+)")
        return p, m.group(1)

    # -- serve -------------------------------------------------------------------------------

    def test_connect_and_python_peer_echo(self):
        path = self.sock()
        p, url = self.start_unix("serve", path, "--echo")
        self.assertEqual(url, f"ws+unix://{path}:/")  # verbatim what wsx connect takes
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))

        r = self.wsx("connect", url, "--send", "hello over unix", "-n", "1", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hello over unix\n")

        async def peer():
            async with websockets.unix_connect(path, "ws://localhost/some/path?q=1") as ws:
                await ws.send("text")
                t = await ws.recv()
                await ws.send(b"\x00\x01\xff")
                b = await ws.recv()
                await ws.close(1000, "bye")
                return t, b, ws.close_code

        self.assertEqual(run(peer()), ("text", b"\x00\x01\xff", 1000))
        # The access log names the socket (a unix peer has no address of its own).
        p.wait_for(rf'unix:{path} "/some/path\?q=1" \S+ in=2/\d+B out=2/\d+B code=1000')

    def test_announce_json_and_relative_path(self):
        wsx = os.path.abspath(WSX)
        p = self.start([wsx, "serve", "unix:rel.sock", "--announce-json"], cwd=self.tmp)
        line = p.wait_for(r"^\{.*\}$").group(0)
        j = json.loads(line)
        self.assertEqual(j["type"], "listening")
        self.assertEqual(j["url"], "ws+unix://rel.sock:/")
        self.assertEqual(j["unix_path"], "rel.sock")
        self.assertNotIn("port", j)
        self.assertEqual(j["pid"], p.proc.pid)
        r = subprocess.run([wsx, "connect", j["url"], "--send", "rel", "-n", "1"], cwd=self.tmp,
                           capture_output=True, timeout=20)
        self.assertEqual((r.returncode, r.stdout), (0, b"rel\n"), r.stderr)
        self.assertEqual(p.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "rel.sock")))

    def test_exec_environment_and_peer_credentials(self):
        path = self.sock()
        script = 'echo "$REMOTE_ADDR|$REMOTE_PORT|$SERVER_PORT|$WSX_PEER_PID|$WSX_PEER_UID|$WSX_SCHEME|$PATH_INFO"'
        self.start_unix("serve", path, "--exec", "--", "sh", "-c", script)

        async def peer():
            async with websockets.unix_connect(path, "ws://localhost/x") as ws:
                line = await ws.recv()
                await ws.wait_closed()
                return line, ws.close_code

        line, code = run(peer())
        self.assertEqual(line, f"unix:{path}|||{os.getpid()}|{os.getuid()}|ws|/x")
        self.assertEqual(code, 1000)

    def test_auth_static_metrics_and_one_peer_rate_limit(self):
        path = self.sock()
        www = os.path.join(self.tmp, "www")
        os.mkdir(www)
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("<p>static over unix</p>\n")
        self.start_unix("serve", path, "--token", "s3cret", "--static", www, "--metrics",
                        "--connect-rate-limit", "2/h,burst=2")
        url = f"ws+unix://{path}:/"

        status, body = unix_http(path, "/index.html")
        self.assertEqual((status, body), (200, b"<p>static over unix</p>\n"))

        r = self.wsx("connect", url, "--send", "x", "-n", "1", timeout=20)
        self.assertExit(r, 6)  # 401: no token
        r = self.wsx("connect", url, "--token", "s3cret", "--send", "authorised", "-n", "1", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"authorised\n")
        # Every unix client is one peer for --connect-rate-limit: the burst of 2 is spent.
        r = self.wsx("connect", url, "--token", "s3cret", "--send", "x", "-n", "1", timeout=20)
        self.assertExit(r, 6)
        self.assertIn("429", r.stderr.decode(errors="replace"))

        status, body = unix_http(path, "/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        self.assertRegex(text, r"(?m)^wsx_connections_total 1$")
        self.assertIn("429", text)

    def test_sigterm_closes_clients_with_1001_and_removes_the_socket(self):
        path = self.sock()
        p, url = self.start_unix("serve", path, "--ping-interval", "100ms")

        async def peer():
            async with websockets.unix_connect(path, "ws://localhost/") as ws:
                await ws.send("ready")
                self.assertEqual(await ws.recv(), "ready")
                p.proc.send_signal(signal.SIGTERM)
                await ws.wait_closed()
                return ws.close_code

        self.assertEqual(run(peer()), 1001)
        self.assertEqual(p.proc.wait(10), 0)
        self.assertFalse(os.path.lexists(path))

    def test_heartbeat_drops_a_client_that_never_answers_pings(self):
        path = self.sock()
        p, _ = self.start_unix("serve", path, "--ping-interval", "100ms", "--ping-timeout", "200ms", "--metrics")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # read (pings, never answered) until the server hangs up
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            else:
                self.fail("the server kept a silent client open")
        self.assertTrue(data.startswith(b"HTTP/1.1 101"), data[:80])
        self.assertIn(b"\x89", data)  # a ping frame
        p.wait_for(rf'unix:{path} "/" .* code=1006')
        _, body = unix_http(path, "/metrics")
        self.assertRegex(body.decode(), r"(?m)^wsx_ping_timeouts_total 1$")

    def test_sigint_removes_the_socket(self):
        path = self.sock()
        p, _ = self.start_unix("serve", path)
        p.proc.send_signal(signal.SIGINT)
        p.proc.wait(10)
        self.assertFalse(os.path.lexists(path))

    def test_stale_socket_from_a_killed_server_is_replaced(self):
        path = self.sock()
        p, _ = self.start_unix("serve", path)
        p.stop(signal.SIGKILL)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))  # left behind: nobody listens on it
        _, url = self.start_unix("serve", path)
        r = self.wsx("connect", url, "--send", "again", "-n", "1", timeout=20)
        self.assertEqual((r.returncode, r.stdout), (0, b"again\n"), r.stderr)

    def test_live_socket_is_refused_and_left_alone(self):
        path = self.sock()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(path)
            other.listen(8)
            ino = os.lstat(path).st_ino
            r = self.wsx("serve", f"unix:{path}", timeout=20)
            self.assertExit(r, 1)
            self.assertEqual(self.error_lines(r), [
                f"wsx: error: cannot listen on unix:{path}: another process is listening on it: "
                "stop it or choose another path"])
            self.assertEqual(os.lstat(path).st_ino, ino)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(path)  # the other listener still works

    def test_live_wsx_is_refused(self):
        path = self.sock()
        _, url = self.start_unix("serve", path)
        r = self.wsx("relay", f"unix:{path}", timeout=20)
        self.assertExit(r, 1)
        self.assertIn("another process is listening on it", r.stderr.decode())
        r = self.wsx("connect", url, "--send", "still", "-n", "1", timeout=20)
        self.assertEqual((r.returncode, r.stdout), (0, b"still\n"), r.stderr)

    def test_a_path_that_is_not_a_socket_is_never_deleted(self):
        path = self.sock("data.txt")
        with open(path, "w") as f:
            f.write("precious\n")
        for cmd in (["serve", f"unix:{path}"], ["relay", f"unix:{path}"],
                    ["proxy", "--listen", f"unix:{path}", "--to", "ws://127.0.0.1:9"]):
            r = self.wsx(*cmd, timeout=20)
            self.assertExit(r, 1)
            self.assertEqual(self.error_lines(r), [
                f"wsx: error: cannot listen on unix:{path}: the file exists and is not a socket "
                "(it was left alone): choose another path"])
        with open(path) as f:
            self.assertEqual(f.read(), "precious\n")
        r = self.wsx("serve", f"unix:{self.tmp}", timeout=20)  # a directory
        self.assertExit(r, 1)
        self.assertTrue(os.path.isdir(self.tmp))

    def test_unix_mode_sets_the_socket_permissions(self):
        for mode in ("600", "0660"):
            path = self.sock(f"m{mode}.sock")
            p, url = self.start_unix("serve", path, "--unix-mode", mode)
            self.assertEqual(stat.S_IMODE(os.lstat(path).st_mode), int(mode, 8))
            r = self.wsx("connect", url, "--send", "m", "-n", "1", timeout=20)
            self.assertEqual((r.returncode, r.stdout), (0, b"m\n"), r.stderr)
            self.assertEqual(p.stop(signal.SIGTERM), 0)
            self.assertFalse(os.path.lexists(path))

    def test_bad_unix_options_are_usage_errors(self):
        long_path = "/tmp/" + "x" * 120 + ".sock"
        cases = [
            (["serve", "unix:/tmp/a:b.sock"], "a socket path cannot contain ':'"),
            (["serve", f"unix:{long_path}"], "the system allows 107; choose a shorter path"),
            (["serve", "unix:"], "give a socket path, e.g. unix:/tmp/wsx.sock"),
            (["serve", "ws+unix:///tmp/w.sock:/"], "listen on a unix socket with unix:/tmp/w.sock"),
            (["serve", f"unix:{self.sock()}", "--tls-self-signed"], "TLS on a unix socket listener is not supported"),
            (["relay", f"unix:{self.sock()}", "--tls-self-signed"], "TLS on a unix socket listener is not supported"),
            (["proxy", "--listen", f"unix:{self.sock()}", "--tls-self-signed", "--to", "ws://127.0.0.1:9"],
             "TLS on a unix socket listener is not supported"),
            (["serve", "127.0.0.1:0", "--unix-mode", "600"], "--unix-mode applies to unix socket listeners"),
            (["serve", f"unix:{self.sock()}", "--unix-mode", "rw"], "--unix-mode 'rw': give octal permission bits"),
            (["serve", f"unix:{self.sock()}", "--unix-mode", "1777"], "--unix-mode '1777': give octal permission bits"),
            (["proxy", "--listen", "ws+unix:///tmp/w.sock", "--to", "ws://127.0.0.1:9"], "with unix:/tmp/w.sock"),
        ]
        for args, expected in cases:
            r = self.wsx(*args, timeout=20)
            self.assertExit(r, 2)
            errors = self.error_lines(r)
            self.assertEqual(len(errors), 1, (args, r.stderr))
            self.assertIn(expected, errors[0], args)
        self.assertFalse(os.path.lexists(self.sock()))

    # -- relay and proxy ---------------------------------------------------------------------

    def test_relay_over_unix(self):
        path = self.sock("relay.sock")
        p, url = self.start_unix("relay", path)
        self.assertEqual(url, f"ws+unix://{path}:/")

        async def clients():
            proto = ["wsx.relay.v1"]
            async with websockets.unix_connect(path, "ws://localhost/?id=sub", subprotocols=proto) as sub, \
                    websockets.unix_connect(path, "ws://localhost/?id=pub", subprotocols=proto) as pub:
                self.assertEqual(json.loads(await sub.recv())["type"], "welcome")
                self.assertEqual(json.loads(await pub.recv())["type"], "welcome")
                await sub.send(json.dumps({"op": "subscribe", "topic": "chat"}))
                self.assertEqual(json.loads(await sub.recv())["type"], "subscribed")
                await pub.send(json.dumps({"op": "publish", "topic": "chat", "data": "hi all"}))
                while True:
                    m = json.loads(await sub.recv())
                    if m["type"] == "message":
                        return m

        m = run(clients())
        self.assertEqual((m["topic"], m["from"], m["data"]), ("chat", "pub", "hi all"))
        self.assertEqual(p.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.lexists(path))

    def test_proxy_unix_listener_to_unix_and_tcp_upstreams(self):
        up_path = self.sock("up.sock")
        _, up_url = self.start_unix("serve", up_path)
        front = self.sock("front.sock")
        proxy = self.start([WSX, "proxy", "--listen", f"unix:{front}", "--to", up_url])
        m = proxy.wait_for(r"listening on (\S+)")
        self.assertEqual(m.group(1), f"ws+unix://{front}:/")
        r = self.wsx("connect", m.group(1), "--send", "through two sockets", "-n", "1", timeout=20)
        self.assertEqual((r.returncode, r.stdout), (0, b"through two sockets\n"), r.stderr)

        # A TCP upstream that reports what the proxy forwarded: a unix client adds no address
        # to X-Forwarded-For, and one the client sent is passed on.
        _, tcp_url = self.start_server("--exec", "--", "sh", "-c",
                                       'echo "xff=$HTTP_X_FORWARDED_FOR proto=$HTTP_X_FORWARDED_PROTO"')
        front2 = self.sock("front2.sock")
        proxy2 = self.start([WSX, "proxy", "--listen", f"unix:{front2}", "--to", tcp_url, "--sticky", "ip"])
        proxy2.wait_for(r"listening on ws\+unix://")

        async def peer(headers):
            async with websockets.unix_connect(front2, "ws://localhost/", extra_headers=headers) as ws:
                line = await ws.recv()
                await ws.wait_closed()
                return line

        self.assertEqual(run(peer({})), "xff= proto=http")
        self.assertEqual(run(peer({"X-Forwarded-For": "203.0.113.9"})), "xff=203.0.113.9 proto=http")
        self.assertEqual(proxy2.stop(signal.SIGTERM), 0)
        self.assertFalse(os.path.lexists(front2))


if __name__ == "__main__":
    wsxtest.main()
