"""Help that reads like a finished tool: `wsx help TOPIC` and `wsx TOPIC --help` refuse an
unknown topic in one line, and neither `--help`, the man page nor the completions show CLI11's
own notation (`N:INT in [9 - 15]=15`, `POLICY:{close,drop}`, `TEXT`, `REQUIRED`, `...`): ranges,
choices and defaults are written out. `wsx help <TAB>` completes command names in every shell,
and fish describes an option once, not beside each of its values."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WsxTestCase, main  # noqa: E402

COMMANDS = ["connect", "serve", "bench", "relay", "proxy"]
# Every page of help there is: the root, each command, and bench's merge.
HELP_PAGES = [[]] + [[c] for c in COMMANDS] + [["bench", "merge"]]
# CLI11's notation for types, checks, defaults and counts; none of it belongs in wsx's help.
CLI11_ISMS = [
    (r"\b(INT|UINT|FLOAT|TEXT|NUMBER|BOOLEAN) in \[", "a CLI11 range"),
    (r":\{", "a CLI11 choice list"),
    (r"\bTEXT\b", "CLI11's TEXT type"),
    (r"\b(INT|UINT|FLOAT)\b", "a CLI11 C++ type name"),
    (r"\bREQUIRED\b", "CLI11's REQUIRED"),
    (r"SUBCOMMAND", "CLI11's SUBCOMMAND"),
    (r"Positionals:", "CLI11's Positionals heading"),
    # PATH=VALUE is a value's syntax; DURATION=10s or POLICY=close is CLI11 showing a default.
    (r"^\s+-\S*(?:,\S+)* [A-Z][\w|:\[\].]*=[^A-Z\s]", "a default glued to the value name"),
    (r"^\s+-\S*(?:,\S+)* [A-Z][\w|:=]* \.\.\.", "CLI11's '...' for a repeatable option"),
    (r"Print this help message and exit|Display program version information", "CLI11's stock help texts"),
]


class HelpText(WsxTestCase):
    def help(self, *words):
        r = self.wsx(*words, "--help", timeout=10)
        self.assertExit(r, 0)
        return r.stdout.decode()

    def assertNoCli11isms(self, text, where):
        for line in text.splitlines():
            for pattern, what in CLI11_ISMS:
                self.assertNotRegex(line, pattern, f"{what} in {where}: {line!r}")

    # --- unknown help topics ---------------------------------------------------------------

    def assertUnknownTopic(self, args, suggestion=None):
        r = self.wsx(*args, timeout=10)
        self.assertExit(r, 2)
        self.assertEqual(r.stdout, b"")
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("wsx: error: unknown command"), lines)
        if suggestion:
            self.assertIn(f"(did you mean {suggestion}?)", lines[0])

    def test_help_of_an_unknown_topic_is_one_line_and_exit_2(self):
        self.assertUnknownTopic(["help", "nosuch"])
        self.assertUnknownTopic(["help", "conect"], "connect")
        self.assertUnknownTopic(["help", "bnech"], "bench")

    def test_unknown_topic_with_help_flag_is_one_line_and_exit_2(self):
        self.assertUnknownTopic(["nosuch", "--help"])
        self.assertUnknownTopic(["sevre", "-h"], "serve")

    def test_help_of_a_known_topic_still_works(self):
        for c in COMMANDS:
            r = self.wsx("help", c, timeout=10)
            self.assertExit(r, 0)
            self.assertIn(f"Usage: wsx {c}", r.stdout.decode())
        r = self.wsx("help", timeout=10)
        self.assertExit(r, 0)
        self.assertIn("Commands:", r.stdout.decode())
        for words in (["help", "help"], ["help", "--help"]):
            r = self.wsx(*words, timeout=10)
            self.assertExit(r, 0)
            self.assertIn("Usage: wsx help [OPTIONS] [COMMAND]", r.stdout.decode())

    # --- no CLI11 notation ------------------------------------------------------------------

    def test_help_pages_have_no_cli11_notation(self):
        for words in HELP_PAGES:
            with self.subTest(page=" ".join(["wsx", *words, "--help"])):
                self.assertNoCli11isms(self.help(*words), "wsx " + " ".join(words) + " --help")

    def test_man_page_and_completions_have_no_cli11_notation(self):
        for what in ("man", "bash", "zsh", "fish"):
            with self.subTest(what=what):
                r = self.wsx("generate", what, timeout=30)
                self.assertExit(r, 0)
                text = r.stdout.decode()
                if what == "man":
                    text = re.sub(r"\\f[BIR]|\\&", "", text).replace("\\-", "-")
                self.assertNoCli11isms(text, f"wsx generate {what}")

    def test_ranges_choices_and_defaults_are_written_out(self):
        connect = self.help("connect")
        self.assertRegex(connect, r"--compress-window-bits N +Deflate window bits, 9\u201315 \(default 15\)\n")
        self.assertRegex(connect, r"--connect-timeout DURATION +Deadline for DNS, TCP, TLS and upgrade \(default 10s\)\n")
        self.assertRegex(connect, r"--backoff-factor FACTOR +Delay multiplier per attempt, 1\u2013100 \(default 2\)\n")
        serve = self.help("serve")
        self.assertRegex(serve, r"--overflow POLICY +When a client's send queue is full: close \(1008\) or drop messages "
                                r"\(default close\)\n")
        self.assertRegex(serve, r"--kill-grace DURATION +")
        self.assertIn("Arguments:", serve)
        proxy = self.help("proxy")
        self.assertRegex(proxy, r"--to URL +.*\(required\)\n")

    def test_metavariables_are_single_words(self):
        # A value name is a word like SIZE or N, never a sentence ("the subscriber queue").
        for words in HELP_PAGES:
            for line in self.help(*words).splitlines():
                m = re.match(r"^\s+(-\S+) (\S.*?)(?:  |$)", line)
                if m:
                    with self.subTest(option=m.group(1)):
                        self.assertRegex(m.group(2), r"^(?:[A-Z][A-Z0-9_|:=]*|CMD \[ARGS\.\.\.\])$", line)

    # --- completing `wsx help` ---------------------------------------------------------------

    def generated(self, what):
        r = self.wsx("generate", what, timeout=30)
        self.assertExit(r, 0)
        path = os.path.join(self.tmp, what)
        with open(path, "wb") as f:
            f.write(r.stdout)
        return path

    def test_bash_completes_command_names_after_help(self):
        if shutil.which("bash") is None:
            self.skipTest("bash not installed")
        script = ('source "$1"; shift\n'
                  'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()\n'
                  '_wsx\n'
                  'printf "%s\\n" "${COMPREPLY[@]}"\n')
        path = self.generated("bash")
        r = subprocess.run(["bash", "--norc", "-c", script, "bash", path, "wsx", "help", ""],
                           capture_output=True, text=True, timeout=30, cwd=self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(set(r.stdout.split()), set(COMMANDS))
        r = subprocess.run(["bash", "--norc", "-c", script, "bash", path, "wsx", "help", "re"],
                           capture_output=True, text=True, timeout=30, cwd=self.tmp)
        self.assertEqual(r.stdout.split(), ["relay"])

    def test_fish_completes_command_names_after_help(self):
        if shutil.which("fish") is None:
            self.skipTest("fish not installed")
        offered = self.fish_complete("wsx help ")
        self.assertEqual({l.split("\t")[0] for l in offered}, set(COMMANDS))

    def test_zsh_completes_command_names_after_help(self):
        # The zsh function of `wsx help` offers the command names as the first argument.
        with open(self.generated("zsh")) as f:
            text = f.read()
        body = re.search(r"^_wsx__help\(\) \{\n(.*?)^\}", text, re.S | re.M)
        self.assertIsNotNone(body, "no completion function for wsx help")
        m = re.search(r"'1:COMMAND:\((.*?)\)'", body.group(1))
        self.assertIsNotNone(m, body.group(1))
        self.assertEqual(m.group(1).split(), COMMANDS)
        if shutil.which("zsh"):
            r = subprocess.run(["zsh", "-n", self.generated("zsh")], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)

    def fish_complete(self, line):
        path = self.generated("fish")
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home, XDG_CACHE_HOME=home)
            r = subprocess.run(["fish", "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", path, line],
                               capture_output=True, text=True, timeout=30, cwd=home, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_fish_gives_an_option_description_once_not_once_per_value(self):
        if shutil.which("fish") is None:
            self.skipTest("fish not installed")
        description = "When a client's send queue is full"
        values = self.fish_complete("wsx serve --overflow ")
        self.assertEqual({l.split("\t")[0] for l in values}, {"close", "drop"})
        for l in values:
            self.assertNotIn(description[:20], l, f"the option's description repeated beside a value: {l!r}")
        options = [l for l in self.fish_complete("wsx serve --overf") if l.startswith("--overflow")]
        self.assertEqual(len(options), 1, options)
        self.assertIn("\t", options[0])


if __name__ == "__main__":
    main()
