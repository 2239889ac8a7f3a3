"""One version, one build identity: `wsx --version` prints the version set in CMakeLists.txt,
the git commit the binary was built from (with -dirty for a modified tree) and the build type;
`bench --json` names the same in its "generator" field."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import SOURCE_DIR, WsxTestCase, main  # noqa: E402

VERSION_LINE = r"wsx (\d+\.\d+\.\d+) \((?:([0-9a-f]{7,}(-dirty)?), )?(Release|Debug|RelWithDebInfo|MinSizeRel)\)"


class Version(WsxTestCase):
    def version_line(self):
        r = self.wsx("--version", timeout=10)
        self.assertExit(r, 0)
        return r.stdout.decode()

    def test_version_names_the_number_the_commit_and_the_build_type(self):
        with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
            number = re.search(r"project\(wsx VERSION (\d+\.\d+\.\d+)", f.read()).group(1)
        line = self.version_line()
        m = re.fullmatch(VERSION_LINE + "\n", line)
        self.assertIsNotNone(m, f"--version said {line!r}")
        self.assertEqual(m.group(1), number)
        if os.path.exists(os.path.join(SOURCE_DIR, ".git")) and shutil.which("git"):
            self.assertIsNotNone(m.group(2), f"built from a git tree, but no commit in {line!r}")
            head = subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "HEAD"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
            # The binary may be older than HEAD when the tree moved on since the build; then
            # its commit is still one of the repository's.
            commit = m.group(2).removesuffix("-dirty")
            known = subprocess.run(["git", "-C", SOURCE_DIR, "cat-file", "-e", commit + "^{commit}"],
                                   capture_output=True, timeout=10)
            self.assertEqual(known.returncode, 0, f"{commit} is no commit of {SOURCE_DIR} (HEAD {head})")
        self.assertEqual(self.wsx("-V", timeout=10).stdout.decode(), line)

    def test_bench_json_generator_is_the_version_line(self):
        _, url = self.start_server()
        _, result = self.bench_json(url, "-c", "1", "-n", "5")
        self.assertRegex(result["generator"], "^" + VERSION_LINE + "$")
        self.assertEqual(result["generator"], self.version_line().strip())


if __name__ == "__main__":
    main()
