"""--fragment SIZE (connect and bench): every data message leaves as frames of at most SIZE payload
bytes, so a server's reassembly can be tested.

- A scripted raw server (raw_peer.ScriptedServer) records the client's frames: the first carries
  the message's opcode with FIN clear, the others are continuations, the last has FIN set; every
  payload but the last is exactly SIZE bytes, and no empty frame ends a message whose size is a
  multiple of SIZE. A message no longer than SIZE stays one frame.
- With --compress the compressed payload is cut: RSV1 on the first frame only (RFC 7692 6.1),
  and the pieces joined inflate to the message.
- An independent server (python3-websockets, peers/ws_server.py --log-frames) logs each frame as
  it arrived and reassembles the messages: each came as TEXT (FIN clear) and continuations of at
  most SIZE bytes, some boundaries fall inside a multi-byte character, and the echo is byte-exact.
- Control frames are never cut: a ping longer than SIZE leaves as one frame. Every frame of a
  cut message has a mask key of its own.
- bench: the scripted server sees each stamped message cut the same way, and its echo (whole or
  itself fragmented) is matched to what was sent; against `wsx serve`, no errors.
- A SIZE that is not a size is a usage error (2) before any connection."""
import os
import random
import struct
import zlib

import wsxtest
from raw_peer import BINARY, CLOSE, CONT, PING, TEXT, ScriptedServer, Splitter, frame, frame_heads, parse_frames, whole_frames
from wsxtest import WsxTestCase, read_line_matching

FIN, RSV1 = 0x80, 0x40


def data_heads(conn):
    """(first byte, payload length) of each data frame the client sent."""
    return [(b, n) for b, n in frame_heads(bytes(conn.raw)) if b & 0x0F in (TEXT, BINARY, CONT)]


