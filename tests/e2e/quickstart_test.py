#!/usr/bin/python3
"""The README's first quick-start command ends in `tests/run.sh demo`: its demo part (run here on
the binary under test, without the install and build steps) succeeds and stops its server."""

import os
import re
import socket
import subprocess
import unittest

WSX = os.environ.get("WSX", "wsx")
SOURCE_DIR = os.environ.get("WSX_SOURCE_DIR", os.getcwd())


class QuickStartTest(unittest.TestCase):
    def test_demo_succeeds_and_stops_its_server(self):
        env = dict(os.environ, WSX=os.path.abspath(WSX))
        r = subprocess.run(["bash", os.path.join(SOURCE_DIR, "tests", "run.sh"), "demo-run"], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(r.stderr.count("unbound variable"), 0, r.stderr)
        m = re.search(r"echo server on ws://127\.0\.0\.1:(\d+)/", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        # The pipe step echoes its three lines; the scripted check passes; the bench reports.
        for line in ("hello", '{"op":"ping","n":1}', "bye", '{"op":"hello","n":7}'):
            self.assertIn(line + "\n", r.stdout)
        self.assertRegex(r.stdout + r.stderr, r"(?i)latency")
        # The server went with the script: its port refuses connections.
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5).close()


if __name__ == "__main__":
    unittest.main()
