"""How `wsx connect` begins and ends a conversation: --then-stdin, --linger, --close-code and
--close-reason, --send-only, --receive-only, and a slow Close answer after the goal was met.

Behaviour these tests rely on:
- --send ... --then-stdin: the --send messages go first, then stdin streams as in pipe mode.
- --linger D: after stdin ends, the client keeps reading until nothing has arrived for D, then
  sends Close; python `websockets` answers a Close at once and drops echoes it has not sent, so
  without it a large pipe loses its last replies.
- --close-code/--close-reason: the Close sent at the end of input; a code a client may not send,
  or a reason longer than 123 bytes or not UTF-8, is exit 2.
- --send-only prints nothing received; --receive-only never reads stdin and stays until the
  server closes, -n or --timeout.
- once -n/--expect/a script is satisfied, a Close the server does not answer within --wait is a
  warning on stderr and exit 0; without such a goal it stays exit 8.
"""
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import termios
import textwrap
import threading
import time
import unittest

import raw_peer
import wsxtest
from wsxtest import PYTHON, WSX, LineCollector, WsxTestCase, read_line_matching

NODE_MODULES = os.path.join(wsxtest.SOURCE_DIR, "tests", "node_modules")
# An echo server on npm `ws` that logs each connection's close code and reason.
NODE_ECHO = r"""
const { WebSocketServer } = require("ws");
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
wss.on("listening", () => console.log("listening on 127.0.0.1:" + wss.address().port));
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("close", (code, reason) => console.log("closed " + code + " " + reason.toString()));
});
"""