def expected_heads(opcode, size, fragment, rsv=0):
    """The frames of one message of `size` payload bytes cut into pieces of `fragment`."""
    if size <= fragment:
        return [(FIN | rsv | opcode, size)]
    pieces = [fragment] * (size // fragment) + ([size % fragment] if size % fragment else [])
    return [((FIN if i == len(pieces) - 1 else 0) | (rsv | opcode if i == 0 else CONT), n) for i, n in enumerate(pieces)]


def logged_messages(seen):
    """The data frames a --log-frames peer logged, grouped by message: [[(opcode, fin, rsv1, payload)]]."""
    messages, current = [], []
    for line in seen:
        parts = line.split(" ")
        if parts[0] != "frame" or parts[1] not in ("TEXT", "BINARY", "CONT"):
            continue
        opcode, fin, rsv1, length = parts[1], parts[2] == "1", parts[3] == "1", int(parts[4])
        payload = bytes.fromhex(parts[5]) if len(parts) > 5 else b""
        assert len(payload) == length, line
        current.append((opcode, fin, rsv1, payload))
        if fin:
            messages.append(current)
            current = []
    assert not current, f"a message without its last frame: {current}"
    return messages


def mask_keys(data):
    """The mask key of each whole frame in `data` (client frames are masked)."""
    keys = [key for _, _, key in whole_frames(data)]
    assert None not in keys, "an unmasked client frame"
    return keys


def data_payloads(conn):
    return [p for _, op, p in conn.frames if op in (TEXT, BINARY, CONT)]


class DeflateServer(ScriptedServer):
    """A scripted server that agrees to permessage-deflate."""

    def answer_fields(self, request_lines):
        return b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


class ConnectFragmentTest(WsxTestCase):
    def serve(self, cls=ScriptedServer, reply=None):
        srv = cls(b"", lambda: Splitter("whole"), reply=reply)
        self.addCleanup(srv.close)
        return srv

    def connect(self, srv, *args, input):
        r = self.wsx("connect", srv.url, *args, input=input, timeout=20)
        self.assertExit(r, 0)
        srv.thread.join(5)
        self.assertEqual(len(srv.conns), 1)
        conn = srv.conns[0]
        self.assertEqual(conn.close_code, 1000, conn.error)
        return conn

    def test_messages_leave_as_frames_of_at_most_size(self):
        srv = self.serve()
        lines = [b"a" * 25, b"b" * 3, b"c" * 20, b"d" * 10]
        conn = self.connect(srv, "--fragment", "10", input=b"".join(l + b"\n" for l in lines))
        want = [h for l in lines for h in expected_heads(TEXT, len(l), 10)]
        self.assertEqual(data_heads(conn), want)
        self.assertEqual(data_heads(conn)[:3], [(TEXT, 10), (CONT, 10), (FIN | CONT, 5)])
        payloads = data_payloads(conn)
        self.assertEqual(b"".join(payloads), b"".join(lines))
        self.assertEqual(payloads[:3], [b"a" * 10, b"a" * 10, b"a" * 5])

    def test_size_units_and_binary(self):
        srv = self.serve()
        data = random.Random(3).randbytes(2500)
        conn = self.connect(srv, "--fragment", "1KiB", "-b", input=data)
        self.assertEqual(data_heads(conn), expected_heads(BINARY, 2500, 1024))
        self.assertEqual(b"".join(data_payloads(conn)), data)

    def test_zero_means_one_frame(self):
        srv = self.serve()
        conn = self.connect(srv, "--fragment", "0", input=b"x" * 300 + b"\n")
        self.assertEqual(data_heads(conn), [(FIN | TEXT, 300)])

    def test_compressed_payload_is_cut_with_rsv1_on_the_first_frame_only(self):
        srv = self.serve(DeflateServer)
        rng = random.Random(5)
        line = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(600)).encode()
        conn = self.connect(srv, "--compress", "--fragment", "16", input=line + b"\n")
        heads = data_heads(conn)
        self.assertGreater(len(heads), 2, heads)
        compressed = sum(n for _, n in heads)
        self.assertEqual(heads, expected_heads(TEXT, compressed, 16, rsv=RSV1))
        payload = b"".join(data_payloads(conn))
        self.assertEqual(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff"), line)

    def test_websockets_server_reassembles(self):
        p, port = self.start_peer("ws_server.py", "--log-frames")
        url = f"ws://127.0.0.1:{port}/"
        lines = ["".join(f"línea {i} ✓ €" for i in range(k, k + 40)) for k in range(5)]
        data = "".join(l + "\n" for l in lines).encode()
        r = self.wsx("connect", url, "--fragment", "7", "-n", str(len(lines)), "--timeout", "10s", input=data, timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, data)
        # the server reports each message it reassembled, with its length in characters
        seen = []
        read_line_matching(p.proc.stdout, r"^closed 1000", 10, seen)
        self.assertEqual([s for s in seen if s.startswith("message")], [f"message text {len(l)}" for l in lines])
        # and each frame as it arrived: TEXT with FIN clear, then continuations, none over 7 bytes
        messages = logged_messages(seen)
        self.assertEqual(len(messages), len(lines))
        cut_in_a_character = 0
        for line, frames in zip(lines, messages):
            encoded = line.encode()
            self.assertEqual([(op, fin) for op, fin, _, _ in frames],
                             [("TEXT", False)] + [("CONT", False)] * (len(frames) - 2) + [("CONT", True)])
            self.assertEqual([len(f[3]) for f in frames], [n for _, n in expected_heads(TEXT, len(encoded), 7)])
            self.assertEqual(b"".join(f[3] for f in frames), encoded)
            # a frame that starts with a UTF-8 continuation byte: the cut fell inside a character
            cut_in_a_character += sum(1 for f in frames[1:] if 0x80 <= f[3][0] <= 0xBF)
        self.assertGreater(cut_in_a_character, 0, "no frame boundary fell inside a multi-byte character")

    def test_websockets_server_reassembles_compressed(self):
        p, port = self.start_peer("ws_server.py", "--log-frames")
        url = f"ws://127.0.0.1:{port}/"
        rng = random.Random(9)
        line = "".join(rng.choice("abcdefghij €✓") for _ in range(5000)).encode()
        r = self.wsx("connect", url, "--compress", "--fragment", "100", "-n", "1", "--timeout", "10s",
                     input=line + b"\n", timeout=20)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, line + b"\n")
        seen = []
        read_line_matching(p.proc.stdout, r"^closed 1000", 10, seen)
        self.assertIn("extensions permessage-deflate", seen)
        self.assertIn(f"message text {len(line.decode())}", seen)
        [frames] = logged_messages(seen)
        self.assertGreater(len(frames), 2, [(op, fin, rsv1, len(p)) for op, fin, rsv1, p in frames])
        self.assertEqual([(op, fin, rsv1) for op, fin, rsv1, _ in frames],
                         [("TEXT", False, True)] + [("CONT", False, False)] * (len(frames) - 2) + [("CONT", True, False)])
        self.assertEqual([len(f[3]) for f in frames], [n for _, n in expected_heads(TEXT, sum(len(f[3]) for f in frames), 100)])
        compressed = b"".join(f[3] for f in frames)
        self.assertEqual(zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff"), line)

    def test_a_ping_longer_than_size_is_one_frame(self):
        srv = self.serve()
        script = os.path.join(self.tmp, "ping.wsx")
        with open(script, "w") as f:
            f.write("ping 0123456789abcdef\nclose 1000\n")
        conn = self.connect(srv, "--fragment", "4", "--script", script, input=b"")
        pings = [(fin, p) for fin, op, p in conn.frames if op == PING]
        self.assertEqual(pings, [(True, b"0123456789abcdef")])
        self.assertEqual([op for _, op, _ in conn.frames if op in (TEXT, BINARY, CONT)], [])

    def test_every_fragment_has_its_own_mask_key(self):
        srv = self.serve()
        conn = self.connect(srv, "--fragment", "4", input=b"x" * 64 + b"\n")
        keys = mask_keys(bytes(conn.raw))
        self.assertEqual(len(keys), 16 + 1, keys)  # 16 fragments and the Close
        self.assertEqual(len(set(keys)), len(keys), f"mask keys repeat: {keys}")

    def test_not_a_size_is_a_usage_error(self):
        port = wsxtest.refused_port(self)
        for cmd in ("connect", "bench"):
            r = self.wsx(cmd, f"ws://127.0.0.1:{port}/", "--fragment", "lots", input=b"")
            self.assertExit(r, 2)
            self.assertIn("wsx: error: --fragment 'lots': not a size (use e.g. 65536, 64KiB, 16MiB)", self.error_lines(r))
        r = self.wsx("bench", f"ws://127.0.0.1:{port}/", "-s", "connect", "--fragment", "10")
        self.assertExit(r, 2)
        self.assertIn("--fragment does not apply to -s connect", r.stderr.decode())


class BenchFragmentTest(WsxTestCase):
    def bench_scripted(self, reply, *args):
        srv = ScriptedServer(b"", lambda: Splitter("whole"), reply=reply)
        self.addCleanup(srv.close)
        _, j = self.bench_json(srv.url, "-c", "1", "-n", "5", "--size", "40", "--fragment", "16", *args)
        srv.thread.join(5)
        return srv.conns[0], j

    def check(self, conn, j):
        self.assertEqual(j["messages"]["sent"], 5)
        self.assertEqual(j["messages"]["received"], 5)
        self.assertEqual(j["errors"], {})
        self.assertEqual(j["latency"]["histogram"]["count"], 5)
        self.assertEqual(data_heads(conn), expected_heads(TEXT, 40, 16) * 5)
        self.assertEqual([len(p) for p in data_payloads(conn)], [16, 16, 8] * 5)

    def test_whole_echo(self):
        self.check(*self.bench_scripted(lambda op, msg: frame(op, msg)))

    def test_fragmented_echo(self):
        self.check(*self.bench_scripted(lambda op, msg: frame(op, msg[:5], fin=False) + frame(CONT, msg[5:])))

    def test_against_wsx_serve(self):
        _, url = self.start_server("--compress")
        for extra in ([], ["--binary"], ["--compress"]):
            with self.subTest(extra=extra):
                _, j = self.bench_json(url, "-c", "2", "-n", "400", "--in-flight", "4", "--size", "1KiB",
                                       "--fragment", "100", *extra)
                self.assertEqual(j["errors"], {})
                self.assertEqual(j["messages"]["sent"], 400)
                self.assertEqual(j["messages"]["received"], 400)
                self.assertEqual(j["messages"]["bytes_received"], 400 * 1024)
                self.assertEqual(j["close_codes"], {"1000": 2})


if __name__ == "__main__":
    wsxtest.main()
