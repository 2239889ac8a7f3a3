"""RFC 6455 conformance of wsx serve, driven frame by frame over raw sockets, in the spirit of
the Autobahn testsuite: framing, fragmentation, control frames, reserved bits and opcodes,
UTF-8, close codes. After every failed connection the server must still serve others."""
import socket
import struct

import wsxtest
from serve_helpers import RawWS


class ConformanceTest(wsxtest.WsxTestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q"])
        cls.url = cls.server.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.proc.stderr.close()

    def ws(self):
        w = RawWS(self.url)
        self.addCleanup(w.close)
        return w

    def expect_failure(self, code, *frames):
        """Sends frames; the server must answer with Close `code` (or drop the TCP connection when
        the frame cannot even be parsed) and keep serving new clients."""
        w = self.ws()
        for f in frames:
            w.send_frame(*f[:2], **(f[2] if len(f) > 2 else {}))
        got = w.expect_close()
        self.assertEqual(got[0], code, got)
        self.assertTrue(w.wait_eof(5))
        self.still_serving()

    def still_serving(self):
        w = self.ws()
        w.send_text("alive")
        self.assertEqual(w.recv_message(), (1, b"alive"))

    # Framing -----------------------------------------------------------------------------
    def test_echo_sizes(self):
        w = self.ws()
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

    # Fragmentation -----------------------------------------------------------------------
    def test_fragmented_message_with_ping_inside(self):
        w = self.ws()
        w.send_frame(0x1, "frag", fin=False)
        w.send_frame(0x9, b"in-between")
        w.send_frame(0x0, "men", fin=False)
        w.send_frame(0x0, "ted", fin=True)
        fin, op, payload = w.recv_frame()
        self.assertEqual((op, payload), (0xA, b"in-between"))
        self.assertEqual(w.recv_message(), (1, b"fragmented"))

    def test_continuation_without_start_1002(self):
        self.expect_failure(1002, (0x0, b"orphan"))

    def test_new_message_inside_fragmented_one_1002(self):
        self.expect_failure(1002, (0x1, b"a", {"fin": False}), (0x1, b"b"))

    def test_utf8_split_across_fragments(self):
        w = self.ws()
        euro = "€".encode()
        w.send_frame(0x1, euro[:1], fin=False)
        w.send_frame(0x0, euro[1:], fin=True)
        self.assertEqual(w.recv_message(), (1, euro))

    # Control frames ----------------------------------------------------------------------
    def test_ping_gets_pong_with_same_payload(self):
        w = self.ws()
        w.send_frame(0x9, b"payload-123")
        fin, op, payload = w.recv_frame()
        self.assertEqual((fin, op, payload), (True, 0xA, b"payload-123"))

    def test_unsolicited_pong_ignored(self):
        w = self.ws()
        w.send_frame(0xA, b"nobody asked")
        w.send_text("after")
        self.assertEqual(w.recv_message(), (1, b"after"))

    def test_fragmented_control_frame_1002(self):
        self.expect_failure(1002, (0x9, b"x", {"fin": False}))

    def test_control_frame_over_125_bytes_1002(self):
        self.expect_failure(1002, (0x9, b"p" * 126))

    # UTF-8 ------------------------------------------------------------------------------
    def test_invalid_utf8_1007(self):
        for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\xf4\x90\x80\x80"):
            with self.subTest(bad=bad):
                self.expect_failure(1007, (0x1, bad))

    def test_invalid_utf8_in_fragments_1007(self):
        self.expect_failure(1007, (0x1, b"ok", {"fin": False}), (0x0, b"\xff", {"fin": True}))

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
        w.sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", len(payload)) + mask + masked)
        got = w.expect_close()
        self.assertEqual(got[0], 1007, got)

    def test_binary_may_hold_anything(self):
        w = self.ws()
        w.send_frame(0x2, b"\xff\xfe\x00")
        self.assertEqual(w.recv_message(), (2, b"\xff\xfe\x00"))

    # Close ------------------------------------------------------------------------------
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

    def test_payload_length_with_the_top_bit_set_1002(self):
        # RFC 6455 5.2: the most significant bit of a 64-bit length must be 0.
        w = self.ws()
        w.sock.sendall(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x01\x02\x03\x04")
        got = w.expect_close()
        self.assertEqual(got[0], 1002, got)

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
        self.still_serving()

    def test_data_after_close_is_ignored(self):
        w = self.ws()
        w.send_close(1000)
        w.send_text("too late")
        self.assertEqual(w.expect_close()[0], 1000)


class ConformanceWithCompressionOnTest(ConformanceTest):
    """The same, against `--compress`: a client that does not offer permessage-deflate gets the
    same RFC 6455 answers as without it."""

    @classmethod
    def setUpClass(cls):
        cls.server = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", "--compress"])
        cls.url = cls.server.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)


if __name__ == "__main__":
    wsxtest.main()
