"""Broadcast server: every message received is sent to every other connected client.
Prints 'listening on 127.0.0.1:PORT' (or, with --unix PATH, 'listening on unix:PATH') when
ready and 'connected' for each client. --compress accepts permessage-deflate."""
import argparse
import asyncio

import websockets

clients = set()


async def handler(ws, path=None):
    clients.add(ws)
    print("connected", flush=True)
    try:
        async for msg in ws:
            websockets.broadcast([c for c in clients if c is not ws], msg)
    finally:
        clients.discard(ws)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--unix", metavar="PATH")
    p.add_argument("--compress", action="store_true")
    a = p.parse_args()
    compression = "deflate" if a.compress else None
    if a.unix:
        async with websockets.unix_serve(handler, a.unix, compression=compression):
            print(f"listening on unix:{a.unix}", flush=True)
            await asyncio.Future()
    async with websockets.serve(handler, "127.0.0.1", 0, compression=compression) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
