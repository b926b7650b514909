"""Micro-benchmark of lang/wire/fastframe.py against wsproto, in one process, interleaved.

    python bench/fastframe_bench.py                  # masker, parse, send
    python bench/fastframe_bench.py --only parse     # or: masker, send
    python bench/fastframe_bench.py --quick          # fewer repeats

masker: ns per call of each masker (evt's C masker, the big-integer XOR, wsaccel, wsproto's pure
    XorMaskerSimple, fastframe's translate masker; the `websockets` library's C
    apply_mask as a reference when installed) for 32 B .. 1 MiB, and the ratio to wsaccel.
parse: ns per frame to get whole messages from the bytes of masked client frames (the
    server's side): fastframe's FrameParser.take against wsproto's receive_data + events()
    (with wsaccel as its masker, as evt configures it; fragments joined as evt does).
    32 B frames one per read (a request/response peer) and 50 per read (pipelined); 64 KiB
    frames in reads of 256 KiB (uvloop's read size: frames span reads).
send: ns per frame to serialise one message, fastframe.frame against wsproto's
    Connection.send(TextMessage/BytesMessage), server side (unmasked) and client side.

Each figure is the median of interleaved repeats (every variant measured once per round,
round after round), so a noisy machine slows all variants alike; the ratio is the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsproto import ConnectionType, frame_protocol
from wsproto.connection import Connection
from wsproto.events import BytesMessage, TextMessage

from lang.wire import fastframe
from lang.wire.fastframe import FrameParser, frame

KiB = 1024
PURE = frame_protocol.XorMaskerSimple  # before any accelerator is put in its place


def interleaved(variants: dict[str, Callable[[], Any]], per_call: int, rounds: int,
                budget: float) -> dict[str, float]:
    """ns per unit (a call does per_call units) of each variant: the median of `rounds`
    rounds, each variant once per round, each timing about `budget` seconds."""
    numbers = {}
    for name, fn in variants.items():
        fn()  # warm up
        t = timeit.timeit(fn, number=1)
        numbers[name] = max(1, int(budget / max(t, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t = timeit.timeit(fn, number=numbers[name])
            samples[name].append(t / numbers[name] / per_call * 1e9)
    return {name: statistics.median(s) for name, s in samples.items()}


def table(title: str, rows: list[tuple[str, dict[str, float]]], reference: str) -> None:
    names = list(rows[0][1])
    print(f"\n{title} (ns; in brackets: the ratio to {reference})")
    print(f"{'':>14}" + "".join(f"{n:>26}" for n in names))
    for label, figures in rows:
        ref = figures[reference]
        cells = "".join(f"{figures[n]:>15.0f} ({figures[n] / ref:5.2f}x)  " for n in names)
        print(f"{label:>14}" + cells)


def size_label(n: int) -> str:
    return f"{n // (1024 * KiB)} MiB" if n >= 1024 * KiB else f"{n // KiB} KiB" \
        if n >= KiB else f"{n} B"


# ---------------------------------------------------------------- masker


def bench_masker(rounds: int, budget: float) -> None:
    try:
        from websockets.speedups import apply_mask  # type: ignore[import-not-found]
    except ImportError:
        apply_mask = None
    key = os.urandom(4)
    rows = []
    for n in (32, 125, 384, 512, 4 * KiB, 64 * KiB, 1024 * KiB):
        data = os.urandom(n)
        variants: dict[str, Callable[[], Any]] = {
            "big-integer XOR": lambda d=data: fastframe._mask_bigint(d, key),
            "wsaccel": lambda d=data: fastframe._CMasker(key).process(d),
            "wsproto pure": lambda d=data: PURE(key).process(bytearray(d)),
            "fastframe translate": lambda d=data: fastframe._mask_translate(d, key),
        }
        if "evt" in fastframe.MASKERS:
            variants["evt C"] = lambda d=data: fastframe.MASKERS["evt"](d, key)
        if apply_mask is not None:
            variants["websockets C (ref.)"] = lambda d=data: apply_mask(d, key)
        want = variants["wsproto pure"]()
        assert all(bytes(v()) == want for v in variants.values())
        rows.append((size_label(n), interleaved(variants, 1, rounds, budget)))
    table("masking, ns per call", rows, "wsaccel")
    used = next(name for name, m in fastframe.MASKERS.items() if m is fastframe.mask)
    print(f"fastframe.mask uses: {used} at every size; with neither C masker: big-integer "
          f"XOR up to {fastframe.BIGINT_MAX} B, translate above")


# ---------------------------------------------------------------- parse


class _AcceleratedMasker:  # what lang.wire gives wsproto (wsaccel behind its interface)
    def __init__(self, key: bytes) -> None:
        self._masker = fastframe._CMasker(bytes(key))

    def process(self, data: Any) -> bytes:
        return self._masker.process(data)


def reads_of(frames: list[bytes], size: int | None) -> list[bytes]:
    """The frames' bytes as reads: one frame per read (size None), or cut every `size`."""
    if size is None:
        return frames
    stream = b"".join(frames)
    return [stream[i:i + size] for i in range(0, len(stream), size)]


