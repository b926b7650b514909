"""The `websockets` library's client doing request/response round trips, written for the
benchmark: the reference the evt client is measured against (asyncio, its C speedups, its
defaults but compression off, as evt's client offers none). Prints one JSON line: rtt_per_s,
total_s. Usage: websockets_client.py URL N SIZE [--warmup W]"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect


async def main(url: str, n: int, size: int, warmup: int) -> None:
    payload = "x" * size
    async with connect(url, compression=None, ping_interval=None, max_size=None) as ws:
        t0 = 0.0
        for i in range(warmup + n):
            if i == warmup:
                t0 = time.perf_counter()
            await ws.send(payload)
            await ws.recv()
        total = time.perf_counter() - t0
    print(json.dumps({"rtt_per_s": n / total, "total_s": total}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("n", type=int)
    ap.add_argument("size", type=int)
    ap.add_argument("--warmup", type=int, default=1000)
    a = ap.parse_args()
    asyncio.run(main(a.url, a.n, a.size, a.warmup))
