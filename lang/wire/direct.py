"""A write that does not yield and a read that does not pause, where the stream allows it
(it knows nothing of evt).

anyio's `SocketStream.send` on the asyncio backend costs two checkpoints per call, one of
them a full trip round the event loop in a shielded cancel scope: about a fifth of a
request/reply client's CPU. When the transport is not paused (its buffer is below the
high-water mark) the write itself is `transport.write(data)`, which never blocks: that is
what the `websockets` library does for every frame. `direct_writer` gives such a write for a
plain TCP stream of anyio's asyncio backend (uvloop's transports included), or None for any
other stream (TLS, another backend, an anyio whose internals changed), which then goes
through `send` as before. It returns False, having written nothing, whenever `send` would
have to wait or raise: the caller then awaits `send`, which waits for the drain or raises.

Reading: anyio's `receive` resumes the transport's reading before each wait and pauses it
after (two epoll changes per read: two io_uring submissions per message under uvloop, about a
quarter of an echo server's system calls), so that nothing is read ahead of the reader.
`direct_reader` keeps reading on and bounds what is read ahead instead: the protocol's
`data_received` pauses the transport once READ_AHEAD bytes wait (TCP pushes back from there,
as before), and the reader resumes it when it has taken them. Anything unusual (end of
stream, an error, a closed stream) goes to anyio's `receive`, which raises as it always did.
A read that comes while the reader waits with nothing queued is handed to it as its wait's
result, not queued and signalled (a read that comes before the reader ran is queued behind
it, and one handed to a reader cancelled before it ran is put back at the queue's head).

While the reader waits with nothing queued, a read may be taken before it is queued:
`DirectReader.early` (set by the WebSocket while a sink that takes messages without waiting
is there) is offered each read first; when it takes it, the reader's task is not woken at
all (lang.wire.connection `_early`).

Connecting: `anyio.connect_tcp` runs Happy Eyeballs (a task group, a task and an event per
address, a cancel scope per attempt) even for a host that is an IP address, one address to
try: 117 us of CPU a connection against 35 us for the backend's own connect, which is
`loop.create_connection` as the `websockets` library calls it. `connect_tcp` takes that
path for an IP address and leaves a host name (several addresses maybe) to anyio.

The stream shortcuts read anyio's private attributes (`_transport`, `_protocol`, `_closed`),
checked once per connection, and the connect its private backend object (without it, anyio's
connect_tcp as before); tests/wire/test_direct_write.py fails if they stop engaging, if a
write happens while the transport is paused, or if more than READ_AHEAD is read ahead of a
blocked reader.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

try:  # anyio's backend object: private, so any change of it sends us back to connect_tcp
    from anyio._core._eventloop import get_async_backend as _get_async_backend
except ImportError:  # pragma: no cover - another anyio
    _get_async_backend = None

_BACKEND = "anyio._backends._asyncio"
# bytes the transport may read before the reader takes them. 256 KiB was exactly four 64 KiB
# frames and their headers: a peer pipelining four (bench/run.py's 64 KiB case) paused and
# resumed reading at random, two system calls each time, and the server's CPU per message
# went from 27 to 42 us in about half the runs; the websockets library reads up to 16
# messages ahead. A reader that is behind has at most this much (and one read) read for it.
READ_AHEAD = 512 * 1024


async def connect_tcp(host: str, port: int) -> anyio.abc.SocketStream:
    """A TCP connection to host:port: anyio.connect_tcp, without its Happy Eyeballs when the
    host is an IP address (see the module's docstring). Raises OSError as it does."""
    if _get_async_backend is not None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            return await _get_async_backend().connect_tcp(address.compressed, port)
    return await anyio.connect_tcp(host, port)


def _plain_socket_stream(stream: Any) -> bool:
    return type(stream).__module__ == _BACKEND and type(stream).__name__ == "SocketStream"


def direct_writer(stream: Any) -> Callable[[bytes], bool] | None:
    if not _plain_socket_stream(stream):
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


async def send_once(stream: anyio.abc.ByteStream, data: bytes) -> None:
    """`stream.send(data)` for a one-off write (a handshake's): written at once when the
    stream allows (direct_writer), without send's two checkpoints and trip round the loop."""
    write = direct_writer(stream)
    if write is None or not write(data):
        await stream.send(data)


class DirectReader:
    """A stream's one reader (see the module's docstring): `receive(max_bytes)`, and
    `early`, a callable the protocol offers each read to before it queues it, while the
    reader waits and nothing is queued: when it returns True it took the bytes (as the
    reader would have, only without a trip through the reader's task), and they are not
    queued. Whoever sets `early` sets it back to None when done (it is called from the
    event loop's callback: it must not raise or block)."""

    __slots__ = ("early", "receive")

    def __init__(self) -> None:
        self.early: Callable[[bytes], bool] | None = None
        self.receive: Callable[[int], Awaitable[bytes]] = _no_receive


async def _no_receive(max_bytes: int = 65536) -> bytes:  # pragma: no cover - replaced at once
    raise RuntimeError("no stream")


def direct_reader(stream: Any) -> DirectReader | None:
    """A reader for the stream's one reader that leaves reading on, or None."""
    if not _plain_socket_stream(stream):
        return None
    transport = getattr(stream, "_transport", None)
    protocol = getattr(stream, "_protocol", None)
    queue = getattr(protocol, "read_queue", None)
    if transport is None or queue is None or not hasattr(protocol, "read_event") \
            or not hasattr(protocol, "is_at_eof") or not hasattr(stream, "_closed") \
            or not all(hasattr(transport, m) for m in ("is_reading", "pause_reading",
                                                       "resume_reading", "set_protocol")):
        return None
    try:
        create_future = asyncio.get_running_loop().create_future
    except RuntimeError:  # pragma: no cover - made outside the loop: anyio's receive
        return None
    # The reader waits on a future of its own in the read event's waiters, which the event's
    # set() wakes (a read, the end, an error): asyncio.Event.wait looks the running loop up
    # for each wait, a getpid() system call on Python 3.11 (one a message, strace says).
    # Without that private list (another Python), Event.wait as anyio does.
    own_wait = type(getattr(protocol.read_event, "_waiters", None)) is deque
    original = protocol.data_received
    is_reading, pause, resume = transport.is_reading, transport.pause_reading, \
        transport.resume_reading
    slow = stream.receive
    reader = DirectReader()
    waiting = False  # the reader waits for a read, everything before it taken
    handed: Any = None  # the future it waits on (own_wait): a read is handed to it

    def data_received(data: bytes) -> None:
        if waiting and not queue:
            early = reader.early
            if early is not None and type(data) is bytes and early(data):
                return
            if handed is not None and type(data) is bytes and not handed.done():
                # the read is the waiting reader's future's result: not queued, the read
                # event not set (anyio's data_received and Event.set: a third of the
                # Python of a wake-up), nothing for the reader to take off the queue
                handed.set_result(data)
                return
        original(data)
        if len(queue) > 1 and sum(map(len, queue)) > READ_AHEAD and is_reading():
            pause()  # the reader is behind: from here the kernel's buffers and TCP hold back

    protocol.data_received = data_received
    transport.set_protocol(protocol)  # uvloop keeps the protocol's methods: look them up again

    def ended() -> bool:  # the peer ended the stream, and nothing is left to read
        return protocol.is_at_eof and not stream._closed and protocol.exception is None

    async def receive(max_bytes: int = 65536) -> bytes:
        nonlocal waiting, handed
        if not queue:
            if stream._closed or protocol.exception is not None or protocol.is_at_eof \
                    or transport.is_closing():
                if ended():
                    raise anyio.EndOfStream  # what `slow` raises, after a trip round the loop
                return await slow(max_bytes)  # it raises or gives what is left, as always
            if not is_reading():
                resume()
            waiting = True
            event = protocol.read_event
            try:
                if not own_wait:  # pragma: no cover - another Python's Event
                    await event.wait()
                elif not event.is_set():  # (set with nothing queued: the connection was lost)
                    w = handed = create_future()
                    event._waiters.append(w)  # the end, an error: the event's set() wakes it
                    try:
                        got = await w
                    except BaseException:
                        if w.done() and not w.cancelled() and type(w.result()) is bytes:
                            # cancelled after a read was handed over: it is the next read
                            queue.appendleft(w.result())
                            event.set()
                        raise
                    finally:
                        handed = None
                        event._waiters.remove(w)
                    if type(got) is bytes:
                        if len(got) <= max_bytes:
                            return got
                        queue.appendleft(got)  # taken below, max_bytes at a time
                        event.set()
            finally:
                waiting = False
            if not queue:
                if ended():
                    raise anyio.EndOfStream
                return await slow(max_bytes)
        chunk = queue.popleft()
        if len(chunk) > max_bytes:
            queue.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        if not queue:
            protocol.read_event.clear()
            if not is_reading() and not transport.is_closing():
                resume()  # all taken: read on
        return chunk
    reader.receive = receive
    return reader
