"""Command-line mistakes (an unknown command or option, a value of the wrong kind) give one
`wsx: error:` line that names the mistake and the way out, and exit 2."""
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WsxTestCase, main  # noqa: E402

# Nothing listens on port 1: every command below must fail before it connects anywhere.
URL = "ws://127.0.0.1:1/"


class CliErrors(WsxTestCase):
    def assertUsage(self, args, *lines):
        """`wsx ARGS` exits 2 and prints exactly `lines` on stderr, nothing on stdout."""
        r = self.wsx(*args, timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(r.stderr.decode().splitlines(), list(lines))
        self.assertEqual(r.stdout, b"")

    # --- an unknown command -------------------------------------------------------------

    def test_misspelt_command_is_named_with_a_suggestion(self):
        self.assertUsage(["conect", URL],
                         "wsx: error: unknown command 'conect' (did you mean connect?); "
                         "run 'wsx --help' for the commands")

    def test_unrelated_word_gets_no_suggestion(self):
        self.assertUsage(["frobnicate"], "wsx: error: unknown command 'frobnicate'; run 'wsx --help' for the commands")

    def test_no_command(self):
        self.assertUsage([], "wsx: error: no command given: use connect, serve, bench, relay or proxy; "
                             "run 'wsx --help' for the commands")

    def test_unknown_option_before_any_command(self):
        self.assertUsage(["--tokn"], "wsx: error: unknown option --tokn; run 'wsx --help' for usage "
                                     "(a command's options go after its name)")

    def test_help_word_prints_the_help(self):
        r = self.wsx("help", timeout=10)
        self.assertExit(r, 0)
        self.assertIn("Commands:", r.stdout.decode())
        self.assertIn("connect", r.stdout.decode())
        r = self.wsx("help", "relay", timeout=10)
        self.assertExit(r, 0)
        self.assertIn("Usage: wsx relay", r.stdout.decode())

    # --- an unknown option of a command -------------------------------------------------

    def test_unknown_option_after_the_url(self):
        self.assertUsage(["connect", URL, "--tokn", "x"],
                         "wsx: error: connect: unknown option --tokn (did you mean --token?)",
                         "Run 'wsx connect --help' for usage.")

    def test_unknown_option_is_blamed_not_the_address_after_it(self):
        self.assertUsage(["serve", "--tokn", "x", "127.0.0.1:0"],
                         "wsx: error: serve: unknown option --tokn (did you mean --token?)",
                         "Run 'wsx serve --help' for usage.")

    def test_unknown_option_with_equals_and_no_close_name(self):
        self.assertUsage(["connect", URL, "--zzzzzz=1"],
                         "wsx: error: connect: unknown option --zzzzzz",
                         "Run 'wsx connect --help' for usage.")

    def test_stray_argument(self):
        self.assertUsage(["connect", URL, "extra"],
                         "wsx: error: connect: unexpected argument 'extra'",
                         "Run 'wsx connect --help' for usage.")

    def test_exec_hint_is_kept(self):
        r = self.wsx("serve", "127.0.0.1:0", "--exec", "sh", "-c", "cat", timeout=10)
        self.assertExit(r, 2)
        first = r.stderr.decode().splitlines()[0]
        self.assertTrue(first.startswith("wsx: error: serve: unknown option -c: for a command with options, "
                                         "write --exec -- CMD ARGS..."), first)

    # --- values CLI11 refuses -----------------------------------------------------------

    def test_not_a_number(self):
        self.assertUsage(["connect", URL, "--max-retries", "x"],
                         "wsx: error: connect: --max-retries: 'x' is not a number",
                         "Run 'wsx connect --help' for usage.")

    def test_not_a_number_for_a_ranged_option(self):
        self.assertUsage(["connect", URL, "--backoff-factor", "abc"],
                         "wsx: error: connect: --backoff-factor: 'abc' is not a number",
                         "Run 'wsx connect --help' for usage.")

    def test_out_of_range(self):
        self.assertUsage(["connect", URL, "--backoff-factor", "500"],
                         "wsx: error: connect: --backoff-factor: '500' is out of range: give a number from 1 to 100",
                         "Run 'wsx connect --help' for usage.")

    def test_not_one_of_the_choices(self):
        self.assertUsage(["serve", "127.0.0.1:0", "--overflow", "foo"],
                         "wsx: error: serve: --overflow: 'foo' is not one of close, drop",
                         "Run 'wsx serve --help' for usage.")

    def test_missing_value_at_the_end(self):
        self.assertUsage(["serve", "127.0.0.1:0", "--overflow"],
                         "wsx: error: serve: --overflow: a value is missing (one of close, drop)",
                         "Run 'wsx serve --help' for usage.")
        self.assertUsage(["connect", URL, "--header"],
                         "wsx: error: connect: --header: a value is missing (HEADER)",
                         "Run 'wsx connect --help' for usage.")

    # --- a value wsx refuses is reported once ---------------------------------------------

    def test_bad_duration_is_not_reported_again_as_zero(self):
        self.assertUsage(["relay", "127.0.0.1:0", "--redis-timeout", "5x"],
                         "wsx: error: --redis-timeout '5x': not a duration (use e.g. 500ms, 2s, 1.5m)",
                         "Run 'wsx relay --help' for usage.")

    def test_zero_duration_is_still_refused(self):
        self.assertUsage(["relay", "127.0.0.1:0", "--redis-timeout", "0"],
                         "wsx: error: --redis-timeout must be more than 0",
                         "Run 'wsx relay --help' for usage.")


class SharedHelpTexts(WsxTestCase):
    """relay and proxy share serve's listener options; their help must not speak of serve's modes."""

    def help_text(self, command):
        r = self.wsx(command, "--help", timeout=10)
        self.assertExit(r, 0)
        return r.stdout.decode()

    def test_relay_and_proxy_help_say_nothing_of_exec_or_stdio(self):
        for command in ("relay", "proxy"):
            text = self.help_text(command)
            for serve_only in ("--exec", "--stdio", "WSX_SUB", "child's stderr"):
                self.assertNotIn(serve_only, text, (command, serve_only))

    def test_serve_help_keeps_its_specifics(self):
        text = self.help_text("serve")
        self.assertIn("(--exec/--stdio: also the longest line sent as one message; longer ones are split)", text)
        self.assertIn("its 'sub' is WSX_SUB for --exec", text)
        self.assertIn("other log lines such as a child's stderr are JSON objects too", text)


class HelpExamples(WsxTestCase):
    """The examples in the help work as written against the echo server `wsx --help` suggests."""

    def examples(self, command, needle):
        r = self.wsx(command, "--help", timeout=10)
        self.assertExit(r, 0)
        lines = [l.strip() for l in r.stdout.decode().splitlines() if l.strip().startswith("wsx ") and needle in l]
        self.assertTrue(lines, f"no example with {needle} in wsx {command} --help")
        return lines

    def run_example(self, line, server_args=(), extra=()):
        command, _, comment = line.partition("  #")
        words = shlex.split(command)
        _, url = self.start_server(*server_args)
        words = [url if w == "ws://127.0.0.1:8080/" else w for w in words[1:]]
        r = self.wsx(*words, *extra, timeout=30)
        self.assertExit(r, 0)
        return r

    def test_connect_scripted_example_passes_against_echo(self):
        for line in self.examples("connect", "--expect-json"):
            r = self.run_example(line)
            self.assertEqual(r.stdout, b'{"op":"hi"}\n')

    def test_bench_compress_example_says_what_server_it_needs(self):
        for line in self.examples("bench", "--compress"):
            server = ["--compress"] if "serve --compress" in line else []
            self.run_example(line, server, ["-d", "300ms", "--no-progress"])


class UnreadableFiles(WsxTestCase):
    """Every TLS file that cannot be read is named at once, with the reason, before anything
    listens or connects."""

    def lines(self, *args):
        r = self.wsx(*args, timeout=20)
        self.assertExit(r, 2)
        return r.stderr.decode().splitlines()

    def test_serve(self):
        a, b = os.path.join(self.tmp, "a.pem"), os.path.join(self.tmp, "b.pem")
        self.assertEqual(self.lines("serve", "127.0.0.1:0", "--tls-cert", a, "--tls-key", b), [
            f"wsx: error: --tls-cert '{a}': cannot read the file (No such file or directory)",
            f"wsx: error: --tls-key '{b}': cannot read the file (No such file or directory)",
            "Run 'wsx serve --help' for usage."])
        # With a generated certificate too (the CA file was only read at start-up).
        self.assertEqual(self.lines("serve", "127.0.0.1:0", "--tls-self-signed", "--client-ca", a), [
            f"wsx: error: --client-ca '{a}': cannot read the file (No such file or directory)",
            "Run 'wsx serve --help' for usage."])

    def test_connect_and_proxy(self):
        a, b, c = (os.path.join(self.tmp, n) for n in ("a.pem", "b.pem", "c.pem"))
        for cmd in (["connect", "wss://127.0.0.1:1/"], ["proxy", "--listen", "ws://127.0.0.1:0", "--to", "wss://127.0.0.1:1/"]):
            with self.subTest(cmd=cmd[0]):
                got = self.lines(*cmd, "--cacert", a, "--cert", b, "--key", c)
                self.assertEqual(got[:3], [f"wsx: error: --cacert '{a}': cannot read the file (No such file or directory)",
                                           f"wsx: error: --cert '{b}': cannot read the file (No such file or directory)",
                                           f"wsx: error: --key '{c}': cannot read the file (No such file or directory)"])


if __name__ == "__main__":
    main()
