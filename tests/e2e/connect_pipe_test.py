"""`wsx connect` in pipe mode (stdin not a terminal) against `wsx serve` (echo).

Pipe-mode behaviour these tests rely on:
- lines mode (default): every stdin line is one text message; the line ending is not part of
  the message, and "\\r\\n" counts as a line ending ("a\\r\\n" sends "a"). Text after the last
  newline is still sent as a message. An empty line is an empty message.
- every received text message is written to stdout followed by "\\n" (so an echo of
  CRLF input comes back with LF endings).
- a line (or -0 record) that is not valid UTF-8 is sent as a binary message with the same
  bytes; a received binary message is written raw followed by the separator.
- -0/--null: records are NUL-terminated both ways; the last record needs no NUL.
- -b/--binary: stdin is read in chunks and each chunk is one binary message (chunk
  boundaries are not preserved meaning); received binary messages are written raw, without
  a separator, so the concatenated output equals the concatenated input.
- --hex / --base64: each received binary message becomes one line of hex / base64.
- --jsonl: every event is one JSON object per line in wsx's one event format (event_schema.py):
  ts, dir, type, len/encoding/data (messages, ping, pong), code and reason (close).
- stdin EOF: the client sends Close 1000 after everything queued and keeps printing what
  arrives until the server's Close; then exits 0.
"""
import base64
import json
import random
import socket

import event_schema
import wsxtest
from wsxtest import WsxTestCase


