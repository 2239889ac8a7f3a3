"""Broadcast server: every message received is sent to every other connected client.
Prints 'listening on 127.0.0.1:PORT' when ready and 'connected' for each client."""
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
    async with websockets.serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
