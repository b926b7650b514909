"""A plain anyio + wsproto client doing request/response round trips, written for the
benchmark: the reference for the evt client. Prints one JSON line: rtt_per_s, total_s.
Usage: plain_client.py URL N SIZE [--loop uvloop|asyncio] [--warmup W]"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urlsplit

import anyio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage


async def main(url: str, n: int, size: int, warmup: int) -> None:
    parts = urlsplit(url)
    stream = await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send(ws.send(Request(host=parts.netloc, target=parts.path or "/")))
    opened = False
    while not opened:
        ws.receive_data(await stream.receive())
        opened = any(isinstance(ev, AcceptConnection) for ev in ws.events())
    payload = "x" * size
    t0 = 0.0
    for i in range(warmup + n):
        if i == warmup:
            t0 = time.perf_counter()
        await stream.send(ws.send(TextMessage(data=payload)))
        got = False
        while not got:
            ws.receive_data(await stream.receive())
            for ev in ws.events():
                if isinstance(ev, TextMessage) and ev.message_finished:
                    got = True
    total = time.perf_counter() - t0
    await stream.send(ws.send(CloseConnection(code=1000)))
    with anyio.move_on_after(2):
        while True:
            ws.receive_data(await stream.receive())
            if any(isinstance(ev, CloseConnection) for ev in ws.events()):
                break
    await stream.aclose()
    print(json.dumps({"rtt_per_s": n / total, "total_s": total}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("n", type=int)
    ap.add_argument("size", type=int)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    a = ap.parse_args()
    anyio.run(main, a.url, a.n, a.size, a.warmup, backend="asyncio",
              backend_options={"use_uvloop": a.loop == "uvloop"})
