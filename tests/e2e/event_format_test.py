"""One event format: connect --jsonl and proxy --tap-format ndjson describe the same traffic with
the same fields and values (checked by event_schema.py), and every payload round-trips byte-exact.

Peers: wsx serve (echo) on 127.0.0.1, wsx proxy in front of it with an ndjson tap, and wsx connect
running a script through the proxy: a text message, binary messages that are not UTF-8 (a short
one and a large one of every byte value), a text file with JSON escapes, a ping, and a Close with a
code and a reason. Both run in a local zone that is not UTC (TZ=Asia/Kolkata, +05:30): the
timestamps must still be UTC."""
import datetime
import os
import signal

import event_schema
import wsxtest
from proxy_helpers import start_proxy, wait_until
from raw_peer import CLOSE, ScriptedServer, Splitter, frame

TEXT_FILE = 'quote " backslash \\ tab \t nl \n esc \x1b ü € 😀 \u2028 end'.encode()
BIG_BINARY = bytes(range(256)) * 300 + b"\xff"  # 76801 bytes, not UTF-8
SHORT_BINARY = b"\x00\xff\xfe\x80"
LOCAL_ZONE = dict(os.environ, TZ="Asia/Kolkata")


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def read_tap(tap):
    """The whole lines of the tap file (the last one may still be being written)."""
    if not os.path.exists(tap):
        return []
    with open(tap, "rb") as f:
        data = f.read()
    return data[:data.rfind(b"\n") + 1].decode("utf-8").split("\n")[:-1]


