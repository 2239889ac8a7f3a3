"""wsx proxy: an upgrade request the proxy will refuse (bad Sec-WebSocket-Version, no
Sec-WebSocket-Key) is answered at once, as `wsx serve` answers it, and no upstream is
connected on its behalf."""
import socket

import serve_helpers
import wsxtest
from proxy_helpers import RawUpstream, start_proxy


def raw_request(url, fields):
    host, port = serve_helpers.host_port(url)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                   "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split()[1]), head


class InvalidUpgradeTest(wsxtest.WsxTestCase):
    def test_refused_before_any_upstream_is_connected(self):
        up = RawUpstream()
        self.addCleanup(up.close)
        # Were an upstream connected first, the client would wait the connect timeout, then get 502.
        _, url = start_proxy(self, "--to", up.url, "--health-interval", "1h", "--connect-timeout", "3s")
        cases = [({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"}, 426),
                 ({"Sec-WebSocket-Version": "13"}, 400),
                 ({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, 400)]
        for fields, status in cases:
            with self.subTest(fields=fields):
                got, head = raw_request(url, fields)
                self.assertEqual(got, status, head)
                if status == 426:
                    self.assertIn("Sec-WebSocket-Version: 13", head)
        up.listener.settimeout(0)
        with self.assertRaises(BlockingIOError, msg="no connection reached the upstream"):
            up.listener.accept()


if __name__ == "__main__":
    wsxtest.main()
