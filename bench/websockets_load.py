"""The load of examples/load.evt made by a plain Python client on the `websockets` library,
written for the benchmark: C connections at once, each doing N sequential JSON round trips
({user, n} and the reply checked for its n). The reference evt's load generator is
measured against. Prints one JSON line: replies, failed.
Usage: websockets_load.py URL C N [--loop uvloop|asyncio] [--hold]

With --hold it opens the C connections, prints "ready", and closes them when a line comes
on standard input (idle memory per connection)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def user(url: str, ident: int, rounds: int) -> tuple[int, int]:
    replies = failed = 0
    async with connect(url, compression=None, max_size=None, open_timeout=300) as ws:
        for n in range(rounds):
            await ws.send(json.dumps({"user": ident, "n": n}))
            try:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            except (TimeoutError, ValueError):
                failed += 1
                continue
            if reply.get("n") == n:
                replies += 1
            else:
                failed += 1
    return replies, failed


async def load(url: str, users: int, rounds: int) -> None:
    results = await asyncio.gather(*(user(url, i + 1, rounds) for i in range(users)))
    print(json.dumps({"replies": sum(r for r, _ in results),
                      "failed": sum(f for _, f in results)}))


async def hold(url: str, users: int) -> None:
    conns = [await connect(url, compression=None, open_timeout=300) for _ in range(users)]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(c.close() for c in conns))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("users", type=int)
    ap.add_argument("rounds", type=int)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    ap.add_argument("--hold", action="store_true")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(hold(a.url, a.users) if a.hold else load(a.url, a.users, a.rounds))
