"""RFC 6455 conformance of wsx serve, driven frame by frame over raw sockets, in the spirit of
the Autobahn testsuite: framing, fragmentation, control frames, reserved bits and opcodes,
UTF-8, close codes, message size.

A parser must give the same answer however its input is split, so every case runs three ways
(one class each, see the bottom): each frame in one write, one byte per write, and random
chunks from a seed that the test's description prints (WSX_SPLIT_SEED=N replays it).

After every case the server must still be alive: it is idle (no CPU over a short window), and a
fresh client is echoed (within 5 s: a hung server never answers, and a loaded machine can take
over a second); at the end of each class SIGTERM stops it with exit 0. A server that fails this is reported, stopped and started again, so one stuck case does not
take the rest of the class down with it."""
import socket
import struct

import wsxtest
from raw_peer import CLOSE, CONT, PING, PONG, TEXT, ServedCase
from serve_helpers import RawWS


class ConformanceTest(ServedCase, wsxtest.WsxTestCase):
    def ws(self, target=None, timeout=5.0):
        return self.opened(RawWS((target or self.target).url, timeout=timeout, split=self.split()))

    def close_problems(self, w, code, timeout=3.0):
        """What is wrong with the server's end of a connection it must fail with Close `code`."""
        try:
            got = w.expect_close(timeout)
        except TimeoutError:
            return [f"no Close {code} within {timeout}s"]
        except (EOFError, ConnectionResetError):
            return [f"the TCP connection ended without a Close (wanted {code})"]
        if got[0] != code:
            return [f"Close {got[0]} {got[1]!r}, wanted {code}"]
        if not w.wait_eof(timeout):
            return [f"no end of the TCP connection within {timeout}s of the Close"]
        return []

    def expect_failure(self, code, *frames, target=None):
        """Sends frames; the server must answer with Close `code`, end the connection and stay alive."""
        w = self.ws(target)
        self.send_to_the_end(w.send_frames, frames)
        self.assert_alive(self.close_problems(w, code), target)

    def expect_echo(self, w, *messages, pongs=()):
        """The pongs (in order), then the echoed messages."""
        for p in pongs:
            fin, op, payload = w.recv_frame()
            self.assertEqual((op, payload), (PONG, p))
        for m in messages:
            self.assertEqual(w.recv_message(), m)

    # Framing -------------------------------------------------------------------------------
    def test_echo_sizes(self):
        w = self.ws(timeout=20)
        for n in (0, 1, 125, 126, 127, 65535, 65536, 1 << 20):
            w.send_frame(0x2, bytes(i % 251 for i in range(n)))
            op, payload = w.recv_message()
            self.assertEqual((op, len(payload)), (2, n))
            self.assertEqual(payload, bytes(i % 251 for i in range(n)))

    def test_text_utf8_echo(self):
        w = self.ws()
        text = "κόσμε 🎉 ascii"
        w.send_text(text)
        self.assertEqual(w.recv_message(), (1, text.encode()))

    def test_unmasked_client_frame_1002(self):
        self.expect_failure(1002, (0x1, b"hello", {"mask": False}))

    def test_reserved_bits_1002(self):
        for rsv in (1, 2, 4):
            with self.subTest(rsv=rsv):
                self.expect_failure(1002, (0x1, b"x", {"rsv": rsv}))

    def test_reserved_opcodes_1002(self):
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
            with self.subTest(op=op):
                self.expect_failure(1002, (op, b""))

    def test_payload_length_with_the_top_bit_set_1002(self):
        # RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
        w = self.ws()
        self.send_to_the_end(w.write, bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04")
        self.assert_alive(self.close_problems(w, 1002))

    # Fragmentation -------------------------------------------------------------------------
    def test_fragmented_message_with_ping_inside(self):
        w = self.ws()
        w.send_frames([(TEXT, "frag", {"fin": False}), (PING, b"in-between"),
                       (CONT, "men", {"fin": False}), (CONT, "ted")])
        self.expect_echo(w, (1, b"fragmented"), pongs=[b"in-between"])

    def test_split_ping_inside_a_fragmented_message(self):
        w = self.ws()
        w.send_frames([(TEXT, "chop", {"fin": False}), (PING, "p"), (CONT, "ped")])
        self.expect_echo(w, (1, b"chopped"), pongs=[b"p"])

    def test_control_frames_between_fragments(self):
        w = self.ws()
        w.send_frames([(TEXT, "a", {"fin": False}), (PING, "1"), (CONT, "b", {"fin": False}),
                       (PONG, "unasked"), (PING, ""), (CONT, "c", {"fin": False}), (PING, "3" * 125),
                       (CONT, "d")])
        self.expect_echo(w, (1, b"abcd"), pongs=[b"1", b"", b"3" * 125])

    def test_8000_fragments_in_one_write(self):
        # 8,000 frames of 11 bytes each, all written at once (then cut as the mode says).
        w = self.ws(timeout=10)
        parts = [bytes([65 + i % 26]) * 11 for i in range(8000)]
        frames = [w.encode_frame(TEXT if i == 0 else CONT, p, fin=i == 7999) for i, p in enumerate(parts)]
        w.write(b"".join(frames))
        self.expect_echo(w, (1, b"".join(parts)))

    def test_close_between_fragments(self):
        w = self.ws()
        self.send_to_the_end(w.send_frames, [(TEXT, "half", {"fin": False}), (CLOSE, struct.pack("!H", 1000))])
        self.assert_alive(self.close_problems(w, 1000))

    def test_continuation_without_start_1002(self):
        self.expect_failure(1002, (CONT, b"orphan"))

    def test_new_message_inside_fragmented_one_1002(self):
        self.expect_failure(1002, (TEXT, b"a", {"fin": False}), (TEXT, b"b"))
        self.expect_failure(1002, (0x2, b"a", {"fin": False}), (PING, b"ok"), (0x2, b"b"))

    def test_utf8_split_across_fragments(self):
        w = self.ws()
        euro, smile = "€".encode(), "😀".encode()
        w.send_frames([(TEXT, euro[:1], {"fin": False}), (CONT, euro[1:])])
        self.expect_echo(w, (1, euro))
        # (One message at a time: a pong may overtake the echo of an earlier message.)
        w.send_frames([(TEXT, smile[:1], {"fin": False}), (CONT, smile[1:2], {"fin": False}),
                       (PING, "x"), (CONT, smile[2:3], {"fin": False}), (CONT, smile[3:])])
        self.expect_echo(w, (1, smile), pongs=[b"x"])

    # Control frames ------------------------------------------------------------------------
    def test_ping_gets_pong_with_same_payload(self):
        w = self.ws()
        w.send_frame(0x9, b"payload-123")
        fin, op, payload = w.recv_frame()
        self.assertEqual((fin, op, payload), (True, 0xA, b"payload-123"))

    def test_unsolicited_pong_ignored(self):
        w = self.ws()
        w.send_frames([(PONG, b"nobody asked"), (TEXT, "after")])
        self.assertEqual(w.recv_message(), (1, b"after"))

    def test_fragmented_control_frame_1002(self):
        for op in (PING, PONG, CLOSE):
            with self.subTest(op=op):
                self.expect_failure(1002, (op, b"\x03\xe8" if op == CLOSE else b"x", {"fin": False}))

    def test_fragmented_ping_inside_a_fragmented_message_1002(self):
        self.expect_failure(1002, (TEXT, "a", {"fin": False}), (PING, "p", {"fin": False}), (CONT, "b"))

    def test_control_frame_over_125_bytes_1002(self):
        for op, payload in ((PING, b"p" * 126), (PONG, b"p" * 126), (CLOSE, struct.pack("!H", 1000) + b"r" * 124)):
            with self.subTest(op=op):
                self.expect_failure(1002, (op, payload))

    # UTF-8 ---------------------------------------------------------------------------------
    def test_invalid_utf8_1007(self):
        for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\xf4\x90\x80\x80"):
            with self.subTest(bad=bad):
                self.expect_failure(1007, (0x1, bad))

    def test_invalid_utf8_in_fragments_1007(self):
        self.expect_failure(1007, (0x1, b"ok", {"fin": False}), (0x0, b"\xff", {"fin": True}))

    def test_invalid_utf8_split_across_a_fragment_boundary_1007(self):
        # Each fragment alone could start or end valid text: only the joined text is invalid.
        for first, rest in ((b"\xe2\x82", b"\x28"), (b"\xf0\x9f", b"\x98\x41"), (b"ok\xed", b"\xa0\x80")):
            with self.subTest(first=first, rest=rest):
                self.expect_failure(1007, (TEXT, first, {"fin": False}), (PING, "p"), (CONT, rest))

    def test_unfinished_utf8_at_the_end_of_the_message_1007(self):
        self.expect_failure(1007, (0x1, b"a\xe2\x82", {"fin": False}), (0x0, b"", {"fin": True}))

    def test_invalid_utf8_fails_before_the_message_ends_1007(self):
        # RFC 6455 8.1: fail as soon as the text is known to be invalid. The message is never
        # finished here, so only a check of each fragment as it arrives can answer 1007.
        for first in (b"ok\xff", b"\xed\xa0", b"\xf4\x90"):
            with self.subTest(first=first):
                self.expect_failure(1007, (0x1, first, {"fin": False}))
        # A large frame whose start is already invalid is failed before its payload is all there.
        w = self.ws()
        payload = b"\xc0" + b"a" * 99999
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:100]))
        self.send_to_the_end(w.write, bytes([0x81, 0x80 | 127]) + struct.pack("!Q", len(payload)) + mask + masked)
        self.assert_alive(self.close_problems(w, 1007))

    def test_binary_may_hold_anything(self):
        w = self.ws()
        w.send_frame(0x2, b"\xff\xfe\x00")
        self.assertEqual(w.recv_message(), (2, b"\xff\xfe\x00"))

    # Close ---------------------------------------------------------------------------------
    def test_close_echoes_code(self):
        for code in (1000, 1001, 3000, 4999):
            with self.subTest(code=code):
                w = self.ws()
                w.send_close(code, b"reason")
                self.assertEqual(w.expect_close()[0], code)
                self.assertTrue(w.wait_eof(5))

    def test_close_without_payload(self):
        w = self.ws()
        w.send_frame(0x8, b"")
        code, reason = w.expect_close()
        self.assertIn(code, (1000, 1005))

    def test_invalid_close_codes_1002(self):
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535):
            with self.subTest(code=code):
                self.expect_failure(1002, (0x8, struct.pack("!H", code)))

    def test_close_reason_not_utf8_1007(self):
        self.expect_failure(1007, (0x8, struct.pack("!H", 1000) + b"\xff"))

    def test_one_byte_close_payload_1002(self):
        self.expect_failure(1002, (0x8, b"\x03"))

    def test_messages_then_end_of_stream_in_one_segment(self):
        # The last frames and the client's FIN arrive together (corked into one segment): every
        # message is answered, and the server then ends the connection instead of waiting on.
        w = self.ws()
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for i in range(3):
            w.send_text(f"last-{i}")
        w.sock.shutdown(socket.SHUT_WR)
        for i in range(3):
            self.assertEqual(w.recv_message(), (1, f"last-{i}".encode()))
        self.assertTrue(w.wait_eof(5))

    def test_data_after_close_is_ignored(self):
        # A client that sends Close and then keeps sending data, valid or not: the server
        # answers the Close, reads nothing after it, and ends the connection.
        w = self.ws()
        self.send_to_the_end(w.send_frames, [(CLOSE, struct.pack("!H", 1000)), (TEXT, "too late"), (TEXT, b"\xff"),
                                             (0x3, b""), (CONT, "orphan")] + [(TEXT, "more")] * 20)
        self.assert_alive(self.close_problems(w, 1000))

    # Message size --------------------------------------------------------------------------
    def test_message_over_max_message_size_1009(self):
        limited = self.start_target("--max-message-size", "1KiB")
        try:
            w = self.ws(limited)
            w.send_frame(TEXT, "x" * 1024)
            self.expect_echo(w, (1, b"x" * 1024))
            self.assert_alive(target=limited)
            self.expect_failure(1009, (0x2, b"y" * 1025), target=limited)
            self.expect_failure(1009, (TEXT, "z" * 400, {"fin": False}), (PING, "p"),
                                (CONT, "z" * 400, {"fin": False}), (CONT, "z" * 400), target=limited)
            # Only the header is sent: the length alone is over the limit.
            w = self.ws(limited)
            self.send_to_the_end(w.write, bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\x01\x02\x03\x04"
                                 + b"\0" * 16)
            self.assert_alive(self.close_problems(w, 1009), limited)
        finally:
            problems = limited.stop()
        self.assertEqual(problems, [], "SIGTERM")


class ConformanceBytewiseTest(ConformanceTest):
    mode = "bytes"


class ConformanceRandomChunksTest(ConformanceTest):
    mode = "random"


class ConformanceWithCompressionOnTest(ConformanceTest):
    """The same, against `--compress`: a client that does not offer permessage-deflate gets the
    same RFC 6455 answers as without it (whole writes only: the framing underneath is the same)."""

    server_args = ["--compress"]


if __name__ == "__main__":
    wsxtest.main()
