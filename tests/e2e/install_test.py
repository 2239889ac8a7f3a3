"""`cmake --install BUILD --prefix DIR` puts the binary, the gzipped man page, the three
completion scripts and the README where a distribution would, and what it installs works there:
the binary runs, the man page names this build, the bash completion loads."""
import gzip
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import SOURCE_DIR, WSX, WsxTestCase, main  # noqa: E402

# The build directory is the one that holds the binary under test.
BUILD_DIR = os.path.dirname(os.path.abspath(WSX))

EXPECTED = {
    "bin/wsx",
    "share/man/man1/wsx.1.gz",
    "share/bash-completion/completions/wsx",
    "share/zsh/vendor-completions/_wsx",
    "share/fish/vendor_completions.d/wsx.fish",
    "share/doc/wsx/README.md",
}


class Install(WsxTestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(BUILD_DIR, "CMakeCache.txt")):
            raise unittest.SkipTest(f"{BUILD_DIR} is not a CMake build directory")

    def install(self):
        prefix = os.path.join(self.tmp, "prefix")
        r = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        installed = set()
        for d, _, files in os.walk(prefix):
            for f in files:
                installed.add(os.path.relpath(os.path.join(d, f), prefix))
        return prefix, installed

    def test_installs_the_listed_files_and_nothing_else(self):
        prefix, installed = self.install()
        # The Debian changelog is the package's (WSX_DEBIAN_CHANGELOG), not a plain install's.
        self.assertEqual(installed - {"share/doc/wsx/changelog.Debian.gz"}, EXPECTED)
        self.assertTrue(os.access(os.path.join(prefix, "bin/wsx"), os.X_OK))

    def test_installed_files_are_the_committed_ones_and_work(self):
        prefix, _ = self.install()
        for installed, committed in (("share/bash-completion/completions/wsx", "completions/wsx.bash"),
                                     ("share/zsh/vendor-completions/_wsx", "completions/_wsx"),
                                     ("share/fish/vendor_completions.d/wsx.fish", "completions/wsx.fish"),
                                     ("share/doc/wsx/README.md", "README.md")):
            with self.subTest(file=installed):
                with open(os.path.join(prefix, installed), "rb") as a, open(os.path.join(SOURCE_DIR, committed), "rb") as b:
                    self.assertEqual(a.read(), b.read())
        r = subprocess.run([os.path.join(prefix, "bin/wsx"), "--version"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        version = r.stdout.strip()
        self.assertRegex(version, r"^wsx \d+\.\d+\.\d+ \(")
        if shutil.which("bash"):
            r = subprocess.run(["bash", "--norc", "--noprofile", "-c", 'source "$1" && complete -p wsx', "bash",
                                os.path.join(prefix, "share/bash-completion/completions/wsx")],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual((r.returncode, r.stdout.strip()), (0, "complete -F _wsx wsx"), r.stderr)

    def test_man_page_is_gzipped_as_debian_does_and_names_this_build(self):
        prefix, _ = self.install()
        path = os.path.join(prefix, "share/man/man1/wsx.1.gz")
        with open(path, "rb") as f:
            raw = f.read()
        # gzip -n: no file name (FNAME flag, bit 3) and no time stamp (MTIME, bytes 4-7).
        self.assertEqual(raw[:2], b"\x1f\x8b")
        self.assertEqual(raw[3] & 0x08, 0, "the gzip header holds a file name")
        self.assertEqual(raw[4:8], b"\0\0\0\0", "the gzip header holds a time stamp")
        page = gzip.decompress(raw).decode()
        version = self.wsx("--version", timeout=10).stdout.decode().strip()[len("wsx "):]
        title = next(l for l in page.splitlines() if l.startswith(".TH "))
        self.assertIn('"wsx ' + version.replace("-", "\\-") + '"', title)
        self.assertRegex(title, r'^\.TH WSX 1 "\d{4}\\-\d\d\\-\d\d" ')
        # Apart from its title line, the page is the committed one.
        with open(os.path.join(SOURCE_DIR, "man/wsx.1")) as f:
            committed = f.read()
        strip = lambda text: [l for l in text.splitlines() if not l.startswith(".TH ")]  # noqa: E731
        self.assertEqual(strip(page), strip(committed))
        if shutil.which("man"):
            # Wide enough that the footer's source (the identity; a dirty RelWithDebInfo build
            # has a long one) and its date do not overprint each other; bold and underline
            # (character, backspace, character) are taken off before reading it.
            r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, MANWIDTH="160", MAN_KEEP_FORMATTING="0"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr, "")
            shown = re.sub(r".\x08", "", r.stdout)
            self.assertIn("wsx " + re.sub(r"\s+", " ", version), re.sub(r"\s+", " ", shown))


if __name__ == "__main__":
    main()
