"""Every kind of error `wsx bench` counts against the server, each provoked by a scripted server
(tests/e2e/peers/raw_ws_server.py) doing one thing wrong, and read back from `--json`:

  duplicate         an echo that answers nothing outstanding (the same message echoed twice)
  closed_by_server  the server sent Close while the connection still had work
  unanswered        messages still outstanding when the connection ended (one per message)
  disconnected      the connection ended without a Close while it still had work
  protocol          a frame that breaks RFC 6455 (the connection is dropped)
  inflate           a compressed message that does not inflate (permessage-deflate negotiated)
  backlog           open loop: a send skipped because 16 MiB already waited for a server that
                    does not read (one per skipped send)

Such errors are counted, not fatal: the run ends (early, when every connection is gone) and
exits 0. Each case's control is the same run against a server without the fault. The send
scenario runs at --rate 2000 (SEND): a scripted server keeps up with that, so a sender's write
never stalls (the "stalled" error) unless the server means it to."""
import time

import wsxtest
from peer_tools import start_raw_server

MiB = 1 << 20
SEND = ["-s", "send", "--rate", "2000"]


class BenchErrorsTest(wsxtest.WsxTestCase):
    def peer(self, *args):
        _, port, _ = start_raw_server(self, *args)
        return f"ws://127.0.0.1:{port}/"

    def bench(self, url, *args, code=0):
        t0 = time.monotonic()
        r, j = self.bench_json(url, *args, code=code)
        return r, j, time.monotonic() - t0

    def test_faultless_servers_give_no_errors(self):
        # The controls: the scripted server without a fault, in each scenario used below.
        url = self.peer()
        _, j, _ = self.bench(url, "-c", "1", "-n", "20", "--in-flight", "4")
        self.assertEqual((j["errors"], j["messages"]["sent"], j["messages"]["received"]), ({}, 20, 20))
        _, j, _ = self.bench(url, *SEND, "-c", "2", "-d", "500ms")
        self.assertEqual(j["errors"], {})
        self.assertGreater(j["messages"]["sent"], 500)
        _, j, _ = self.bench(self.peer("--deflate"), *SEND, "-c", "1", "-d", "500ms", "--compress")
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["connections"]["extensions"], "permessage-deflate")

    def test_duplicate(self):
        # Every echo comes twice: the second copy of each of the 10 answers nothing.
        # A duplicated answer is a broken server: exit 9 with one line saying so, unless the run
        # is meant to count them (--allow-corrupt), which exits 0 with the same figures.
        url = self.peer("--twice")
        r, j, _ = self.bench(url, "-c", "1", "-n", "10", code=9)
        self.assertOneError(r, "answers that are not what was sent: 10 duplicate", "--allow-corrupt")
        allowed, j2, _ = self.bench(url, "-c", "1", "-n", "10", "--allow-corrupt")
        self.assertEqual(self.error_lines(allowed), [])
        self.assertEqual(j2["errors"], {"duplicate": 10})
        self.assertEqual(j["errors"], {"duplicate": 10})
        self.assertEqual((j["messages"]["sent"], j["messages"]["received"]), (10, 10))
        self.assertEqual(j["latency"]["histogram"]["count"], 10, "a duplicate is not measured")
        self.assertRegex(r.stdout.decode(), r"\n  duplicate +10\n")

    def test_closed_by_server(self):
        # Senders with 10 s to go; the server closes each connection (1000) after 50 messages.
        r, j, took = self.bench(self.peer("--echo-first", "0", "--after", "50", "--then", "close"),
                                *SEND, "-c", "2", "-d", "10s")
        self.assertEqual(j["errors"], {"closed_by_server": 2})
        self.assertEqual(j["close_codes"], {"1000": 2})
        self.assertLess(took, 8, "the run ended when the server had closed every connection")

    def test_unanswered(self):
        # 4 in flight: the server echoes 10 messages, drops the next 4 (all the client sends
        # without replies), then closes: the 4 dropped are unanswered.
        _, j, took = self.bench(self.peer("--echo-first", "10", "--after", "14", "--then", "close"),
                                "-c", "1", "-n", "100", "--in-flight", "4")
        self.assertEqual(j["errors"], {"closed_by_server": 1, "unanswered": 4})
        self.assertEqual((j["messages"]["sent"], j["messages"]["received"]), (14, 10))
        self.assertLess(took, 8, "no reply timeout (10 s) was waited for")

    def test_disconnected(self):
        # The server ends the TCP stream (FIN) without a Close after 50 messages.
        _, j, took = self.bench(self.peer("--echo-first", "0", "--after", "50", "--then", "hangup"),
                                *SEND, "-c", "1", "-d", "10s")
        self.assertEqual(j["errors"], {"disconnected": 1})
        self.assertEqual(j["close_codes"], {})
        self.assertLess(took, 8)
        # With a message outstanding, that one is unanswered as well.
        _, j, took = self.bench(self.peer("--echo-first", "5", "--after", "6", "--then", "hangup"),
                                "-c", "1", "-n", "100")
        self.assertEqual(j["errors"], {"disconnected": 1, "unanswered": 1})
        self.assertEqual((j["messages"]["sent"], j["messages"]["received"]), (6, 5))

    def test_protocol(self):
        # After 20 messages the server sends one frame that breaks the protocol; the connection
        # is dropped and counted once under "protocol", and the run ends long before -d.
        frames = {
            "reserved opcode 3": "8300",
            "RSV2 set": "a100",
            "RSV1 without permessage-deflate": "c104ffffffff",
            "fragmented ping": "0900",
            "ping longer than 125 bytes": "897e007e" + "00" * 126,
            "continuation with nothing to continue": "8000",
        }
        for what, raw in frames.items():
            with self.subTest(what):
                r, j, took = self.bench(self.peer("--echo-first", "0", "--after", "20", "--then", "raw", "--raw", raw),
                                        *SEND, "-c", "1", "-d", "10s")
                self.assertEqual(j["errors"].get("protocol"), 1, j["errors"])
                self.assertLess(took, 8)

    def test_inflate(self):
        # permessage-deflate is negotiated, then a compressed message that is not deflate data
        # (a block of the reserved type 3).
        r, j, took = self.bench(self.peer("--deflate", "--echo-first", "0", "--after", "20", "--then", "raw",
                                          "--raw", "c104ffffffff"),
                                *SEND, "-c", "1", "-d", "10s", "--compress")
        self.assertEqual(j["connections"]["extensions"], "permessage-deflate")
        self.assertEqual(j["errors"].get("inflate"), 1, j["errors"])
        self.assertLess(took, 8)

    def test_backlog(self):
        # Open loop, 250 messages of 64 KiB a second for 2 s (31 MiB), to a server that never
        # reads: the kernel takes a few MiB, then 16 MiB wait in the client, and from then on
        # each due send is skipped and counted. A send happens or is counted: sent + backlog is
        # the schedule. (--reply-timeout 2s: the run is not cut short before the backlog builds.)
        url = self.peer("--mode", "deaf", "--rcvbuf", "4096")
        args = ["-c", "1", "--rate", "250", "-d", "2s", "--size", "64KiB", "--reply-timeout", "2s"]
        r, j, _ = self.bench(url, *args)
        errors, sent = j["errors"], j["messages"]["sent"]
        self.assertGreater(errors.get("backlog", 0), 0, errors)
        self.assertLessEqual(set(errors), {"backlog", "timeout", "stalled", "unanswered"}, errors)
        self.assertGreaterEqual(sent + errors["backlog"], 490, j["messages"])
        self.assertLessEqual(sent + errors["backlog"], 501, j["messages"])
        # Skipping starts once 16 MiB wait, not before; what was queued beyond that is what the
        # kernel took (its socket buffers: a few MiB).
        self.assertGreater(j["messages"]["wire_bytes_sent"], 16 * MiB)
        self.assertLess(j["messages"]["wire_bytes_sent"], 24 * MiB)
        # The control: a server that reads keeps up, and nothing is skipped.
        _, url = self.start_server("-q")
        _, j, _ = self.bench(url, *args)
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["messages"]["received"], j["messages"]["sent"])

if __name__ == "__main__":
    wsxtest.main()
