"""Masking, with a C masker (evt's own, lang/wire/_xormask.c, else wsaccel) and with wsproto's
pure-Python fallback: every payload size class (7-bit, 16-bit and 64-bit lengths) survives a
client -> server -> client round trip through evt on both ends, text and binary; every masker
agrees with wsproto's on any payload cut into any pieces (the key turning across them)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from helpers import run_evt
from hypothesis import given, settings
from hypothesis import strategies as st

from lang.wire import fastframe
from lang.wire import frames as transport

SIZES = [0, 1, 3, 125, 126, 127, 65535, 65536, 200_003]


@pytest.fixture(params=["accelerated", "pure-python"])
def masker(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    used = transport.use_masking_accelerator(request.param == "accelerated")
    if request.param == "accelerated" and not used:
        pytest.skip("no C masker: neither evt's own nor wsaccel")
    yield request.param
    transport.use_masking_accelerator(True)


@pytest.mark.anyio
async def test_every_length_class_round_trips(masker: str, tmp_path: Path) -> None:
    sizes = ", ".join(str(n) for n in SIZES)
    r = await run_evt(f"""
        server srv {{ listen = "127.0.0.1:0" }}
        connection c {{ url = "ws://${{address(srv)}}/" }}
        let sizes = [{sizes}]
        let sent = []
        let got = 0
        on project start {{ start srv; start c }}
        on websocket receive srv as m from p {{ send p m }}
        on websocket start c {{
            for n in sizes {{
                let text = repeat("x", n)
                let bin = encode(repeat("\\u{{e9}}", floor(n / 2)))
                push(sent, text)
                push(sent, bin)
                send c text
                send c bin
            }}
        }}
        on websocket receive c as m {{
            if m != sent[got] {{ print "message", got, "came back different" }}
            got = got + 1
            if got == len(sent) {{ print "all back"; stop c; stop srv }}
        }}
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["all back"]


def test_the_masker_in_use_matches_the_setting() -> None:
    from wsproto import frame_protocol

    try:
        transport.use_masking_accelerator(False)
        pure = frame_protocol.XorMaskerSimple(b"abcd")
        transport.use_masking_accelerator(True)
        fast = frame_protocol.XorMaskerSimple(b"abcd")
        data = bytes(range(256)) * 3
        # the key rotates across calls in both
        assert pure.process(bytearray(data[:5])) + pure.process(bytearray(data[5:])) == \
            bytearray(fast.process(data[:5]) + fast.process(data[5:]))
    finally:
        transport.use_masking_accelerator(True)


def test_evts_own_masker_was_built() -> None:
    """`pip install -e .` builds it (setup.py; it needs a C compiler and Python's headers);
    without it evt still works, on wsaccel's slower masker."""
    assert "evt" in fastframe.MASKERS
    assert fastframe.mask is fastframe.MASKERS["evt"]
    assert transport._C_MASKER is transport._OwnMasker


def test_the_maskers_reject_a_bad_key() -> None:
    for name, masker in fastframe.MASKERS.items():
        if name == "evt":
            with pytest.raises(ValueError):
                masker(b"data", b"abc")
            with pytest.raises(ValueError):
                masker(b"data", b"abcd", -1)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=70_000), key=st.binary(min_size=4, max_size=4),
       cuts=st.lists(st.integers(min_value=0, max_value=70_000), max_size=6))
def test_the_accelerated_masker_equals_wsprotos_over_any_pieces(
        payload: bytes, key: bytes, cuts: list[int]) -> None:
    """wsproto unmasks a frame in the pieces it gets: the masker in its place turns the key
    across calls as wsproto's own; the fast path's masker agrees for any bytes-like input."""
    from wsproto import frame_protocol

    bounds = sorted({0, len(payload), *(c for c in cuts if c < len(payload))})
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    try:
        transport.use_masking_accelerator(False)
        pure = frame_protocol.XorMaskerSimple(key)
        want = b"".join(bytes(pure.process(bytearray(p))) for p in pieces)
        transport.use_masking_accelerator(True)
        fast = frame_protocol.XorMaskerSimple(key)
        assert b"".join(bytes(fast.process(bytearray(p))) for p in pieces) == want
        for name, masker in fastframe.MASKERS.items():
            assert bytes(masker(memoryview(payload), bytearray(key))) == want, name
        for cls in (transport._OwnMasker, transport._AcceleratedMasker):
            if cls is transport._OwnMasker and "evt" not in fastframe.MASKERS:
                continue
            if cls is transport._AcceleratedMasker and "wsaccel" not in fastframe.MASKERS:
                continue
            m = cls(key)
            assert b"".join(bytes(m.process(bytearray(p))) for p in pieces) == want, cls
    finally:
        transport.use_masking_accelerator(True)
