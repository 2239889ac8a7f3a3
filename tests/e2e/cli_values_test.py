"""Option values are taken as written, one per occurrence, in every command.

Behaviour these tests rely on:
- a repeatable option (--send, --expect, --expect-json, -H, --cookie, --origin, --to, ...)
  takes exactly one value each time it is given: a value written as `[a,b]` (a JSON array,
  a regex class) is one value, not a list, and the words after it are not taken as more
  values (`--send hi URL`: the URL is the URL);
- serve --exec CMD ARGS... still takes several words, each as written;
- an option with a documented delimiter (serve --passenv A,B) still splits on it;
- a header name must be a token, and a header value is one line;
- a count that is negative, too large or not a number is a usage error (exit 2) on one line
  naming the option and the value as given, before any connection is made.
"""
import json
import subprocess

import wsxtest
from wsxtest import WsxTestCase


class OptionValues(WsxTestCase):
    def test_send_json_array_is_one_message(self):
        _, url = self.start_server()
        for value in ('["subscribe","ticker"]', "[1,2,3]"):
            with self.subTest(value=value):
                r = self.wsx_open_stdin("connect", url, "--send", value, "-n", "1", "--timeout", "5s", timeout=15)
                self.assertExit(r, 0)
                self.assertEqual(r.stdout, value.encode() + b"\n")

    def test_empty_array_does_not_take_the_options_after_it(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", url, "--send", "[]", "-n", "1", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"[]\n")

    def test_send_before_the_url(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", "--send", "hi", url, "-n", "1", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hi\n")

    def test_send_repeated_before_the_url(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", "--send", "a", "--send", "b", url, "-n", "2", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"a\nb\n")

    def test_expect_bracket_regex_is_a_character_class(self):
        _, url = self.start_server()
        r = self.wsx_open_stdin("connect", url, "--send", "b", "--expect", "^[abc]$", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        r = self.wsx_open_stdin("connect", url, "--send", "x", "--expect", "[abc]", "--timeout", "500ms", timeout=15)
        self.assertExit(r, 8)
        self.assertIn("[abc]", "\n".join(self.error_lines(r)))

    def test_expect_json_bracketed_path(self):
        _, url = self.start_server()
        message = json.dumps({"weird.key": 7, "weird": {"key": 8}})
        # A path alone asks for the key to be present: ["weird.key"] is one key with a dot in it.
        r = self.wsx_open_stdin("connect", url, "--send", message, "--expect-json", '["weird.key"]',
                                "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, message.encode() + b"\n")
        r = self.wsx_open_stdin("connect", url, "--send", '{"weird":{"key":8}}', "--expect-json", '["weird.key"]',
                                "--timeout", "500ms", timeout=15)
        self.assertExit(r, 8)
        self.assertIn("""--expect-json '["weird.key"]'""", "\n".join(self.error_lines(r)))

    def test_cookie_and_subprotocol_values_as_written(self):
        _, port = self.start_peer("ws_server.py", "--mode", "info")
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{port}/", "--cookie", "[a=1,b=2]",
                                "-H", "X-List: [1,2]", "-n", "1", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        info = json.loads(r.stdout.decode().splitlines()[0])
        self.assertEqual(info["headers"]["cookie"], "[a=1,b=2]")
        self.assertEqual(info["headers"]["x-list"], "[1,2]")

    def test_header_json_array_is_one_header(self):
        # Port 1 refuses: headers that passed would give exit 4, not 2.
        r = self.wsx("connect", "ws://127.0.0.1:1/", "-H", "[X-A: 1,X-B: 2]", timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [
            "wsx: error: --header '[X-A: 1,X-B: 2]': '[X-A' is not a header name (letters, digits and !#$%&'*+-.^_`|~)"])
        r = self.wsx("connect", "ws://127.0.0.1:1/", "-H", "X-A: one\r\nX-B: two", timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [
            "wsx: error: --header X-A: the value contains a line break or NUL; give it on one line"])

    def test_header_before_the_url(self):
        _, port = self.start_peer("ws_server.py", "--mode", "info")
        r = self.wsx_open_stdin("connect", "-H", "X-One: 1", "-H", "X-Two: 2", f"ws://127.0.0.1:{port}/", "-n", "1",
                                "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        info = json.loads(r.stdout.decode().splitlines()[0])
        self.assertEqual((info["headers"]["x-one"], info["headers"]["x-two"]), ("1", "2"))

    # Other commands ---------------------------------------------------------
    def test_serve_origin_before_the_address(self):
        p = self.start([wsxtest.WSX, "serve", "--origin", "https://a.test", "127.0.0.1:0"])
        m = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)")
        r = self.wsx("connect", m.group(1) + "/", "--origin", "https://a.test", input=b"x\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"x\n")
        r = self.wsx("connect", m.group(1) + "/", "--origin", "https://b.test", input=b"x\n")
        self.assertExit(r, 6)

    def test_serve_exec_arguments_as_written(self):
        _, url = self.start_server("--exec", "echo", "[a,b]", "[]")
        r = self.wsx_open_stdin("connect", url, "-n", "1", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"[a,b] []\n")

    def test_serve_passenv_keeps_its_comma_delimiter(self):
        env = {"PATH": "/usr/bin:/bin", "WSX_T_A": "one", "WSX_T_B": "two"}
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--passenv", "WSX_T_A,WSX_T_B", "--exec", "--", "sh", "-c",
                        'echo "$WSX_T_A $WSX_T_B"'], env=env)
        m = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)")
        r = self.wsx_open_stdin("connect", m.group(1) + "/", "-n", "1", "--timeout", "5s", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"one two\n")

    def test_relay_origin_as_written(self):
        r = self.wsx("relay", "--origin", "[https://a.test,https://b.test]", "127.0.0.1:0", timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [
            "wsx: error: origin '[https://a.test,https://b.test]' is not valid: expected like https://app.example, "
            "https://app.example:8443 or https://*.example.com"])

    def test_proxy_to_takes_one_url_per_occurrence(self):
        r = self.wsx("proxy", "--to", "ws://127.0.0.1:1/", "ws://127.0.0.1:2/")
        self.assertExit(r, 2)
        self.assertIn("ws://127.0.0.1:2/", "\n".join(self.error_lines(r)))
        r = self.wsx("proxy", "--to", "[ws://127.0.0.1:1/]")
        self.assertExit(r, 2)
        self.assertIn("--to '[ws://127.0.0.1:1/]'", "\n".join(self.error_lines(r)))

    def test_bench_header_before_the_url(self):
        _, url = self.start_server()
        r = self.wsx("bench", "-H", "X-Test: 1", url, "-c", "1", "-n", "5", "--no-progress", timeout=60)
        self.assertExit(r, 0)

    def test_bench_fail_if_before_the_url(self):
        _, url = self.start_server()
        r = self.wsx("bench", "--fail-if", "errors>0", "--fail-if", "p99>10s", url, "-c", "1", "-n", "5",
                     "--no-progress", timeout=60)
        self.assertExit(r, 0)


class CountValues(WsxTestCase):
    def assertBadCount(self, args, line):
        r = self.wsx(*args, timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [line])

    def test_connect_count(self):
        # Port 1 refuses: a count that passed would give exit 4, not 2.
        for value in ("-1", "0", "x", "18446744073709551616"):
            with self.subTest(value=value):
                self.assertBadCount(["connect", "ws://127.0.0.1:1/", "-n", value],
                                    f"wsx: error: -n/--count '{value}': give a whole number from 1 to "
                                    "1000000000000000000 (leave it out for no count)")

    def test_relay_history(self):
        for value in ("-1", "18446744073709551615"):
            with self.subTest(value=value):
                self.assertBadCount(["relay", "127.0.0.1:0", "--history", value],
                                    f"wsx: error: --history '{value}': give a whole number from 0 to 1000000000 "
                                    "(leave it out for none)")

    def test_bench_counts_that_do_not_fit(self):
        cases = [
            (["-c", "4294967297"], "-c/--connections '4294967297': give a whole number from 1 to 10000000"),
            (["--threads", "4294967297"], "--threads '4294967297': give a whole number from 1 to 1024"),
            (["--in-flight", "-1"], "--in-flight '-1': give a whole number from 1 to 1000000"),
            (["-s", "fanout", "--publishers", "4294967296"],
             "--publishers '4294967296': give a whole number from 1 to 10000000"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.wsx("bench", "ws://127.0.0.1:1/", "-n", "1", *args, timeout=20)
                self.assertExit(r, 2)
                lines = self.error_lines(r)
                self.assertEqual(len(lines), 1, r.stderr.decode())
                self.assertIn(message, lines[0])


if __name__ == "__main__":
    wsxtest.main()
