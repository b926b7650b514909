"""A write that does not yield, where the stream allows it (it knows nothing of evt).

anyio's `SocketStream.send` on the asyncio backend costs two checkpoints per call, one of
them a full trip round the event loop in a shielded cancel scope: about a fifth of a
request/reply client's CPU. When the transport is not paused (its buffer is below the
high-water mark) the write itself is `transport.write(data)`, which never blocks: that is
what the `websockets` library does for every frame. `direct_writer` gives such a write for a
plain TCP stream of anyio's asyncio backend (uvloop's transports included), or None for any
other stream (TLS, another backend, an anyio whose internals changed), which then goes
through `send` as before. It returns False, having written nothing, whenever `send` would
have to wait or raise: the caller then awaits `send`, which waits for the drain or raises.

It reads anyio's private attributes (`_transport`, `_protocol`, `_closed`), checked once per
connection; tests/wire/test_direct_write.py fails if it stops engaging or writes while the
transport is paused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BACKEND = "anyio._backends._asyncio"


def direct_writer(stream: Any) -> Callable[[bytes], bool] | None:
    if type(stream).__module__ != _BACKEND or type(stream).__name__ != "SocketStream":
        return None
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    event = getattr(protocol, "write_event", None)
    if transport is None or event is None or not hasattr(stream, "_closed") \
            or not hasattr(protocol, "exception"):
        return None
    write = transport.write
    is_closing = transport.is_closing

    def write_now(data: bytes) -> bool:
        # the protocol's event is looked up each time: anyio makes a new one when it pauses
        if not protocol.write_event.is_set() or stream._closed or \
                protocol.exception is not None or is_closing():
            return False
        write(data)
        return True
    return write_now
