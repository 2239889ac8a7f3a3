"""`wsx connect` for scripts: --send, --expect, --expect-json, -n, --timeout.

Behaviour these tests rely on:
- --send messages go out in order after the connect; stdin is then not read.
- --send alone (no --expect/-n) closes with 1000 once the messages are sent and exits 0
  after the server's Close; replies that arrive before it are printed.
- expectations are matched in order, each against the messages after the previous match;
  a message that does not match the current expectation is skipped (but still printed).
- once every expectation has matched (and -n is reached), wsx closes with 1000 and exits 0;
  messages arriving after that are not printed.
- unmatched when the server closes, or when stdout's reader goes away (`| head -1`): exit 9; unmatched at --timeout: exit 8; both name the
  expectation waited for and the last message received.
- --expect is an ECMAScript regex searched in each message, whatever its size; a pattern too
  costly to evaluate on a message ends the run with exit 1 and one error line.
"""
import json
import subprocess

import event_schema
import wsxtest
from wsxtest import WsxTestCase


class ScriptingTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.server, self.url = self.start_server()

    def run_ok(self, *args, url=None):
        r = self.wsx_open_stdin("connect", url or self.url, *args, "--timeout", "2s", timeout=15)
        self.assertExit(r, 0)
        return r

    def test_send_only_prints_replies_and_exits(self):
        r = self.run_ok("--send", "one", "--send", "two")
        self.assertEqual(r.stdout, b"one\ntwo\n")

    def test_send_and_expect_in_order(self):
        r = self.run_ok("--send", "ping 1", "--send", "ping 2", "--expect", "^ping 1$", "--expect", "2$")
        self.assertEqual(r.stdout, b"ping 1\nping 2\n")

    def test_expect_with_stdin_lines(self):
        # Stdin EOF does not end the run while an expectation is pending.
        r = self.wsx("connect", self.url, "--expect", "^b$", "--timeout", "5s", input=b"a\nb\nc\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout.splitlines()[:2], [b"a", b"b"])

    def test_non_matching_messages_are_skipped(self):
        r = self.run_ok("--send", "noise", "--send", "more noise", "--send", "status: ready", "--expect", "ready")
        self.assertEqual(r.stdout, b"noise\nmore noise\nstatus: ready\n")

    def test_expect_is_a_regex_search(self):
        self.run_ok("--send", "answer=42!", "--expect", r"answer=\d+")

    def test_expect_json(self):
        r = self.run_ok("--send", '{"op":"hello","user":{"id":7,"name":"ann"}}', "--send", '{"items":[1,2,{"k":"v"}]}',
                        "--expect-json", "op=hello", "--expect-json", "items[2].k=v")
        self.assertEqual(len(r.stdout.splitlines()), 2)

    def test_expect_json_skips_non_json(self):
        self.run_ok("--send", "not json", "--send", '{"user":{"id":7}}', "--expect-json", "user.id=7")

    def test_expect_and_expect_json_mixed_in_order(self):
        self.run_ok("--send", "hello", "--send", '{"n":3}', "--expect", "hell", "--expect-json", "n=3")

    def test_messages_after_the_goal_are_not_printed(self):
        _, port = self.start_peer("ws_server.py", "--mode", "burst")
        r = self.run_ok("--send", "50", "--expect", "^3$", url=f"ws://127.0.0.1:{port}/")
        self.assertEqual(r.stdout, b"0\n1\n2\n3\n")

    def test_count_and_expect_together(self):
        _, port = self.start_peer("ws_server.py", "--mode", "burst")
        # The expectation is met at message 2, -n asks for 6: both must hold.
        r = self.run_ok("--send", "50", "--expect", "^1$", "-n", "6", url=f"ws://127.0.0.1:{port}/")
        self.assertEqual(r.stdout, b"0\n1\n2\n3\n4\n5\n")

    def test_expectations_out_of_order_fail_at_close_with_9(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-after", "2")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", "b", "--send", "a", "--expect", "a",
                                "--expect", "b", "--timeout", "2s", timeout=15)
        self.assertExit(r, 9)
        errors = self.error_lines(r)
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertIn("--expect 'b'", errors[0])
        self.assertIn("2 of 2", errors[0])
        self.assertIn("'a'", errors[0])

    def test_expect_json_failure_at_close_says_what_arrived(self):
        _, port = self.start_peer("ws_server.py", "--mode", "close", "--close-after", "1")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--send", '{"status":"busy"}',
                                "--expect-json", "status=ready", "--timeout", "2s", timeout=15)
        self.assertExit(r, 9)
        line = self.error_lines(r)[0]
        self.assertIn("status=ready", line)
        self.assertIn('{"status":"busy"}', line)

    def test_expect_timeout_is_8(self):
        r = self.wsx_open_stdin("connect", self.url, "--send", "tick", "--expect", "tock", "--timeout", "300ms",
                                timeout=15)
        self.assertExit(r, 8)
        line = self.error_lines(r)[0]
        self.assertIn("300ms", line)
        self.assertIn("tock", line)
        self.assertIn("tick", line)

    def test_count_with_jsonl(self):
        r = self.run_ok("--send", "x", "--send", "y", "-n", "2", "--jsonl")
        events = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)
        self.assertEqual([e["data"] for e in events if e["type"] == "text" and e["dir"] == "in"], ["x", "y"])

    def test_goal_unmet_when_stdout_reader_goes_away_is_9(self):
        # `wsx connect ... --expect X | head -1`: the reader leaves while messages still arrive.
        _, port = self.start_peer("ws_server.py", "--mode", "burst")
        for goal in (["--expect", "neverever"], ["-n", "1000000"]):
            with self.subTest(goal=goal[0]):
                p = self.start([wsxtest.WSX, "connect", f"ws://127.0.0.1:{port}/", "--send", "50000", *goal,
                                "--timeout", "20s"], stdout=subprocess.PIPE)
                self.assertEqual(p.proc.stdout.readline(), b"0\n")
                p.proc.stdout.close()
                self.assertEqual(p.proc.wait(15), 9)
                err = p.rest_of_stderr()
                self.assertIn("stdout was closed", err)
                self.assertIn(goal[1], err)

    def test_expect_on_a_1mib_message_never_crashes(self):
        big = b'{"status":' + b"a" * (1 << 20) + b'ok}\n'
        r = self.wsx("connect", self.url, "--expect", '"status":.*ok', "--timeout", "10s", input=big)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, big)
        r = self.wsx("connect", self.url, "--expect", "^.*z", "--timeout", "1s", input=big)
        self.assertExit(r, 8)
        # A pattern too costly for this message is a clear failure, not a crash.
        r = self.wsx("connect", self.url, "--expect", "a+z", "--timeout", "10s", input=big)
        self.assertExit(r, 1)
        self.assertEqual(len(self.error_lines(r)), 1, r.stderr)
        self.assertIn("--expect 'a+z'", self.error_lines(r)[0])
        self.assertIn("simplify the pattern", self.error_lines(r)[0])

    def test_invalid_regex_is_usage_error(self):
        r = self.wsx("connect", self.url, "--expect", "(unclosed")
        self.assertExit(r, 2)
        self.assertIn("(unclosed", self.error_lines(r)[0])

    def test_invalid_expect_json_is_usage_error(self):
        r = self.wsx("connect", self.url, "--expect-json", "a..b=1")
        self.assertExit(r, 2)
        self.assertIn("a..b", self.error_lines(r)[0])


if __name__ == "__main__":
    wsxtest.main()
