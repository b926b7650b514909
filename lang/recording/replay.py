"""`evt replay FILE.har` (SPEC §14): a recording as a mock server (`--serve`) or as a
regression test of a live one (`--url`), on lang.wire directly (no script runs).

Rules of this module:
- Matching is one function for both: `exact` (the same frame type and value), `json`
  (text equal as JSON once the --ignore keys are dropped, at every depth; what is not JSON
  compares exactly), `any`.
- The mock matches each client to a recorded connection by path with its query, else by
  path, else the first; it sends the recorded server messages that came before the
  recording's first client message, then for each client message that matches the next
  recorded one not yet matched (later ones may be skipped to find it), the server messages
  that followed it. A message that matches nothing is reported and answered with nothing.
- The test sends the recorded client messages in order and checks each recorded server
  message as it comes; each difference is one line, `FILE.har: message N: expected ...,
  got ...` (N counts the connection's messages from 1, both directions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.streams.memory

from lang.recording.model import CLOSE, RECEIVE, SEND, Conversation, Message
from lang.wire.client import ClientOptions, connect
from lang.wire.frames import Limits, TransportError
from lang.wire.server import Rejected, ServerOptions, accept

SHOWN = 80  # characters of a message shown in a report


@dataclass
class ReplayOptions:
    match: str = "exact"  # exact | json | any
    ignore: frozenset[str] = field(default_factory=frozenset)
    pace: str = "fast"  # fast | recorded
    timeout: float = 10.0  # seconds the test waits for each server message
    max_message: int = 64 * 1024 * 1024


# ---------------------------------------------------------------- matching and showing


def _drop(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _drop(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_drop(v, keys) for v in value]
    return value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def matches(expected: Message, got: str | bytes, opts: ReplayOptions) -> bool:
    """Whether a message `got` is the recorded `expected` one, under --match."""
    if opts.match == "any":
        return True
    if type(got) is not type(expected.data):
        return False
    if opts.match == "json" and isinstance(got, str) and isinstance(expected.data, str):
        a, b = _json(expected.data), _json(got)
        if a is not _NOT_JSON and b is not _NOT_JSON:
            return _drop(a, opts.ignore) == _drop(b, opts.ignore)
    return got == expected.data


def shown(data: str | bytes) -> str:
    """A message in a report, compactly: text quoted, bytes as b"..", cut at SHOWN."""
    if isinstance(data, str):
        text = json.dumps(data, ensure_ascii=False)
    else:
        text = 'b"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}"
                              for b in data[:SHOWN]) + '"'
    return text if len(text) <= SHOWN else text[:SHOWN - 1] + "…"


def _shown_message(m: Message) -> str:
    if m.opcode == CLOSE:
        code = m.close_code
        return f"a close {code}" if code is not None else "a close"
    return shown(m.data)


def pick(conversations: list[Conversation], target: str) -> Conversation:
    """The recorded connection for a client asking for `target` (path?query)."""
    for c in conversations:
        if c.path == target:
            return c
    path = target.split("?")[0]
    for c in conversations:
        if c.path.split("?")[0] == path:
            return c
    return conversations[0]


async def _pace(opts: ReplayOptions, messages: list[Message], i: int) -> None:
    """--pace recorded: wait the recorded gap before messages[i]."""
    if opts.pace != "recorded" or i == 0:
        return
    now, before = messages[i].time, messages[i - 1].time
    if now is not None and before is not None and now > before:
        await anyio.sleep(now - before)


# ---------------------------------------------------------------- the mock


class Mock:
    """`evt replay --serve`: serves the recording until it is stopped."""

    def __init__(self, conversations: list[Conversation], name: str, opts: ReplayOptions,
                 say: Callable[[str], None]) -> None:
        self.conversations = conversations
        self.name = name
        self.opts = opts
        self.say = say
        self.clients = 0

    async def serve(self, host: str, port: int,
                    ready: Callable[[str], None] | None = None) -> None:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound = listener.extra(anyio.abc.SocketAttribute.local_address)
        shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"ws://{shown_host}:{bound[1]}/"
        self.say(f"{self.name}: replaying on {url}")
        if ready is not None:
            ready(url)
        async with listener:
            await listener.serve(self._client)

    async def _client(self, stream: anyio.abc.SocketStream) -> None:
        self.clients += 1
        who = f"client {self.clients}"
        opts = ServerOptions(limits=Limits(max_message=self.opts.max_message))
        async with stream:
            try:
                ws = await accept(stream, opts, "?")
            except (Rejected, TransportError):
                return
            target = ws.peer.path + (f"?{ws.peer.query}" if ws.peer.query else "")
            conv = pick(self.conversations, target)
            messages = conv.messages
            async with anyio.create_task_group() as tg:
                ws.spawn = tg.start_soon
                state = {"at": 0}

                async def answer(start: int) -> None:
                    i = start
                    while i < len(messages) and messages[i].type == RECEIVE:
                        m = messages[i]
                        await _pace(self.opts, messages, i)
                        if m.opcode == CLOSE:
                            await ws.close(m.close_code or 1000, m.close_reason)
                            i = len(messages)
                            break
                        try:
                            await ws.send(m.data)
                        except ConnectionError:
                            return
                        i += 1
                    state["at"] = i

                async def on_message(got: str | bytes) -> None:
                    for j in range(state["at"], len(messages)):
                        m = messages[j]
                        if m.type == SEND and m.opcode != CLOSE and matches(m, got, self.opts):
                            await answer(j + 1)
                            return
                    self.say(f"{self.name}: {who} ({target}): a message the recording does "
                             f"not have next: {shown(got)}")

                await answer(0)
                await ws.run(on_message)
                tg.cancel_scope.cancel()


# ---------------------------------------------------------------- the test


async def check(conversations: list[Conversation], name: str, opts: ReplayOptions,
                say: Callable[[str], None], url: str | None = None) -> int:
    """`evt replay --url`: each recorded connection in turn against the live server; 0 when
    every conversation matched, else 1 (each difference said)."""
    differences = 0
    for n, conv in enumerate(conversations, 1):
        where = name if len(conversations) == 1 else f"{name}: connection {n}"
        differences += await _check_one(conv, where, opts, say, url)
    return 0 if differences == 0 else 1


async def _check_one(conv: Conversation, where: str, opts: ReplayOptions,
                     say: Callable[[str], None], url: str | None) -> int:
    target = url if url is not None else conv.url
    if url is not None and conv.path != "/" and url.rstrip("/").count("/") == 2:
        target = url.rstrip("/") + conv.path  # --url ws://host:port: the recorded path
    protocols = [p.strip() for k, v in conv.request_headers
                 if k.lower() == "sec-websocket-protocol" for p in v.split(",") if p.strip()]
    try:
        ws = await connect(ClientOptions(url=target, subprotocols=protocols, proxy=True,
                                         connect_timeout=opts.timeout,
                                         limits=Limits(max_message=opts.max_message)))
    except TransportError as e:
        say(f"{where}: cannot connect to {target}: {e}")
        return 1
    send, receive = anyio.create_memory_object_stream[Any](1 << 16)
    problems = 0
    messages = conv.messages
    async with anyio.create_task_group() as tg:
        ws.spawn = tg.start_soon
        closed: list[Any] = []

        async def read() -> None:
            async def on_message(got: str | bytes) -> None:
                await send.send(got)
            closed.append(await ws.run(on_message))
            send.close()

        tg.start_soon(read)
        for i, m in enumerate(messages):
            number = i + 1
            if m.type == SEND:
                await _pace(opts, messages, i)
                try:
                    if m.opcode == CLOSE:
                        await ws.close(m.close_code or 1000, m.close_reason)
                    else:
                        await ws.send(m.data)
                except ConnectionError:
                    say(f"{where}: message {number}: could not send {_shown_message(m)}: the "
                        f"connection is closed")
                    problems += 1
                    break
                continue
            if m.opcode == CLOSE:
                with anyio.move_on_after(opts.timeout):
                    while True:  # what comes before the close is not in the recording
                        try:
                            await receive.receive()
                        except anyio.EndOfStream:
                            break
                got_code = closed[0].code if closed else None
                if got_code != m.close_code and opts.match != "any":
                    say(f"{where}: message {number}: expected {_shown_message(m)}, got "
                        f"{'a close ' + str(got_code) if closed else 'no close'}")
                    problems += 1
                break
            got: Any = None
            with anyio.move_on_after(opts.timeout):
                try:
                    got = await receive.receive()
                except anyio.EndOfStream:
                    got = EOFError
            if got is None or got is EOFError:
                what = f"nothing within {opts.timeout:g} s" if got is None else \
                    "the connection closed"
                say(f"{where}: message {number}: expected {_shown_message(m)}, got {what}")
                problems += 1
                break
            if not matches(m, got, opts):
                say(f"{where}: message {number}: expected {_shown_message(m)}, got "
                    f"{shown(got)}")
                problems += 1
        if ws.closed is None:
            await ws.close(1000, "")
        with anyio.move_on_after(opts.timeout):
            while not closed:
                try:
                    await receive.receive()
                except anyio.EndOfStream:
                    break
        tg.cancel_scope.cancel()
    return problems
