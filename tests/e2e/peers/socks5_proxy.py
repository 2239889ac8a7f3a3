#!/usr/bin/python3
"""A small SOCKS5 proxy (RFC 1928, RFC 1929) for end-to-end tests.

Listens on 127.0.0.1, supports the no-auth and username/password methods, the CONNECT
command only, and IPv4, domain and IPv6 targets. Only loopback targets (127.0.0.0/8, ::1,
localhost) are allowed; others get reply 0x02 (not allowed by ruleset). Prints
`listening on 127.0.0.1:PORT` once ready, then one line `CONNECT host:port` per CONNECT
request received (IPv6 as [addr]:port; stdout, flushed). With --auth user:pass, only the
username/password method is accepted and the credentials must match.
Diagnostics go to stderr. Runs until killed.
"""
import argparse
import asyncio
import errno
import ipaddress
import socket
import struct
import sys

NO_AUTH, USER_PASS, NO_METHOD = 0x00, 0x02, 0xFF
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, NET_UNREACHABLE, HOST_UNREACHABLE, REFUSED = 0, 1, 2, 3, 4, 5
COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 7, 8


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reply(code, bound=None):
    """VER REP RSV ATYP BND.ADDR BND.PORT, with the bound address when there is one."""
    if bound is None:
        return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
    addr = ipaddress.ip_address(bound[0])
    atyp = 1 if addr.version == 4 else 4
    return bytes([5, code, 0, atyp]) + addr.packed + struct.pack("!H", bound[1])


def failure_code(error):
    if isinstance(error, ConnectionRefusedError):
        return REFUSED
    if isinstance(error, socket.gaierror):
        return HOST_UNREACHABLE
    if getattr(error, "errno", None) in (errno.ENETUNREACH,):
        return NET_UNREACHABLE
    if getattr(error, "errno", None) in (errno.EHOSTUNREACH,):
        return HOST_UNREACHABLE
    return GENERAL_FAILURE


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


class Proxy:
    def __init__(self, auth):
        self.credentials = None
        if auth is not None:
            user, _, password = auth.partition(":")
            self.credentials = (user.encode(), password.encode())

    async def handle(self, reader, writer):
        try:
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            print(f"client error: {e!r}", file=sys.stderr, flush=True)
        writer.close()

    async def finish(self, writer, data):
        writer.write(data)
        try:
            await writer.drain()
        except ConnectionError:
            pass

    async def serve(self, reader, writer):
        version, count = await reader.readexactly(2)
        if version != 5:
            print(f"not SOCKS5: version {version}", file=sys.stderr, flush=True)
            return
        methods = await reader.readexactly(count)
        wanted = USER_PASS if self.credentials else NO_AUTH
        if wanted not in methods:
            return await self.finish(writer, bytes([5, NO_METHOD]))
        writer.write(bytes([5, wanted]))
        await writer.drain()

        if wanted == USER_PASS:
            _, user_len = await reader.readexactly(2)
            user = await reader.readexactly(user_len)
            (password_len,) = await reader.readexactly(1)
            password = await reader.readexactly(password_len)
            if (user, password) != self.credentials:
                return await self.finish(writer, bytes([1, 1]))
            writer.write(bytes([1, 0]))
            await writer.drain()

        version, command, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif atyp == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("utf-8", "replace")
        else:
            return await self.finish(writer, reply(ADDRESS_NOT_SUPPORTED))
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if command != 1:
            print(f"command {command} {shown}", file=sys.stderr, flush=True)
            return await self.finish(writer, reply(COMMAND_NOT_SUPPORTED))
        print(f"CONNECT {shown}", flush=True)
        if not is_loopback(host):
            return await self.finish(writer, reply(NOT_ALLOWED))
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError as e:
            print(f"upstream {shown}: {e}", file=sys.stderr, flush=True)
            return await self.finish(writer, reply(failure_code(e)))

        bound = up_writer.get_extra_info("sockname")
        writer.write(reply(SUCCEEDED, bound[:2]))
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        up_writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auth", metavar="USER:PASS", help="require these credentials")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    args = parser.parse_args()
    proxy = Proxy(args.auth)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
