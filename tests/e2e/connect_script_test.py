"""`wsx connect --script FILE`: dialogue scripts, a step a line, run in order.

Behaviour these tests rely on:
- the whole script is read and checked before anything connects: a bad line (unknown step,
  bad argument, bad regex, unreadable send-file) is exit 2 naming FILE:LINE, every one at once.
- a step after an expect runs only once that expect has matched: a server that is slow to get
  ready sees nothing before it says so.
- expect steps read the messages not read yet (also those that arrived during earlier steps);
  messages that do not match are passed over; every message is written to stdout.
- a connection that closes before the script is done is exit 9, an expect step that times out
  exit 8; both name the line and show the messages that arrived instead.
- expect-close [CODE] passes on the server's Close (with that code); close CODE REASON sends it.
- the script's end, without close, closes with --close-code/--close-reason (default 1000).
"""
import json
import os
import textwrap
import time

import event_schema
import wsxtest
from wsxtest import PYTHON, LineCollector, WsxTestCase

# A handler for `wsx serve --exec`: it is slow to get ready, and says "early: ..." instead of
# "ready" when anything arrives before it is ready; then it answers each line with "got LINE".
# The delay is the behaviour under test (a server that is not ready at once), not synchronisation.
SLOW_HANDLER = textwrap.dedent("""\
    import select, sys
    early, _, _ = select.select([sys.stdin], [], [], 0.5)
    if early:
        print("early: " + sys.stdin.readline().rstrip("\\n"), flush=True)
        sys.exit(0)
    print("ready", flush=True)
    for line in sys.stdin:
        print("got " + line.rstrip("\\n"), flush=True)
    """)


