#!/usr/bin/python3
"""The committed man page and shell completions are what `wsx generate` writes today, and
they document every command and option that `--help` shows."""

import difflib
import os
import re
import shutil
import subprocess
import tempfile
import unittest

WSX = os.environ.get("WSX", "wsx")
SOURCE_DIR = os.environ.get("WSX_SOURCE_DIR", os.getcwd())
DEADLINE = 60  # seconds for any one child process

# generate target -> committed file, relative to the source directory
TARGETS = {
    "man": "man/wsx.1",
    "bash": "completions/wsx.bash",
    "zsh": "completions/_wsx",
    "fish": "completions/wsx.fish",
}

HELP_FLAGS = {"--help", "--help-all"}


def regen_hint():
    lines = [f"  cd {SOURCE_DIR}"] + [f"  {WSX} generate {what} > {path}" for what, path in TARGETS.items()]
    return ("The committed docs are out of date. Regenerate them and commit the result:\n"
            + "\n".join(lines))


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=DEADLINE,
                          stdin=subprocess.DEVNULL, **kwargs)


def committed(what):
    path = os.path.join(SOURCE_DIR, TARGETS[what])
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def help_text(path):
    """`wsx PATH... --help`; it must succeed."""
    proc = run([WSX, *path, "--help"])
    if proc.returncode != 0:
        raise AssertionError(f"`wsx {' '.join(path + ['--help'])}` exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def parse_help(text):
    """(subcommand names, options) listed by one --help page; an option is the tuple of
    its names, e.g. ("-H", "--header").

    Options are the lines indented by 2 to 6 spaces that start with '-' (option groups are
    indented further than plain options; wrapped descriptions much further); subcommands
    are the lines of the "Commands:" block, aliases after a comma."""
    options, commands = [], []
    in_commands = False
    for line in text.splitlines():
        if not line.strip():
            in_commands = False
            continue
        if re.fullmatch(r"(sub)?commands:", line.strip(), re.IGNORECASE) and not line.startswith(" "):
            in_commands = True
            continue
        m = re.match(r"^ {2,6}(-\S+)", line)
        if m:
            options.append(tuple(n for n in m.group(1).split(",") if n.startswith("-")))
            continue
        m = re.match(r"^  ([A-Za-z0-9][\w.-]*)", line)
        if in_commands and m:
            commands.append(m.group(1))
    return commands, options


def discover():
    """Every visible command path reachable from `wsx --help`, root first, with its options."""
    found = []
    pending = [[]]
    while pending:
        path = pending.pop(0)
        commands, options = parse_help(help_text(path))
        found.append((path, options))
        pending.extend(path + [c] for c in commands)
    return found


def roff_name(name):
    return name.replace("-", "\\-")


def man_sections(page):
    """Section title -> roff text of that section."""
    sections, title = {}, None
    for line in page.splitlines():
        m = re.match(r'^\.SH\s+(?:"(.*)"|(.*))$', line)
        if m:
            title = (m.group(1) if m.group(1) is not None else m.group(2)).replace("\\-", "-")
            sections[title] = []
        elif title is not None:
            sections[title].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def mentions(text, word, roff=False):
    """`word` occurs in `text` as a whole word, not as part of a longer name; with `roff`,
    in its roff spelling (`\\-\\-header`), which follows font escapes such as `\\fB`."""
    if roff:
        return re.search(re.escape(roff_name(word)) + r"(?![\w]|\\-)", text) is not None
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


class DocsDriftTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.generated = {}
        for what in TARGETS:
            proc = run([WSX, "generate", what])
            if proc.returncode != 0:
                raise AssertionError(f"`wsx generate {what}` exited {proc.returncode}: {proc.stderr}")
            cls.generated[what] = proc.stdout
        cls.commands = discover()

    def test_committed_files_match_generate(self):
        for what, path in TARGETS.items():
            with self.subTest(what=what):
                text = committed(what)
                if text is None:
                    self.fail(f"{path} is missing.\n{regen_hint()}")
                if text != self.generated[what]:
                    diff = "".join(list(difflib.unified_diff(
                        text.splitlines(True), self.generated[what].splitlines(True),
                        fromfile=f"{path} (committed)", tofile=f"wsx generate {what}"))[:60])
                    self.fail(f"{path} differs from `wsx generate {what}`:\n{diff}\n{regen_hint()}")

    def test_generate_is_deterministic_and_hidden(self):
        again = run([WSX, "generate", "man"])
        self.assertEqual(again.stdout, self.generated["man"])
        self.assertNotIn("generate", help_text([]))

    def test_title_line_names_the_version_and_only_an_installed_page_the_build(self):
        # The committed page changes with the definitions and the version number, not with every
        # commit; the page the build installs (--identity) names the build and its date.
        version = run([WSX, "--version"]).stdout.strip()
        m = re.fullmatch(r"wsx (\d+\.\d+\.\d+) \((?:([0-9a-f]{7,}(?:-dirty)?), )?(\w+)\)", version)
        self.assertIsNotNone(m, version)
        number = m.group(1)
        page = self.generated["man"].splitlines()
        self.assertIn(f'.TH WSX 1 "" "wsx {number}" "User Commands"', page[:3])
        installed = run([WSX, "generate", "man", "--identity"])
        self.assertEqual(installed.returncode, 0, installed.stderr)
        lines = installed.stdout.splitlines()
        title = next(l for l in lines if l.startswith(".TH "))
        identity = version[len("wsx "):].replace("-", "\\-")
        self.assertRegex(title, r'^\.TH WSX 1 "\d{4}\\-\d\d\\-\d\d" "wsx ' + re.escape(identity) + '" "User Commands"$')
        self.assertEqual([l for l in lines if not l.startswith(".TH ")],
                         [l for l in page if not l.startswith(".TH ")])

    def test_synopsis_marks_an_optional_subcommand(self):
        # `wsx bench URL` runs without a subcommand (merge is optional); `wsx` needs one.
        lines = self.generated["man"].splitlines()
        synopses = lines[lines.index(".SH SYNOPSIS") + 1:]
        synopses = [l for l in synopses[:synopses.index(next(l for l in synopses if l.startswith(".SH")))]
                    if l != ".br"]
        def plain(line):
            return re.sub(r"\\f[BIR]", "", line)
        by_command = {plain(l).split(" [")[0]: plain(l) for l in synopses}
        self.assertEqual(by_command["wsx bench"], "wsx bench [OPTIONS] [URL] [COMMAND [ARGS]]")
        self.assertEqual(by_command["wsx"], "wsx [OPTIONS] COMMAND [ARGS]")

    def test_every_command_has_help_and_a_man_section(self):
        self.assertGreater(len(self.commands), 1, "wsx --help lists no subcommands")
        sections = man_sections(self.generated["man"])
        for path, _ in self.commands[1:]:
            title = "WSX " + " ".join(path).upper()
            with self.subTest(command=" ".join(path)):
                self.assertIn(title, sections, f"no man section {title!r}")
                name = path[-1]
                self.assertTrue(mentions(self.generated["bash"], name), "missing in bash completion")
                self.assertTrue(mentions(self.generated["zsh"], name), "missing in zsh completion")
                self.assertTrue(mentions(self.generated["fish"], name), "missing in fish completion")

    def test_every_option_in_help_is_in_the_man_page(self):
        sections = man_sections(self.generated["man"])
        for path, options in self.commands:
            # Root options live under OPTIONS; a command's under its own section, where the
            # help flag is not repeated.
            title = "OPTIONS" if not path else "WSX " + " ".join(path).upper()
            section = sections.get(title, "")
            for names in options:
                if path and HELP_FLAGS & set(names):
                    continue
                for name in names:
                    with self.subTest(command=" ".join(["wsx", *path]), option=name):
                        self.assertTrue(mentions(section, name, roff=True), f"{name} not in man section {title}")

    def test_every_option_in_help_is_in_every_completion(self):
        for path, options in self.commands:
            for name in (n for names in options for n in names):
                with self.subTest(command=" ".join(["wsx", *path]), option=name):
                    self.assertTrue(mentions(self.generated["bash"], name), "missing in bash completion")
                    self.assertTrue(mentions(self.generated["zsh"], name), "missing in zsh completion")
                    fish = (f"-l '{name[2:]}'" if name.startswith("--") else f"-s '{name[1:]}'")
                    self.assertTrue(fish in self.generated["fish"], f"{fish} missing in fish completion")

    def test_man_page_renders_without_warnings(self):
        if shutil.which("groff") is None:
            self.skipTest("groff not installed")
        path = os.path.join(SOURCE_DIR, TARGETS["man"])
        if not os.path.exists(path):
            self.skipTest(f"{TARGETS['man']} missing (reported by test_committed_files_match_generate)")
        proc = run(["groff", "-k", "-man", "-Tutf8", "-ww", "-z", path])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stderr, "")

    def committed_path(self, what):
        path = os.path.join(SOURCE_DIR, TARGETS[what])
        if not os.path.exists(path):
            self.skipTest(f"{TARGETS[what]} missing (reported by test_committed_files_match_generate)")
        return path

    def test_shell_syntax(self):
        for shell, what in (("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")):
            with self.subTest(shell=shell):
                if shutil.which(shell) is None:
                    self.skipTest(f"{shell} not installed")
                proc = run([shell, "-n", self.committed_path(what)])
                self.assertEqual(proc.returncode, 0, proc.stderr)

    def bash_complete(self, path, words):
        """COMPREPLY of the bash completion for the command line `words` (cursor on the last)."""
        script = ('source "$1"; shift\n'
                  'complete -p wsx >/dev/null || exit 3\n'
                  'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()\n'
                  '_wsx\n'
                  'printf "%s\\n" "${COMPREPLY[@]}"\n')
        with tempfile.TemporaryDirectory() as cwd:
            proc = run(["bash", "-c", script, "bash", path, *words], cwd=cwd)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return set(proc.stdout.split())

    def test_bash_completes_commands_and_options(self):
        if shutil.which("bash") is None:
            self.skipTest("bash not installed")
        path = self.committed_path("bash")
        for cmd, options in self.commands:
            with self.subTest(command=" ".join(["wsx", *cmd])):
                longs = {n for names in options for n in names if n.startswith("--")}
                self.assertLessEqual(longs, self.bash_complete(path, ["wsx", *cmd, "--"]))
                children = [c for c, _ in self.commands if len(c) == len(cmd) + 1 and c[:-1] == cmd]
                if children:
                    self.assertLessEqual({c[-1] for c in children}, self.bash_complete(path, ["wsx", *cmd, ""]))

    def test_fish_completes_commands_and_options(self):
        if shutil.which("fish") is None:
            self.skipTest("fish not installed")
        path = self.committed_path("fish")
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home, XDG_DATA_HOME=home, XDG_CACHE_HOME=home)
            for cmd, options in self.commands:
                with self.subTest(command=" ".join(["wsx", *cmd])):
                    line = " ".join(["wsx", *cmd, "--"])
                    proc = run(["fish", "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", path, line],
                               cwd=home, env=env)
                    self.assertEqual(proc.returncode, 0, proc.stderr)
                    offered = {l.split("\t")[0] for l in proc.stdout.splitlines()}
                    longs = {n for names in options for n in names if n.startswith("--")}
                    self.assertLessEqual(longs, offered)


if __name__ == "__main__":
    unittest.main(verbosity=2)
