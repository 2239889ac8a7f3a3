"""wsx serve --stdio: server stdin lines fan out to every client, client messages go to
stdout; stdin EOF closes the clients; --oneshot exits after the first client."""
import fcntl
import struct
import subprocess
import termios

import wsxtest
from peer_tools import wait_until
from serve_helpers import LineReader, RawWS


def pipe_unread(stream):
    """Bytes written to a pipe (through its write end `stream`) that its reader has not read."""
    return struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


class StdioTest(wsxtest.WsxTestCase):
    def start_stdio(self, *extra):
        p = self.start([wsxtest.WSX, "serve", "127.0.0.1:0", "--stdio", *extra], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        url = p.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        return p, url

    def test_fan_out_to_three_clients_and_back(self):
        p, url = self.start_stdio()
        clients = [RawWS(url) for _ in range(3)]
        # Each client speaks first; seeing all three lines on stdout proves all three are registered.
        for i, c in enumerate(clients):
            c.send_text(f"from {i}")
        out = LineReader(p.proc.stdout)
        seen = {out.line() for _ in range(3)}
        self.assertEqual(seen, {"from 0", "from 1", "from 2"})
        p.proc.stdin.write(b"hello all\nsecond line\n")
        p.proc.stdin.flush()
        for c in clients:
            self.assertEqual(c.recv_message(), (1, b"hello all"))
            self.assertEqual(c.recv_message(), (1, b"second line"))
        # stdin EOF: every client gets Close 1000, then the server exits 0.
        p.proc.stdin.close()
        for c in clients:
            code, reason = c.expect_close()
            self.assertEqual(code, 1000)
            c.send_close()
            c.close()
        self.assertEqual(p.proc.wait(10), 0)

    def test_invalid_utf8_lines_go_as_binary(self):
        # A text message must be UTF-8: a line that is not goes as a binary message, and the
        # lines after it still arrive.
        p, url = self.start_stdio()
        c = RawWS(url)
        c.send_text("ready")
        self.assertEqual(LineReader(p.proc.stdout).line(), "ready")  # registered
        p.proc.stdin.write(b"caf\xc3\xa9\n\xff\xfebad\nok\n")
        p.proc.stdin.flush()
        self.assertEqual(c.recv_message(), (1, "café".encode()))
        self.assertEqual(c.recv_message(), (2, b"\xff\xfebad"))
        self.assertEqual(c.recv_message(), (1, b"ok"))

    def test_long_line_is_split_at_max_message_size(self):
        p, url = self.start_stdio("--max-message-size", "1MiB")
        c = RawWS(url)
        c.send_text("ready")
        self.assertEqual(LineReader(p.proc.stdout).line(), "ready")  # registered
        p.proc.stdin.write(b"a" * 2_500_000 + b"\n")
        p.proc.stdin.flush()
        got = [c.recv_message() for _ in range(3)]
        self.assertEqual([(op, len(m)) for op, m in got], [(1, 1 << 20), (1, 1 << 20), (1, 2_500_000 - (2 << 20))])
        c.close()

    def test_held_lines_are_bounded_by_the_send_queue_limit(self):
        # Held lines count against --send-queue-limit; beyond it the oldest are dropped (the
        # newest line always stays). 13 bytes hold "second" and "third" (11) but not "first" as
        # well (16), and leave room for the frame headers when they are sent on. Only lines
        # really held before the client came can be dropped: the client that connects after the
        # server read all three gets the last two.
        p, url = self.start_stdio("--oneshot", "--send-queue-limit", "13")
        p.proc.stdin.write(b"first\nsecond\nthird\n")
        p.proc.stdin.flush()
        wait_until(lambda: pipe_unread(p.proc.stdin) == 0, 10, "the server to read its stdin")
        c = RawWS(url)
        self.assertEqual(c.recv_message(), (1, b"second"))
        self.assertEqual(c.recv_message(), (1, b"third"))
        p.proc.stdin.write(b"live\n")
        p.proc.stdin.flush()
        self.assertEqual(c.recv_message(), (1, b"live"), "nothing else was held")

    def test_lines_before_first_client_are_held(self):
        p, url = self.start_stdio("--oneshot")
        p.proc.stdin.write(b"early\n")
        p.proc.stdin.flush()
        # The server has taken the line out of the pipe before any client exists: what the
        # client gets next was held for it, not fanned out to a client already there. (Were
        # lines read with nobody connected dropped, the client would get nothing.)
        wait_until(lambda: pipe_unread(p.proc.stdin) == 0, 10, "the server to read its stdin")
        c = RawWS(url)
        self.assertEqual(c.recv_message(), (1, b"early"))
        # Only one client with --oneshot.
        other = RawWS(url, expect_upgrade=False)
        self.assertEqual(other.status, 503)
        c.send_close()
        self.assertEqual(c.expect_close()[0], 1000)
        c.close()
        self.assertEqual(p.proc.wait(10), 0)


if __name__ == "__main__":
    wsxtest.main()