class PipeTest(WsxTestCase):
    def setUp(self):
        super().setUp()
        self.server, self.url = self.start_server()

    def pipe(self, data, *args, timeout=60):
        r = self.wsx("connect", self.url, *args, input=data, timeout=timeout)
        self.assertExit(r, 0)
        return r.stdout

    def test_100k_lines_round_trip_in_order(self):
        rnd = random.Random(1)
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 ,.;:!?-_=+äöüé€{}[]\"'\t"
        lines = [f"{i:06d} " + "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
                 for i in range(100_000)]
        data = ("\n".join(lines) + "\n").encode()
        out = self.pipe(data)
        self.assertEqual(len(out.split(b"\n")) - 1, 100_000)
        self.assertEqual(out, data)

    def test_line_that_is_not_utf8_goes_as_binary(self):
        # A text frame must be UTF-8: such a line is a binary message, and what follows still goes.
        out = self.pipe(b"ok\n\xff\xfe\nafter\n", "--jsonl")
        events = event_schema.check_lines(out, dirs=event_schema.CONNECT_DIRS)
        sent = [(e["type"], e["payload"]) for e in events if e["type"] in ("text", "binary") and e["dir"] == "out"]
        self.assertEqual(sent, [("text", b"ok"), ("binary", b"\xff\xfe"), ("text", b"after")])
        self.assertEqual(self.pipe(b"ok\n\xff\xfe\nafter\n"), b"ok\n\xff\xfe\nafter\n")
        self.assertEqual(self.pipe(b"a\0\xc3\0b", "-0"), b"a\0\xc3\0b\0")

    def test_crlf_lines(self):
        self.assertEqual(self.pipe(b"one\r\ntwo\r\n\r\nthree\r\n"), b"one\ntwo\n\nthree\n")

    def test_carriage_return_inside_a_line_is_data(self):
        self.assertEqual(self.pipe(b"a\rb\n"), b"a\rb\n")

    def test_last_line_without_newline_is_sent(self):
        self.assertEqual(self.pipe(b"first\nlast"), b"first\nlast\n")

    def test_only_a_partial_line(self):
        self.assertEqual(self.pipe(b"lonely"), b"lonely\n")

    def test_empty_lines_are_empty_messages(self):
        self.assertEqual(self.pipe(b"\n\nx\n\n"), b"\n\nx\n\n")

    def test_empty_input_exits_cleanly(self):
        self.assertEqual(self.pipe(b""), b"")

    def test_binary_1mib_random_round_trip(self):
        data = random.Random(2).randbytes(1 << 20)
        self.assertEqual(self.pipe(data, "-b"), data)

    def test_binary_with_newlines_and_nuls_is_raw(self):
        data = b"\x00\n\r\n\xff\xfe" * 1000
        self.assertEqual(self.pipe(data, "--binary"), data)

    def test_null_records(self):
        self.assertEqual(self.pipe(b"a\0b c\nd\0\0last", "-0"), b"a\0b c\nd\0\0last\0")

    def test_null_long_option(self):
        self.assertEqual(self.pipe(b"x\0y\0", "--null"), b"x\0y\0")

    def test_single_1mib_line(self):
        line = "".join(random.Random(3).choice("abcdefghij") for _ in range(1 << 20)).encode()
        out = self.pipe(line + b"\n")
        self.assertEqual(len(out), (1 << 20) + 1)
        self.assertEqual(out, line + b"\n")

    def test_hex_display_of_binary(self):
        data = random.Random(4).randbytes(100_000)
        out = self.pipe(data, "-b", "--hex").decode("ascii")
        lines = out.split("\n")
        self.assertEqual(lines[-1], "", "output ends with a newline")
        for line in lines[:-1]:
            self.assertRegex(line, r"^[0-9a-f]+$")
        self.assertEqual(bytes.fromhex("".join(lines)), data)

    def test_small_hex_exact(self):
        self.assertEqual(self.pipe(b"\x00\x01\xab\xff", "-b", "--hex"), b"0001abff\n")

    def test_base64_display_of_binary(self):
        data = random.Random(5).randbytes(100_000)
        out = self.pipe(data, "-b", "--base64").decode("ascii")
        lines = out.split("\n")
        self.assertEqual(lines[-1], "")
        self.assertEqual(b"".join(base64.b64decode(l, validate=True) for l in lines[:-1]), data)

    def test_hex_leaves_text_messages_alone(self):
        self.assertEqual(self.pipe(b"plain text\n", "--hex"), b"plain text\n")

    def test_jsonl_events(self):
        out = self.pipe("hello\nwörld\n".encode(), "--jsonl")
        events = event_schema.check_lines(out, dirs=event_schema.CONNECT_DIRS)
        msgs = [e for e in events if e["type"] in ("text", "binary")]
        self.assertEqual([(e["dir"], e["data"]) for e in msgs if e["dir"] == "out"], [("out", "hello"), ("out", "wörld")])
        self.assertEqual([(e["dir"], e["data"]) for e in msgs if e["dir"] == "in"], [("in", "hello"), ("in", "wörld")])
        for e in msgs:
            self.assertEqual((e["type"], e["encoding"]), ("text", "utf8"))
            self.assertEqual(e["len"], len(e["data"].encode()))
        self.assertEqual(events[0]["type"], "open", "nothing is reported as sent before the connection is open")
        closes = [e for e in events if e["type"] == "close"]
        self.assertEqual([(e["dir"], e["code"]) for e in closes], [("out", 1000), ("in", 1000)],
                         "the Close sent at the end of stdin, then the server's answer")
        self.assertIs(events[-1], closes[-1], "the server's close is the last event")

    def test_jsonl_binary_messages(self):
        data = bytes(range(256))
        out = self.pipe(data, "-b", "--jsonl")
        events = event_schema.check_lines(out, dirs=event_schema.CONNECT_DIRS)
        for direction in ("out", "in"):
            msgs = [e for e in events if e["type"] in ("text", "binary") and e["dir"] == direction]
            self.assertTrue(msgs, direction)
            for e in msgs:
                self.assertEqual((e["type"], e["encoding"]), ("binary", "base64"), e)
            self.assertEqual(b"".join(e["payload"] for e in msgs), data)
            self.assertEqual(sum(e["len"] for e in msgs), 256)

    def test_timestamps_prefix(self):
        out = self.pipe(b"stamped\n", "-t").decode()
        self.assertRegex(out, r"^\d\d:\d\d:\d\d\.\d{3} stamped\n$")

    def test_ipv6_literal(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        p = self.start([wsxtest.WSX, "serve", "[::1]:0"])
        url = p.wait_for(r"listening on (ws://\[::1\]:\d+)").group(1) + "/"
        r = self.wsx("connect", url, input=b"six\n")
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"six\n")

    def test_eof_drain_prints_every_reply(self):
        # All 10,000 lines are written before the server has echoed them; the client must
        # keep reading after stdin ends until the server's Close.
        data = "".join(f"drain {i} {'x' * (i % 50)}\n" for i in range(10_000)).encode()
        r = self.wsx("connect", self.url, "--stats-json", input=data, timeout=60)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)
        stats = json.loads(r.stderr.decode().strip().splitlines()[-1])
        self.assertEqual(stats["messages_sent"], 10_000)
        self.assertEqual(stats["messages_received"], 10_000)
        self.assertEqual(stats["close_code"], 1000)

    def test_eof_drain_after_a_large_message(self):
        # The echo of "after" is still queued in `wsx serve` behind the 8 MB echo when the
        # client's Close arrives: the server must write it before answering the Close.
        data = b"y" * 8_000_000 + b"\nafter\n"
        r = self.wsx("connect", self.url, "--stats-json", input=data, timeout=60)
        self.assertExit(r, 0)
        stats = json.loads(r.stderr.decode().strip().splitlines()[-1])
        self.assertEqual(stats["messages_sent"], 2)
        self.assertEqual(r.stdout, data)


if __name__ == "__main__":
    wsxtest.main()
