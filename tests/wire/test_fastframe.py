"""lang/wire/fastframe.py: the masker, the serialiser and the parser of the frame fast path.

The must-show of issue 13: the same byte streams through wsproto alone and through the fast
parser with wsproto behind it (fed what the parser hands over) give the same observable
results: the messages with their data, pings, pongs, closes and failures with their codes
and reasons, the bytes sent back, and wsproto's state. The streams are every input of the
frame fuzzer (tests/wire/test_frame_fuzz.py, its generator reused; for the client role the same
frames with the masking flipped) in the fuzzer's splits and in other random splits, and
hypothesis-drawn ones; both roles; the fuzzer's max_message and a small one.

Then the fast path wired as lang/wire/fastframe.py's docstring says, over 127.0.0.1, against the
`websockets` library's client and server.

The comparison is at the level the connection sees (lang/wire/connection.py `_events`): wsproto
alone reports a frame that spans reads in pieces; the connection joins them, so the driver
here does too, applies the message size limit the same way, answers pings and closes, and
stops at the first close or failure, as the connection does.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.abc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_frame_fuzz import MAX_MESSAGE, Generator, make_cases, split_bytes
from wsproto import ConnectionType, WSConnection, frame_protocol
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

from lang.wire import fastframe
from lang.wire.fastframe import FrameParser, frame, mask, mask_pure, masking_key, wsproto_in_step

T = 15  # seconds: the hard limit on any wait
SIZES = (0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33, 124, 125, 126, 127, 383, 384, 385, 4096,
         65535, 65536, 65537, 200_003)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def wsproto_pure_masker() -> Any:
    """wsproto's own XorMaskerSimple. lang.wire replaces the class in wsproto's module
    with the accelerated one, so it is loaded afresh from wsproto's source."""
    spec = importlib.util.spec_from_file_location("_wsproto_frames", frame_protocol.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.XorMaskerSimple


WSPROTO_MASKER = wsproto_pure_masker()


def payloads(max_size: int = 200_003) -> st.SearchStrategy[bytes]:
    sizes = st.one_of(st.sampled_from([s for s in SIZES if s <= max_size]),
                      st.integers(0, max_size))
    return st.builds(lambda n, seed: random.Random(seed).randbytes(n), sizes,
                     st.integers(0, 2**32))


keys = st.binary(min_size=4, max_size=4)


# ---------------------------------------------------------------- masking


@SETTINGS
@given(payload=payloads(), key=keys)
def test_every_masker_equals_wsprotos(payload: bytes, key: bytes) -> None:
    want = bytes(WSPROTO_MASKER(key).process(bytearray(payload)))
    assert mask(payload, key) == want
    assert mask(memoryview(payload), bytearray(key)) == want  # as the parser calls it
    assert mask_pure(payload, key) == want
    assert fastframe._mask_bigint(payload, key) == want
    assert fastframe._mask_translate(payload, key) == want


def test_masking_keys_are_fresh_and_not_shared_with_a_forked_child() -> None:
    got = [masking_key() for _ in range(3000)]  # more than one pool of 1024
    assert all(type(k) is bytes and len(k) == 4 for k in got)
    assert len(set(got)) > 2900  # 4-byte random keys: a few repeats at most
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next key, to the parent
        try:
            os.write(write, masking_key())
        finally:
            os._exit(0)
    os.close(write)
    try:
        child = b""
        while len(child) < 4:
            chunk = os.read(read, 4)
            assert chunk, "the child wrote no key"
            child += chunk
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    # without the reset at fork, the child's next key is the parent's next key
    assert child != masking_key()


# ---------------------------------------------------------------- sending


@contextmanager
def wsproto_keys(*given_keys: bytes) -> Iterator[None]:
    """wsproto's masking keys, in this test only: the given ones, then a fixed sequence
    (wsproto takes os.urandom(4) per frame)."""
    counter = iter(range(1 << 30))
    queue = list(given_keys)

    def urandom(n: int) -> bytes:
        assert n == 4
        return queue.pop(0) if queue else struct.pack("!I", next(counter) * 2654435761 % 2**32)

    saved = frame_protocol.os
    frame_protocol.os = SimpleNamespace(urandom=urandom)  # type: ignore[assignment]
    try:
        yield
    finally:
        frame_protocol.os = saved


def texts() -> st.SearchStrategy[str]:
    sizes = st.sampled_from((0, 1, 41, 42, 125, 126, 21845, 21846, 65535, 65536, 70000))
    chars = "aé€😀\x00\x7f"
    return st.one_of(st.text(max_size=300),
                     st.builds(lambda n, seed: "".join(random.Random(seed).choices(chars, k=n)),
                               sizes, st.integers(0, 2**32)))


@SETTINGS
@given(data=st.one_of(texts(), payloads(70000)), client=st.booleans(), key=keys)
def test_the_serialiser_makes_wsprotos_bytes(data: str | bytes, client: bool, key: bytes) -> None:
    conn = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    event = TextMessage(data=data) if type(data) is str else BytesMessage(data=data)
    with wsproto_keys(key):
        want = conn.send(event)
    assert frame(data, client, key) == want
    if client:  # with a fresh key of its own: the same header, the same payload unmasked
        payload = data.encode() if type(data) is str else data
        got = frame(data, client)
        h = len(want) - len(payload)  # the header with the key
        assert len(got) == len(want) and got[:h - 4] == want[:h - 4]
        assert mask(got[h:], got[h - 4:h]) == payload


# ---------------------------------------------------------------- the equivalence driver


class Observer:
    """What lang.wire's reader does with wsproto's events, in a form to compare: the
    whole messages (joined from wsproto's pieces, the size limit applied as the connection
    does), pings, pongs, the close or failure; the replies it sends; it stops at the first
    close or failure."""

    def __init__(self, conn: Connection, max_message: int) -> None:
        self.conn = conn
        self.max_message = max_message
        self.log: list[tuple[Any, ...]] = []
        self.sent = bytearray()
        self.parts: list[Any] = []
        self.size = 0
        self.done = False

    def message(self, data: str | bytes) -> None:
        self.log.append(("text" if type(data) is str else "binary", data))

    def event(self, ev: Any) -> None:
        t = type(ev)
        conn = self.conn
        if t is TextMessage or t is BytesMessage:
            chunk = ev.data
            self.size += len(chunk.encode()) if t is TextMessage else len(chunk)
            if self.size > self.max_message:
                self.fail(1009, "message too big")
                return
            self.parts.append(chunk)
            if ev.message_finished:
                whole = ("" if t is TextMessage else b"").join(self.parts)
                self.parts, self.size = [], 0
                self.message(whole if t is TextMessage else bytes(whole))
        elif t is Ping:
            self.log.append(("ping", bytes(ev.payload)))
            if conn.state is ConnectionState.OPEN:
                self.sent += conn.send(ev.response())
        elif t is Pong:
            self.log.append(("pong", bytes(ev.payload)))
        elif t is CloseConnection:
            if conn.state is ConnectionState.REMOTE_CLOSING:
                self.log.append(("close", int(ev.code), ev.reason))
                code = ev.code if ev.code not in (1005, 1006, 1015) else 1000
                self.sent += conn.send(CloseConnection(code=code))
                self.done = True
            else:  # wsproto failed the stream
                self.fail(int(ev.code), ev.reason or "")

    def fail(self, code: int, reason: str) -> None:
        self.log.append(("fail", code, reason))
        if self.conn.state is ConnectionState.OPEN:
            self.sent += self.conn.send(CloseConnection(code=code, reason=reason[:120]))
        self.done = True

    def result(self) -> tuple[list[tuple[Any, ...]], bytes, ConnectionState]:
        return self.log, bytes(self.sent), self.conn.state


def new_connection(client: bool) -> Connection:
    return Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)


