"""What both ends of a WebSocket connection share: limits, close codes and their words,
the masker, the bounded permessage-deflate, and how a connection ended (it knows nothing
of evt)."""

from __future__ import annotations

import re
import ssl
import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import anyio
import anyio.abc
from wsproto import frame_protocol
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    RejectConnection,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from lang.wire.codes import CLOSE_NAMES

# uvloop hands over up to 256 KiB per read; asking for less makes anyio split (copy) it
READ_SIZE = 262144
OPEN_STATE = ConnectionState.OPEN  # a module constant: enum attribute lookups cost on hot paths
# replies queued while one read is processed are written together, up to this many bytes
BATCH_LIMIT = 65536
# after we failed a connection, at most this many bytes are parsed looking for the peer's
# close frame; then TCP is dropped (a peer flooding frames costs no more than that)
FAILED_READ_LIMIT = 65536
STREAM_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                  OSError, ssl.SSLError)



# ---------------------------------------------------------------- masking
#
# Unmasking what clients send (and masking what a client sends) is most of the cost of large
# messages. On the paths wsproto takes (fragments, permessage-deflate) its pure-Python masker
# is replaced by a C one: evt's own (lang/wire/_xormask.c, eight bytes at a time) when it was
# built, else wsaccel's (a byte loop, about twice as fast as wsproto's); with neither,
# wsproto's own is used.

try:
    from lang.wire._xormask import mask as _own_mask
except ImportError:  # pragma: no cover - an install without a compiler
    _own_mask = None
try:
    from wsaccel.xormask import XorMaskerSimple as _CMasker
except ImportError:  # pragma: no cover - the fallback is tested by forcing it off
    _CMasker = None

_PURE_MASKER = frame_protocol.XorMaskerSimple


class _OwnMasker:
    """wsproto's masker interface (`process(data)`, called once per piece of a payload, the
    key running on across pieces) over evt's C masker."""

    __slots__ = ("_done", "_key")

    def __init__(self, masking_key: bytes) -> None:
        self._key = bytes(masking_key)
        self._done = 0

    def process(self, data: bytes | bytearray) -> bytes:
        # bytes, not the bytearray wsproto's masker returns: wsproto copies the payload into
        # bytes right after, which is then free
        out = _own_mask(data, self._key, self._done & 3)  # type: ignore[misc]
        self._done += len(data)
        return out


class _AcceleratedMasker:
    """wsproto's masker interface (`process(data) -> bytearray`) over wsaccel's."""

    __slots__ = ("_masker",)

    def __init__(self, masking_key: bytes) -> None:
        self._masker = _CMasker(bytes(masking_key))

    def process(self, data: bytes | bytearray) -> bytes:
        return self._masker.process(data)


_C_MASKER = (_OwnMasker if _own_mask is not None
             else _AcceleratedMasker if _CMasker is not None else None)


def use_masking_accelerator(enabled: bool = True) -> bool:
    """Use a C masker when there is one (the default). Returns whether one is in use."""
    on = enabled and _C_MASKER is not None
    frame_protocol.XorMaskerSimple = _C_MASKER if on else _PURE_MASKER
    return on


use_masking_accelerator()


class Closed(NamedTuple):
    code: int
    reason: str
    clean: bool


class TransportError(Exception):
    """A connection could not be made or was refused; the message says why, in words."""


@dataclass
class Limits:
    max_message: int = 1024 * 1024
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    # the frames of one message that say more is to come (FIN clear): more fail with 1009.
    # 0: max(65536, max_message // 64), so that a message of max_message bytes in 64-byte
    # fragments fits (Autobahn's 9.3.1 and 9.4.1 send 4 MiB so: 65536 and an empty last one)
    max_fragments: int = 0
    # a message begun and not finished within this many seconds fails with 1008 (0: never)
    message_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.max_fragments <= 0:
            self.max_fragments = max(65536, self.max_message // 64)


class BoundedDeflate(PerMessageDeflate):
    """permessage-deflate that never inflates more than `limit` bytes of one message: a frame
    that would is refused with 1009 before the memory is spent."""

    def __init__(self, limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self._inflated = 0

    def accept(self, offer: str) -> bool | str | None:
        """The server's answer to one offer. An offer whose parameters wsproto cannot parse
        (`server_max_window_bits=x`) is declined, as RFC 7692 §5 asks; so is any offer after
        the one accepted (the first acceptable offer wins, and the state is that one's)."""
        if self._enabled:
            return None
        flags = (self.client_no_context_takeover, self.server_no_context_takeover)
        try:
            return super().accept(offer)
        except ValueError:
            self.client_no_context_takeover, self.server_no_context_takeover = flags
            return None

    def finalize(self, offer: str) -> None:
        """The client takes the server's answer; one it cannot parse fails the handshake
        (RFC 7692 §5: the client must fail the connection)."""
        try:
            super().finalize(offer)
        except ValueError:
            raise RemoteProtocolError(f"bad permessage-deflate parameters {offer!r}",
                                      event_hint=RejectConnection()) from None

    def frame_inbound_payload_data(self, proto: Any, data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        room = self.limit - self._inflated
        try:
            out = self._decompressor.decompress(bytes(data), room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self.limit or self._decompressor.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto: Any, fin: bool) -> bytes | CloseReason | None:
        result = super().frame_inbound_complete(proto, fin)
        if isinstance(result, bytes | bytearray):
            self._inflated += len(result)
            if self._inflated > self.limit:
                return CloseReason.MESSAGE_TOO_BIG
        if fin:
            self._inflated = 0
        return result


def close_text(code: int, reason: str) -> str:
    name = CLOSE_NAMES.get(code, "")
    out = f"{code} ({name})" if name else str(code)
    return f"{out} {reason!r}" if reason else out


async def discard(message: Any) -> None:
    return None


def message_event(data: str | bytes) -> Any:
    if type(data) is str:
        return TextMessage(data=data)
    return BytesMessage(data=data)


def violation_words(code: int, reason: str) -> str:
    """wsproto's words for what the peer did wrong, in evt's where they are Python's."""
    if code == 1007:
        where = re.search(r"in position (\d+)", reason)
        at = f" at byte {where[1]}" if where else ""
        if reason.startswith("Error decoding CLOSE reason"):
            return f"close reason not valid UTF-8{at}"
        if "codec can't decode" in reason:
            return "text message not valid UTF-8"
    return reason


def seconds_text(x: float) -> str:
    return f"{int(x)}s" if float(x).is_integer() else f"{x:g}s"
