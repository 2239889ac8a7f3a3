"""permessage-deflate (RFC 7692) against hostile peers, on the one frame engine: `wsx serve
--compress` (echo and --exec cat), `wsx proxy --compress` and `wsx connect --compress` (against a
scripted raw server), driven with frames and deflate data made here with Python's zlib.

- RSV1 where RFC 7692 gives it no meaning (control frames, continuation frames, a connection
  whose offer was declined): Close 1002.
- Data that does not inflate: 1007 (README: "data that does not inflate is refused with 1007");
  text that inflates to invalid UTF-8: 1007; a small message that inflates past
  --max-message-size: 1009, with the process's memory bounded.
- Valid compressed messages (context kept between messages, fragmented, empty) arrive intact,
  however the bytes are split (one class per split mode, as in serve_conformance_test.py).
- The handshake: every offer gets an answer RFC 7692 allows (or none), and the agreed
  parameters (window bits, no context takeover) hold for what the server sends.

After every server-side case the processes are alive: idle, a fresh client is echoed within
1 s, and SIGTERM stops them with exit 0 at the end of the class."""
import os
import re
import socket
import struct
import subprocess
import time
import zlib

import wsxtest
from raw_peer import (BINARY, CLOSE, CONT, PING, PONG, TEXT, ScriptedServer, ServedCase, SplitMode, Target,
                      close_frame, frame, idle_problems)
from serve_helpers import RawWS

TAIL = b"\x00\x00\xff\xff"
OFFER = "permessage-deflate"
QUICK = 4.0 if wsxtest.SANITIZED else 2.0  # seconds for a protocol error to end a connect run


class Deflater:
    """A permessage-deflate sender (RFC 7692 7.2.1): sync flush, the 4-byte tail removed; the
    LZ77 window kept between messages unless `reset`."""

    def __init__(self, wbits=15, reset=False):
        self.wbits, self.reset = wbits, reset
        self.z = zlib.compressobj(9, zlib.DEFLATED, -wbits)

    def __call__(self, data):
        if isinstance(data, str):
            data = data.encode()
        out = self.z.compress(data) + self.z.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL), out
        if self.reset:
            self.z = zlib.compressobj(9, zlib.DEFLATED, -self.wbits)
        return out[:-4]


def deflate(data):
    """One message compressed on its own."""
    return Deflater()(data)