class EventFormatTest(wsxtest.WsxTestCase):
    def run_through_tap(self):
        _, up = self.start_server("-q")
        tap = os.path.join(self.tmp, "tap.ndjson")
        proxy_proc = self.start([wsxtest.WSX, "proxy", "--listen", "ws://127.0.0.1:0", "--to", up, "--tap", tap,
                                 "--tap-format", "ndjson", "--health-interval", "1h"], env=LOCAL_ZONE)
        proxy = proxy_proc.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        big = os.path.join(self.tmp, "big.bin")
        text = os.path.join(self.tmp, "text.txt")
        with open(big, "wb") as f:
            f.write(BIG_BINARY)
        with open(text, "wb") as f:
            f.write(TEXT_FILE)
        script = os.path.join(self.tmp, "dialogue.wsx")
        with open(script, "w", encoding="utf-8") as f:
            f.write("send héllo wörld\n"
                    "send-binary 00 ff fe 80\n"
                    f"send-file {big}\n"
                    f"send-file {text}\n"
                    "ping are you there\n"
                    "close 4000 all done\n")
        before = utc_now()
        r = self.wsx("connect", proxy + "/", "--jsonl", "--script", script, timeout=20, env=LOCAL_ZONE)
        self.assertExit(r, 0)
        connect = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)

        # up: 4 messages, ping, close; down: 4 echoes, pong, close.
        wait_until(lambda: len(read_tap(tap)) >= 12, timeout=10, what="twelve tap events")
        after = utc_now()
        tapped = event_schema.check_lines("\n".join(read_tap(tap)), dirs=event_schema.TAP_DIRS, conn=True)
        # UTC, not local time passed off as UTC: every event lies within the run.
        second = datetime.timedelta(seconds=1)
        for e in connect + tapped:
            t = event_schema.parse_ts(e["ts"])
            self.assertTrue(before - second <= t <= after + second, f"{e['ts']} not within {before} .. {after}")
        return connect, tapped

    def test_connect_jsonl_and_tap_agree(self):
        connect, tapped = self.run_through_tap()
        sent = [SHORT_BINARY, BIG_BINARY, TEXT_FILE]

        # connect: the events of the dialogue, in the schema.
        self.assertEqual(connect[0]["type"], "open")
        out = [e for e in connect if e["dir"] == "out"]
        inc = [e for e in connect if e["dir"] == "in" and e["type"] != "open"]
        self.assertEqual([e["type"] for e in out], ["text", "binary", "binary", "text", "ping", "close"])
        self.assertEqual([e["type"] for e in inc], ["text", "binary", "binary", "text", "pong", "close"])
        for seen in (out, inc):
            self.assertEqual(seen[0]["payload"], "héllo wörld".encode())
            self.assertEqual([e["payload"] for e in seen[1:4]], sent, "payloads round-trip byte-exact")
            self.assertEqual(seen[4]["payload"], b"are you there")
            self.assertEqual(seen[0]["encoding"], "utf8")
            self.assertEqual([e["encoding"] for e in seen[1:3]], ["base64", "base64"])
            self.assertEqual(seen[3]["encoding"], "utf8")
            self.assertEqual(seen[3]["data"], TEXT_FILE.decode())
        self.assertEqual((out[5]["code"], out[5]["reason"]), (4000, "all done"))
        self.assertEqual(inc[5]["code"], 4000)  # wsx serve answers a Close with its code alone
        self.assertEqual(inc[5]["reason"], "")

        # The tap: one connection, the same events towards the upstream and back.
        self.assertEqual({e["conn"] for e in tapped}, {1})
        up = [e for e in tapped if e["dir"] == "up"]
        down = [e for e in tapped if e["dir"] == "down"]

        # Whoever writes it, a message or a close is described alike: same keys, same values.
        self.assertEqual([event_schema.describe(e) for e in up], [event_schema.describe(e) for e in out])
        self.assertEqual([event_schema.describe(e) for e in down], [event_schema.describe(e) for e in inc])
        for a, b in zip(up + down, out + inc):
            self.assertEqual(list(a), ["ts", "conn"] + list(b)[1:], "the tap adds conn, nothing else")

        # Timestamps are UTC and in order within each stream.
        for stream in (connect, up, down):
            times = [event_schema.parse_ts(e["ts"]) for e in stream]
            self.assertEqual(times, sorted(times))

    def test_tap_numbers_connections_and_writes_each_event_once(self):
        _, up = self.start_server("-q")
        tap = os.path.join(self.tmp, "tap.ndjson")
        proxy, url = start_proxy(self, "--to", up, "--tap", tap, "--tap-format", "ndjson", "--health-interval", "1h")
        dialogues = [("send first one\nclose 1000\n", [("text", b"first one")]),
                     ("send second\nsend-binary 01 02 03\nclose 1000\n", [("text", b"second"), ("binary", b"\1\2\3")])]
        for k, (lines, _) in enumerate(dialogues):
            script = os.path.join(self.tmp, f"dialogue{k}.wsx")
            with open(script, "w") as f:
                f.write(lines)
            self.assertExit(self.wsx("connect", url + "/", "--script", script, timeout=20), 0)
        # Each connection: its messages and a close, each way.
        total = sum(2 * (len(sent) + 1) for _, sent in dialogues)
        wait_until(lambda: len(read_tap(tap)) >= total, timeout=10, what=f"{total} tap events")
        self.assertEqual(proxy.stop(signal.SIGTERM, timeout=10), 0, proxy.rest_of_stderr())
        with open(tap, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"))
        tapped = event_schema.check_lines(data, dirs=event_schema.TAP_DIRS, conn=True)
        self.assertEqual(len(data.split(b"\n")) - 1, total, "every event once, nothing more")
        self.assertEqual({e["conn"] for e in tapped}, {1, 2})
        for conn, (_, sent) in zip((1, 2), dialogues):
            mine = [e for e in tapped if e["conn"] == conn]
            for d in ("up", "down"):
                seen = [(e["type"], e["payload"]) for e in mine if e["dir"] == d]
                self.assertEqual(seen, sent + [("close", None)], f"conn {conn} {d}")

    def test_a_close_without_payload_has_no_code(self):
        srv = ScriptedServer(frame(CLOSE), lambda: Splitter("whole"))
        self.addCleanup(srv.close)
        r = self.wsx_open_stdin("connect", srv.url, "--jsonl", timeout=20)
        events = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)
        closes = [e for e in events if e["type"] == "close" and e["dir"] == "in"]
        self.assertEqual(len(closes), 1, r.stdout)
        self.assertNotIn("code", closes[0], "an empty Close has no code (1005 is never on the wire)")
        self.assertEqual(closes[0]["reason"], "")

    def test_the_close_of_a_protocol_error_is_an_out_event(self):
        # A server sending an unmasked-but-reserved opcode (0x3): the client fails the connection
        # with 1002, and that Close is in the stream like the ones it sends when asked.
        srv = ScriptedServer(frame(0x3, b"x"), lambda: Splitter("whole"))
        self.addCleanup(srv.close)
        r = self.wsx_open_stdin("connect", srv.url, "--jsonl", timeout=20)
        self.assertExit(r, 7)
        events = event_schema.check_lines(r.stdout, dirs=event_schema.CONNECT_DIRS)
        out = [e for e in events if e["type"] == "close" and e["dir"] == "out"]
        self.assertEqual(len(out), 1, r.stdout)
        self.assertEqual(out[0]["code"], 1002)
        closes = [e for e in events if e["type"] == "close"]
        self.assertEqual(closes[0], out[0], "the Close sent comes before the end it caused")

    def test_validator_refuses_the_old_fields(self):
        # The schema check is strict: the fields of earlier releases do not pass.
        old_connect = '{"ts":1732712345.123456,"dir":"in","type":"message","opcode":"text","length":2,"data":"hi"}'
        old_tap = '{"conn":1,"dir":"up","hex":"01fe","opcode":"binary","ts":"2026-01-02T03:04:05.000006Z"}'
        for line in (old_connect, old_tap):
            with self.assertRaises(AssertionError):
                event_schema.check_event(line)
        with self.assertRaises(AssertionError):  # len must match the decoded data
            event_schema.check_event('{"ts":"2026-01-02T03:04:05.000006Z","type":"binary","len":3,'
                                     '"encoding":"base64","data":"AP8="}')
        with self.assertRaises(AssertionError):  # 1005 means "no code": the event leaves code out
            event_schema.check_event('{"ts":"2026-01-02T03:04:05.000006Z","dir":"in","type":"close","code":1005,"reason":""}')
        ok = event_schema.check_event('{"ts":"2026-01-02T03:04:05.000006Z","type":"binary","len":2,'
                                      '"encoding":"base64","data":"AP8="}')
        self.assertEqual(ok["payload"], b"\x00\xff")


if __name__ == "__main__":
    wsxtest.main()
