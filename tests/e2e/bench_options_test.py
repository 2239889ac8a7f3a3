"""wsx bench: bad options and unreachable servers give clear errors and documented exit codes."""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wsxtest import SOURCE_DIR, WsxTestCase, main, refused_port  # noqa: E402


class BenchOptions(WsxTestCase):
    def test_every_problem_is_named_at_once(self):
        r = self.wsx("bench", "ws://127.0.0.1:1/", "-c", "0", "--rate=-5", "--size", "8", "--fail-if", "p99>20",
                     "--warmup", "bogus")
        self.assertExit(r, 2)
        err = r.stderr.decode()
        self.assertIn("wsx: error: -c/--connections '0': give a whole number from 1 to 10000000 (leave it out for 10)", err)
        self.assertIn("wsx: error: --rate '-5': expected a positive rate", err)
        self.assertIn("wsx: error: --size must be at least 32 bytes for text messages", err)
        self.assertIn("wsx: error: --fail-if 'p99>20': give a unit, e.g. 20ms", err)
        self.assertIn("wsx: error: --warmup 'bogus': not a duration", err)
        self.assertIn("Run 'wsx bench --help' for usage.", err)
        for line in err.strip().splitlines():
            self.assertTrue(line.startswith("wsx: error: ") or line.startswith("Run 'wsx bench"), line)

    def test_unknown_scenario_names_the_choices(self):
        r = self.wsx("bench", "ws://127.0.0.1:1/", "--scenario", "storm")
        self.assertExit(r, 2)
        self.assertEqual(r.stderr.decode().splitlines(),
                         ["wsx: error: bench: --scenario: 'storm' is not one of echo, connect, send, fanout",
                          "Run 'wsx bench --help' for usage."])

    def test_scenario_names_are_completed(self):
        expected = {
            "bash": "'wsx bench -s' | 'wsx bench --scenario') _wsx_words 'echo connect send fanout'",
            "zsh": ":NAME:(echo connect send fanout)",
            # Each value described by its value name: the option's description shows once.
            "fish": "-s 's' -l 'scenario' -x -a 'echo\\\\tNAME connect\\\\tNAME send\\\\tNAME fanout\\\\tNAME'",
        }
        for shell, line in expected.items():
            r = self.wsx("generate", shell)
            self.assertExit(r, 0)
            self.assertIn(line, r.stdout.decode(), shell)

    def test_more_conflicts(self):
        cases = [
            (["--rate", "10", "--rate-per-conn", "5"], "--rate and --rate-per-conn cannot be combined"),
            (["--rate", "10", "--in-flight", "4"], "--in-flight is for the closed loop"),
            (["--size", "64", "--payload", "x"], "cannot be combined"),
            (["-d", "1s", "--warmup", "2s"], "--warmup must be shorter than --duration"),
            (["--find-max-rate"], "--find-max-rate needs --target"),
            (["--target", "p99<1ms"], "--target is for --find-max-rate"),
            (["--publishers", "3"], "need --scenario fanout"),
            (["--unbatch"], "--publishers, --publish-url, --subscribe-message and --unbatch need --scenario fanout"),
            (["-s", "fanout", "--unbatch", "--binary"], "--unbatch reads batches of text messages: drop --binary"),
            (["-n", "abc"], "-n/--messages 'abc': give a whole number"),
            (["--payload-file", "/nonexistent/x"], "--payload-file /nonexistent/x: cannot read the file"),
            (["--compare", "/nonexistent/b.json"], "--compare /nonexistent/b.json: cannot read the file"),
            (["--fail-if", "latency>1ms"], "unknown figure 'latency'"),
            (["-s", "fanout", "--in-flight", "8"],
             "--in-flight does not apply to -s fanout: publishers send at --rate (1000/s in total by default)"),
            (["-s", "send", "--in-flight", "8"], "--in-flight does not apply to -s send"),
            (["-s", "connect", "--in-flight", "8"], "--in-flight does not apply to -s connect"),
            (["-s", "connect", "--size", "1KiB"], "--size does not apply to -s connect: it sends no messages"),
            (["-s", "connect", "--binary"], "--binary does not apply to -s connect: it sends no messages"),
            (["-s", "connect", "--payload", "x"], "--payload does not apply to -s connect"),
            (["-s", "fanout", "-d", "1s", "--settle", "1s"], "--settle must be shorter than --duration"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.wsx("bench", "ws://127.0.0.1:1/", *args)
                self.assertExit(r, 2)
                self.assertIn(message, r.stderr.decode())
        r = self.wsx("bench")
        self.assertExit(r, 2)
        self.assertIn("bench needs a URL", r.stderr.decode())
        r = self.wsx("bench", "merge")
        self.assertExit(r, 2)
        self.assertIn("no result to merge: give the JSON files", r.stderr.decode())
        self.assertIn("Run 'wsx bench merge --help'", r.stderr.decode())
        r = self.wsx("bench", "http://127.0.0.1:1/")
        self.assertExit(r, 2)

    def test_output_files_are_checked_before_the_run(self):
        # Port 1 refuses: a check made after the run would exit 4, not 2.
        r = self.wsx("bench", "ws://127.0.0.1:1/", "-n", "10", "--json", "/nonexistent/x.json",
                     "--html", os.path.join(self.tmp, "ok.html"))
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [
            "wsx: error: --json /nonexistent/x.json: cannot write the file: No such file or directory; give a file in a writable directory, or - for stdout"])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "ok.html")), "the check leaves no file behind")
        r = self.wsx("bench", "ws://127.0.0.1:1/", "-n", "10", "--hgrm", self.tmp)
        self.assertExit(r, 2)
        self.assertIn(f"wsx: error: --hgrm {self.tmp}: cannot write the file: Is a directory; give a file", r.stderr.decode())

    def test_two_reports_cannot_share_stdout_or_a_file(self):
        r = self.wsx("bench", "ws://127.0.0.1:1/", "--json", "-", "--hgrm", "-")
        self.assertExit(r, 2)
        self.assertEqual(self.error_lines(r), [
            "wsx: error: --json and --hgrm both write to stdout (-): give one of them a file"])
        path = os.path.join(self.tmp, "r.out")
        r = self.wsx("bench", "merge", "a.json", "--html", path, "--hgrm", path)
        self.assertExit(r, 2)
        self.assertIn(f"wsx: error: --html and --hgrm both write to {path}: give each its own file", r.stderr.decode())

    def test_hgrm_on_stdout_goes_alone(self):
        _, url = self.start_server()
        r = self.wsx("bench", url, "-c", "1", "-n", "50", "--hgrm", "-")
        self.assertExit(r, 0)
        out = r.stdout.decode()
        self.assertTrue(out.startswith("       Value     Percentile"), out[:200])
        self.assertNotIn("Round-trip latency", out)

    def test_help_and_readme_document_the_json_and_the_exit_status(self):
        _, url = self.start_server()
        _, j = self.bench_json(url, "-c", "1", "-n", "20")
        names = set(j)
        for section in ("config", "connections", "messages", "latency", "cpu"):
            names |= set(j[section])
        names |= set(j["series"][0])
        help_text = self.wsx("bench", "--help").stdout.decode()
        with open(os.path.join(SOURCE_DIR, "README.md")) as f:
            readme = f.read()
        bench_section = readme[readme.index("## wsx bench"):readme.index("## wsx proxy")]
        for name in sorted(names):
            with self.subTest(field=name):
                self.assertTrue(re.search(r"[\s({,:]%s[\s,.})]" % re.escape(name), help_text), f"{name} not in the help")
                self.assertIn(f"`{name}`", bench_section)
        for kind in ("timeout", "corrupt", "out_of_order", "duplicate", "lost", "backlog", "stalled"):
            self.assertTrue(re.search(r"\b%s\s+\(" % kind, help_text), f"{kind} not explained in the help")
            self.assertIn(f"| `{kind}` |", bench_section)
        self.assertIn("Exit status: 0 ok, 1 other failure", help_text)

    def test_unreachable_server_exits_4(self):
        port = refused_port(self)
        r = self.wsx("bench", f"ws://127.0.0.1:{port}/", "-c", "3", "-n", "10", timeout=30)
        self.assertExit(r, 4)
        err = r.stderr.decode()
        self.assertIn("wsx: error: no connection could be made (3 attempted): cannot connect to 127.0.0.1:", err)
        self.assertIn("refused", err.lower())
        self.assertIn("(is a server listening on that port?)", err)  # what to check, as connect says
        self.assertEqual(r.stdout, b"")

    def test_unresolvable_host_exits_3(self):
        r = self.wsx("bench", "ws://nonexistent.invalid/", "-n", "1", timeout=30)
        self.assertExit(r, 3)
        self.assertIn("cannot resolve 'nonexistent.invalid'", r.stderr.decode())

    def test_rejected_upgrade_exits_6(self):
        # A plain HTTP server that answers 403 to everything.
        import http.server
        import threading

        class Deny(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"go away\n"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        r = self.wsx("bench", f"ws://127.0.0.1:{srv.server_address[1]}/", "-c", "2", "-n", "10", timeout=30)
        self.assertExit(r, 6)
        self.assertIn("upgrade rejected by ws://127.0.0.1:", r.stderr.decode())
        self.assertIn("HTTP 403", r.stderr.decode())

    def test_answer_without_upgrade_websocket_exits_6(self):
        # A server that answers 101 but names another protocol in Upgrade: RFC 6455 4.1 says
        # the client must fail the connection, so bench measures nothing against it.
        import base64
        import hashlib
        import threading

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(20)
        self.addCleanup(listener.close)

        def answer(conn):
            with conn:
                conn.settimeout(10)
                req = b""
                while b"\r\n\r\n" not in req and len(req) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    req += chunk
                key = next(line.split(b":", 1)[1].strip() for line in req.split(b"\r\n")
                           if line.lower().startswith(b"sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
                try:
                    conn.recv(4096)  # until the client gives up on the connection
                except OSError:
                    pass

        def serve():
            for _ in range(50):  # bounded: bench opens a handful of connections
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        r = self.wsx("bench", f"ws://127.0.0.1:{listener.getsockname()[1]}/", "-c", "2", "-n", "10", timeout=30)
        self.assertExit(r, 6)
        err = r.stderr.decode()
        self.assertIn("upgrade with ws://127.0.0.1:", err)
        self.assertIn("Upgrade field is missing the websocket token", err)

    def test_connect_fail_threshold_passes_when_all_connect(self):
        _, url = self.start_server()
        r = self.wsx("bench", url, "-c", "2", "-n", "100", "--fail-if", "connect_fail>0")
        self.assertExit(r, 0)
        self.assertIn("Connections", r.stdout.decode())


if __name__ == "__main__":
    main()