def through_wsproto(chunks: list[bytes], client: bool, max_message: int) -> Any:
    conn = new_connection(client)
    seen = Observer(conn, max_message)
    with wsproto_keys():
        for chunk in chunks:
            conn.receive_data(chunk)
            for ev in conn.events():
                seen.event(ev)
                if seen.done:
                    return seen.result()
    return seen.result()


def through_fast_path(chunks: list[bytes], client: bool, max_message: int,
                      stats: dict[str, int] | None = None) -> Any:
    """The wiring recipe of lang/wire/fastframe.py's docstring, in a loop."""
    conn = new_connection(client)
    seen = Observer(conn, max_message)
    fast = FrameParser(client, max_message)
    assert wsproto_in_step(conn) is True
    with wsproto_keys():
        for chunk in chunks:
            data = chunk
            while True:
                messages, raw = fast.take(data)
                data = b""
                for m in messages:
                    seen.message(m)
                if stats is not None:
                    stats["fast"] = stats.get("fast", 0) + len(messages)
                if raw is None:
                    break
                if stats is not None:
                    stats["handed"] = stats.get("handed", 0) + 1
                conn.receive_data(raw)
                for ev in conn.events():
                    seen.event(ev)
                    if type(ev) is CloseConnection:
                        fast.stop()  # (what it held may be dropped: see the recipe)
                    if seen.done:
                        return seen.result()
    return seen.result()


