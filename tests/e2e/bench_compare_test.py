"""wsx bench --compare: runs that asked for different loads are named as such, field by field with
both values, before any figure is called better or worse; runs that asked the same are not."""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WSX, WsxTestCase, main  # noqa: E402

WARNING = re.compile(r"^wsx: warning: --compare: the runs differ in (\w+): baseline (.*), this run (.*)$")


class BenchCompare(WsxTestCase):
    def setUp(self):
        super().setUp()
        _, self.url = self.start_server()
        self.base = os.path.join(self.tmp, "base.json")
        # One thread for every run: wsx uses no more threads than connections, and the thread
        # count is part of the configuration compared.
        r = self.wsx("bench", self.url, "--threads", "1", "-c", "1", "-d", "1s", "--json", self.base, timeout=60)
        self.assertExit(r, 0)

    def compare(self, *args, threads="1"):
        """Runs a bench with --compare against the baseline, stdout and stderr in one stream (in
        the order written); returns (output lines, the differences warned about)."""
        p = subprocess.run([WSX, "bench", self.url, "--threads", threads, *args, "--compare", self.base], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        lines = out.splitlines()
        diffs = {m.group(1): (m.group(2), m.group(3)) for m in map(WARNING.match, lines) if m}
        return lines, diffs

    def test_different_configuration_is_named_before_the_verdicts(self):
        lines, diffs = self.compare("-c", "2", "--rate", "200", "-d", "1s")
        # Open loop has no in-flight window: in_flight is recorded as 0.
        self.assertEqual(diffs, {"connections": ("1", "2"), "in_flight": ("1", "0"),
                                 "rate": ("0/s (closed loop)", "200/s")}, "\n".join(lines))
        first_warning = min(i for i, l in enumerate(lines) if WARNING.match(l))
        table = lines.index(next(l for l in lines if l.startswith("Compared with the baseline")))
        verdicts = [i for i, l in enumerate(lines) if re.search(r"\s(better|worse)$", l)]
        self.assertLess(first_warning, table)
        self.assertTrue(all(first_warning < i for i in verdicts))
        self.assertEqual(lines[table + 1], "  the configurations differ (connections, in_flight, rate): a change may "
                                           "come from the load asked, not the server")

    def test_message_size_and_duration_differ(self):
        lines, diffs = self.compare("-c", "1", "-d", "1.5s", "--size", "64")
        self.assertEqual(diffs, {"duration_s": ("1s", "1.5s"), "message_size": ("32 B", "64 B")}, "\n".join(lines))

    def test_thread_count_is_compared(self):
        lines, diffs = self.compare("-c", "2", "-d", "1s", threads="2")
        self.assertEqual(diffs, {"connections": ("1", "2"), "threads": ("1", "2")}, "\n".join(lines))

    def test_same_configuration_gives_no_warning(self):
        lines, diffs = self.compare("-c", "1", "-d", "1s")
        self.assertEqual(diffs, {})
        self.assertFalse([l for l in lines if "differ" in l], "\n".join(lines))
        self.assertTrue(any(l.startswith("Compared with the baseline") for l in lines))

    def test_report_on_stdout_keeps_stdout_clean(self):
        # With --json -, stdout carries the JSON alone: the warnings and the comparison go to stderr.
        r = self.wsx("bench", self.url, "--threads", "1", "-c", "3", "-d", "1s", "--json", "-", "--compare", self.base,
                     timeout=60)
        self.assertExit(r, 0)
        self.assertEqual(json.loads(r.stdout)["config"]["connections"], 3)
        err = r.stderr.decode()
        self.assertIn("wsx: warning: --compare: the runs differ in connections: baseline 1, this run 3\n", err)
        self.assertIn("  the configurations differ (connections):", err)


if __name__ == "__main__":
    main()