def fast_reader(reads: list[bytes], count: int) -> Callable[[], None]:
    parser = FrameParser(False, 1024 * KiB)

    def run() -> None:
        got = 0
        take = parser.take
        for data in reads:
            messages, raw = take(data)
            assert raw is None
            got += len(messages)
        assert got == count

    return run


def wsproto_reader(reads: list[bytes], count: int) -> Callable[[], None]:
    conn = Connection(ConnectionType.SERVER)
    parts: list[Any] = []

    def run() -> None:
        got = 0
        for data in reads:
            conn.receive_data(data)
            for ev in conn.events():
                t = type(ev)
                if t is TextMessage or t is BytesMessage:
                    if ev.message_finished:
                        if parts:
                            parts.append(ev.data)
                            ("" if t is TextMessage else b"").join(parts)
                            parts.clear()
                        got += 1
                    else:
                        parts.append(ev.data)
        assert got == count

    return run


def bench_parse(rounds: int, budget: float) -> None:
    frame_protocol.XorMaskerSimple = _AcceleratedMasker  # type: ignore[misc]
    rows = []
    try:
        for size, per_read, label in ((32, None, "32 B, 1/read"), (32, 50 * 38, "32 B, 50/read"),
                                      (64 * KiB, 256 * KiB, "64 KiB, 256K rd")):
            for kind in ("text", "binary"):
                count = 200 if size > KiB else 1000
                payload = "x" * size if kind == "text" else os.urandom(size)
                frames = [frame(payload, True) for _ in range(count)]
                reads = reads_of(frames, per_read)
                variants = {"fastframe": fast_reader(reads, count),
                            "wsproto": wsproto_reader(reads, count)}
                rows.append((f"{label} {kind[:3]}", interleaved(variants, count, rounds, budget)))
    finally:
        frame_protocol.XorMaskerSimple = PURE  # type: ignore[misc]
    table("parse + unmask + decode, ns per frame (server side)", rows, "wsproto")


# ---------------------------------------------------------------- send


def bench_send(rounds: int, budget: float) -> None:
    frame_protocol.XorMaskerSimple = _AcceleratedMasker  # type: ignore[misc]
    rows = []
    try:
        for client in (False, True):
            for size in (32, 64 * KiB):
                for kind in ("text", "binary"):
                    data: Any = "x" * size if kind == "text" else os.urandom(size)
                    conn = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
                    message = TextMessage(data=data) if kind == "text" else BytesMessage(data=data)
                    variants = {
                        "fastframe": lambda d=data, c=client: frame(d, c),
                        "wsproto": lambda m=message, c=conn: c.send(m),
                    }
                    label = f"{'cli' if client else 'srv'} {size_label(size)} {kind[:3]}"
                    rows.append((label, interleaved(variants, 1, rounds, budget)))
    finally:
        frame_protocol.XorMaskerSimple = PURE  # type: ignore[misc]
    table("serialise one message, ns per frame", rows, "wsproto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("masker", "parse", "send"))
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 9")
    args = ap.parse_args()
    rounds, budget = (3, 0.02) if args.quick else (9, 0.05)
    print(f"Python {sys.version.split()[0]}, {rounds} interleaved rounds, medians")
    for name, fn in (("masker", bench_masker), ("parse", bench_parse), ("send", bench_send)):
        if args.only in (None, name):
            fn(rounds, budget)


if __name__ == "__main__":
    main()