def assert_same(chunks: list[bytes], client: bool, max_message: int = MAX_MESSAGE,
                stats: dict[str, int] | None = None) -> None:
    alone = through_wsproto(chunks, client, max_message)
    fast = through_fast_path(chunks, client, max_message, stats)
    if fast != alone:  # say where they part
        a, b = alone[0], fast[0]
        k = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        raise AssertionError(
            f"{'client' if client else 'server'} role, {len(chunks)} chunks of "
            f"{[len(c) for c in chunks][:20]}: results part at event {k}: wsproto alone "
            f"{short(a[k:k + 3])}, fast path {short(b[k:k + 3])}; sent back equal: "
            f"{alone[1] == fast[1]}; states {alone[2]}, {fast[2]}")


def short(x: Any) -> str:
    text = repr(x)
    return text if len(text) < 300 else text[:300] + "..."


# ---------------------------------------------------------------- client-role streams


def flip_masking(data: bytes, key: bytes = b"\x5a\x17\xc3\x08") -> bytes:
    """The same frames with the masking flipped: a server's stream from a client's (and the
    fuzzer's "unmasked" mutation becomes a masked frame from a server). Frame by frame, as
    far as the headers go; a cut frame is flipped as far as it came."""
    out = bytearray()
    i, n = 0, len(data)
    while n - i >= 2:
        b0, b1 = data[i], data[i + 1]
        ln, masked = b1 & 0x7F, b1 & 0x80
        head = 2 + (2 if ln == 126 else 8 if ln == 127 else 0)
        if n - i < head + (4 if masked else 0):
            break
        if ln == 126:
            ln = struct.unpack_from("!H", data, i + 2)[0]
        elif ln == 127:
            ln = struct.unpack_from("!Q", data, i + 2)[0]
        out += bytes((b0, b1 ^ 0x80)) + data[i + 2:i + head]
        i += head
        if masked:
            k, i = data[i:i + 4], i + 4
            out += mask(data[i:i + ln], k)
        else:
            out += key + mask(data[i:i + ln], key)
        i += ln
    out += data[i:]  # what is left: less than a header
    return bytes(out)


class ServerFrames(Generator):
    """The fuzzer's generator, for the client role."""

    def case_data(self, kind: str) -> bytes:
        return flip_masking(getattr(self, kind)())


