#!/usr/bin/python3
"""An independent WebSocket server (python3-websockets) for end-to-end tests of `wsx connect`.

Listens on 127.0.0.1 (port 0 unless --port), prints `listening on 127.0.0.1:PORT` on stdout
once ready, then one line per event (stdout, flushed):
  `open PATH`            a connection completed its handshake
  `extensions NAMES`     negotiated extensions (`-` when none)
  `message text|binary LENGTH`
  `closed CODE REASON`   the connection ended (CODE as seen by the server; 1006 when dropped)
  `frame OPCODE FIN RSV1 LENGTH HEX`  with --log-frames: each frame as it came off the wire
                         (OPCODE by name, e.g. TEXT, CONT; the payload unmasked, still compressed)
Modes (--mode):
  echo     send every message back with the same opcode (default)
  info     first send one JSON text message describing the handshake (path, request headers
           with lower-case names, subprotocol, extensions, client certificate subject), then echo
  close    close with --close-code/--close-reason after --close-after messages (0: at once)
  drop     drop the TCP connection without a Close frame after --close-after messages
  silent   complete the handshake, then never send a message
  reject   answer the upgrade with --status, --body and any --header NAME:VALUE (plain HTTP)
  burst    on each received message "N", send N numbered text messages "0".."N-1"
TLS: --tls-cert/--tls-key; --client-ca FILE requires a client certificate signed by it.
--unix PATH listens on a unix socket instead (and prints `listening on unix:PATH`).
Runs until killed.
"""
import argparse
import asyncio
import http
import json
import ssl
import struct
import sys

import websockets
from websockets import frames
from websockets.legacy.framing import Frame
from websockets.legacy.server import WebSocketServerProtocol


def log(*parts):
    print(*parts, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", default="echo", choices=["echo", "info", "close", "drop", "silent", "reject", "burst"])
    p.add_argument("--close-code", type=int, default=1000)
    p.add_argument("--close-reason", default="")
    p.add_argument("--close-after", type=int, default=0, help="messages to echo before close/drop")
    p.add_argument("--status", type=int, default=403)
    p.add_argument("--body", default="forbidden")
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                   help="a header field to add to a reject answer (repeatable)")
    p.add_argument("--subprotocol", action="append", default=[], help="supported subprotocols, in preference order")
    p.add_argument("--no-compression", action="store_true", help="refuse permessage-deflate")
    p.add_argument("--ping-interval", type=float, default=None, help="server pings every N seconds")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--client-ca")
    p.add_argument("--unix", metavar="PATH")
    p.add_argument("--log-frames", action="store_true", help="log each received frame (see above)")
    return p.parse_args()


class FrameLogging(WebSocketServerProtocol):
    """Reads each frame as websockets does, but logs it before any extension decodes it."""

    async def read_frame(self, max_size):
        read = self.reader.readexactly
        head1, head2 = await read(2)
        length = head2 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await read(8))
        if max_size is not None and length > max_size:
            raise websockets.exceptions.PayloadTooBig(f"over size limit ({length} > {max_size} bytes)")
        if not head2 & 0x80:
            raise websockets.exceptions.ProtocolError("incorrect masking")
        key = await read(4)
        data = bytes(b ^ key[i % 4] for i, b in enumerate(await read(length)))
        fin, rsv1 = bool(head1 & 0x80), bool(head1 & 0x40)
        opcode = frames.Opcode(head1 & 0x0F)
        log("frame", opcode.name, int(fin), int(rsv1), length, data.hex())
        frame = frames.Frame(opcode, data, fin, rsv1, bool(head1 & 0x20), bool(head1 & 0x10))
        for extension in reversed(self.extensions):
            frame = extension.decode(frame, max_size=max_size)
        frame.check()
        return Frame(frame.fin, frame.opcode, frame.data, frame.rsv1, frame.rsv2, frame.rsv3)


async def main():
    a = parse_args()

    async def process_request(path, headers):
        if a.mode == "reject":
            extra = [tuple(part.strip() for part in h.split(":", 1)) for h in a.header]
            return http.HTTPStatus(a.status), [("Content-Type", "text/plain"), *extra], a.body.encode()
        return None

    async def handler(ws, path):
        log("open", path)
        log("extensions", " ".join(e.name for e in ws.extensions) or "-")
        try:
            if a.mode == "info":
                hdrs = {}
                for k, v in ws.request_headers.raw_items():
                    hdrs[k.lower()] = hdrs[k.lower()] + ", " + v if k.lower() in hdrs else v
                peer = ws.transport.get_extra_info("peercert")
                subject = None
                if peer:
                    subject = ",".join(f"{k}={v}" for rdn in peer.get("subject", ()) for k, v in rdn)
                await ws.send(json.dumps({
                    "path": path,
                    "headers": hdrs,
                    "subprotocol": ws.subprotocol,
                    "extensions": [e.name for e in ws.extensions],
                    "client_cert": subject,
                }))
            if a.mode in ("close", "drop") and a.close_after == 0:
                await finish(ws)
                return
            count = 0
            async for msg in ws:
                log("message", "binary" if isinstance(msg, bytes) else "text", len(msg))
                if a.mode == "silent":
                    continue
                if a.mode == "burst":
                    for i in range(int(msg)):
                        await ws.send(str(i))
                    continue
                await ws.send(msg)
                count += 1
                if a.mode in ("close", "drop") and count >= a.close_after:
                    await finish(ws)
                    return
        except websockets.ConnectionClosed:
            pass
        finally:
            code = ws.close_code if ws.close_code is not None else 1006
            log("closed", code, ws.close_reason or "")

    async def finish(ws):
        if a.mode == "close":
            await ws.close(a.close_code, a.close_reason)
        else:
            ws.transport.abort()
            await ws.wait_closed()

    ssl_ctx = None
    if a.tls_cert:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.client_ca:
            ssl_ctx.verify_mode = ssl.CERT_REQUIRED
            ssl_ctx.load_verify_locations(a.client_ca)

    options = dict(ssl=ssl_ctx, process_request=process_request, subprotocols=a.subprotocol or None,
                   compression=None if a.no_compression else "deflate", ping_interval=a.ping_interval, max_size=None)
    if a.log_frames:
        options["create_protocol"] = FrameLogging
    if a.unix:
        await websockets.unix_serve(handler, a.unix, **options)
        log(f"listening on unix:{a.unix}")
    else:
        server = await websockets.serve(handler, "127.0.0.1", a.port, **options)
        port = server.sockets[0].getsockname()[1]
        log(f"listening on 127.0.0.1:{port}")
    await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
