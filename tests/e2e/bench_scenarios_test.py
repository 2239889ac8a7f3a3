"""wsx bench scenarios other than echo: connect (handshake storm), send (fire and forget)
and fanout (publishers and subscribers on a broadcast server)."""
import json
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_helpers import http_request  # noqa: E402
from wsxtest import PYTHON, SOURCE_DIR, WSX, WsxTestCase, main, read_line_matching  # noqa: E402

DATA = os.path.join(SOURCE_DIR, "tests", "data", "bench")


class BenchScenarios(WsxTestCase):
    def test_connect_storm(self):
        _, url = self.start_server()
        r, j = self.bench_json(url, "-s", "connect", "-c", "4", "-n", "200")
        self.assertEqual(j["config"]["scenario"], "connect")
        self.assertEqual(j["connections"]["attempted"], 200)
        self.assertEqual(j["connections"]["established"], 200)
        self.assertEqual(j["connections"]["failed"], 0)
        self.assertEqual(j["connections"]["handshake"]["count"], 200)
        self.assertEqual(j["latency"]["histogram"]["count"], 200)
        self.assertEqual(j["close_codes"], {"1000": 200})
        self.assertGreater(j["messages"]["rate"], 0)
        out = r.stdout.decode()
        self.assertIn("Handshakes", out)
        self.assertIn("Handshake latency", out)

    def test_connect_storm_warmup_counts_nowhere(self):
        _, url = self.start_server("-q")  # quiet: thousands of warmup connections, nobody reads the log
        r, j = self.bench_json(url, "-s", "connect", "-c", "2", "-n", "50", "--warmup", "200ms")
        # -n counts measured handshakes; every figure leaves the warmup out alike.
        self.assertEqual(j["messages"]["sent"], 50)
        self.assertEqual(j["messages"]["received"], 50)
        self.assertEqual(j["connections"]["attempted"], 50)
        self.assertEqual(j["connections"]["established"], 50)
        self.assertEqual(j["connections"]["handshake"]["count"], 50)
        self.assertEqual(j["latency"]["histogram"]["count"], 50)
        self.assertEqual(j["close_codes"], {"1000": 50})
        self.assertGreater(sum(i["sent"] for i in j["series"]), 50, "the series shows the warmup too")

    def test_connect_rate_limits_handshakes(self):
        _, url = self.start_server()
        _, j = self.bench_json(url, "-s", "connect", "-c", "4", "--connect-rate", "50", "-d", "1s")
        self.assertGreaterEqual(j["connections"]["established"], 40)
        self.assertLessEqual(j["connections"]["established"], 51)

    def test_connect_rate_stops_at_the_duration(self):
        _, url = self.start_server()
        r, j = self.bench_json(url, "-c", "6", "--connect-rate", "2", "-d", "1s", "--rate", "20")
        # Turns at 0 s and 0.5 s come within the second; the other four would come after it.
        self.assertEqual(j["connections"]["attempted"], 2)
        err = r.stderr.decode()
        self.assertIn("wsx: warning: 4 of 6 connections were not opened: at --connect-rate 2/s", err)
        self.assertIn("wsx: warning: --rate is shared by all 6 connections, and --connect-rate opens them over 2.5s", err)
        self.assertIn("4 of 6 connections were not opened", " ".join(j["warnings"]))

    def test_send_into_a_sink(self):
        _, url = self.start_server()
        _, j = self.bench_json(url, "-s", "send", "-c", "2", "-n", "20000")
        self.assertEqual(j["messages"]["sent"], 20000)
        self.assertEqual(j["messages"]["bytes_sent"], 20000 * 32)
        self.assertEqual(j["errors"], {})
        self.assertGreater(j["messages"]["send_rate"], 0)
        # rate is the send rate here: nothing is expected back.
        r = self.wsx("bench", url, "-s", "send", "-c", "1", "-n", "2000", "--fail-if", "rate<1")
        self.assertExit(r, 0)
        r = self.wsx("bench", url, "-s", "send", "-c", "1", "-n", "2000", "--fail-if", "rate>1")
        self.assertExit(r, 9)
        self.assertRegex(r.stderr.decode(), r"--fail-if rate>1: rate was [\d,.]+/s")
        _, j = self.bench_json(url, "-s", "send", "-c", "1", "--rate", "500", "-d", "1s")
        self.assertGreater(j["messages"]["sent"], 400)
        self.assertLess(j["messages"]["sent"], 560)

    def test_fanout_delivers_to_every_subscriber(self):
        p = self.start([PYTHON, os.path.join(DATA, "broadcast_server.py")], stdout=subprocess.PIPE)
        port = read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)", 10).group(1)
        url = f"ws://127.0.0.1:{port}/"
        r, j = self.bench_json(url, "-s", "fanout", "-c", "5", "--publishers", "2", "--rate", "200", "-n", "200",
                             "--reply-timeout", "3s")
        self.assertEqual(j["config"]["publishers"], 2)
        self.assertEqual(j["messages"]["sent"], 200)
        self.assertEqual(j["messages"]["expected"], 1000)
        self.assertEqual(j["messages"]["received"], 1000)
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["latency"]["histogram"]["count"], 1000)
        self.assertIn("Delivery latency", r.stdout.decode())
        self.assertIn("delivered 1,000 of 1,000 expected", r.stdout.decode())

    def test_fanout_against_an_echo_server_reports_lost_deliveries(self):
        # wsx serve echoes to the sender only: subscribers receive nothing.
        _, url = self.start_server()
        _, j = self.bench_json(url, "-s", "fanout", "-c", "2", "--rate", "100", "-n", "20", "--reply-timeout", "500ms")
        self.assertEqual(j["messages"]["received"], 0)
        self.assertEqual(j["errors"].get("lost"), 40)

    def test_fanout_unbatch_counts_every_message_of_a_relay_batch(self):
        p = self.start([WSX, "relay", "127.0.0.1:0", "--metrics"])
        base = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        # Batches of up to 10 (or what 20ms collected): 3 subscribers x 300 messages, each counted
        # once, in order, with its own latency; a payload with a quote and a backslash is
        # escaped in the batch's JSON and must come back whole.
        for payload in ("plain", 'q"uo\\te'):
            with self.subTest(payload=payload):
                r, j = self.bench_json(f"{base}/t?batch=10,20ms", "-s", "fanout", "-c", "3", "--rate", "300", "-n",
                                       "300", "--payload", payload, "--unbatch", "--reply-timeout", "3s")
                self.assertEqual(j["messages"]["expected"], 900)
                self.assertEqual(j["messages"]["received"], 900)
                self.assertEqual(j["errors"], {})
                self.assertEqual(j["latency"]["histogram"]["count"], 900)
                # A frame's header counts once, with its first message, not once per message.
                m = j["messages"]
                self.assertGreater(m["wire_bytes_received"], m["bytes_received"])
                self.assertLess(m["wire_bytes_received"], 1.5 * m["bytes_received"], "wire bytes counted once per frame")
        status, _, body = http_request(base, "/metrics")
        self.assertEqual(status, 200)
        batches = int(re.search(r"^wsx_relay_batches_total (\d+)$", body.decode(), re.M).group(1))
        self.assertGreater(batches, 0)
        self.assertLess(batches, 1800, "the relay sent batches, not one frame per message")
        # Without batches, every frame is one message, not an array: each is reported corrupt.
        _, j = self.bench_json(f"{base}/t", "-s", "fanout", "-c", "2", "--rate", "100", "-n", "20", "--unbatch",
                               "--reply-timeout", "500ms", code=9)
        self.assertEqual(j["messages"]["received"], 0)
        self.assertEqual(j["errors"].get("corrupt"), 40)

    def test_tls(self):
        _, url = self.start_server("--tls-self-signed", scheme="wss")
        self.assertTrue(url.startswith("wss://"))
        _, j = self.bench_json(url, "-k", "-c", "2", "-n", "500", "--in-flight", "4")
        self.assertEqual(j["messages"]["received"], 500)
        self.assertEqual(j["errors"], {})
        _, j = self.bench_json(url, "-k", "-s", "connect", "-c", "2", "-n", "20")
        self.assertEqual(j["connections"]["established"], 20)
        r = self.wsx("bench", url, "-c", "2", "-n", "10", timeout=30)  # not trusted without -k
        self.assertExit(r, 5)
        self.assertIn("TLS handshake with 127.0.0.1:", r.stderr.decode())
        self.assertIn("certificate verification failed", r.stderr.decode())

    def test_interrupt_reports_what_ran(self):
        p = self.start([PYTHON, os.path.join(DATA, "broadcast_server.py")], stdout=subprocess.PIPE)
        port = read_line_matching(p.proc.stdout, r"listening on 127\.0\.0\.1:(\d+)", 10).group(1)
        path = os.path.join(self.tmp, "i.json")
        bench = subprocess.Popen([WSX, "bench", f"ws://127.0.0.1:{port}/", "-s", "send", "-c", "1", "--rate", "100",
                                  "-d", "60s", "--json", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            read_line_matching(p.proc.stdout, r"^connected$", 10)
            bench.send_signal(signal.SIGINT)
            out, err = bench.communicate(timeout=10)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        self.assertEqual(bench.returncode, 130, err)
        self.assertIn("interrupted", out.decode())
        with open(path) as f:
            j = json.load(f)
        self.assertTrue(j["interrupted"])


if __name__ == "__main__":
    main()
