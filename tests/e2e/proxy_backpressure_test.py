"""wsx proxy backpressure, both ways: a side that does not read stops the proxy reading from the
other side (README: when more than min(1 MiB, send queue limit / 2) waits for one side, reading
from the other pauses), so the sender there is blocked by TCP flow control instead of filling
the proxy's memory or overflowing its send queue; and nothing is lost once the reader resumes.

The evidence is the flow itself, not a memory reading: the sender (a scripted peer pouring as
fast as its socket takes data, or a non-blocking client) stops making progress after a bounded
amount, far below what it tried to send, and the kernel's queues (/proc/net/tcp) show where the
data waits: the proxy's send queue towards the reader is full and what the sender sent lies
unread in the proxy's receive queue."""
import signal
import socket
import time

import wsxtest
from peer_tools import RawClient, event_lines, sockets_to, start_raw_server, tcp_socket
from proxy_helpers import start_proxy
from wsxtest import rss_kib

MiB = 1 << 20
TRIED = 256 * MiB    # what the sender tries to push through
BOUND = 32 * MiB     # what socket buffers and the proxy's queues may hold on the way (seen: 7-9 MiB)
QUIET = 1.0          # no progress for this long: the sender is blocked


def plateau(events, prefix, quiet=QUIET, timeout=30.0):
    """The last line starting with `prefix` once no new one came for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen, since = 0, time.monotonic()
    while True:
        lines = event_lines(events, prefix)
        now = time.monotonic()
        if len(lines) != seen:
            seen, since = len(lines), now
        elif lines and now - since >= quiet:
            return lines[-1]
        if now > deadline:
            raise AssertionError(f"still making progress after {timeout}s: {lines[-1:]}")
        time.sleep(0.02)  # poll interval of a bounded wait for a condition


class BackpressureTest(wsxtest.WsxTestCase):
    def proxy(self, upstream_port):
        proxy, url = start_proxy(self, "--to", f"ws://127.0.0.1:{upstream_port}", "--send-queue-limit", "4MiB",
                                 "--overflow", "close", "--health-interval", "1h")
        return proxy, int(url.rsplit(":", 1)[1])

    def test_a_client_that_never_reads_ends_with_its_upstream(self):
        # An echo upstream; the client sends until its writes block and never reads. The upstream
        # gives up on the proxy (1008: its send queue is full; no Close within its close timeout)
        # and drops TCP. The proxy's writes to it then fail while it reads from neither side (each
        # waits for the other), and it must still end the client's connection (1014, after its
        # own close timeout) rather than keep it, and its memory, until shutdown.
        up = self.start([wsxtest.WSX, "serve", "127.0.0.1:0"])
        up_url = up.wait_for(r"listening on (ws://127\.0\.0\.1:\d+)").group(1)
        up_log = wsxtest.LineCollector(up.proc.stderr)
        proxy, url = start_proxy(self, "--to", up_url, "--health-interval", "1h")
        client = RawClient(int(url.rsplit(":", 1)[1]), rcvbuf=4096)
        self.addCleanup(client.close)
        client.sock.settimeout(0.5)
        frame = RawClient.frame(0x2, b"y" * 60000, key=b"\0\0\0\0")
        # Keep the stream well formed (a send may take part of a frame) and keep pushing until
        # the upstream gives up: a timeout only means the client is blocked this round.
        gave_up = lambda ls: any(b"code=1008 " in l for l in ls)
        deadline = time.monotonic() + 30
        offset, blocked = 0, False
        while not gave_up(up_log.lines) and time.monotonic() < deadline:
            try:
                offset = (offset + client.sock.send(frame[offset:])) % len(frame)
            except socket.timeout:
                blocked = True
        self.assertTrue(blocked, "the client's writes never blocked")
        up_log.wait_until(gave_up, 1, "the upstream's 1008")
        proxy.wait_for(r"code=1014 .*upstream failed", 30)
        # The proxy must really have ended the client's connection, not just logged it.
        deadline = time.monotonic() + 15
        ended = False
        while not ended and time.monotonic() < deadline:
            try:
                ended = client.sock.recv(65536) == b""
            except socket.timeout:
                pass
            except ConnectionResetError:
                ended = True
        self.assertTrue(ended, "the client's connection was still open after the proxy's 1014")
        t0 = time.monotonic()
        self.assertEqual(proxy.stop(signal.SIGTERM, timeout=10), 0, proxy.rest_of_stderr())
        self.assertLess(time.monotonic() - t0, 4, "the proxy still had a connection to drain")

    def test_a_stalled_client_pauses_its_upstream(self):
        # The upstream pours TRIED bytes at the client as fast as its socket takes them.
        up, up_port, events = start_raw_server(self, "--mode", "pour", "--total", str(TRIED),
                                               "--frame-size", str(MiB), "--sndbuf", str(64 * 1024))
        proxy, proxy_port = self.proxy(up_port)
        base = rss_kib(proxy.proc.pid)
        client = RawClient(proxy_port, rcvbuf=64 * 1024)
        self.addCleanup(client.close)
        # The client reads nothing: the upstream's writes must stop after what the buffers hold.
        sent = int(plateau(events, "sent ").split()[2])
        self.assertLess(sent, BOUND, f"the upstream wrote {sent} bytes into a client that reads nothing")
        # Where the data waits: the proxy's send queue to the client is full and it has stopped
        # reading the upstream, whose own send queue is full too.
        to_client = tcp_socket(proxy_port, client.port)
        from_up = sockets_to(up_port)
        self.assertIsNotNone(to_client)
        self.assertEqual(len(from_up), 1, from_up)
        up_side = tcp_socket(up_port, from_up[0]["local_port"])
        self.assertGreater(to_client["tx_queue"], 0, f"proxy -> client {to_client}")
        self.assertGreater(from_up[0]["rx_queue"], 0, f"proxy <- upstream unread {from_up[0]}")
        self.assertGreater(up_side["tx_queue"], 0, f"upstream -> proxy {up_side}")
        if not wsxtest.SANITIZED:
            grown = rss_kib(proxy.proc.pid) - base
            self.assertLess(grown, 32 * 1024, f"proxy grew by {grown} KiB")
        # Then the client reads, and everything arrives: paused, not dropped (and the 4 MiB
        # queue limit with --overflow close never tripped).
        self.assertEqual(client.recv_bytes(TRIED, timeout=60), TRIED)

    def test_a_stalled_upstream_pauses_its_client(self):
        # The upstream counts what it receives; stopped (SIGSTOP), it reads nothing, and its
        # socket keeps only a 64 KiB receive buffer.
        up, up_port, events = start_raw_server(self, "--mode", "sink", "--rcvbuf", str(64 * 1024))
        proxy, proxy_port = self.proxy(up_port)
        base = rss_kib(proxy.proc.pid)
        client = RawClient(proxy_port, sndbuf=64 * 1024)
        self.addCleanup(client.close)
        events.wait_until(lambda ls: any(l.startswith(b"open ") for l in ls), what="the upstream connection")
        up.freeze()
        self.addCleanup(up.proc.send_signal, signal.SIGKILL)
        # The client writes 1 MiB messages without blocking: it must stall well before TRIED.
        chunk = RawClient.frame(0x2, b"\0" * MiB, key=b"\0\0\0\0")
        written, stalled = client.write_until_stalled(chunk, TRIED, quiet=QUIET, timeout=60)
        self.assertTrue(stalled, f"the proxy took all {written} bytes the client tried to send")
        self.assertLess(written, BOUND, f"the proxy took {written} bytes for an upstream that reads nothing")
        from_client = tcp_socket(proxy_port, client.port)
        to_up = sockets_to(up_port)
        self.assertEqual(len(to_up), 1, to_up)
        self.assertGreater(to_up[0]["tx_queue"], 0, f"proxy -> upstream {to_up[0]}")
        self.assertGreater(from_client["rx_queue"], 0, f"proxy <- client unread {from_client}")
        if not wsxtest.SANITIZED:
            grown = rss_kib(proxy.proc.pid) - base
            self.assertLess(grown, 32 * 1024, f"proxy grew by {grown} KiB")
        # The upstream resumes: the rest of the last message goes, then a "report", and the
        # upstream has received every byte the client wrote.
        up.proc.send_signal(signal.SIGCONT)
        client.sock.sendall(chunk[written % len(chunk):] if written % len(chunk) else b"")
        messages = (written + len(chunk) - 1) // len(chunk)
        client.send_frame(0x1, b"report")
        events.wait_until(lambda ls: any(l.startswith(b"received ") for l in ls), 60, "the upstream's count")
        self.assertEqual(event_lines(events, "received ")[0].split()[2:], [str(messages), str(messages * MiB)])


if __name__ == "__main__":
    wsxtest.main()
