"""lang/wire/accept.py against wsproto on the same bytes: every response the fast reader
takes, wsproto accepts with the same subprotocol, the same other headers and the same first
frames after the head; every response it refuses, wsproto refuses in the same words; the
rest it leaves to wsproto. Drawn by hypothesis (valid answers, answers with one thing wrong,
odd spacing and case, frames after the head, bytes no HTTP parser should take), and a real
server's answers over TCP (the websockets library's, with and without a subprotocol)."""

from __future__ import annotations

import base64
import hashlib

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import serve
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.utilities import RemoteProtocolError

from lang.wire.accept import read_accept, request_key
from lang.wire.client import ClientOptions, connect

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OFFERED = [[], ["chat"], ["chat", "superchat"]]


def accept_for(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def wsproto_reads(request_subprotocols: list[str], response: bytes, ws: WSConnection) -> object:
    """What wsproto makes of `response`: ("accept", subprotocol, headers, events after) or
    ("error", words), or ("other", events)."""
    try:
        ws.receive_data(response)
        events = list(ws.events())
    except RemoteProtocolError as e:
        return ("error", str(e))
    if events and isinstance(events[0], AcceptConnection):  # then the first frames' events
        return ("accept", events[0].subprotocol, list(events[0].extra_headers),
                [repr(e) for e in events[1:]])
    return ("other", [type(e).__name__ for e in events])


def ours(offered: list[str], response: bytes, key: bytes) -> object:
    from wsproto.connection import Connection
    try:
        got = read_accept(response, key, offered)
    except RemoteProtocolError as e:
        return ("error", str(e))
    if got is None:
        return None
    conn = Connection(ConnectionType.CLIENT, [], got.rest)
    return ("accept", got.subprotocol, got.headers, [repr(e) for e in conn.events()])


token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
                min_size=1, max_size=12)
value = st.text("".join(chr(c) for c in range(0x20, 0x7f)) + "\t", max_size=30)
spacing = st.sampled_from(["", " ", "  ", "\t", " \t"])