# ---------------------------------------------------------------- the must-show


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_every_fuzzer_input_gives_the_same_results_both_ways(client: bool) -> None:
    """Every input of tests/wire/test_frame_fuzz.py, in the fuzzer's splits and in other random
    ones (the client role: the same frames with the masking flipped)."""
    rng = random.Random(13)
    stats: dict[str, int] = {}
    kinds: set[str] = set()
    for case in make_cases():
        kinds.add(case.kind)
        data = flip_masking(case.data) if client else case.data
        chunks = split_bytes(rng, data, len(case.chunks)) if client else case.chunks
        assert_same(chunks, client, stats=stats)
        if len(data) < 200_000:
            assert_same(split_bytes(rng, data, rng.choice((2, 5, 20))), client)
    assert kinds == set(Generator.KINDS)
    # the fast path really took most messages (and wsproto had the rest)
    assert stats["fast"] > 5000 and stats["handed"] > 500, stats


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], bool, int]:
    """A few of the fuzzer's pieces (valid runs, mutations), frames at the size limit, cut
    at hypothesis-chosen places; either role; a large or a small max_message."""
    client = draw(st.booleans())
    limit = draw(st.sampled_from((MAX_MESSAGE, 0, 1, 125, 126, 1000, 65536)))
    gen = Generator(random.Random(draw(st.integers(0, 2**32))))
    kinds = sorted(set(Generator.KINDS) - {"too_big", "tiny_fragments", "many_messages"})
    data = b""
    for kind in draw(st.lists(st.sampled_from([*kinds, "valid", "valid", "at_limit"]),
                              min_size=1, max_size=5)):
        if kind == "valid":
            data += gen.valid(1, 4)
        elif kind == "at_limit":  # a message of limit-1, limit or limit+1 bytes
            n = max(0, limit + draw(st.integers(-1, 1))) if limit < 100_000 else 125
            text = draw(st.booleans())
            payload = b"x" * (n - 2) + "é".encode() if text and n >= 2 else b"y" * n
            parts = draw(st.integers(1, 3))
            pieces = split_bytes(gen.rng, payload, parts)
            for k, piece in enumerate(pieces):
                data += gen.f((1 if text else 2) if k == 0 else 0, piece,
                              fin=k == len(pieces) - 1)
        else:
            data += getattr(gen, kind)()
    if draw(st.booleans()):
        data += gen.valid_close()
    if client:
        data = flip_masking(data)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)], client, limit


@SETTINGS
@given(stream=streams())
def test_random_streams_give_the_same_results_both_ways(
        stream: tuple[list[bytes], bool, int]) -> None:
    chunks, client, limit = stream
    assert_same(chunks, client, limit)


# ---------------------------------------------------------------- the parser, case by case


def client_frame(op: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 masked: bool = True, form: str | None = None) -> bytes:
    """A frame as a client sends it (masked), or forced otherwise."""
    n = len(payload)
    form = form or ("7" if n < 126 else "16" if n < 65536 else "64")
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    bit = 0x80 if masked else 0
    head += (bytes([bit | n]) if form == "7" else bytes([bit | 126]) + struct.pack("!H", n)
             if form == "16" else bytes([bit | 127]) + struct.pack("!Q", n))
    key = b"\x11\x22\x33\x44"
    return head + key + mask(payload, key) if masked else head + payload


def take_all(fast: FrameParser, data: bytes) -> tuple[list[Any], list[bytes]]:
    """All a parser gives for one read: the messages and the pieces handed over."""
    messages, handed = [], []
    while True:
        got, raw = fast.take(data)
        data = b""
        messages += got
        if raw is None:
            return messages, handed
        handed.append(bytes(raw))


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_simple_frames_are_taken_whole_in_any_split(client: bool) -> None:
    sent = ["", "hé", "x" * 125, "€" * 42, "y" * 65536, b"", b"\x00", b"z" * 126,
            bytes(range(256)) * 300]
    stream = b"".join(frame(m, not client) for m in sent)  # the peer's frames
    for step in (len(stream), 1, 7, 1000, 65537):
        fast = FrameParser(client, MAX_MESSAGE)
        got: list[Any] = []
        for i in range(0, len(stream), step):
            messages, handed = take_all(fast, stream[i:i + step])
            assert handed == []
            got += messages
        assert got == sent, step
        assert fast.active


def test_control_frames_are_cut_at_their_boundaries_for_wsproto() -> None:
    ping, pong = client_frame(0x9, b"p"), client_frame(0xA, b"q")
    fast = FrameParser(False, MAX_MESSAGE)
    messages, raw = fast.take(client_frame(1, b"a") + ping + pong + client_frame(2, b"b"))
    assert (messages, raw) == (["a"], ping + pong)  # two control frames: one piece
    assert fast.take(b"") == ([b"b"], None)


