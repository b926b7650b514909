"""The `websockets` library's echo server (asyncio, with its C speedups), the reference of
the benchmark. Usage: websockets_server.py PORT [--loop uvloop|asyncio]"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import serve


async def echo(ws) -> None:  # type: ignore[no-untyped-def]
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    # its defaults (keep-alive pings every 20 s, like evt's), but no compression (evt's
    # default) and room for the 64 KiB workload
    async with serve(echo, "127.0.0.1", port, max_size=2**24, compression=None):
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop

        uvloop.run(main(a.port))
    else:
        asyncio.run(main(a.port))