class EndingsTest(WsxTestCase):
    def python_peer(self, *args):
        """A python `websockets` server; returns (its event lines, read as they come, and its URL).
        Its log is read all along: a peer blocked writing a full pipe would stall the test."""
        p, port = self.start_peer("ws_server.py", *args)
        return LineCollector(p.proc.stdout), f"ws://127.0.0.1:{port}/"

    @staticmethod
    def closed(log, line):
        log.wait_for_line(line.encode())

    def test_close_then_reset_reports_the_peers_code(self):
        # A server that sends Close 1008 and closes its socket with the client's data unread:
        # its system answers with a reset, and the client's Close cannot be sent. The peer's
        # code is still the connection's close code (RFC 6455 7.1.5), not 1006.
        # The Close reply fails with a reset or a broken pipe, as the timing goes: three runs.
        for attempt in range(3):
            with self.subTest(attempt=attempt):
                self.close_then_reset_once()

    def close_then_reset_once(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(20)
        self.addCleanup(listener.close)
        received = []

        def serve():
            c, _ = listener.accept()
            with c:
                c.settimeout(20)
                key = raw_peer.read_upgrade_key(c)
                if key is None:
                    return
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Accept: " + raw_peer.accept_key(key) + b"\r\n\r\n")
                got = 0
                while got < 200_000:  # the client is flooding: the rest stays unread
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    got += len(chunk)
                received.append(got)
                c.sendall(raw_peer.close_frame(1008, b"policy violated"))
                # Closing with unread data sends a reset at once and drops what is still unsent:
                # the Close must have left first (acknowledged: nothing left in the send queue).
                deadline = time.monotonic() + 10
                while fcntl.ioctl(c.fileno(), termios.TIOCOUTQ, struct.pack("i", 0)) != struct.pack("i", 0):
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.001)
            # closed with unread data: a reset

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        r = self.wsx("connect", f"ws://127.0.0.1:{listener.getsockname()[1]}/", input=(b"x" * 999 + b"\n") * 20_000,
                     timeout=30)
        t.join(5)
        self.assertTrue(received, "the server never saw the flood")
        self.assertExit(r, 7)
        self.assertOneError(r, '1008 "policy violated"')
        self.assertNotIn("1006", r.stderr.decode())

    # --linger ----------------------------------------------------------------
    def test_linger_gets_every_echo_from_python_websockets(self):
        p, url = self.python_peer()
        data = "".join(f"line {i} ✓\n" for i in range(20000)).encode()
        # Silence is what ends the run: 2 s of it, so that a stall of the peer under load does not.
        r = self.wsx("connect", url, "--linger", "2s", input=data, timeout=60)
        self.assertExit(r, 0)
        self.assertEqual(len(r.stdout.splitlines()), 20000)
        self.assertEqual(r.stdout, data)
        self.closed(p, "closed 1000 ")

    def test_linger_ends_after_silence(self):
        _, url = self.start_server()
        start = time.monotonic()
        r = self.wsx("connect", url, "--linger", "300ms", input=b"a\nb\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"a\nb\n")
        self.assertGreaterEqual(time.monotonic() - start, 0.3)  # it did wait for the silence
        self.assertLess(time.monotonic() - start, 5)
        r = self.wsx("connect", url, "--linger", "soon")
        self.assertExit(r, 2)
        self.assertIn("--linger", self.error_lines(r)[0])

    # --close-code / --close-reason ------------------------------------------
    def test_close_code_and_reason_seen_by_python_server(self):
        p, url = self.python_peer()
        reason = "done here ✓"
        r = self.wsx("connect", url, "--linger", "200ms", "--close-code", "4000", "--close-reason", reason,
                     input=b"x\n", timeout=20)
        self.assertExit(r, 0)  # the server echoing our 4000 is the normal answer to it
        self.assertEqual(r.stdout, b"x\n")
        self.closed(p, "closed 4000 done here ✓")
        # -n met: the same Close.
        r = self.wsx_open_stdin("connect", url, "--send", "y", "-n", "1", "--close-code", "3001", timeout=20)
        self.assertExit(r, 0)
        self.closed(p, "closed 3001 ")

    @unittest.skipUnless(shutil.which("node") and os.path.isdir(os.path.join(NODE_MODULES, "ws")),
                         "node or npm ws (tests/node_modules) not installed")
    def test_linger_and_close_code_with_node_ws(self):
        script = os.path.join(self.tmp, "echo.js")
        with open(script, "w") as f:
            f.write(NODE_ECHO)
        p = self.start(["node", script], stdout=subprocess.PIPE, env=dict(os.environ, NODE_PATH=NODE_MODULES))
        port = read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)", 10).group(1)
        log = LineCollector(p.proc.stdout)
        data = "".join(f"{i} ✓\n" for i in range(5000)).encode()
        r = self.wsx("connect", f"ws://127.0.0.1:{port}/", "--linger", "300ms", "--close-code", "4000",
                     "--close-reason", "node bye", input=data, timeout=60)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)
        log.wait_for_line(b"closed 4000 node bye")

    def test_close_code_and_reason_are_checked(self):
        url = f"ws://127.0.0.1:{wsxtest.refused_port(self)}/"  # connecting would be exit 4
        for code in ("0", "999", "1004", "1005", "1006", "1012", "1015", "2000", "5000", "70000", "abc", "-1"):
            with self.subTest(code=code):
                r = self.wsx("connect", url, "--close-code", code)
                self.assertExit(r, 2)
                self.assertEqual(len(self.error_lines(r)), 1, r.stderr)
                self.assertIn("--close-code", self.error_lines(r)[0])
        for reason, why in (("r" * 124, "124 bytes"), (b"\xff\xfe", "UTF-8")):
            with self.subTest(why=why):
                r = subprocess.run([WSX.encode(), b"connect", url.encode(), b"--close-reason",
                                    reason if isinstance(reason, bytes) else reason.encode()],
                                   capture_output=True, timeout=20)
                self.assertExit(r, 2)
                self.assertIn(why, self.error_lines(r)[0])
        # The limits themselves are fine: 123 bytes of multi-byte UTF-8, codes 1000-1003, 3000-4999.
        p, good = self.python_peer()
        r = self.wsx("connect", good, "--close-code", "4999", "--close-reason", "✓" * 41, "--linger", "100ms",
                     input=b"", timeout=20)
        self.assertExit(r, 0)
        self.closed(p, "closed 4999 " + "✓" * 41)

    # --send-only / --receive-only -------------------------------------------
    def test_send_only_prints_nothing_received(self):
        p, url = self.python_peer()
        r = self.wsx("connect", url, "--send-only", "--linger", "200ms", input=b"one\ntwo\nthree\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"")
        p.wait_until(lambda lines: lines.count(b"message text 3") == 2 and lines.count(b"message text 5") == 1,
                     what="the server got all three messages")
        # Received messages still count for -n.
        r = self.wsx_open_stdin("connect", url, "--send-only", "--send", "a", "--send", "b", "-n", "2", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"")

    def test_receive_only_never_reads_stdin(self):
        # The handler reports anything it is sent within 2 s, then says goodbye and ends.
        handler = os.path.join(self.tmp, "handler.py")
        with open(handler, "w") as f:
            f.write(textwrap.dedent("""\
                import select, sys
                got, _, _ = select.select([sys.stdin], [], [], 2.0)
                if got:
                    print("got: " + sys.stdin.readline().rstrip("\\n"), flush=True)
                print("bye", flush=True)
                """))
        _, url = self.start_server("--exec", "--", PYTHON, "-u", handler)
        r = self.wsx("connect", url, "--receive-only", input=b"not to be sent\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"bye\n")

    def test_receive_only_stays_after_stdin_ends(self):
        p, url = self.python_peer("--mode", "silent")
        # Stdin at EOF at once: pipe mode would close and exit 0; --receive-only waits for --timeout.
        r = self.wsx("connect", url, "--receive-only", "--timeout", "400ms", input=b"", timeout=20)
        self.assertExit(r, 8)
        self.assertIn("--timeout", self.error_lines(r)[0])
        # --send still goes out first; -n ends it.
        _, burst = self.python_peer("--mode", "burst")
        r = self.wsx("connect", burst, "--receive-only", "--send", "5", "-n", "5", input=b"7\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"0\n1\n2\n3\n4\n")

    def test_conflicting_options_are_usage_errors(self):
        url = f"ws://127.0.0.1:{wsxtest.refused_port(self)}/"
        for args, words in ((["--send-only", "--receive-only"], "cannot be combined"),
                            (["--receive-only", "--send", "x", "--then-stdin"], "cannot be combined"),
                            (["--then-stdin"], "--then-stdin needs --send"),
                            (["--receive-only", "--linger", "1s"], "--linger")):
            with self.subTest(args=args):
                r = self.wsx("connect", url, *args)
                self.assertExit(r, 2)
                self.assertIn(words, self.error_lines(r)[0])

    # --then-stdin ------------------------------------------------------------
    def test_preamble_then_stdin_through_python_websockets(self):
        p, url = self.python_peer()
        r = self.wsx("connect", url, "--send", "sub a", "--send", "sub b", "--then-stdin", "--linger", "300ms",
                     input=b"c\nd\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"sub a\nsub b\nc\nd\n")

    def test_preamble_then_stdin_streams(self):
        _, url = self.start_server()
        p = self.start([WSX, "connect", url, "--send", "first", "--then-stdin"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        out = LineCollector(p.proc.stdout)
        out.wait_for_line(b"first")
        # Stdin is still open: a line written now is sent now.
        p.proc.stdin.write(b"second\n")
        p.proc.stdin.flush()
        out.wait_for_line(b"second")
        p.proc.stdin.close()
        self.assertEqual(out.wait_for_end(), [b"first", b"second"])
        self.assertEqual(p.proc.wait(10), 0)

    # a slow Close answer after the goal ---------------------------------------
    def test_goal_met_then_unanswered_close_is_a_warning(self):
        # Echoes one message, then reads on without ever answering a Close.
        _, port = self.start_peer("raw_ws_server.py", "--after", "1", "--then", "raw", "--raw", "")
        url = f"ws://127.0.0.1:{port}/"
        script = os.path.join(self.tmp, "script.txt")
        with open(script, "w") as f:
            f.write("send hi\nexpect ^hi$\n")
        for goal in (["--send", "hi", "-n", "1"], ["--send", "hi", "--expect", "^hi$"], ["--script", script]):
            with self.subTest(goal=goal[-2]):
                r = self.wsx_open_stdin("connect", url, *goal, "--wait", "300ms", timeout=20)
                self.assertExit(r, 0)
                self.assertEqual(r.stdout, b"hi\n")
                self.assertIn("wsx: warning: the server did not answer Close within --wait 300ms", r.stderr.decode())
                self.assertEqual(self.error_lines(r), [])
        # Without a goal, the unanswered Close is still a timeout.
        r = self.wsx("connect", url, "--wait", "300ms", input=b"hi\n", timeout=20)
        self.assertExit(r, 8)
        self.assertIn("did not answer Close", self.error_lines(r)[0])


if __name__ == "__main__":
    wsxtest.main()