class CompressedWS(RawWS):
    """RawWS that offers permessage-deflate (or `offer`), notes each frame's RSV1 and inflates
    what the server sends with a window of `wbits` (context kept unless `reset`)."""

    def __init__(self, url, offer=OFFER, wbits=15, reset=False, **kw):
        super().__init__(url, headers={"Sec-WebSocket-Extensions": offer} if offer else None, **kw)
        m = re.search(r"(?im)^Sec-WebSocket-Extensions: *(.*?) *$", self.response_head)
        self.extensions = m.group(1) if m else None
        self.wbits, self.reset = wbits, reset
        self.inflater = zlib.decompressobj(-wbits)
        self.deflate = Deflater()
        self.rsv = []  # RSV bits of each frame received, in order

    def _fill(self, n, deadline):
        super()._fill(n, deadline)
        if n == 2:
            self._head = self.buf[0]

    def recv_compressed(self, timeout=None):
        """The next data message, inflated when its first frame has RSV1: (opcode, payload,
        compressed?); ('close', code, reason) at Close. Pings are answered."""
        parts, first, rsv1 = [], None, False
        for _ in range(10000):
            fin, op, payload = self.recv_frame(timeout)
            rsv = (self._head >> 4) & 7
            self.rsv.append(rsv)
            if op == PING:
                self.send_frame(PONG, payload)
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return ("close", code, payload[2:].decode("utf-8", "replace"))
            if first is None:
                first, rsv1 = op, bool(rsv & 4)
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if rsv1:
                    data = self.inflater.decompress(data + TAIL)
                    if self.reset:
                        self.inflater = zlib.decompressobj(-self.wbits)
                return (first, data, rsv1)
        raise AssertionError("no end of the message within 10000 frames")

    def send_compressed(self, opcode, data, pieces=1):
        """One message deflated (context kept), in `pieces` frames: RSV1 on the first only."""
        z = self.deflate(data)
        cut = [len(z) * i // pieces for i in range(pieces + 1)]
        frames = [(opcode if i == 0 else CONT, z[cut[i]:cut[i + 1]], {"fin": i == pieces - 1, "rsv": 4 if i == 0 else 0})
                  for i in range(pieces)]
        self.send_frames(frames)


# The server side ---------------------------------------------------------------------------
class CompressedServeTest(ServedCase, wsxtest.WsxTestCase):
    """`wsx serve --compress` (echo), one class per split mode."""

    server_args = ["--compress"]

    def ws(self, target=None, timeout=5.0, **kw):
        return self.opened(CompressedWS((target or self.target).url, timeout=timeout, split=self.split(), **kw))

    def close_problems(self, w, code, timeout=3.0):
        """What is wrong with the end of a connection the server must fail with Close `code`:
        no data message may come before that Close."""
        try:
            got = w.recv_compressed(timeout)
        except TimeoutError:
            return [f"no Close {code} within {timeout}s"]
        except (EOFError, ConnectionResetError):
            return [f"the TCP connection ended without a Close (wanted {code})"]
        except zlib.error as e:
            return [f"a message that does not inflate came instead of Close {code}: {e}"]
        if got[0] != "close":
            return [f"a message {got[1][:40]!r} came instead of Close {code}"]
        if got[1] != code:
            return [f"Close {got[1]} {got[2]!r}, wanted {code}"]
        if not w.wait_eof(timeout):
            return [f"no end of the TCP connection within {timeout}s of the Close"]
        return []

    def expect_failure(self, code, *frames, target=None, **kw):
        w = self.ws(target, **kw)
        self.assertIsNotNone(w.extensions, "permessage-deflate was not agreed")
        self.send_to_the_end(w.send_frames, frames)
        self.assert_alive(self.close_problems(w, code), target)

    def expect_echo(self, w, *messages):
        for op, data in messages:
            got = w.recv_compressed()
            self.assertEqual(got[:2], (op, data if isinstance(data, bytes) else data.encode()))
            self.assertTrue(got[2] or not data, "the echo of a compressed client's message is compressed")

    # Valid compressed input ------------------------------------------------------------------
    def test_messages_sharing_the_window_are_echoed_intact(self):
        # The second and third messages refer back into the first (context takeover, the
        # default): a server that reset its inflater per message could not read them.
        w = self.ws()
        blob = bytes(32 + (i * 7919) % 95 for i in range(3000))  # printable ASCII: valid text too
        for i, m in enumerate((blob, blob, blob[:1000] + "κόσμε".encode() * 50)):
            w.send_compressed(BINARY if i < 2 else TEXT, m)
            self.expect_echo(w, (BINARY if i < 2 else TEXT, m))
        self.assertEqual(w.extensions, OFFER)

    def test_compressed_message_in_fragments_with_control_frames_between(self):
        w = self.ws()
        text = ("fragmented and compressed, " * 200).encode()
        z = w.deflate(text)
        third = len(z) // 3
        w.send_frames([(TEXT, z[:third], {"fin": False, "rsv": 4}), (PING, b"in-between"),
                       (CONT, z[third:2 * third], {"fin": False}), (PONG, b"unasked"),
                       (CONT, z[2 * third:], {"fin": False}), (CONT, b"")])  # the last fragment empty
        self.assertEqual(w.recv_frame()[1:], (PONG, b"in-between"))
        self.expect_echo(w, (TEXT, text))
        # One fragment per byte of the compressed data.
        z = w.deflate(text[:300])
        w.send_frames([(BINARY if i == 0 else CONT, z[i:i + 1], {"fin": i == len(z) - 1, "rsv": 4 if i == 0 else 0})
                       for i in range(len(z))])
        self.expect_echo(w, (BINARY, text[:300]))

    def test_empty_compressed_message(self):
        # An empty message deflates to one 0x00 byte (an empty stored block, RFC 7692 7.2.3.6).
        w = self.ws()
        for _ in range(2):
            w.send_compressed(TEXT, b"")
            self.expect_echo(w, (TEXT, b""))
        w.send_compressed(TEXT, "after two empty ones")
        self.expect_echo(w, (TEXT, "after two empty ones"))

    def test_an_uncompressed_message_on_a_compressed_connection(self):
        # RSV1 clear: the message is taken as it is (RFC 7692 6), also between compressed ones.
        w = self.ws()
        w.send_compressed(TEXT, "one")
        w.send_frame(TEXT, "two")
        w.send_compressed(BINARY, b"three")
        self.expect_echo(w, (TEXT, "one"), (TEXT, "two"), (BINARY, b"three"))

    # RSV1 where it means nothing -------------------------------------------------------------
    def test_rsv1_on_a_control_frame_1002(self):
        for op, payload in ((PING, b"x"), (PONG, b"x"), (CLOSE, struct.pack("!H", 1000))):
            with self.subTest(op=op):
                self.expect_failure(1002, (op, payload, {"rsv": 4}))

    def test_rsv1_on_a_continuation_frame_1002(self):
        z = deflate("split in two")
        self.expect_failure(1002, (TEXT, z[:3], {"fin": False, "rsv": 4}), (CONT, z[3:], {"rsv": 4}))
        # Also when the message began uncompressed.
        self.expect_failure(1002, (TEXT, b"plain", {"fin": False}), (CONT, z, {"rsv": 4}))

    def test_rsv1_after_a_declined_offer_1002(self):
        # An offer the server must decline (a parameter it does not know): no extension, so RSV1
        # has no meaning on this connection.
        w = self.ws(offer="permessage-deflate; x-unknown-parameter")
        self.assertIsNone(w.extensions)
        self.send_to_the_end(w.send_frame, TEXT, deflate("hello"), True, 4)
        self.assert_alive(self.close_problems(w, 1002))

    # Bad deflate data ------------------------------------------------------------------------
    def test_data_that_does_not_inflate_1007(self):
        cases = {
            "reserved block type 11": b"\xff\xff\xff\xff",
            "stored block whose NLEN is not ~LEN": b"\x00\x05\x00\x05\x00hello",
        }
        # Valid deflate data, but it refers back into a message this connection never had.
        d = Deflater()
        d(bytes(range(200)))
        cases["a reference to a window that is empty"] = d(bytes(range(200)))
        for name, z in cases.items():
            with self.subTest(name):
                self.expect_failure(1007, (BINARY, z, {"rsv": 4}))
        # Bad data in the last of several fragments, after a valid start.
        z = deflate("a valid start")
        self.expect_failure(1007, (TEXT, z, {"fin": False, "rsv": 4}), (CONT, b"\xff\xff\xff\xff"))

    def test_text_that_inflates_to_invalid_utf8_1007(self):
        for bad in (b"ok\xff", b"\xed\xa0\x80", b"\xe2\x82"):
            with self.subTest(bad=bad):
                self.expect_failure(1007, (TEXT, deflate(bad), {"rsv": 4}))
        # The same bytes in a binary message are echoed.
        w = self.ws()
        w.send_compressed(BINARY, b"ok\xff")
        self.expect_echo(w, (BINARY, b"ok\xff"))

    def test_rsv1_frame_with_an_empty_payload_is_refused_1007(self):
        # A compressed message with no payload at all (RSV1, length 0) is not deflate data: with
        # the 00 00 ff ff tail added it is an unfinished stored-block header (a sender's empty
        # message is 0x00). Taken as a message, it would leave the inflater inside that header,
        # and the next message would be refused or inflate to garbage.
        w = self.ws()
        self.send_to_the_end(w.send_frames, [(TEXT, b"", {"rsv": 4})])
        self.assert_alive(self.close_problems(w, 1007))

    # Close in the middle of a compressed message ---------------------------------------------
    def test_close_in_the_middle_of_a_compressed_message(self):
        w = self.ws()
        z = deflate("never finished " * 100)
        self.send_to_the_end(w.send_frames, [(TEXT, z[:10], {"fin": False, "rsv": 4}), (PING, b"p"),
                                             (CONT, z[10:20], {"fin": False}), (CLOSE, struct.pack("!H", 1000))])
        self.assertEqual(w.recv_frame()[1:], (PONG, b"p"))
        self.assert_alive(self.close_problems(w, 1000))

    # Message size ----------------------------------------------------------------------------
    def test_a_small_message_that_inflates_past_the_limit_1009(self):
        limited = self.start_target("--max-message-size", "1KiB")
        try:
            w = self.ws(limited)
            w.send_compressed(TEXT, "x" * 1024)  # exactly the limit, inflated
            self.expect_echo(w, (TEXT, "x" * 1024))
            self.assert_alive(target=limited)
            self.expect_failure(1009, (BINARY, deflate(b"y" * 1025), {"rsv": 4}), target=limited)
            # 512 KiB of zeros in about 500 bytes, under the limit as sent.
            bomb = deflate(bytes(512 << 10))
            self.assertLess(len(bomb), 1024)
            self.expect_failure(1009, (BINARY, bomb, {"rsv": 4}), target=limited)
            self.expect_failure(1009, (TEXT, bomb[:100], {"fin": False, "rsv": 4}), (PING, b"p"),
                                (CONT, bomb[100:]), target=limited)
        finally:
            problems = limited.stop()
        self.assertEqual(problems, [], "SIGTERM")

    def test_an_inflation_bomb_is_refused_with_bounded_memory(self):
        limited = self.start_target("--max-message-size", "4MiB")
        try:
            pid = limited.procs[0].proc.pid
            before = wsxtest.rss_kib(pid)
            bomb = deflate(bytes(256 << 20))  # 256 MiB of zeros in about 256 KiB
            t0 = time.monotonic()
            self.expect_failure(1009, (BINARY, bomb, {"rsv": 4}), target=limited)
            took = time.monotonic() - t0
            grew = wsxtest.rss_kib(pid) - before
            if not wsxtest.SANITIZED:
                self.assertLess(grew, 32 << 10, f"RSS grew by {grew} KiB for a message refused at 4 MiB")
            self.assertLess(took, 5.0, "1009 (and the liveness check) took too long")
        finally:
            problems = limited.stop()
        self.assertEqual(problems, [], "SIGTERM")


class CompressedServeBytewiseTest(CompressedServeTest):
    mode = "bytes"
    # One write is enough for the bomb: the bound is on inflating, not on reading.
    test_an_inflation_bomb_is_refused_with_bounded_memory = None


class CompressedServeRandomChunksTest(CompressedServeTest):
    mode = "random"
    test_an_inflation_bomb_is_refused_with_bounded_memory = None


class CompressedExecTest(CompressedServeTest):
    """The same against `serve --compress --exec cat` (whole writes): lines go through the
    child, and the child's answers come back compressed."""

    server_args = ["--compress", "--exec", "cat"]

    def expect_echo(self, w, *messages):
        # cat answers line by line: what a message's lines come back as.
        for op, data in messages:
            data = data if isinstance(data, bytes) else data.encode()
            for line in data.split(b"\n"):
                got = w.recv_compressed()
                self.assertEqual(got[1], line)
                self.assertTrue(got[2] or not line, "the child's answer to a compressed client is compressed")

    def test_lines_of_a_compressed_message_reach_the_child_and_come_back(self):
        w = self.ws()
        w.send_compressed(TEXT, "first line\nsecond line\n")
        self.expect_echo(w, (TEXT, "first line\nsecond line"))

    # Cases whose echo cat does not give back as it came (binary, empty lines, bytes that are
    # not UTF-8) are the echo server's.
    test_messages_sharing_the_window_are_echoed_intact = None
    test_compressed_message_in_fragments_with_control_frames_between = None
    test_empty_compressed_message = None
    test_an_uncompressed_message_on_a_compressed_connection = None
    test_text_that_inflates_to_invalid_utf8_1007 = None
    test_rsv1_frame_with_an_empty_payload_is_not_taken_as_a_message = None
    test_an_inflation_bomb_is_refused_with_bounded_memory = None


# The handshake -----------------------------------------------------------------------------
# Offer (Sec-WebSocket-Extensions fields, in order) -> the answer wanted; None: declined.
OFFERS = {
    "plain": (["permessage-deflate"], "permessage-deflate"),
    "client_max_window_bits without a value": (["permessage-deflate; client_max_window_bits"], "permessage-deflate"),
    "names in any case": (["PerMessage-Deflate; Client_Max_Window_Bits"], "permessage-deflate"),
    "server window 10": (["permessage-deflate; server_max_window_bits=10"],
                         "permessage-deflate; server_max_window_bits=10"),
    "server window quoted": (['permessage-deflate; server_max_window_bits="12"'],
                             "permessage-deflate; server_max_window_bits=12"),
    "server window 8 declined, the next offer taken":
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate"], "permessage-deflate"),
    "unknown extension first": (["x-webkit-deflate-frame, permessage-deflate"], "permessage-deflate"),
    "second field taken when the first is not a list": (["permessage-deflate; =", "permessage-deflate"],
                                                        "permessage-deflate"),
    "no context takeover both ways": (["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                                      "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    "server_max_window_bits without a value": (["permessage-deflate; server_max_window_bits"], None),
    "window 16": (["permessage-deflate; server_max_window_bits=16"], None),
    "client window 7": (["permessage-deflate; client_max_window_bits=7"], None),
    "unknown parameter": (["permessage-deflate; foo=1"], None),
    "repeated parameter": (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
    "value where none is allowed": (["permessage-deflate; server_no_context_takeover=1"], None),
    "trailing semicolon": (["permessage-deflate;"], None),
    "unterminated quote": (['permessage-deflate; server_max_window_bits="10'], None),
    "not a token": (["permessage-deflate; server_max_window_bits=1 0"], None),
    "another extension only": (["x-webkit-deflate-frame"], None),
}


class RawOffer(RawWS):
    """An upgrade with any number of Sec-WebSocket-Extensions fields."""

    def __init__(self, url, fields, **kw):
        self._fields = fields
        super().__init__(url, **kw)

    def write(self, data):
        if data.startswith(b"GET ") and self._fields:
            extra = "".join(f"Sec-WebSocket-Extensions: {f}\r\n" for f in self._fields).encode()
            data = data[:-2] + extra + b"\r\n"
            self._fields = None
        super().write(data)


class HandshakeTest(wsxtest.WsxTestCase):
    @classmethod
    def setUpClass(cls):
        p = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", "--compress"])
        cls.target = Target(p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1), [p])

    @classmethod
    def tearDownClass(cls):
        problems = cls.target.stop()
        if problems:
            raise AssertionError("SIGTERM at the end of the class: " + "; ".join(problems))

    def connect(self, fields):
        w = RawOffer(self.target.url, fields, timeout=5)
        self.addCleanup(w.close)
        m = re.findall(r"(?im)^Sec-WebSocket-Extensions: *(.*?) *$", w.response_head)
        self.assertLessEqual(len(m), 1, "one answer at most")
        return w, (m[0] if m else None)

    def test_offers_get_an_answer_rfc7692_allows(self):
        for name, (fields, wanted) in OFFERS.items():
            with self.subTest(name):
                w, answer = self.connect(fields)
                self.assertEqual(answer, wanted)
                if wanted is None:
                    # Declined: the connection works uncompressed, and RSV1 means nothing on it.
                    w.send_text("plain")
                    self.assertEqual(w.recv_frame()[1:], (TEXT, b"plain"))
                    w.send_frame(TEXT, deflate("hello"), rsv=4)
                    self.assertEqual(w.expect_close(3)[0], 1002)
                else:
                    w.send_frame(TEXT, deflate("hello"), rsv=4)
                    fin, op, payload = w.recv_frame()
                    self.assertEqual(zlib.decompressobj(-15).decompress(payload + TAIL), b"hello")
        self.assertEqual(self.target.liveness_problems(), [])

    def test_the_server_keeps_to_the_window_it_agreed_to(self):
        # A message whose second half repeats its first, 3000 bytes back: a 9- or 10-bit window
        # cannot refer that far, so an answer deflated with a larger one does not inflate.
        blob = os.urandom(3000)
        for bits in (9, 10, 12):
            with self.subTest(bits=bits):
                w = CompressedWS(self.target.url, offer=f"permessage-deflate; server_max_window_bits={bits}", wbits=bits)
                self.addCleanup(w.close)
                self.assertEqual(w.extensions, f"permessage-deflate; server_max_window_bits={bits}")
                for _ in range(2):  # the window between messages too
                    w.send_compressed(BINARY, blob + blob)
                    self.assertEqual(w.recv_compressed()[:2], (BINARY, blob + blob))

    def test_server_no_context_takeover_makes_each_answer_stand_alone(self):
        w = CompressedWS(self.target.url, offer="permessage-deflate; server_no_context_takeover", reset=True)
        self.addCleanup(w.close)
        self.assertEqual(w.extensions, "permessage-deflate; server_no_context_takeover")
        text = "the same message again " * 20
        for _ in range(3):  # each inflated with a fresh window: no reference to the one before
            w.send_compressed(TEXT, text)
            self.assertEqual(w.recv_compressed(), (TEXT, text.encode(), True))

    def test_client_no_context_takeover_client_may_still_refer_back(self):
        # client_no_context_takeover lets the client reset; a client that does not keep it
        # is still read right (the server's inflater keeps the window while it may be used).
        w = CompressedWS(self.target.url, offer="permessage-deflate; client_no_context_takeover")
        self.addCleanup(w.close)
        self.assertEqual(w.extensions, "permessage-deflate; client_no_context_takeover")
        w.deflate = Deflater(reset=True)
        for i in range(3):
            w.send_compressed(TEXT, f"message {i} " * 30)
            self.assertEqual(w.recv_compressed()[:2], (TEXT, (f"message {i} " * 30).encode()))


class NeverReadingClientTest(wsxtest.WsxTestCase):
    def test_a_compressed_client_that_never_reads_costs_bounded_memory(self):
        # Incompressible messages echoed to a client that reads nothing: the send queue limit
        # applies to what compression makes of them, the server stays responsive meanwhile, and
        # the connection ends within the close timeout.
        p = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", "--compress", "--send-queue-limit", "1MiB"])
        target = Target(p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1), [p])
        try:
            w = CompressedWS(target.url, timeout=5)
            self.addCleanup(w.close)
            before = wsxtest.rss_kib(p.proc.pid)
            w.sock.settimeout(2.0)
            sent = 0
            try:
                for sent in range(1, 257):  # 16 MiB at most
                    w.send_compressed(BINARY, os.urandom(64 << 10))
            except (socket.timeout, TimeoutError, BrokenPipeError, ConnectionResetError):
                pass
            grew = wsxtest.rss_kib(p.proc.pid) - before
            if not wsxtest.SANITIZED:
                self.assertLess(grew, 48 << 10, f"RSS grew by {grew} KiB after {sent} messages of 64 KiB")
            self.assertEqual(target.liveness_problems(), [], "while a client does not read")
            self.assertTrue(w.wait_eof(10), "the stalled connection did not end")
            self.assertEqual(target.liveness_problems(), [])
        finally:
            problems = target.stop()
        self.assertEqual(problems, [], "SIGTERM")


# The proxy ---------------------------------------------------------------------------------
class CompressedProxyTest(CompressedServeTest):
    """`wsx proxy --compress` in front of `wsx serve` (uncompressed upstream), whole writes: the
    compressed client gets the same answers; a bad client never takes the upstream down."""

    @classmethod
    def start_target(cls, *extra):
        up = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q"])
        upurl = up.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        px = wsxtest.Process([wsxtest.WSX, "proxy", "--listen", "ws://127.0.0.1:0", "--to", upurl,
                              "--health-interval", "1h", "-q", "--compress", *extra])
        url = px.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        return Target(url, [px, up])


# The client side ---------------------------------------------------------------------------
class DeflateServer(ScriptedServer):
    """ScriptedServer whose 101 carries `answer` as Sec-WebSocket-Extensions (one field per
    element of a list)."""

    def __init__(self, script, make_split, answer="permessage-deflate", **kw):
        self.answer = [answer] if isinstance(answer, str) else answer
        self.offers = []
        super().__init__(script, make_split, **kw)

    def answer_fields(self, request_lines):
        self.offers += [line.split(b":", 1)[1].strip().decode() for line in request_lines
                        if line.lower().startswith(b"sec-websocket-extensions:")]
        return "".join(f"Sec-WebSocket-Extensions: {a}\r\n" for a in self.answer).encode()


def zframe(opcode, data, deflater=None, fin=True):
    return frame(opcode, (deflater or Deflater())(data), fin=fin, rsv=4)


class CompressedConnectTest(SplitMode, wsxtest.WsxTestCase):
    """`wsx connect --compress` against a scripted server that agreed to permessage-deflate."""

    mode = "whole"

    def serve(self, script, answer="permessage-deflate"):
        srv = DeflateServer(b"".join(script), self.split, answer=answer)
        self.addCleanup(srv.close)
        return srv

    def run_connect(self, srv, *args, deadline=10.0):
        r, w = os.pipe()
        t0 = time.monotonic()
        try:
            p = subprocess.Popen([wsxtest.WSX, "connect", "--compress", srv.url, *args], stdin=r,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        finally:
            os.close(r)
        try:
            out, err = p.communicate(timeout=deadline)
        except subprocess.TimeoutExpired:
            busy = idle_problems([p])
            p.kill()
            p.communicate()
            self.fail(f"[{self.describe_mode()}] connect still running after {deadline}s ({busy or 'idle'})")
        finally:
            os.close(w)
        srv.thread.join(5)
        return p.returncode, out, err.decode(errors="replace"), time.monotonic() - t0

    def check_fault(self, script, code, *args):
        """A valid compressed message, then `script`: connect prints the message, sends Close
        `code` and exits 7 at once."""
        d = Deflater()
        srv = self.serve([zframe(TEXT, "before", d)] + script(d))
        rc, out, err, took = self.run_connect(srv, "--timeout", "5s", *args)
        c = srv.conns[0] if srv.conns else None
        where = f"[{self.describe_mode()}] exit {rc} after {took:.1f}s, stderr {err[-300:]!r}"
        self.assertEqual(rc, 7, where)
        self.assertLess(took, QUICK + 1, where)
        self.assertEqual(out, b"before\n", where)
        self.assertIn(str(code), err, where)
        self.assertEqual(c and c.close_code, code, where)

    def test_compressed_messages_arrive_intact(self):
        d = Deflater()
        big = "".join(f"line {i} " for i in range(2000))
        z = d(big)
        script = [zframe(TEXT, "one", d), zframe(TEXT, "one", d),  # the second refers back to the first
                  frame(TEXT, z[:5], fin=False, rsv=4), frame(PING, "p"), frame(CONT, z[5:], fin=False), frame(CONT, b""),
                  zframe(TEXT, "", d), frame(TEXT, "uncompressed"), zframe(TEXT, "last", d), close_frame(1000)]
        srv = self.serve(script)
        rc, out, err, _ = self.run_connect(srv, "-n", "6", "--timeout", "5s")
        self.assertEqual(out.decode().split("\n"), ["one", "one", big, "", "uncompressed", "last", ""], err)
        self.assertEqual(rc, 0, err)
        self.assertEqual(srv.conns[0].pongs(), [b"p"])
        self.assertTrue(srv.offers and srv.offers[0].startswith("permessage-deflate"), srv.offers)

    def test_rsv1_on_a_control_frame_1002(self):
        self.check_fault(lambda d: [frame(PING, "x", rsv=4)], 1002)

    def test_rsv1_on_a_continuation_frame_1002(self):
        self.check_fault(lambda d: [frame(TEXT, d("ab")[:2], fin=False, rsv=4), frame(CONT, b"\x00", rsv=4)], 1002)

    def test_data_that_does_not_inflate_1007(self):
        self.check_fault(lambda d: [frame(BINARY, b"\xff\xff\xff\xff", rsv=4)], 1007)

    def test_text_that_inflates_to_invalid_utf8_1007(self):
        self.check_fault(lambda d: [zframe(TEXT, b"bad \xff", d)], 1007)

    def test_a_small_message_that_inflates_past_the_limit_1009(self):
        self.check_fault(lambda d: [zframe(BINARY, bytes(1 << 20), d)], 1009, "--max-message-size", "64KiB")

    def test_rsv1_when_the_server_declined_1002(self):
        srv = self.serve([zframe(TEXT, "compressed anyway")], answer=[])
        rc, out, err, _ = self.run_connect(srv, "--timeout", "5s")
        self.assertEqual(rc, 7, err)
        self.assertEqual(srv.conns[0].close_code, 1002, err)

    def test_an_extension_in_a_second_answer_field_fails_the_upgrade(self):
        # RFC 6455 4.1 (client step 5): an answer naming an extension the client did not offer
        # fails the connection, in whichever Sec-WebSocket-Extensions field it stands.
        srv = self.serve([zframe(TEXT, "hello"), close_frame(1000)], answer=["permessage-deflate", "x-foo"])
        rc, out, err, _ = self.run_connect(srv, "--timeout", "5s")
        self.assertEqual(rc, 6, f"exit {rc}, stdout {out!r}, stderr {err!r}")

    def test_an_unoffered_extension_in_the_one_answer_field_fails_the_upgrade(self):
        srv = self.serve([zframe(TEXT, "hello"), close_frame(1000)], answer=["permessage-deflate, x-foo"])
        rc, out, err, _ = self.run_connect(srv, "--timeout", "5s")
        self.assertEqual(rc, 6, f"exit {rc}, stdout {out!r}, stderr {err!r}")


    def test_a_256_byte_window_asked_of_the_client_is_kept(self):
        # The offer names client_max_window_bits without a value, so a server may answer 8
        # (RFC 7692 7.1.2.2): the client compresses without referring back at all then (a
        # deflater cannot keep to 256 bytes otherwise), so what it sends reads with any window.
        message = "window " * 200
        received = []

        def reply(opcode, payload):
            received.append((opcode, zlib.decompressobj(-15).decompress(payload + TAIL)))
            return zframe(TEXT, "ok")

        srv = DeflateServer(b"", self.split, answer="permessage-deflate; client_max_window_bits=8", reply=reply)
        self.addCleanup(srv.close)
        rc, out, err, _ = self.run_connect(srv, "--send", message, "-n", "1", "--timeout", "5s")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"ok\n", err)
        self.assertEqual(received, [(TEXT, message.encode())])
        # Repeats 7 bytes apart would shrink to a few dozen bytes with back-references.
        z = [p for _, op, p in srv.conns[0].frames if op == TEXT]
        self.assertEqual(len(z), 1)
        self.assertGreater(len(z[0]), len(message) // 8, z[0])


class CompressedConnectBytewiseTest(CompressedConnectTest):
    mode = "bytes"


if __name__ == "__main__":
    wsxtest.main()