def test_a_fragmented_message_goes_to_wsproto_until_it_ends() -> None:
    start, ping = client_frame(1, b"frag", fin=False), client_frame(0x9)
    middle, end = client_frame(0, b"men", fin=False), client_frame(0, b"t")
    fast = FrameParser(False, MAX_MESSAGE)
    # a frame that is not simple is streamed once its header is whole
    assert fast.take(client_frame(2, b"1") + start + ping + middle[:8]) == \
        ([b"1"], start + ping + middle[:8])
    assert fast.fragmented
    # even a simple-looking frame is wsproto's while a message is fragmented
    assert fast.take(middle[8:] + end[:3]) == ([], middle[8:])
    assert fast.take(end[3:] + client_frame(1, b"2")) == ([], end)
    assert not fast.fragmented
    assert fast.take(b"") == (["2"], None)


@pytest.mark.parametrize("client", [False, True], ids=["server", "client"])
def test_the_rest_of_a_streamed_frame_is_wsprotos_even_when_it_looks_like_a_frame(
        client: bool) -> None:
    inner = frame("looks like a message", not client)  # a whole frame, as the peer sends one
    masked = not client
    # a fragmented binary message whose continuation carries `inner` on the wire
    start = client_frame(2, b"a", fin=False, masked=masked)
    rest = client_frame(0, mask(b"pad" + inner, b"\x11\x22\x33\x44") if masked
                        else b"pad" + inner, masked=masked)
    cut = len(start) + len(rest) - len(inner)  # the first read ends where `inner` begins
    stream = start + rest + frame("after", not client)
    fast = FrameParser(client, MAX_MESSAGE)
    assert take_all(fast, stream[:cut]) == ([], [stream[:cut]])
    assert take_all(fast, stream[cut:]) == (["after"], [inner])
    assert_same([stream[:cut], stream[cut:]], client)


ANOMALIES = {
    "bad UTF-8": client_frame(1, b"ok \xff"),
    "bad UTF-8 at the end": client_frame(1, "€".encode()[:2]),
    "16-bit length for 5 bytes": client_frame(2, b"12345", form="16"),
    "64-bit length for 200 bytes": client_frame(2, b"x" * 200, form="64"),
    "64-bit length with the top bit": b"\x82\xff" + struct.pack("!Q", 2**63 + 5) + b"k" * 4,
    "over max_message": client_frame(2, b"x" * 101),
    "over max_message in the header alone": b"\x82\xfe\x03\xe8",
    "RSV1": client_frame(1, b"a", rsv=4),
    "opcode 3": client_frame(3, b"a"),
    "opcode 0xB": client_frame(0xB),
    "unmasked": client_frame(2, b"a", masked=False),
    "continuation without a start": client_frame(0, b"a"),
    "fragmented ping": client_frame(0x9, fin=False),
    "ping over 125 bytes": b"\x89\xfe\x00\x7e",
    "close": client_frame(0x8, struct.pack("!H", 1000)),
}


@pytest.mark.parametrize("anomaly", ANOMALIES.values(), ids=list(ANOMALIES))
def test_after_an_anomaly_everything_goes_to_wsproto(anomaly: bytes) -> None:
    fast = FrameParser(False, 100)
    after = client_frame(1, b"after")
    assert fast.take(client_frame(1, b"before") + anomaly + after) == \
        (["before"], anomaly + after)
    assert not fast.active
    assert fast.take(client_frame(1, b"more")) == ([], client_frame(1, b"more"))
    # and when the anomaly came in pieces: handed over as soon as it is certain
    fast = FrameParser(False, 100)
    messages, handed = [], []
    for i in range(len(anomaly)):
        got, pieces = take_all(fast, anomaly[i:i + 1])
        messages += got
        handed += pieces
    assert messages == [] and b"".join(handed) == anomaly
    assert not fast.active


