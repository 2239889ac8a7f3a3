"""Every exit code of `wsx connect`, each reached by a real scenario over loopback.

Behaviour these tests rely on:
- each failure prints exactly one `wsx: error: ...` line on stderr naming what failed;
  usage errors may add one `Run 'wsx connect --help' for usage.` hint line.
- a refused upgrade prints the HTTP status and (the first line of) the body.
- a peer close with a code other than 1000/1001, or a connection lost without a Close
  frame (1006), is exit 7 and prints the code and reason; so is such an answer to our own Close
  (stdin EOF, --send done): only a 1000/1001 answer makes that exit 0.
- --expect that is still unmatched when the connection closes is exit 9; still unmatched
  when --timeout passes is exit 8 (a timeout); both say what was expected and what arrived.
- -n N: exit 0 once N messages have arrived (the closing handshake is completed first).
- stdin that stays open keeps the connection open: only a deadline ends such a run.
"""
import fcntl
import os
import signal
import socket
import struct
import subprocess
import time

import wsxtest
from wsxtest import WsxTestCase, read_line_matching, refused_port
from connect_handshake_test import ScriptedServer, answer_101, frame
from peer_tools import run_wsx_timed




class ExitCodeTest(WsxTestCase):
    # 0 ------------------------------------------------------------------
    def test_0_ok(self):
        _, url = self.start_server()
        r = self.wsx("connect", url, input=b"hi\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hi\n")
        self.assertEqual(self.error_lines(r), [])

    def test_0_count_exits_after_n_messages(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", url, "--send", "a", "--send", "b", "--send", "c", "--send", "d", "-n", "3",
                                "--timeout", "5s")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"a\nb\nc\n")

    def test_0_count_with_stdin_that_stays_open(self):
        # Only -n can end this run: stdin never reaches EOF and the server keeps sending.
        peer, port = self.start_peer("ws_server.py", "--mode", "burst")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "100", "-n", "3", "--timeout", "5s",
                                timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"0\n1\n2\n", "exactly N messages are printed")

    # 2 ------------------------------------------------------------------
    def test_2_bad_url_scheme(self):
        r = self.wsx("connect", "http://127.0.0.1:1/")
        self.assertExit(r, 2)
        line = self.assertOneError(r, "http://127.0.0.1:1/")
        self.assertRegex(line, r"ws://|wss://|scheme")

    def test_2_bad_duration(self):
        r = self.wsx("connect", "ws://127.0.0.1:1/", "--timeout", "5parsecs")
        self.assertExit(r, 2)
        self.assertOneError(r, "--timeout", "5parsecs")

    def test_2_unknown_option(self):
        r = self.wsx("connect", "ws://127.0.0.1:1/", "--frobnicate")
        self.assertExit(r, 2)
        self.assertOneError(r, "--frobnicate")

    def test_2_missing_url(self):
        r = self.wsx("connect")
        self.assertExit(r, 2)
        self.assertOneError(r, "url")

    def test_2_reports_every_problem_before_connecting(self):
        r = self.wsx("connect", "ws://127.0.0.1:1/", "--timeout", "x", "--wait", "y", "--hex", "--base64")
        self.assertExit(r, 2)
        errors = "\n".join(self.error_lines(r))
        for f in ("--timeout", "--wait", "--hex"):
            self.assertIn(f, errors)

    # 3 ------------------------------------------------------------------
    def test_3_name_does_not_resolve(self):
        r = self.wsx("connect", "ws://no-such-host.invalid/", "--connect-timeout", "5s", input=b"x\n")
        self.assertExit(r, 3)
        self.assertOneError(r, "no-such-host.invalid")

    # 4 ------------------------------------------------------------------
    def test_4_connection_refused(self):
        port = refused_port(self)
        r = self.wsx("connect", f"ws://127.0.0.1:{port}/", input=b"x\n")
        self.assertExit(r, 4)
        self.assertOneError(r, f"127.0.0.1:{port}", "refused", "(is a server listening on that port?)")

    def test_4_unix_socket_missing(self):
        path = f"{self.tmp}/none.sock"
        r = self.wsx("connect", f"ws+unix://{path}:/", input=b"x\n")
        self.assertExit(r, 4)
        self.assertOneError(r, path, "(is a server listening on that socket?)")

    # 5 ------------------------------------------------------------------
    def test_5_certificate_from_another_ca(self):
        c = wsxtest.certs()
        _, url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"])
        self.assertTrue(url.startswith("wss://"))
        r = self.wsx("connect", url, "--cacert", c["otherca"], input=b"x\n")
        self.assertExit(r, 5)
        self.assertOneError(r, "TLS", "verif")

    def test_5_wss_to_a_server_without_tls(self):
        _, url = self.start_server()
        port = url.rsplit(":", 1)[1].rstrip("/")
        r = self.wsx("connect", f"wss://127.0.0.1:{port}/", "-k", input=b"x\n")
        self.assertExit(r, 5)
        self.assertOneError(r, f"TLS handshake with 127.0.0.1:{port} failed",
                            "(does the server speak TLS? if not, use ws://)")

    def test_5_certificate_problem_keeps_its_own_hint(self):
        c = wsxtest.certs()
        _, url = self.start_server("--tls-cert", c["server"], "--tls-key", c["server_key"])
        r = self.wsx("connect", url, input=b"x\n")
        self.assertExit(r, 5)
        line = self.assertOneError(r, "--cacert")
        self.assertNotIn("ws://", line.split("failed:", 1)[1])

    # 6 ------------------------------------------------------------------
    def test_6_ws_to_a_tls_server(self):
        _, url = self.start_server("--tls-self-signed")
        self.assertTrue(url.startswith("wss://"))
        plain = "ws://" + url[len("wss://"):]
        for extra in ([], ["--compress"]):
            with self.subTest(extra=extra):
                r = self.wsx("connect", plain, *extra, input=b"x\n")
                self.assertExit(r, 6)
                self.assertOneError(r, f"upgrade with {plain} failed", "(if it speaks TLS, use wss://)")

    def test_6_upgrade_rejected_shows_status_and_body(self):
        _, port = self.start_peer("ws_server.py", "--mode", "reject", "--status", "403", "--body", "go away, bot")
        r = self.wsx("connect", f"ws://127.0.0.1:{port}/chat", input=b"x\n")
        self.assertExit(r, 6)
        self.assertOneError(r, "403", "Forbidden", "go away, bot")

    def test_6_plain_http_server(self):
        # A non-WebSocket HTTP server answering 200 is not an upgrade either.
        _, port = self.start_peer("ws_server.py", "--mode", "reject", "--status", "200", "--body", "hello web")
        r = self.wsx("connect", f"ws://127.0.0.1:{port}/", input=b"x\n")
        self.assertExit(r, 6)
        self.assertOneError(r, "200", "hello web")

    # 7 ------------------------------------------------------------------
    def test_7_server_closes_with_1011(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-code", "1011", "--close-reason", "boom")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", timeout=15)
        self.assertExit(r, 7)
        self.assertOneError(r, "1011", "boom")

    def test_7_server_drops_tcp_without_close(self):
        _, port = self.start_peer("ws_server.py", "--mode", "drop", "--close-after", "1")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "hello", "--expect", "nothing-like-this",
                                "--timeout", "10s", timeout=15)
        self.assertExit(r, 7)
        self.assertOneError(r, "1006")

    def test_7_drop_while_piping(self):
        _, port = self.start_peer("ws_server.py", "--mode", "drop", "--close-after", "1")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "x", "-n", "5", timeout=15)
        self.assertExit(r, 7)

    def test_7_message_larger_than_max_message_size(self):
        _, url = self.start_server()
        big = b"x" * 3000 + b"\n"
        # While the connection is open, and while draining after stdin EOF: never a silent loss.
        for run in (lambda: self.wsx_open_stdin("connect", url, "--max-message-size", "1KiB", "--send", big[:-1].decode(),
                                                "-n", "1", timeout=15),
                    lambda: self.wsx("connect", url, "--max-message-size", "1KiB", input=big)):
            r = run()
            self.assertExit(r, 7)
            self.assertOneError(r, "--max-message-size", "1009")
            self.assertEqual(r.stdout, b"")

    def test_7_close_answered_abnormally_after_stdin_ends(self):
        # Our Close (stdin EOF, or --send done) answered with 1011, or with a hang-up and no
        # Close at all (1006): abnormal, as when the server starts the close.
        cases = [("1011", frame(8, struct.pack("!H", 1011) + b"boom")), ("1006", b"")]
        for code, close_answer in cases:
            for how in ("stdin", "--send"):
                with self.subTest(code=code, how=how):
                    s = ScriptedServer(answer_101, close_answer)
                    self.addCleanup(s.close)
                    url = f"ws://127.0.0.1:{s.port}/"
                    if how == "stdin":
                        r = self.wsx("connect", url, "--stats-json", input=b"hello\n", timeout=15)
                    else:
                        r = self.wsx_open_stdin("connect", url, "--send", "x", "--stats-json", timeout=15)
                    self.assertExit(r, 7)
                    self.assertOneError(r, code)
                    s.thread.join(10)
                    self.assertEqual(s.client_close_code(), 1000)

    def test_0_close_answered_with_1000_after_stdin_ends(self):
        s = ScriptedServer(answer_101, frame(8, struct.pack("!H", 1000)))
        self.addCleanup(s.close)
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"hello\n", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(self.error_lines(r), [])

    def test_0_server_closes_with_1000_and_1001(self):
        for code in (1000, 1001):
            with self.subTest(code=code):
                _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-code", str(code),
                                          "--close-reason", "bye")
                r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", timeout=15)
                self.assertExit(r, 0)

    # 8 ------------------------------------------------------------------
    def test_8_overall_timeout(self):
        _, port = self.start_peer("ws_server.py", "--mode", "silent")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--timeout", "300ms", timeout=15)
        self.assertExit(r, 8)
        self.assertOneError(r, "timed out", "300ms")

    def test_8_idle_timeout(self):
        _, port = self.start_peer("ws_server.py", "--mode", "silent")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--idle-timeout", "300ms", timeout=15)
        self.assertExit(r, 8)
        self.assertOneError(r, "idle")

    def test_8_idle_timeout_is_reset_by_traffic(self):
        # The server sends a message every 0.3s for 1.8s, then nothing. With --idle-timeout 1s
        # the run outlives the traffic (no gap reaches 1s) and ends 1s after the last message.
        # A timer that traffic did not reset would end it near 1s, after 4 of the 7 messages.
        _, port = self.start_peer("raw_ws_server.py", "--mode", "paced", "--count", "7", "--interval", "0.3")
        r, took = run_wsx_timed("connect", f"ws://127.0.0.1:{port}/", "--idle-timeout", "1s", timeout=15)
        self.assertExit(r, 8)
        self.assertOneError(r, "idle timeout", "1s")
        self.assertEqual(r.stdout, b"".join(b"tick %d\n" % i for i in range(7)), "every message came before the end")
        self.assertGreater(took, 2.0, "the run lasted past the traffic")
        self.assertLess(took, 6.0, "and ended by the idle timeout soon after it")

    def test_8_connect_timeout_when_upgrade_never_answered(self):
        # A listening socket that is never accepted: the kernel completes TCP, nobody answers.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        self.addCleanup(s.close)
        port = s.getsockname()[1]
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--connect-timeout", "300ms", timeout=15)
        self.assertExit(r, 8)
        self.assertOneError(r, "timed out", "300ms", f"127.0.0.1:{port}")

    def test_8_overall_timeout_while_opening_says_so(self):
        # --timeout before the upgrade is answered: the error says the connection was still
        # opening, not that message 1 of 1 never came.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        self.addCleanup(s.close)
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{s.getsockname()[1]}/", "-n", "1", "--timeout", "300ms",
                                timeout=15)
        self.assertExit(r, 8)
        line = self.assertOneError(r, "timed out after 300ms (--timeout) while opening the connection")
        self.assertNotIn("message 1 of 1", line)

    def test_8_expect_timeout(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", url, "--send", "hello", "--expect", "^bye$", "--timeout", "500ms", timeout=15)
        self.assertExit(r, 8)
        self.assertOneError(r, "^bye$", "hello")

    def test_8_server_does_not_answer_close_within_wait(self):
        server, url = self.start_server()
        p = self.start([wsxtest.WSX, "connect", url, "--wait", "300ms"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out = wsxtest.LineCollector(p.proc.stdout)
        p.proc.stdin.write(b"hello\n")
        p.proc.stdin.flush()
        out.wait_for_line(b"hello")
        server.freeze()  # TCP stays up, nothing answers
        self.addCleanup(server.proc.send_signal, signal.SIGKILL)
        p.proc.stdin.close()
        self.assertEqual(p.proc.wait(10), 8)
        self.assertIn("--wait 300ms", p.rest_of_stderr())

    # 130 ----------------------------------------------------------------
    def test_130_interrupted_closes_with_1001(self):
        peer, port = self.start_peer("ws_server.py")
        p = self.start([wsxtest.WSX, "connect", f"ws://127.0.0.1:{port}/"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        out = wsxtest.LineCollector(p.proc.stdout)
        p.proc.stdin.write(b"before the signal\n")
        p.proc.stdin.flush()
        out.wait_for_line(b"before the signal")
        p.proc.send_signal(signal.SIGINT)
        self.assertEqual(p.proc.wait(10), 130)
        read_line_matching(peer.proc.stdout, r"^closed 1001", 10)

    def test_130_second_interrupt_leaves_stdin_blocking(self):
        # The second Ctrl-C ends at once; stdin's file description (shared with the shell) must
        # not be left O_NONBLOCK.
        server, url = self.start_server()
        r, w = os.pipe()
        self.addCleanup(os.close, w)
        self.addCleanup(os.close, r)
        p = self.start([wsxtest.WSX, "connect", url], stdin=r, stdout=subprocess.PIPE)
        out = wsxtest.LineCollector(p.proc.stdout)
        os.write(w, b"hello\n")
        out.wait_for_line(b"hello")
        server.freeze()  # the Close 1001 of the first signal gets no answer
        self.addCleanup(server.proc.send_signal, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while p.proc.poll() is None and time.monotonic() < deadline:
            p.proc.send_signal(signal.SIGINT)
            try:
                p.proc.wait(0.02)  # signals 20 ms apart: the second lands long before the 1 s close bound
            except subprocess.TimeoutExpired:
                pass
        self.assertEqual(p.proc.wait(5), 130)
        self.assertFalse(fcntl.fcntl(r, fcntl.F_GETFL) & os.O_NONBLOCK, "stdin left non-blocking")

    # 9 ------------------------------------------------------------------
    def test_9_expect_mismatch_at_close(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-after", "1", "--close-code", "1000")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "hello", "--expect", "^bye$",
                                "--timeout", "5s", timeout=15)
        self.assertExit(r, 9)
        self.assertOneError(r, "^bye$", "hello")

    def test_9_count_not_reached_at_close(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-after", "1", "--close-code", "1000")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "hello", "-n", "2", "--timeout", "5s",
                                timeout=15)
        self.assertExit(r, 9)
        self.assertOneError(r, "2")


if __name__ == "__main__":
    wsxtest.main()
