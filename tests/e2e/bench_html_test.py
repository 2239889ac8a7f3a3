"""wsx bench --html: the report renders in headless Chromium, offline, with its plots; the time
plots end on the last whole second, draw sent and received distinctly, label bytes with their
unit and leave out latency points of seconds with too few samples."""
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


PLOTS = ("plot-percentiles", "plot-histogram", "plot-throughput", "plot-bytes", "plot-p99")
MIN_LATENCY_SAMPLES = 10  # min_latency_samples in src/bench_report.hpp


def plot(html, plot_id):
    """The SVG of one plot."""
    m = re.search(r'<svg id="%s".*?</svg>' % plot_id, html, re.S)
    assert m, plot_id
    return m.group(0)


def attrs(tag):
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def lines(svg, cls):
    """The attributes of every polyline of class `line CLS`, in drawing order."""
    return [attrs(t) for t in re.findall(r'<polyline class="line %s"[^>]*>' % cls, svg)]


def points(line):
    return [tuple(map(float, p.split(","))) for p in line["points"].split()]


def baseline_y(svg):
    """The y of the x axis (value 0): the first axis line is the horizontal one."""
    return float(attrs(re.search(r'<line class="axis"[^>]*>', svg).group(0))["y1"])


def axis_max(svg):
    """The value at the top of the y axis (y = 20): the largest tick label."""
    ticks = re.findall(r'<text class="tick" x="64.0" y="[\d.]+" text-anchor="end">([\d.,]+)</text>', svg)
    return max(float(t.replace(",", "")) for t in ticks)


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
        for plot_id in PLOTS:
            self.assertIn(f'id="{plot_id}"', text)
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
        self.assertIn('data-plots="5"', dom)
        for plot_id in PLOTS:
            m = re.search(r'<svg id="%s".*?</svg>' % plot_id, dom, re.S)
            self.assertIsNotNone(m, plot_id)
            self.assertRegex(m.group(0), r"<(polyline|rect) ", plot_id)
            self.assertNotIn("no samples", m.group(0), plot_id)
        self.assertIn("<title>", dom[dom.find("plot-histogram"):])  # tooltips added by the script

    def run_report(self, *args):
        """A run against a fresh `wsx serve`; returns (the HTML, the JSON)."""
        _, url = self.start_server()
        html, js = os.path.join(self.tmp, "t.html"), os.path.join(self.tmp, "t.json")
        r = self.wsx("bench", url, *args, "--html", html, "--json", js, timeout=60)
        self.assertExit(r, 0)
        with open(html) as f, open(js) as g:
            return f.read(), json.load(g)

    def test_steady_run_does_not_end_in_a_drop(self):
        # 2.05s: the last interval holds 50ms of load and the drain after it.
        html, j = self.run_report("-c", "2", "-d", "2.05s")
        series = j["series"]
        self.assertEqual(len(series), 3, series)
        self.assertLess(series[-1]["length_s"], 1)  # a partial last second was measured ...
        for plot_id in ("plot-throughput", "plot-bytes"):
            svg = plot(html, plot_id)
            base = baseline_y(svg)
            for cls in ("sent", "received"):
                (line,) = lines(svg, cls)
                heights = [base - y for _, y in points(line)]
                # ... and is not drawn: the plot ends on the last whole second, at full height:
                # each point stands at the JSON's figure for its second.
                self.assertEqual(len(heights), 2, (plot_id, cls, line))
                self.assertGreater(max(heights), 0, (plot_id, cls))
                top = axis_max(svg)
                field, unit = {"plot-throughput": (cls, 1), "plot-bytes": ("bytes_" + cls, 1e6)}[plot_id]
                for k, h in enumerate(heights):
                    expected = series[k][field] / series[k]["length_s"] / unit
                    self.assertAlmostEqual(h / (base - 20.0) * top, expected, delta=top * 0.01,
                                           msg=(plot_id, cls, k, heights))
        self.assertIn("The last, partial second", html)

    def test_sent_and_received_are_distinct_and_bytes_have_units(self):
        html, j = self.run_report("-c", "2", "-d", "1.5s")
        for plot_id in ("plot-throughput", "plot-bytes"):
            svg = plot(html, plot_id)
            (sent,), (received,) = lines(svg, "sent"), lines(svg, "received")
            # Echo: sent and received coincide; both must stay visible.
            self.assertNotEqual(sent["stroke"], received["stroke"], plot_id)
            self.assertIn("stroke-dasharray", sent, plot_id)
            self.assertNotIn("stroke-dasharray", received, plot_id)
            self.assertGreater(float(received["stroke-width"]), float(sent["stroke-width"]), plot_id)
            self.assertLess(svg.index('class="line received"'), svg.index('class="line sent"'), plot_id)
            for cls, line in (("sent", sent), ("received", received)):
                key = attrs(re.search(r'<line class="key %s"[^>]*>' % cls, svg).group(0))
                self.assertEqual((key["stroke"], key.get("stroke-dasharray")), (line["stroke"], line.get("stroke-dasharray")))
                self.assertRegex(svg, r'<text class="legend %s"[^>]*>%s</text>' % (cls, cls))
            # No CSS rule overrides the lines' own strokes.
            style = html[html.index("<style>"):html.index("</style>")]
            self.assertNotRegex(style, r"\.(sent|received|line)\{")
        # Units: summary rows and the bytes plot's axis say MB/s, and the notes say what MB is.
        self.assertRegex(html, r"<tr><th>rx_bytes</th><td>[\d.]+ MB/s</td></tr>")
        self.assertRegex(html, r"<tr><th>tx_bytes</th><td>[\d.]+ MB/s</td></tr>")
        self.assertIn(">MB/s</text>", plot(html, "plot-bytes"))
        self.assertIn("(10<sup>6</sup> bytes per second)", html)
        self.assertIn(">messages/s</text>", plot(html, "plot-throughput"))
        # The bytes line is the JSON's payload bytes per second of the first second, in MB/s.
        svg = plot(html, "plot-bytes")
        ticks = [float(t) for t in re.findall(r'<text class="tick" x="64.0" y="[\d.]+" text-anchor="end">([\d.]+)</text>', svg)]
        top, base = 20.0, baseline_y(svg)
        first_y = points(lines(svg, "received")[0])[0][1]
        mbps = (base - first_y) / (base - top) * max(ticks)
        expected = j["series"][0]["bytes_received"] / 1e6
        self.assertAlmostEqual(mbps, expected, delta=max(ticks) * 0.01 + 1e-9)

    def test_latency_points_need_enough_samples(self):
        # Open loop at 5 msgs/s: every second has fewer samples than the minimum ...
        html, j = self.run_report("-c", "1", "--rate", "5", "-d", "2.05s")
        counts = [s["histogram"]["count"] for s in j["series"][:2]]
        self.assertTrue(all(0 < c < MIN_LATENCY_SAMPLES for c in counts), counts)
        svg = plot(html, "plot-p99")
        # ... so no latency point is drawn (a spike of one slow answer would be its p99).
        self.assertEqual(lines(svg, "p99"), [])
        self.assertEqual(lines(svg, "p50"), [])
        self.assertIn("no samples", svg)
        self.assertIn(f"fewer than {MIN_LATENCY_SAMPLES} latency samples", html)
        # At 40 msgs/s every second has enough: one point per whole second.
        html, j = self.run_report("-c", "1", "--rate", "40", "-d", "2.05s")
        self.assertTrue(all(s["histogram"]["count"] >= MIN_LATENCY_SAMPLES for s in j["series"][:2]), j["series"])
        (p99,) = lines(plot(html, "plot-p99"), "p99")
        self.assertEqual(len(points(p99)), 2)


if __name__ == "__main__":
    main()
