"""The client's side of the opening handshake and of the frames right behind it, against a
scripted raw-socket server on loopback.

Behaviour these tests rely on:
- frames the server sends in the same segment as its 101 answer (a greeting) are delivered;
- an answer with a wrong Sec-WebSocket-Accept, without `Upgrade: websocket`, or enabling an
  extension that was not offered is a failed upgrade: exit 6, one error line naming it;
- a server frame that is masked fails the connection with Close 1002 (RFC 6455 5.1), exit 7;
- a TLS record (an alert) instead of an HTTP answer to a ws:// upgrade is exit 6 with the hint
  to use wss://;
- without -L a redirect (3xx) is not followed: exit 6, and the error line says where it points
  (the Location value, escaped for the terminal) and that -L follows it.
"""
import base64
import hashlib
import socket
import struct
import threading

import wsxtest
from wsxtest import WsxTestCase

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode, payload, mask=None):
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


class ScriptedServer:
    """Accepts one connection, reads the upgrade request, sends answer(key) in one write, then
    keeps what the client sends until its Close frame arrives, sends close_answer (bytes; none
    by default: it hangs up without answering the Close), and closes (at most 10 s)."""

    def __init__(self, answer, close_answer=b"", close_after_answer=False):
        self.answer = answer
        self.close_answer = close_answer
        self.close_after_answer = close_after_answer
        self.received = b""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            key = ""
            for line in request.decode().split("\r\n"):
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            conn.sendall(self.answer(key))
            if self.close_after_answer:
                return
            try:
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    self.received += chunk
                    if self.client_close_code() is not None:
                        if self.close_answer:
                            conn.sendall(self.close_answer)
                        break  # the closing handshake is over: the server ends TCP first
            except OSError:
                pass

    def close(self):
        self.sock.close()
        self.thread.join(15)

    def client_close_code(self):
        """The status code of the client's (masked) Close frame, or None."""
        data = self.received
        while len(data) >= 6:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            if not data[1] & 0x80 or n > 125:
                return None
            mask, payload = data[2:6], data[6:6 + n]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            data = data[6 + n:]
        return None


def answer_101(key, accept=None, extra=""):
    accept = accept_for(key) if accept is None else accept
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n").encode()


class HandshakeTest(WsxTestCase):
    def serve(self, answer, close_after_answer=False):
        s = ScriptedServer(answer, close_after_answer=close_after_answer)
        self.addCleanup(s.close)
        return s

    def test_frames_in_the_same_segment_as_the_answer_are_delivered(self):
        s = self.serve(lambda key: answer_101(key) + frame(1, b"hello") + frame(2, b"\x00\x01") +
                       frame(1, b"bye") + frame(8, struct.pack("!H", 1000)))
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{s.port}/", "--hex", timeout=15)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout.decode().splitlines(), ["hello", "0001", "bye"])
        s.thread.join(10)
        self.assertEqual(s.client_close_code(), 1000)

    def test_wrong_accept_is_a_failed_upgrade(self):
        s = self.serve(lambda key: answer_101(key, accept=accept_for("not-the-key")))
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "Sec-WebSocket-Accept")

    def test_answer_without_upgrade_websocket_is_a_failed_upgrade(self):
        s = self.serve(lambda key: answer_101(key).replace(b"Upgrade: websocket\r\n", b"Upgrade: h2c\r\n"))
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "upgrade with", "Upgrade")

    def test_extension_not_offered_is_a_failed_upgrade(self):
        s = self.serve(lambda key: answer_101(key, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "extension that was not offered", "permessage-deflate")

    def test_masked_server_frame_fails_with_1002(self):
        s = self.serve(lambda key: answer_101(key) + frame(1, b"first") + frame(1, b"masked", mask=b"\x01\x02\x03\x04"))
        r = self.wsx_open_stdin("connect", f"ws://127.0.0.1:{s.port}/", timeout=15)
        self.assertExit(r, 7)
        self.assertEqual(r.stdout.decode().splitlines(), ["first"])
        s.thread.join(10)
        self.assertEqual(s.client_close_code(), 1002)

    def test_tls_alert_instead_of_an_answer_says_use_wss(self):
        # What a TLS server may send back for a plaintext request: a fatal alert record.
        s = self.serve(lambda key: b"\x15\x03\x03\x00\x02\x02\x46", close_after_answer=True)
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertEqual(self.error_lines(r), [
            f"wsx: error: upgrade with ws://127.0.0.1:{s.port}/ failed: the server answered with TLS (use wss://)"])

    def test_tls_alert_with_compression_says_use_wss(self):
        # With --compress the upgrade is read by the same code: the same answer.
        s = self.serve(lambda key: b"\x15\x03\x03\x00\x02\x02\x46", close_after_answer=True)
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", "--compress", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertEqual(self.error_lines(r), [
            f"wsx: error: upgrade with ws://127.0.0.1:{s.port}/ failed: the server answered with TLS (use wss://)"])

    def test_redirect_names_its_location(self):
        s = self.serve(lambda key: b"HTTP/1.1 302 Found\r\nLocation: wss://example.test/ws?a=1\r\n"
                                   b"Content-Length: 0\r\n\r\n")
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertEqual(self.error_lines(r), [
            f"wsx: error: upgrade rejected by ws://127.0.0.1:{s.port}/: HTTP 302 Found (it redirects to "
            "wss://example.test/ws?a=1: follow it with -L)"])

    def test_redirect_location_is_escaped(self):
        s = self.serve(lambda key: b"HTTP/1.1 301 Moved Permanently\r\nLocation: /ws\xe2\x80\xaex\r\n"
                                   b"Content-Length: 0\r\n\r\n")
        r = self.wsx("connect", f"ws://127.0.0.1:{s.port}/", input=b"x\n", timeout=15)
        self.assertExit(r, 6)
        self.assertOneError(r, "HTTP 301 Moved Permanently", "it redirects to /ws")
        line = self.error_lines(r)[0]
        self.assertNotIn("\u202e", line)
        self.assertIn("/ws\\u202e", line)


if __name__ == "__main__":
    wsxtest.main()
