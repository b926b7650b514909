"""A plain anyio + wsproto echo server, written for the benchmark: the floor of evt's stack
(the same libraries, no language on top). Usage: plain_server.py PORT [--loop uvloop|asyncio]"""

from __future__ import annotations

import argparse

import anyio
from anyio.abc import ByteStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)


async def handle(stream: ByteStream) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    parts: list = []
    async with stream:
        while True:
            try:
                data = await stream.receive(65536)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            ws.receive_data(data)
            out = b""
            for ev in ws.events():
                if isinstance(ev, Request):
                    out += ws.send(AcceptConnection())
                elif isinstance(ev, TextMessage | BytesMessage):
                    parts.append(ev.data)
                    if ev.message_finished:
                        msg = parts[0] if len(parts) == 1 else type(parts[0])().join(parts)
                        parts = []
                        out += ws.send(type(ev)(data=msg))
                elif isinstance(ev, Ping):
                    out += ws.send(ev.response())
                elif isinstance(ev, CloseConnection):
                    out += ws.send(ev.response())
                    await stream.send(out)
                    return
            if out:
                await stream.send(out)


async def main(port: int) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    await listener.serve(handle)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    a = ap.parse_args()
    anyio.run(main, a.port, backend="asyncio",
              backend_options={"use_uvloop": a.loop == "uvloop"})
