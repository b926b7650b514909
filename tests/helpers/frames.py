"""A free port, and WebSocket frames made by hand (for raw-socket peers that misbehave on
purpose)."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def frame_head(opcode: int, n: int, *, fin: bool = True, rsv1: bool = False,
               masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        return head + bytes([bit | n])
    if n < 65536:
        return head + bytes([bit | 126]) + n.to_bytes(2, "big")
    return head + bytes([bit | 127]) + n.to_bytes(8, "big")


def client_frame(opcode: int, payload: bytes, *, fin: bool = True,
                 rsv1: bool = False) -> bytes:
    """One masked frame, as a client sends it."""
    key = os.urandom(4)
    return frame_head(opcode, len(payload), fin=fin, rsv1=rsv1) + key + mask(payload, key)