class ScriptTest(WsxTestCase):
    def write(self, name, text, mode="w"):
        path = os.path.join(self.tmp, name)
        with open(path, mode) as f:
            f.write(text)
        return path

    def script(self, url, text, *args, name="script.txt", timeout=20):
        path = self.write(name, textwrap.dedent(text))
        return self.wsx_open_stdin("connect", url, "--script", path, *args, timeout=timeout)

    def test_a_send_after_an_expect_waits_for_its_match(self):
        handler = self.write("handler.py", SLOW_HANDLER)
        _, url = self.start_server("--exec", "--", PYTHON, "-u", handler)
        r = self.script(url, """\
            # the handler is ready after a while
            expect ^ready$ timeout=5s
            send hello
            expect ^got hello$
            send bye
            expect ^got bye$
            """)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"ready\ngot hello\ngot bye\n")

    def test_every_step_kind(self):
        _, url = self.start_server()
        blob = self.write("blob.bin", b"\x00\x01\xfe", "wb")
        text = self.write("text.txt", "from a file")
        r = self.script(url, f"""\
            send hello world
            expect ^hello world$
            send-json {{"user": {{"id": 7}}}}
            expect-json user.id=7 timeout=2s
            send-binary 00 ff 10
            send-file {blob}
            send-file {text}
            ping are you there
            wait 50ms
            expect ^from a file$
            close 4000 all done
            """, "--jsonl")
        self.assertExit(r, 0)
        events = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)
        incoming = [(e["type"], e["payload"]) for e in events if e["type"] in ("text", "binary") and e["dir"] == "in"]
        self.assertEqual(incoming, [("text", b"hello world"), ("text", b'{"user": {"id": 7}}'),
                                    ("binary", b"\x00\xff\x10"), ("binary", b"\x00\x01\xfe"),
                                    ("text", b"from a file")])
        self.assertIn(("pong", "in", "are you there"), [(e["type"], e.get("dir"), e.get("data")) for e in events])
        # The server echoed our Close 4000 with its reason: that is the normal answer to it.
        closes = [e for e in events if e["type"] == "close"]
        self.assertEqual([(e["dir"], e["code"]) for e in closes], [("out", 4000), ("in", 4000)])
        self.assertEqual(closes[0]["reason"], "all done")

    def test_binary_steps_send_exact_bytes(self):
        _, url = self.start_server()
        blob = self.write("blob.bin", b"\x00\x01\xfe\xff", "wb")
        r = self.script(url, f"""\
            send-binary 48 65 6c6c 6f ff
            send-file {blob}
            send last
            expect ^last$
            """, "--hex")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"48656c6c6fff\n0001feff\nlast\n")

    def test_messages_that_arrived_earlier_are_matched_in_order(self):
        # The server sends three lines unasked, at once: they are all there before the first
        # expect runs, whatever the wait; a skipped one is passed over, the rest match in order.
        _, url = self.start_server("--exec", "--", "sh", "-c", "echo a; echo b; echo c; exec sleep 30")
        r = self.script(url, """\
            wait 300ms
            expect ^b$
            expect ^c$
            """)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"a\nb\nc\n")

    def test_expect_json_does_not_match_another_value(self):
        _, url = self.start_server()
        r = self.script(url, """\
            send-json {"user": {"id": 8}}
            expect-json user.id=7 timeout=300ms
            """)
        self.assertExit(r, 8)
        self.assertIn(b"1 other message arrived", r.stderr)

    def test_wait_waits(self):
        _, url = self.start_server()
        t0 = time.monotonic()
        r = self.script(url, """\
            send x
            expect ^x$
            wait 500ms
            """)
        self.assertExit(r, 0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.5)

    def test_a_close_before_the_match_is_9_naming_the_line_and_what_arrived(self):
        _, url = self.start_server("--exec", "--", "sh", "-c", "echo one; echo two; printf 'three\\033]0;x\\a\\n'")
        r = self.script(url, """\
            # nothing to send

            expect ^never$ timeout=5s
            """)
        self.assertExit(r, 9)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("script.txt:3: expect ^never$ timeout=5s:", errors[0])
        self.assertIn("closed by server", errors[0])
        self.assertIn("3 other messages arrived", errors[0])
        self.assertIn("'two'", errors[0])
        # What arrived is shown escaped: a message cannot retitle the terminal from an error line.
        self.assertIn("three\\x1b]0;x\\x07", errors[0])
        self.assertNotIn("\x1b", r.stderr.decode())
        # Every message is still written out.
        self.assertEqual(r.stdout.splitlines()[:2], [b"one", b"two"])

    def test_a_step_timeout_is_8_naming_the_line(self):
        _, url = self.start_server()
        r = self.script(url, """\
            send tick
            expect ^tock$ timeout=300ms
            send never sent
            """)
        self.assertExit(r, 8)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("script.txt:2: expect ^tock$ timeout=300ms: no matching message within 300ms", errors[0])
        self.assertIn("1 other message arrived: 'tick'", errors[0])
        self.assertEqual(r.stdout, b"tick\n")

    def test_the_default_step_timeout_is_named_in_the_error(self):
        _, url = self.start_server()
        r = self.script(url, "expect-json ok=true\n", "--timeout", "300ms")
        # --timeout (the whole run) ends it first, and names the step it was at.
        self.assertExit(r, 8)
        self.assertIn("script.txt:1: expect-json ok=true", self.error_lines(r)[0])
        self.assertIn("--timeout", self.error_lines(r)[0])

    def test_expect_close_with_and_without_a_code(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-code", "4001", "--close-reason", "why",
                                  "--close-after", "1")
        url = f"ws://127.0.0.1:{port}/"
        for step in ("expect-close", "expect-close 4001 timeout=5s"):
            with self.subTest(step=step):
                r = self.script(url, f"send x\nexpect ^x$\n{step}\n")
                self.assertExit(r, 0)
                self.assertEqual(r.stdout, b"x\n")
        r = self.script(url, "send x\nexpect-close 1000\n")
        self.assertExit(r, 9)
        self.assertIn('script.txt:2: expect-close 1000: the server closed with 4001 "why"', self.error_lines(r)[0])

    def test_close_step_and_script_end_reach_an_independent_server(self):
        p, port = self.start_peer("ws_server.py")
        log = LineCollector(p.proc.stdout)
        url = f"ws://127.0.0.1:{port}/"
        r = self.script(url, "send hi\nexpect ^hi$\nclose 4001 script done\n")
        self.assertExit(r, 0)
        log.wait_for_line(b"closed 4001 script done")
        # Without a close step, the script's end sends --close-code/--close-reason.
        r = self.script(url, "send hi\nexpect ^hi$\n", "--close-code", "4002", "--close-reason", "end of script")
        self.assertExit(r, 0)
        log.wait_for_line(b"closed 4002 end of script")

    def test_script_from_stdin(self):
        _, url = self.start_server()
        r = self.wsx("connect", url, "--script", "-", input=b"send from stdin\nexpect stdin$\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"from stdin\n")

    def test_the_server_closing_mid_script_is_9(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-after", "1")
        r = self.script(f"ws://127.0.0.1:{port}/", "send a\nwait 5s\nsend b\n")
        self.assertExit(r, 9)
        self.assertIn("script.txt:2: wait 5s: the connection ended before this step was done "
                      "(connection closed by server: 1000)", self.error_lines(r)[0])

    def test_bad_scripts_are_usage_errors_before_connecting(self):
        url = f"ws://127.0.0.1:{wsxtest.refused_port(self)}/"  # a connection attempt would be exit 4
        r = self.script(url, """\
            send fine
            sned typo
            expect (unclosed
            wait soon
            close 1006
            """)
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 3, r.stderr)
        self.assertIn("script.txt:2: unknown step 'sned'", errors[0])
        self.assertIn("script.txt:4: wait needs a duration", errors[1])
        self.assertIn("script.txt:5: close: close code 1006", errors[2])
        # Lines that parse are checked further: the regex, the files to send.
        r = self.script(url, "expect (unclosed\nsend-file /nonexistent/file\n")
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 2, r.stderr)
        self.assertIn("script.txt:1: expect: invalid regular expression", errors[0])
        self.assertIn("script.txt:2: send-file /nonexistent/file: cannot read it", errors[1])
        r = self.wsx("connect", url, "--script", os.path.join(self.tmp, "missing.txt"))
        self.assertExit(r, 2)
        self.assertIn("missing.txt: cannot read it", self.error_lines(r)[0])
        # Reading is bounded: a script that never ends, a directory, a file over the limit.
        r = self.wsx("connect", url, "--script", "/dev/zero", timeout=20)
        self.assertExit(r, 2)
        self.assertIn("--script /dev/zero: cannot read it: it is larger than 16 MiB", self.error_lines(r)[0])
        self.write("big.bin", b"x" * 2048, "wb")
        r = self.script(url, f"send-file {self.tmp}\nsend-file {os.path.join(self.tmp, 'big.bin')}\n",
                        "--max-message-size", "1KiB")
        self.assertExit(r, 2)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 2, r.stderr)
        self.assertIn("it is a directory", errors[0])
        self.assertIn("it is larger than 1 KiB", errors[1])
        r = self.script(url, "# nothing\n")
        self.assertExit(r, 2)
        self.assertIn("no steps", self.error_lines(r)[0])
        path = self.write("ok.txt", "send x\n")
        for extra in (["--send", "x"], ["--expect", "x"], ["-n", "1"], ["--receive-only"], ["--reconnect"]):
            with self.subTest(extra=extra):
                r = self.wsx("connect", url, "--script", path, *extra)
                self.assertExit(r, 2)
                self.assertIn("--script cannot be combined with", self.error_lines(r)[0])


if __name__ == "__main__":
    wsxtest.main()
