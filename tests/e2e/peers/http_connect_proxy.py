#!/usr/bin/python3
"""A small HTTP CONNECT proxy for end-to-end tests.

Listens on 127.0.0.1 and tunnels only to loopback targets (127.0.0.0/8, ::1, localhost);
other targets get 403. Prints `listening on 127.0.0.1:PORT` once ready, then one line
`CONNECT host:port` per CONNECT request received (stdout, flushed), so a test can tell
that its traffic went through the proxy. With --auth user:pass, a request without the
matching Proxy-Authorization: Basic header gets 407 with Proxy-Authenticate.
Diagnostics go to stderr. Runs until killed.
"""
import argparse
import asyncio
import base64
import ipaddress
import sys

MAX_HEAD = 16 * 1024


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_target(target):
    """'host:port' or '[v6]:port' -> (host, port), or None."""
    if target.startswith("["):
        close = target.find("]")
        if close < 0 or target[close + 1:close + 2] != ":":
            return None
        host, port = target[1:close], target[close + 2:]
    else:
        host, sep, port = target.rpartition(":")
        if not sep or ":" in host:
            return None
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


async def pipe(reader, writer):
    """Copies until EOF, then half-closes the other side."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def respond(writer, status, reason, headers=()):
    lines = [f"HTTP/1.1 {status} {reason}"] + list(headers)
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    writer.write("\r\n".join(lines).encode())
    try:
        await writer.drain()
    except ConnectionError:
        pass
    writer.close()


class Proxy:
    def __init__(self, auth):
        self.expected_auth = None
        if auth is not None:
            self.expected_auth = "Basic " + base64.b64encode(auth.encode()).decode()

    async def handle(self, reader, writer):
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            print(f"client error: {e!r}", file=sys.stderr, flush=True)
            writer.close()

    async def serve(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return await respond(writer, 400, "Bad Request")
        method, target, _ = parts
        if method != "CONNECT":
            return await respond(writer, 405, "Method Not Allowed", ["Allow: CONNECT"])
        print(f"CONNECT {target}", flush=True)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()

        if self.expected_auth is not None and \
                headers.get("proxy-authorization") != self.expected_auth:
            return await respond(writer, 407, "Proxy Authentication Required",
                                 ['Proxy-Authenticate: Basic realm="wsx-test"'])
        parsed = split_target(target)
        if parsed is None:
            return await respond(writer, 400, "Bad Request")
        host, port = parsed
        if not is_loopback(host):
            return await respond(writer, 403, "Forbidden")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError as e:
            print(f"upstream {target}: {e}", file=sys.stderr, flush=True)
            return await respond(writer, 502, "Bad Gateway")

        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        # Bytes the client sent behind its request are already in `reader` and go upstream first.
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        up_writer.close()
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", metavar="USER:PASS", help="require these credentials")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    args = parser.parse_args()
    proxy = Proxy(args.auth)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, limit=MAX_HEAD)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