@st.composite
def responses(draw: st.DrawFn, key: bytes) -> bytes:
    ok = b"HTTP/1.1 101 Switching Protocols"
    status = draw(st.sampled_from([ok, ok, ok, ok, b"HTTP/1.1 101", b"HTTP/1.1 101 ",
                                   b"HTTP/1.1 101 OK go", b"HTTP/1.0 101 x", b"HTTP/1.1 200 OK",
                                   b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 101 Switching\x01"]))
    fields: list[tuple[str, str]] = []
    # each of the three a 101 needs: mostly there and right, sometimes missing or wrong
    if draw(st.integers(0, 9)):
        fields.append((draw(st.sampled_from(["Upgrade", "upgrade", "UPGRADE"])),
                       draw(st.sampled_from(["websocket"] * 4 + ["WebSocket", "h2c", ""]))))
    if draw(st.integers(0, 9)):
        fields.append((draw(st.sampled_from(["Connection", "connection"])),
                       draw(st.sampled_from(["Upgrade"] * 3 + ["upgrade", "keep-alive, Upgrade",
                                                                "keep-alive", "close"]))))
    if draw(st.integers(0, 9)):
        good = accept_for(key).decode()
        fields.append(("Sec-WebSocket-Accept",
                       draw(st.sampled_from([good] * 6 + [good[:-2], "x"]))))
    if draw(st.integers(0, 3)) == 0:
        fields.append(("Sec-WebSocket-Protocol", draw(st.sampled_from(["chat", "superchat",
                                                                       "other"]))))
    if draw(st.integers(0, 9)) == 0:
        fields.append(("Sec-WebSocket-Extensions", draw(st.sampled_from(
            ["permessage-deflate", "x-foo; a=1", ""]))))
    for _ in range(draw(st.integers(0, 3))):  # others (a duplicate of one, maybe)
        fields.insert(draw(st.integers(0, len(fields))), (draw(token), draw(value)))
    fields = draw(st.permutations(fields))
    lines = [status] + [f"{n}:{draw(spacing)}{v}{draw(spacing)}".encode() for n, v in fields]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if draw(st.integers(0, 9)) == 0:  # a line folded, a bare LF, a control byte
        head = draw(st.sampled_from([head.replace(b"\r\n", b"\n", 2),
                                     head.replace(b"\r\nU", b"\r\n U", 1),
                                     head.replace(b":", b"\x00:", 1),
                                     head.replace(b"\r\n\r\n", b"\r\nx\r\n\r\n")]))
    after = draw(st.sampled_from([b"", b"\x81\x02hi", b"\x81\x02hi\x88\x02\x03\xe8", b"\x81"]))
    return head + after


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), offered=st.sampled_from(OFFERED))
def test_the_fast_reader_and_wsproto_agree(data: st.DataObject, offered: list[str]) -> None:
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(Request(host="127.0.0.1:9", target="/", subprotocols=offered))
    key = request_key(request)
    assert key is not None
    response = data.draw(responses(key))
    mine = ours(offered, response, key)
    theirs = wsproto_reads(offered, response, ws)
    if mine is not None:  # taken (or refused) here: exactly as wsproto
        assert mine == theirs


def test_plain_answers_are_taken_and_wrong_ones_refused_in_wsproto_words() -> None:
    ws = WSConnection(ConnectionType.CLIENT)
    key = request_key(ws.send(Request(host="h", target="/", subprotocols=["chat"])))
    assert key is not None
    good = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_for(key) + b"\r\nSec-WebSocket-Protocol: chat"
            b"\r\nServer: x\r\n\r\n\x81\x02hi")
    got = read_accept(good, key, ["chat"])
    assert got is not None and got.subprotocol == "chat" and got.headers == [(b"server", b"x")]
    assert got.rest == b"\x81\x02hi"
    for wrong, words in ((good.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
                          "Missing header, 'Upgrade: websocket'"),
                         (good.replace(b"Connection: Upgrade", b"Connection: close"),
                          "Missing header, 'Connection: Upgrade'"),
                         (good.replace(accept_for(key), b"AAAA"), "Bad accept token"),
                         (good.replace(b"Protocol: chat", b"Protocol: other"),
                          "unrecognized subprotocol other")):
        with pytest.raises(RemoteProtocolError, match=words):
            read_accept(wrong, key, ["chat"])
    assert read_accept(good.replace(b"101 Switching", b"200 Switching"), key, ["chat"]) is None


@pytest.mark.anyio
async def test_a_real_server_answer_is_read_without_h11(monkeypatch: pytest.MonkeyPatch) -> None:
    """The websockets library's answers take the fast path (wsproto's h11 reader is never
    asked), with and without a subprotocol, and the connection works."""
    import h11

    def refuse(*a: object, **kw: object) -> None:
        raise AssertionError("h11 read the response")

    monkeypatch.setattr(h11.Connection, "next_event", refuse)

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for m in ws:
            await ws.send(m)

    for protocols in ([], ["chat"]):
        async with serve(echo, "127.0.0.1", 0, subprotocols=protocols or None) as server:
            port = server.sockets[0].getsockname()[1]
            with anyio.fail_after(30):
                ws = await connect(ClientOptions(url=f"ws://127.0.0.1:{port}/p",
                                                 subprotocols=protocols))
                assert ws.peer.subprotocol == (protocols[0] if protocols else None)
                assert any(name == b"server" for name, _ in ws.peer.headers)
                got: list[object] = []
                done = anyio.Event()

                async def take(m: object, got: list[object] = got,
                               done: anyio.Event = done) -> None:
                    got.append(m)
                    done.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ws.run, take)
                    await anyio.sleep(0)
                    await ws.send("hello")
                    await done.wait()
                    await ws.close(1000, "")
                assert got == ["hello"]
