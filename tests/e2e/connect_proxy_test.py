"""`wsx connect` through HTTP CONNECT and SOCKS5 proxies (tests/e2e/peers/*_proxy.py).

Behaviour these tests rely on:
- --proxy http://[user:pass@]host:port uses CONNECT; socks5:// resolves the target locally
  and sends an address; socks5h:// sends the name for the proxy to resolve.
- without --proxy, ws:// targets use http_proxy/HTTP_PROXY, wss:// targets https_proxy/
  HTTPS_PROXY, both falling back to all_proxy/ALL_PROXY; NO_PROXY lists hosts reached directly.
- a proxy that refuses (bad credentials, forbidden target) is exit 4 with one error line
  naming the proxy's answer.
"""
import json
import os
import select
import time

import wsxtest
from wsxtest import WsxTestCase, read_line_matching, refused_port

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
              "no_proxy", "NO_PROXY")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(extra)
    return env




class ProxyTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.server, self.url = self.start_server()
        self.port = int(self.url.rsplit(":", 1)[1].rstrip("/"))

    def proxy(self, script, *args):
        p, port = self.start_peer(script, *args)
        return p, port

    def assertTunnelled(self, proxy, target):
        read_line_matching(proxy.proc.stdout, r"^CONNECT " + target.replace(".", r"\.") + "$", 10)

    def connect_lines(self, proxy, n, timeout=10):
        """The targets of the next `n` CONNECT lines the proxy prints."""
        deadline = time.monotonic() + timeout
        buf, targets = b"", []
        fd = proxy.proc.stdout.fileno()
        while len(targets) < n:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, f"{len(targets)} of {n} CONNECT lines within {timeout}s: {targets}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            self.assertTrue(chunk, f"the proxy ended after {targets}")
            buf += chunk
            *lines, buf = buf.split(b"\n")
            targets += [l.decode()[len("CONNECT "):] for l in lines if l.startswith(b"CONNECT ")]
        return targets

    def assertNoConnect(self, proxy):
        # wsx has exited: any CONNECT it caused was already printed by the proxy.
        ready, _, _ = select.select([proxy.proc.stdout], [], [], 0)
        data = os.read(proxy.proc.stdout.fileno(), 65536) if ready else b""
        self.assertNotIn(b"CONNECT", data)

    def echo(self, *args, env=None, url=None, data=b"through the proxy\n"):
        r = self.wsx("connect", url or self.url, *args, input=data, env=env or clean_env())
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)

    # HTTP CONNECT -------------------------------------------------------
    def test_http_proxy_option(self):
        p, pp = self.proxy("http_connect_proxy.py")
        self.echo("--proxy", f"http://127.0.0.1:{pp}")
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_http_proxy_with_auth(self):
        p, pp = self.proxy("http_connect_proxy.py", "--auth", "alice:s3cret")
        self.echo("--proxy", f"http://alice:s3cret@127.0.0.1:{pp}")
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_http_proxy_auth_failure_is_4(self):
        p, pp = self.proxy("http_connect_proxy.py", "--auth", "alice:s3cret")
        for proxy in (f"http://alice:wrong@127.0.0.1:{pp}", f"http://127.0.0.1:{pp}"):
            with self.subTest(proxy=proxy):
                r = self.wsx("connect", self.url, "--proxy", proxy, input=b"x\n", env=clean_env())
                self.assertExit(r, 4)
                errors = self.error_lines(r)
                self.assertEqual(len(errors), 1, r.stderr)
                self.assertIn("407", errors[0])
                self.assertNotIn("wrong", errors[0], "the password is not shown")

    def test_http_proxy_forbidden_target_is_4(self):
        p, pp = self.proxy("http_connect_proxy.py")
        r = self.wsx("connect", "ws://192.0.2.1:80/", "--proxy", f"http://127.0.0.1:{pp}", "--connect-timeout", "5s",
                     input=b"x\n", env=clean_env())
        self.assertExit(r, 4)
        self.assertIn("403", self.error_lines(r)[0])

    def test_dead_proxy_is_4(self):
        port = refused_port(self)
        r = self.wsx("connect", self.url, "--proxy", f"http://127.0.0.1:{port}", input=b"x\n", env=clean_env())
        self.assertExit(r, 4)
        line = self.error_lines(r)[0]
        self.assertIn(f"127.0.0.1:{port}", line)
        self.assertIn("proxy", line)

    def test_http_proxy_from_environment(self):
        p, pp = self.proxy("http_connect_proxy.py")
        for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            with self.subTest(var=var):
                self.echo(env=clean_env(**{var: f"http://127.0.0.1:{pp}"}))
                self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_https_proxy_for_wss(self):
        c = wsxtest.certs()
        _, url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"])
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        p, pp = self.proxy("http_connect_proxy.py")
        # HTTP_PROXY is for ws:// only; it points nowhere to prove it is not used.
        env = clean_env(HTTPS_PROXY=f"http://127.0.0.1:{pp}", HTTP_PROXY=f"http://127.0.0.1:{refused_port(self)}")
        self.echo("--cacert", c["ca"], url=url, env=env, data=b"tls in a tunnel\n")
        self.assertTunnelled(p, f"127.0.0.1:{port}")

    def test_no_proxy_bypass(self):
        p, pp = self.proxy("http_connect_proxy.py")
        self.echo(env=clean_env(HTTP_PROXY=f"http://127.0.0.1:{pp}", NO_PROXY="localhost,127.0.0.1"))
        self.assertNoConnect(p)
        # And with a proxy that does not exist: only a bypass can succeed.
        self.echo(env=clean_env(ALL_PROXY=f"http://127.0.0.1:{refused_port(self)}", no_proxy="127.0.0.0/8"))

    def test_proxy_option_wins_over_no_proxy(self):
        p, pp = self.proxy("http_connect_proxy.py")
        self.echo("--proxy", f"http://127.0.0.1:{pp}", env=clean_env(NO_PROXY="*"))
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    # SOCKS5 -------------------------------------------------------------
    def test_socks5_option(self):
        p, pp = self.proxy("socks5_proxy.py")
        self.echo("--proxy", f"socks5://127.0.0.1:{pp}")
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_socks5_resolves_locally_socks5h_remotely(self):
        p, pp = self.proxy("socks5_proxy.py")
        url = self.url.replace("127.0.0.1", "localhost")
        self.echo("--proxy", f"socks5h://127.0.0.1:{pp}", url=url)
        self.assertTunnelled(p, f"localhost:{self.port}")
        self.echo("--proxy", f"socks5://127.0.0.1:{pp}", url=url)
        m = read_line_matching(p.proc.stdout, r"^CONNECT (.*)$", 10)
        self.assertIn(m.group(1), (f"127.0.0.1:{self.port}", f"[::1]:{self.port}"))

    def test_socks5_with_auth(self):
        p, pp = self.proxy("socks5_proxy.py", "--auth", "bob:pa55")
        self.echo("--proxy", f"socks5://bob:pa55@127.0.0.1:{pp}")
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_socks5_auth_failure_is_4(self):
        p, pp = self.proxy("socks5_proxy.py", "--auth", "bob:pa55")
        for proxy in (f"socks5://bob:nope@127.0.0.1:{pp}", f"socks5://127.0.0.1:{pp}"):
            with self.subTest(proxy=proxy):
                r = self.wsx("connect", self.url, "--proxy", proxy, input=b"x\n", env=clean_env())
                self.assertExit(r, 4)
                errors = self.error_lines(r)
                self.assertEqual(len(errors), 1, r.stderr)
                self.assertRegex(errors[0], r"(?i)auth|credential|method")
                self.assertNotIn("nope", errors[0])

    def test_socks5_from_all_proxy(self):
        p, pp = self.proxy("socks5_proxy.py")
        self.echo(env=clean_env(ALL_PROXY=f"socks5h://127.0.0.1:{pp}"))
        self.assertTunnelled(p, f"127.0.0.1:{self.port}")

    def test_socks5_refused_target_is_4(self):
        p, pp = self.proxy("socks5_proxy.py")
        port = refused_port(self)
        r = self.wsx("connect", f"ws://127.0.0.1:{port}/", "--proxy", f"socks5://127.0.0.1:{pp}", input=b"x\n",
                     env=clean_env())
        self.assertExit(r, 4)
        self.assertEqual(len(self.error_lines(r)), 1)

    # bench opens its connections through the same path -------------------
    def bench(self, *args, url=None):
        r = self.wsx("bench", url or self.url, "-c", "2", "-n", "20", "--json", "-", *args, env=clean_env(), timeout=60)
        return r

    def assertBenchEchoed(self, r):
        self.assertExit(r, 0)
        j = json.loads(r.stdout)
        self.assertEqual(j["connections"]["established"], 2, j)
        self.assertEqual(j["messages"]["received"], 20, j)
        self.assertEqual(j["errors"], {}, j)

    def test_bench_through_http_proxy_with_auth(self):
        p, pp = self.proxy("http_connect_proxy.py", "--auth", "alice:s3cret")
        self.assertBenchEchoed(self.bench("--proxy", f"http://alice:s3cret@127.0.0.1:{pp}"))
        self.assertEqual(self.connect_lines(p, 2), [f"127.0.0.1:{self.port}"] * 2)
        self.assertNoConnect(p)

    def test_bench_socks5_resolves_as_connect_does(self):
        # socks5:// sends the proxy an address and socks5h:// the name, for bench as for connect.
        p, pp = self.proxy("socks5_proxy.py")
        url = self.url.replace("127.0.0.1", "localhost")
        self.assertBenchEchoed(self.bench("--proxy", f"socks5h://127.0.0.1:{pp}", url=url))
        self.assertEqual(self.connect_lines(p, 2), [f"localhost:{self.port}"] * 2)
        self.assertBenchEchoed(self.bench("--proxy", f"socks5://127.0.0.1:{pp}", url=url))
        for target in self.connect_lines(p, 2):
            self.assertIn(target, (f"127.0.0.1:{self.port}", f"[::1]:{self.port}"))
        self.assertNoConnect(p)

    def test_bench_proxy_refusal_is_4(self):
        p, pp = self.proxy("socks5_proxy.py", "--auth", "bob:pa55")
        r = self.bench("--proxy", f"socks5://bob:nope@127.0.0.1:{pp}")
        self.assertExit(r, 4)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("(2 attempted)", errors[0])
        self.assertRegex(errors[0], r"SOCKS5 proxy .*authentication failed")
        self.assertNotIn("nope", r.stderr.decode())

    def test_stats_show_proxy_time(self):
        p, pp = self.proxy("socks5_proxy.py")
        r = self.wsx("connect", self.url, "--proxy", f"socks5://127.0.0.1:{pp}", "--stats", input=b"x\n",
                     env=clean_env())
        self.assertExit(r, 0)
        self.assertRegex(r.stderr.decode(), r"(?m)^proxy: +\S+")


if __name__ == "__main__":
    wsxtest.main()
