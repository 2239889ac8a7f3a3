"""wsx bench --html: the report renders in headless Chromium, offline, with its plots."""
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import WsxTestCase, main  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class BenchHtml(WsxTestCase):
    def make_report(self):
        _, url = self.start_server()
        html = os.path.join(self.tmp, "report.html")
        r = self.wsx("bench", url, "-c", "2", "-d", "2.2s", "--html", html, "--json", os.path.join(self.tmp, "r.json"))
        self.assertExit(r, 0)
        return html

    def test_html_is_self_contained(self):
        html = self.make_report()
        with open(html) as f:
            text = f.read()
        # Nothing is fetched: no src/href attributes, and the only URL is the SVG namespace.
        self.assertNotRegex(text, r"\s(src|href)=")
        self.assertEqual(set(re.findall(r"https?://[^\"' ]+", text)), {"http://www.w3.org/2000/svg"})
        for plot in ("plot-percentiles", "plot-histogram", "plot-throughput", "plot-p99"):
            self.assertIn(f'id="{plot}"', text)
        with open(os.path.join(self.tmp, "r.json")) as f:
            self.assertGreaterEqual(len(json.load(f)["series"]), 2)

    @unittest.skipUnless(CHROMIUM, "chromium is not installed (apt-get install -y chromium)")
    def test_renders_in_headless_chromium(self):
        html = self.make_report()
        profile = os.path.join(self.tmp, "profile")
        r = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--dump-dom",
             "file://" + html],
            capture_output=True, timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace")[-2000:])
        dom = r.stdout.decode()
        # The inline script ran (it counts the plots) and every plot has drawn marks.
        self.assertIn('data-plots="4"', dom)
        for plot in ("plot-percentiles", "plot-histogram", "plot-throughput", "plot-p99"):
            m = re.search(r'<svg id="%s".*?</svg>' % plot, dom, re.S)
            self.assertIsNotNone(m, plot)
            self.assertRegex(m.group(0), r"<(polyline|rect) ", plot)
            self.assertNotIn("no samples", m.group(0), plot)
        self.assertIn("<title>", dom[dom.find("plot-histogram"):])  # tooltips added by the script


if __name__ == "__main__":
    main()
