"""Echo server that stalls once: the first message after --after seconds blocks the whole
server for --stall seconds. Prints 'listening on 127.0.0.1:PORT' when ready."""
import argparse
import asyncio
import time

import websockets

parser = argparse.ArgumentParser()
parser.add_argument("--after", type=float, default=0.5)
parser.add_argument("--stall", type=float, default=0.2)
args = parser.parse_args()

state = {"start": None, "stalled": False}


async def echo(ws, path=None):
    async for msg in ws:
        now = time.monotonic()
        if state["start"] is None:
            state["start"] = now
        if not state["stalled"] and now - state["start"] >= args.after:
            state["stalled"] = True
            time.sleep(args.stall)  # blocks the event loop: every connection stalls
        await ws.send(msg)


async def main():
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