def test_bad_utf8_early_in_a_frame_is_handed_over_before_the_frame_is_whole() -> None:
    """As wsproto alone fails at once (Autobahn 6.4.3: fail fast on a chop of a frame)."""
    whole = client_frame(1, "κόσμε".encode() + b"\xf4\x90\x80\x80" + b"x" * 1000)
    fast = FrameParser(False, MAX_MESSAGE)
    assert fast.take(whole[:10]) == ([], None)  # held: valid so far
    assert fast.take(whole[10:30]) == ([], whole[:10])  # now certain: the pieces as they came
    assert fast.take(b"") == ([], whole[10:30])
    assert not fast.active


def test_a_held_frame_is_kept_whole_and_stop_gives_it_back() -> None:
    whole = client_frame(2, b"b" * 5000)
    fast = FrameParser(False, 5000)
    for i in range(0, 4000, 1000):
        assert fast.take(whole[i:i + 1000]) == ([], None)
    assert fast.stop() == whole[:4000]
    assert fast.take(whole[4000:]) == ([], whole[4000:])


def test_wsproto_in_step_tells_when_the_fast_path_may_start() -> None:
    conn = new_connection(False)
    assert wsproto_in_step(conn) is True
    ping = client_frame(0x9, b"abc")
    conn.receive_data(ping[:3])
    list(conn.events())
    assert wsproto_in_step(conn) is False  # part of a frame in wsproto
    conn.receive_data(ping[3:])
    list(conn.events())
    assert wsproto_in_step(conn) is True
    conn.receive_data(client_frame(1, b"ab", fin=False))
    list(conn.events())
    assert wsproto_in_step(conn) is False  # a fragmented message in progress
    conn.receive_data(client_frame(0, b"c"))
    list(conn.events())
    assert wsproto_in_step(conn) is True
    conn.receive_data(client_frame(3))
    assert [type(e) for e in conn.events()] == [CloseConnection]
    assert conn.state is ConnectionState.OPEN and wsproto_in_step(conn) is None  # failed
    conn = new_connection(False)
    conn.receive_data(client_frame(0x8, struct.pack("!H", 1000)))
    list(conn.events())
    assert wsproto_in_step(conn) is None  # it read a close frame
    deflate = PerMessageDeflate()
    deflate._enabled = True
    conn = Connection(ConnectionType.SERVER, extensions=[deflate])
    assert wsproto_in_step(conn) is None
    # a wsproto whose insides are not the known ones: the fast path stays off
    assert wsproto_in_step(SimpleNamespace(state=ConnectionState.OPEN)) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------- over real sockets


class FastConnection:
    """The wiring recipe of lang/wire/fastframe.py's docstring over a real stream: the fast path
    in front of wsproto (a small stand-in for lang.wire's WebSocket)."""

    def __init__(self, stream: Any, conn: Connection, client: bool) -> None:
        self.stream, self.conn, self.client = stream, conn, client
        self.fast: FrameParser | None = None
        self.never = False
        self.parts: list[Any] = []
        self.counts = {"fast": 0, "wsproto": 0}
        self.closed: tuple[int, str] | None = None

    async def send(self, message: str | bytes) -> None:
        await self.stream.send(frame(message, self.client))

    def _start(self) -> None:
        if self.fast is None and not self.never:
            step = wsproto_in_step(self.conn)
            if step:
                self.fast = FrameParser(self.client, MAX_MESSAGE)
            self.never = step is None

    async def run(self, on_message: Any) -> tuple[int, str]:
        await self._events(on_message)  # frames that came with the handshake
        self._start()
        while self.closed is None:
            try:
                data = await self.stream.receive(262144)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.closed = (1006, "")
                break
            if self.fast is None:
                self.conn.receive_data(data)
                await self._events(on_message)
                self._start()
                continue
            while self.closed is None:
                messages, raw = self.fast.take(data)
                data = b""
                for m in messages:
                    self.counts["fast"] += 1
                    await on_message(m)
                if raw is None:
                    break
                self.conn.receive_data(raw)
                await self._events(on_message)
        return self.closed

    async def _events(self, on_message: Any) -> None:
        conn = self.conn
        for ev in conn.events():
            t = type(ev)
            if t is TextMessage or t is BytesMessage:
                self.parts.append(ev.data)
                if ev.message_finished:
                    whole = ("" if t is TextMessage else b"").join(self.parts)
                    self.parts = []
                    self.counts["wsproto"] += 1
                    await on_message(whole)
            elif t is Ping:
                await self.stream.send(conn.send(ev.response()))
            elif t is CloseConnection:
                if self.fast is not None:
                    self.fast.stop()
                self.closed = (int(ev.code), ev.reason or "")
                if conn.state is ConnectionState.REMOTE_CLOSING:
                    await self.stream.send(conn.send(CloseConnection(code=ev.code)))
                if self.client:  # RFC 6455 §7.1.1: the server closes TCP first
                    with anyio.move_on_after(T):
                        while True:
                            try:
                                await self.stream.receive()
                            except (anyio.EndOfStream, anyio.BrokenResourceError):
                                break
                await self.stream.aclose()
                return


