"""wsx proxy --listen tcp://: the tunnel entrance ends like the WebSocket listeners (on SIGTERM
it stops accepting, lets tunnels finish up to --drain-timeout, then closes them with 1001; a
second signal exits at once) and writes one access log line per tunnel."""
import json
import signal
import socket
import time

import wsxtest
from proxy_helpers import recv_eof, recv_exactly, start_proxy

NOTICE = r"^wsx: terminated: draining connections \(up to .*, then closing them with 1001 and up to 2s for the answers\)$"


class TcpListenerTest(wsxtest.WsxTestCase):
    def start_tunnel(self, *args, backend_args=("-q",)):
        """A `wsx serve` echo backend and a tcp:// proxy in front of it: (proxy, port, backend
        process, backend URL)."""
        backend, burl = self.start_server(*backend_args)
        proxy, url = start_proxy(self, "--to", burl, *args, listen="tcp://127.0.0.1:0")
        return proxy, int(url.rsplit(":", 1)[1]), backend, burl

    def connect(self, port):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_drain_refuses_new_connections_while_open_tunnels_carry_on(self):
        proxy, port, _, _ = self.start_tunnel("--drain-timeout", "60s")
        s = self.connect(port)
        s.sendall(b"before")
        self.assertEqual(recv_exactly(s, 6), b"before")

        proxy.proc.send_signal(signal.SIGTERM)
        # The listener is closed before the notice is printed.
        proxy.wait_for(NOTICE)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()

        # The open tunnel still works both ways, well inside the drain.
        s.sendall(b"during the drain")
        self.assertEqual(recv_exactly(s, 16), b"during the drain")
        self.assertIsNone(proxy.proc.poll())

        # It ends by itself (the client is done sending): the proxy has nothing left and exits,
        # long before the 60s drain timeout.
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_eof(s), b"")
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertRegex(proxy.rest_of_stderr(), r"127\.0\.0\.1:\d+ - \S+ in=\d+/22B out=\d+/22B code=1000")

    def test_drain_timeout_closes_open_tunnels_with_1001(self):
        proxy, port, backend, _ = self.start_tunnel("--drain-timeout", "300ms", backend_args=("--log-format", "json"))
        s = self.connect(port)
        s.sendall(b"ping")
        self.assertEqual(recv_exactly(s, 4), b"ping")

        t0 = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        proxy.wait_for(NOTICE)
        # The client never ends its side: at the deadline the proxy closes the tunnel, the TCP
        # side included.
        self.assertEqual(recv_eof(s), b"")
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertEqual(proxy.proc.wait(10), 0)
        self.assertRegex(proxy.rest_of_stderr(), r"127\.0\.0\.1:\d+ - \S+ in=\d+/4B out=\d+/4B code=1001 backend=")

        # The upstream received Close 1001 from the proxy.
        m = backend.wait_for(r'^\{.*"type":"close".*\}$')
        line = json.loads(m.group(0))
        self.assertEqual((line["code"], line["by_peer"], line["reason"]), (1001, True, "server shutting down"))

    def test_second_signal_exits_at_once(self):
        proxy, port, _, _ = self.start_tunnel("--drain-timeout", "60s")
        s = self.connect(port)
        s.sendall(b"x")
        self.assertEqual(recv_exactly(s, 1), b"x")
        proxy.proc.send_signal(signal.SIGTERM)
        proxy.wait_for(NOTICE)
        proxy.proc.send_signal(signal.SIGINT)
        self.assertEqual(proxy.proc.wait(10), 130)
        self.assertEqual(recv_eof(s), b"")

    def test_access_log_json(self):
        proxy, port, _, burl = self.start_tunnel("--log-format", "json")
        s = self.connect(port)
        s.sendall(b"hello")
        self.assertEqual(recv_exactly(s, 5), b"hello")
        s.sendall(b"tunnel")
        self.assertEqual(recv_exactly(s, 6), b"tunnel")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_eof(s), b"")

        m = proxy.wait_for(r'^\{.*"type":"close".*\}$')
        line = json.loads(m.group(0))
        self.assertEqual(line["peer"], "127.0.0.1:%d" % s.getsockname()[1])
        self.assertEqual(line["backend"], burl)
        self.assertNotIn("path", line)
        self.assertEqual((line["bytes_in"], line["bytes_out"]), (11, 11))
        self.assertGreaterEqual(line["messages_in"], 1)
        self.assertGreaterEqual(line["messages_out"], 1)
        # The client ended it: the proxy closed the upstream normally.
        self.assertEqual((line["code"], line["by_peer"]), (1000, False))
        self.assertGreaterEqual(line["duration_ms"], 0)
        self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

    def test_quiet_writes_no_access_log_and_no_notice(self):
        proxy, port, _, _ = self.start_tunnel("-q")
        s = self.connect(port)
        s.sendall(b"q")
        self.assertEqual(recv_exactly(s, 1), b"q")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_eof(s), b"")
        proxy.proc.send_signal(signal.SIGTERM)
        self.assertEqual(proxy.proc.wait(10), 0)
        lines = [l for l in proxy.rest_of_stderr().splitlines() if l]
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"^listening on tcp://")

    def test_max_connections_refuses_tunnels_beyond_the_limit(self):
        proxy, port, _, _ = self.start_tunnel("--max-connections", "1")
        first = self.connect(port)
        first.sendall(b"one")
        self.assertEqual(recv_exactly(first, 3), b"one")
        # A second tunnel while the first is open: closed at once, without an upstream.
        second = self.connect(port)
        self.assertEqual(recv_eof(second, 5), b"")
        proxy.wait_for(r"^wsx proxy: tcp client 127\.0\.0\.1:\d+: refused: too many connections \(limit 1\)$")
        # The first still works; once it has ended (its access line is out), the slot is free.
        first.sendall(b"still")
        self.assertEqual(recv_exactly(first, 5), b"still")
        first.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_eof(first), b"")
        proxy.wait_for(r"in=\d+/8B out=\d+/8B code=1000")
        third = self.connect(port)
        third.sendall(b"three")
        self.assertEqual(recv_exactly(third, 5), b"three")

    def test_announce_json(self):
        backend, burl = self.start_server("-q")
        proxy = self.start([wsxtest.WSX, "proxy", "--listen", "tcp://127.0.0.1:0", "--to", burl, "--announce-json"])
        line = json.loads(proxy.wait_for(r"^\{.*\}$").group(0))
        self.assertEqual(line["type"], "listening")
        self.assertEqual(line["url"], "tcp://127.0.0.1:%d" % line["port"])
        self.assertEqual(line["pid"], proxy.proc.pid)
        s = self.connect(line["port"])
        s.sendall(b"json")
        self.assertEqual(recv_exactly(s, 4), b"json")

    def test_websocket_only_options_are_refused(self):
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "ws://127.0.0.1:9/", "--token", "t",
                     "--metrics", "--path", "/ws", "--tls-self-signed", timeout=15)
        self.assertExit(r, 2)
        lines = self.error_lines(r)
        for name in ("--token", "--metrics", "--path", "--tls-self-signed"):
            self.assertTrue(any(l.startswith("wsx: error: " + name) and "tcp:// listener" in l for l in lines),
                            (name, lines))

    def test_handshake_timeout_is_refused(self):
        # It bounds a client's TLS handshake and upgrade request; a TCP client makes neither.
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "ws://127.0.0.1:9/",
                     "--handshake-timeout", "3s", timeout=15)
        self.assertExit(r, 2)
        lines = self.error_lines(r)
        self.assertTrue(any(l.startswith("wsx: error: --handshake-timeout") and "tcp:// listener" in l for l in lines),
                        lines)

    def test_max_message_size_bounds_the_upstreams_messages(self):
        proxy, port, _, _ = self.start_tunnel("--max-message-size", "1KiB")
        small = self.connect(port)
        small.sendall(b"x" * 1000)
        self.assertEqual(recv_exactly(small, 1000), b"x" * 1000)
        # The echo of a larger chunk is a message over the limit: the tunnel ends, its access
        # line says 1009, and no more than what came before it reached the client.
        big = self.connect(port)
        big.sendall(b"y" * 65536)
        self.assertLess(len(recv_eof(big)), 65536)
        proxy.wait_for(r"code=1009")

    def test_threads_is_checked_by_its_value(self):
        # 01 is one thread: accepted, and the tunnel works.
        proxy, port, _, _ = self.start_tunnel("--threads", "01")
        s = self.connect(port)
        s.sendall(b"one")
        self.assertEqual(recv_exactly(s, 3), b"one")
        r = self.wsx("proxy", "--listen", "tcp://127.0.0.1:0", "--to", "ws://127.0.0.1:9/", "--threads", "02",
                     timeout=15)
        self.assertExit(r, 2)
        self.assertTrue(any(l.startswith("wsx: error: --threads: a tcp:// listener runs its tunnels on one thread")
                            for l in self.error_lines(r)), self.error_lines(r))


if __name__ == "__main__":
    wsxtest.main()
