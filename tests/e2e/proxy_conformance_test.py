"""The serve conformance cases (serve_conformance_test.py) through `wsx proxy` in front of a
`wsx serve`: the proxy's client side is the same protocol core, so a client that breaks RFC
6455 is failed by the proxy itself, with the same close codes, however its bytes are split;
valid traffic (fragments, pings between them, closes) reaches the server behind and comes back.
Liveness covers both processes: idle, a fresh client echoed through both, SIGTERM stops both."""
import socket

import serve_conformance_test as conformance
import wsxtest
from raw_peer import Target


class ProxyConformanceTest(conformance.ConformanceTest):
    @classmethod
    def start_target(cls, *extra):
        # `extra` (a message size limit) goes to both: the proxy is the first to see the message.
        back = wsxtest.Process([wsxtest.WSX, "serve", "127.0.0.1:0", "-q", *extra])
        try:
            up = back.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
            front = wsxtest.Process([wsxtest.WSX, "proxy", "--listen", "ws://127.0.0.1:0", "--to", up,
                                     "--health-interval", "1h", *extra])
        except BaseException:
            back.stop()
            raise
        try:
            url = front.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        except BaseException:
            front.stop()
            back.stop()
            raise
        return Target(url, [front, back])

    def test_messages_then_end_of_stream_in_one_segment(self):
        # Differs from serve: a client that ends TCP without a Close has gone away abnormally,
        # and the WebSocket link to the server behind has no half-close to pass that on. The
        # proxy ends both sides at once; echoes already on their way may or may not make it.
        # What must hold: whatever comes back is in order, and the connection ends promptly.
        w = self.ws()
        w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        for i in range(3):
            w.send_text(f"last-{i}")
        w.sock.shutdown(socket.SHUT_WR)
        got = []
        for _ in range(3):
            try:
                m = w.recv_message()
            except (EOFError, ConnectionResetError):
                break
            if m[0] == "close":
                break
            got.append(m)
        self.assertEqual(got, [(1, f"last-{i}".encode()) for i in range(len(got))])
        self.assertTrue(w.wait_eof(5))


class ProxyConformanceBytewiseTest(ProxyConformanceTest):
    mode = "bytes"


class ProxyConformanceRandomChunksTest(ProxyConformanceTest):
    mode = "random"


if __name__ == "__main__":
    wsxtest.main()