MESSAGES: list[str | bytes] = [m for n in SIZES for m in ("é" * (n // 2) + "x" * (n % 2),
                                                          bytes(range(256)) * (n // 256)
                                                          + b"\x00" * (n % 256))]


@pytest.mark.anyio
async def test_a_websockets_client_against_the_fast_path() -> None:
    """A server role over 127.0.0.1 with the fast path in front of wsproto, and the
    `websockets` library's client: every size class both ways, a fragmented message, a ping,
    and its close."""
    from websockets.asyncio.client import connect

    done: dict[str, Any] = {}
    finished = anyio.Event()

    async def serve(stream: Any) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        while True:
            ws.receive_data(await stream.receive())
            if any(type(ev) is Request for ev in ws.events()):
                break
        await stream.send(ws.send(AcceptConnection()))
        assert ws.connection is not None
        link = FastConnection(stream, ws.connection, client=False)
        done["closed"] = await link.run(link.send)  # an echo
        done["counts"] = link.counts
        finished.set()

    with anyio.fail_after(T):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            async with connect(f"ws://127.0.0.1:{port}/", ping_interval=None,
                               max_size=None) as ws:
                for m in MESSAGES:
                    await ws.send(m)
                for m in MESSAGES:
                    assert await ws.recv() == m
                await ws.send(["frag", "men", "t"])  # a fragmented message
                assert await ws.recv() == "fragment"
                await (await ws.ping(b"hi"))
                await ws.close(4000, "bye")
            await finished.wait()
            tg.cancel_scope.cancel()
    assert done["closed"] == (4000, "bye")
    assert done["counts"] == {"fast": len(MESSAGES), "wsproto": 1}


@pytest.mark.anyio
async def test_the_fast_path_as_a_client_of_a_websockets_server() -> None:
    """The client role (masked frames out, unmasked in) against the `websockets` library's
    server: echoes of every size class, a fragmented message and a ping from the server,
    then the server's close."""
    from websockets.asyncio.server import serve

    async def handler(ws: Any) -> None:
        async for m in ws:
            if m == "fragments, please":
                await ws.send(["a", "b", "c"])
            elif m == "a ping, please":
                await ws.ping(b"p")
                await ws.send("pinged")
            elif m == "close, please":
                await ws.close(4001, "done")
            else:
                await ws.send(m)

    got_send, got = anyio.create_memory_object_stream[Any](1000)
    with anyio.fail_after(T):
        async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            stream = await anyio.connect_tcp("127.0.0.1", port)
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send(ws.send(Request(host=f"127.0.0.1:{port}", target="/")))
            accepted = False
            while not accepted:
                ws.receive_data(await stream.receive())
                accepted = any(type(ev) is AcceptConnection for ev in ws.events())
            assert ws.connection is not None
            link = FastConnection(stream, ws.connection, client=True)
            result: dict[str, Any] = {}

            async def read() -> None:
                result["closed"] = await link.run(got_send.send)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                for m in MESSAGES:
                    await link.send(m)
                for m in MESSAGES:
                    assert await got.receive() == m
                for ask, answer in (("fragments, please", "abc"), ("a ping, please", "pinged")):
                    await link.send(ask)
                    assert await got.receive() == answer
                await link.send("close, please")
    assert result["closed"] == (4001, "done")
    assert link.counts == {"fast": len(MESSAGES) + 1, "wsproto": 1}
