"""The frame fast path: plain data frames parsed and serialised without wsproto.

Self-contained (stdlib, wsproto's public types, optionally wsaccel; nothing of evt). wsproto
stays the protocol engine: this module takes off the byte stream only what it can prove
wsproto would turn into one whole message with no other effect, and cuts everything else at
frame boundaries for wsproto. Handing wsproto a byte string it would have got anyway, only
later or in other pieces, never changes what it does, so the results are the same by
construction (tests/wire/test_fastframe.py feeds the same streams both ways and compares).

A "simple" frame is: FIN set, RSV bits clear, opcode text (1) or binary (2), masked iff we
are the server (RFC 6455 §5.1), the minimal length encoding (§5.2), a payload of at most
max_message bytes, no fragmented message in progress, and (text) strict UTF-8 (§8.1).

How the connection uses it (the wiring into lang/wire/connection.py's WebSocket; tests/
test_fastframe.py's FastConnection is this recipe over real sockets):

1. Start: only on a connection without an extension (permessage-deflate ones use wsproto as
   today). Frames that came in the handshake's read are in wsproto already: after `run`
   has drained `conn.events()` once, `wsproto_in_step(conn)`:
     True  -> `self.fast = FrameParser(self.client, limits.max_message)`;
     False -> wsproto holds part of a frame: feed wsproto alone (as today), ask after each
              read until True;
     None  -> never on this connection.
2. Receive, in `_feed(data)` when `self.fast` is set:

       while True:
           messages, raw = self.fast.take(data)   # data: this read, then b""
           data = b""
           for m in messages:   # str (text) / bytes (binary), whole, checked, <= max_message
               deliver as `_events` delivers a whole TextMessage/BytesMessage: messages_in,
               on_frame("<", ...), skipped once the connection was failed or closed; the size
               count (_size) stays 0 (it is for wsproto's fragments)
           if raw is None:      # this read is used up (an incomplete frame waits in the
               break            # parser: at most max_message + 14 bytes)
           conn.receive_data(raw)   # cut at frame boundaries; LocalProtocolError as today
           await self._events(on_message)   # as today; on any CloseConnection event, also
                                            # self.fast.stop() (what it returns may be
                                            # dropped: wsproto reads nothing more then)
           if self.closed is not None: break

   `data` must not change after take() (the parser may keep a reference to it until the
   next call). After stop() or an anomaly (bad UTF-8, a non-minimal length, a length over
   max_message, RSV bits, an unknown opcode, the wrong mask bit, a continuation without a
   start...), take() hands every byte to wsproto, which fails the connection as it always
   did. Control frames go to wsproto (pings are answered there); a fragmented message goes
   to wsproto until it ends (the parser follows FIN and opcodes: `fragmented`); a close
   frame ends the fast path. A frame that is not simple is streamed to wsproto as it
   arrives, and a simple text frame that spans reads is UTF-8-checked as it arrives, so
   wsproto fails a stream at the same read as it would alone (Autobahn 6.4.x: fail fast),
   with the same words.
3. Send: for an unfragmented text/binary message, in the OPEN state, on a connection
   without an extension: `frame(data, self.client)` instead of
   `conn.send(TextMessage/BytesMessage)` (the same bytes, a client's masked with a fresh key
   from masking_key()). wsproto keeps no state for a whole data frame it sends, so the two
   may be mixed freely (pings, pongs and closes stay wsproto's).
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import Any

from wsproto.connection import Connection, ConnectionState

__all__ = ["MASKERS", "FrameParser", "frame", "mask", "mask_pure", "masking_key",
           "wsproto_in_step"]

# ---------------------------------------------------------------- masking
#
# Measured (bench/fastframe_bench.py --only masker, interleaved, CPython 3.11): evt's own C
# masker (lang/wire/_xormask.c, eight bytes at a time) beats wsaccel's byte loop at every size
# from 32 B (about 20x at 64 KiB); the big-integer XOR converts the payload to an int and back
# (about 1 ns per byte each way), so it never beats wsaccel (1.5x its time at 32 B, 3x at
# 4 KiB and above), and it beats a bytes.translate masker only up to about 500 B. Hence: ours
# when it was built, else wsaccel when installed, else the big-integer XOR up to BIGINT_MAX
# bytes and the translate masker above.

try:
    from lang.wire._xormask import mask as _mask_own
except ImportError:  # pragma: no cover - an install without a compiler
    _mask_own = None
try:
    from wsaccel.xormask import XorMaskerSimple as _CMasker
except ImportError:  # pragma: no cover - the pure maskers are tested on their own
    _CMasker = None

BIGINT_MAX = 384
_TABLES: list[bytes] | None = None  # the translate masker's, made when first needed


def _mask_bigint(payload: Any, key: bytes) -> bytes:
    n = len(payload)
    k = (bytes(key) * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(
        n, "little")


def _mask_translate(payload: Any, key: bytes) -> bytes:
    global _TABLES
    tables = _TABLES
    if tables is None:  # (65,536 XORs: a start-up's cost where a C masker makes it unused)
        tables = _TABLES = [bytes(a ^ b for a in range(256)) for b in range(256)]
    data = bytearray(payload)
    for i in range(4):
        data[i::4] = data[i::4].translate(tables[key[i]])
    return bytes(data)


def mask_pure(payload: Any, key: bytes) -> bytes:
    """XOR `payload` (any bytes-like) with the 4-byte `key` repeated (RFC 6455 §5.3), with
    neither C masker."""
    if len(payload) <= BIGINT_MAX:
        return _mask_bigint(payload, key) if payload else b""
    return _mask_translate(payload, key)


def _mask_wsaccel(payload: Any, key: bytes) -> bytes:
    return _CMasker(key).process(payload)  # type: ignore[misc]


MASKERS: dict[str, Any] = {"pure": mask_pure}
if _CMasker is not None:
    MASKERS["wsaccel"] = _mask_wsaccel
if _mask_own is not None:
    MASKERS["evt"] = _mask_own
mask = MASKERS.get("evt") or MASKERS.get("wsaccel") or mask_pure
"""XOR `payload` (any bytes-like) with the 4-byte `key` repeated (RFC 6455 §5.3): the fastest
masker there is (MASKERS, by name)."""

_keys: list[bytes] = []


def masking_key() -> bytes:
    """A fresh client masking key (RFC 6455 §5.3: from a strong source of entropy): taken
    from a pool filled 4 KiB at a time from os.urandom, a system call costing more than the
    rest of a small frame. A forked child never reuses its parent's pool."""
    try:
        return _keys.pop()
    except IndexError:
        pool = os.urandom(4096)
        _keys.extend([pool[i:i + 4] for i in range(0, 4096, 4)])
        return _keys.pop()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_keys.clear)

# ---------------------------------------------------------------- sending

_H16 = struct.Struct("!BBH").pack
_H64 = struct.Struct("!BBQ").pack


def frame(data: str | bytes, client: bool, key: bytes | None = None) -> bytes:
    """One unfragmented text (str) or binary frame, as wsproto's Connection.send would make it
    with no extension: a client masks it (with `key`, else a fresh masking_key())."""
    if type(data) is str:
        payload: Any = data.encode()
        b0 = 0x81
    else:
        payload = data
        b0 = 0x82
    n = len(payload)
    bit = 0x80 if client else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = _H16(b0, bit | 126, n)
    else:
        head = _H64(b0, bit | 127, n)
    if not client:
        return head + payload
    if key is None:
        key = masking_key()
    return head + key + mask(payload, key)


# ---------------------------------------------------------------- receiving

_Q = struct.Struct("!Q").unpack_from
_SHORT, _SIMPLE, _OTHER, _ANOMALY = range(4)
_OPCODES = frozenset((0, 1, 2, 8, 9, 10))
_new_utf8 = codecs.getincrementaldecoder("utf-8")


def wsproto_in_step(conn: Connection) -> bool | None:
    """Whether the fast path can start on `conn` now (drain conn.events() first): True when
    wsproto holds no part of a frame and no fragmented message; False: not yet (ask again
    after the next read); None: never (an extension is in use, wsproto read a close frame or
    failed, the connection is closing, or this wsproto's insides are not the known ones)."""
    try:
        if conn.state is not ConnectionState.OPEN and \
                conn.state is not ConnectionState.LOCAL_CLOSING:
            return None
        proto = conn._proto
        if proto.extensions or proto._parse_more.gi_frame is None:
            return None
        decoder = proto._frame_decoder
        return decoder.header is None and len(decoder.buffer) == 0 and \
            proto._message_decoder.opcode is None
    except AttributeError:
        return None


class FrameParser:
    """The fast path over one connection's received bytes (see the module's docstring)."""

    __slots__ = ("_checked", "_cut", "_data", "_decoder", "_held", "_hlen", "_keep",
                 "_mask_bit", "_owed", "_parts", "_plen", "_pos", "_queue", "active", "client",
                 "fragmented", "max_message")

    def __init__(self, client: bool, max_message: int) -> None:
        self.client = client
        self.max_message = max_message
        self.active = True  # False after stop(), an anomaly or a close frame: all to wsproto
        self.fragmented = False  # a fragmented message is in progress (in wsproto)
        self._mask_bit = 0 if client else 0x80
        self._keep = 0 if client else 4  # the masking key's bytes in a header
        self._data: Any = None  # bytes not parsed yet, after a handover (from _pos)
        self._pos = 0
        self._owed = 0  # bytes still to come of a frame streamed to wsproto
        self._held: bytearray | None = None  # the start of a frame, until it is whole
        self._hlen = -1  # its header's length (-1: the header itself is not whole)
        self._plen = 0  # its payload's length
        self._decoder: Any = None  # a held text frame: UTF-8 checked as it arrives
        self._parts: list[str] = []
        self._checked = 0
        self._cut = 0  # where the last read's bytes begin in _held
        self._queue: list[Any] = []  # pieces for wsproto, one per take() (see _fail)

    @property
    def receiving(self) -> bool:
        """Whether a simple frame has begun to arrive and is not whole yet (it is held here,
        not in wsproto: the connection times it as it times a message wsproto holds)."""
        return self._held is not None

    def stop(self) -> bytes:
        """End the fast path; returns the bytes it held (feed them to wsproto)."""
        self.active = False
        rest = b"".join(self._queue) + bytes(self._held or b"")
        self._queue = []
        if self._data is not None:
            rest += self._data[self._pos:]
        self._data = self._held = self._decoder = None
        return rest

    def whole(self, data: bytes) -> list[str | bytes] | None:
        """The messages of `data` when the parser is at a frame boundary (nothing held,
        nothing owed to wsproto, no fragmented message) and `data` is nothing but whole
        simple frames: what take(data) would return with no bytes for wsproto. Otherwise
        None, and the parser is as it was (take(data) is still to be called)."""
        if self._held is not None or self._data is not None or self._owed or \
                not self.active or self.fragmented or not data:
            return None
        n = len(data)
        b0 = data[0]
        if (b0 == 0x81 or b0 == 0x82) and n > 1 and 0 <= data[1] - self._mask_bit < 126:
            h = 2 + self._keep
            end = h + data[1] - self._mask_bit
            if end == n and n - h <= self.max_message:  # one small frame: as _scan takes it
                payload = data[h:] if h == 2 else mask(data[h:], data[2:6])
                if b0 == 0x82:
                    return [payload]
                try:
                    return [str(payload, "utf-8")]
                except UnicodeDecodeError:  # wsproto fails it with 1007
                    return None
        # every frame's header first: a read that ends inside a frame (large messages
        # pipelined) is left to take() before any payload is unmasked and decoded twice
        end = 0
        while end < n:
            kind, h, ln = self._header(data, end, n)
            if kind != _SIMPLE:
                return None
            end += h + ln
        if end > n:  # the last frame is not whole: nothing to undo
            return None
        out, raw = self._scan(data, 0, [])
        if raw is None and self._held is None:
            return out
        # a text frame is not UTF-8 (wsproto fails it): undo what _scan did to the state
        # (it only ever leaves a boundary through these)
        self._held = self._data = self._decoder = None
        self._pos = self._owed = 0
        self.active = True
        self.fragmented = False
        return None

    def take(self, data: bytes) -> tuple[list[str | bytes], bytes | None]:
        """Parse `data` (a read; b"" to go on after a handover): the whole simple messages at
        the head, in order, and then the bytes wsproto must get (or None)."""
        if self._held is None and self._data is None and not self._owed and self.active:
            return self._scan(data, 0, [])  # the common case: at a frame boundary
        out: list[str | bytes] = []
        if not self.active:
            if self._queue:
                if data:
                    self._queue.append(data)
                return out, self._queue.pop(0)
            return out, data or None
        if self._data is not None:
            src, pos = self._data, self._pos
            self._data = None
            if data:
                src, pos = src[pos:] + data, 0
        else:
            src, pos = data, 0
        n = len(src)
        if self._owed:
            k = min(self._owed, n - pos)
            self._owed -= k
            if self._owed:
                return out, src[pos:] if k else None
            return self._handover(src, pos, pos + k, out, b"")
        if self._held is not None:
            done = self._resume(src, pos, out)
            if type(done) is not int:
                return done
            pos = done
        return self._scan(src, pos, out)

    # -- the main loop: one pass over the simple frames at the head

    def _scan(self, src: Any, pos: int, out: list[Any]) -> tuple[list[Any], bytes | None]:
        if self.fragmented:  # every frame goes to wsproto until the message ends
            return self._handover(src, pos, pos, out, b"")
        n = len(src)
        view: Any = None  # made for large payloads only: a small one is cheaper to copy
        limit = self.max_message
        bit = self._mask_bit
        keep = self._keep
        append = out.append
        while pos < n:
            b0 = src[pos]
            if (b0 == 0x81 or b0 == 0x82) and n - pos > 1:
                ln = src[pos + 1] - bit
                if 0 <= ln < 126 and ln <= limit:  # the common case: a small frame, the
                    h = 2 + keep                      # right mask bit
                else:
                    kind, h, ln = self._header(src, pos, n)
                    if kind != _SIMPLE:
                        return self._other(kind, src, pos, out)
            else:
                kind, h, ln = self._header(src, pos, n)
                if kind != _SIMPLE:
                    return self._other(kind, src, pos, out)
            end = pos + h + ln
            if end > n:
                if self._hold(src, pos, h, ln):
                    return out, None
                self.active = False  # bad UTF-8 already: everything to wsproto
                return out, src[pos:]
            if ln < 2048:
                payload: Any = src[pos + h:end]
            else:
                if view is None:
                    view = memoryview(src)
                payload = view[pos + h:end]
            if keep:
                payload = mask(payload, src[pos + h - 4:pos + h])
            if b0 == 0x81:
                try:
                    append(str(payload, "utf-8"))
                except UnicodeDecodeError:  # wsproto fails it with 1007
                    self.active = False
                    return out, src[pos:]
            else:
                append(payload if type(payload) is bytes else bytes(payload))
            pos = end
        return out, None

    def _header(self, src: Any, pos: int, n: int) -> tuple[int, int, int]:
        """(kind, header length, payload length) of the frame at src[pos:]. Every rule is
        checked as soon as its bytes are there, so nothing wsproto would fail on a prefix is
        held back."""
        b0 = src[pos]
        op = b0 & 0x0F
        if b0 & 0x70 or op not in _OPCODES:
            return _ANOMALY, 0, 0
        fin = b0 & 0x80
        control = op >= 8
        if control:
            if not fin:
                return _ANOMALY, 0, 0
        elif (op == 0) != self.fragmented:  # a continuation without a start, or a new
            return _ANOMALY, 0, 0           # message inside a fragmented one
        if n - pos < 2:
            return _SHORT, 0, 0
        b1 = src[pos + 1]
        ln = b1 & 0x7F
        if (b1 & 0x80) != self._mask_bit or (control and ln > 125):
            return _ANOMALY, 0, 0
        h = 2
        if ln == 126:
            if n - pos < 4:
                return _SHORT, 0, 0
            ln = src[pos + 2] << 8 | src[pos + 3]
            if ln < 126:
                return _ANOMALY, 0, 0
            h = 4
        elif ln == 127:
            if n - pos < 10:
                return _SHORT, 0, 0
            ln = _Q(src, pos + 2)[0]
            if ln < 65536 or ln >> 63:
                return _ANOMALY, 0, 0
            h = 10
        if ln > self.max_message:
            return _ANOMALY, 0, 0
        h += self._keep
        if n - pos < h:
            return _SHORT, 0, 0
        return (_SIMPLE if fin and (op == 1 or op == 2) else _OTHER), h, ln

    def _other(self, kind: int, src: Any, pos: int, out: list[Any]
               ) -> tuple[list[Any], bytes | None]:
        if kind == _SHORT:
            self._held = bytearray(memoryview(src)[pos:])
            self._cut = 0
            self._hlen = -1
            return out, None
        return self._handover(src, pos, pos, out, b"")

    def _handover(self, src: Any, start: int, pos: int, out: list[Any], prefix: bytes
                  ) -> tuple[list[Any], bytes | None]:
        """Hand wsproto `prefix`, src[start:pos] and the frames after it that are not simple
        (after an anomaly or a close frame: everything); what follows stays for the next
        take()."""
        n = len(src)
        while pos < n and self.active:
            kind, h, ln = self._header(src, pos, n)
            if kind == _SIMPLE or kind == _SHORT:
                break
            pos = self._passed(kind, src[pos], pos + h + ln, n)
        if not self.active:
            pos = n
        elif pos < n:
            self._data, self._pos = src, pos
        raw = src[start:pos]
        if prefix:
            raw = prefix + raw
        return out, raw or None

    def _passed(self, kind: int, b0: int, end: int, n: int) -> int:
        """A frame that is not simple goes to wsproto: follow what it does to the stream.
        Returns where the next frame starts (or n, the frame being streamed)."""
        op = b0 & 0x0F
        if kind == _ANOMALY or op == 8:  # wsproto reads nothing after a close frame
            self.active = False
            return n
        if op == 1 or op == 2:  # (with FIN clear: else it would be simple)
            self.fragmented = True
        elif op == 0 and b0 & 0x80:
            self.fragmented = False
        if end > n:  # streamed: wsproto takes the rest as it comes
            self._owed = end - n
            return n
        return end

    # -- a frame that spans reads

    def _hold(self, src: Any, pos: int, h: int, ln: int) -> bool:
        """Keep the start of a simple frame; a text frame is checked as it comes. False: it
        is not UTF-8 already."""
        self._held = bytearray(memoryview(src)[pos:])
        self._cut = 0
        self._hlen, self._plen = h, ln
        if src[pos] != 0x81:
            self._decoder = None
            return True
        self._decoder, self._parts, self._checked = _new_utf8(), [], 0
        if self._check(False):
            return True
        self._held = self._decoder = None
        return False

    def _check(self, final: bool) -> bool:
        """UTF-8-check the held text frame's payload that came since the last check."""
        held = self._held
        assert held is not None
        start = self._hlen + self._checked
        if start >= len(held) and not final:
            return True
        chunk: Any = memoryview(held)[start:]  # (released before held grows again)
        if self._keep:
            r = self._checked & 3
            key = held[self._hlen - 4:self._hlen]
            chunk = mask(chunk, key[r:] + key[:r])
        try:
            self._parts.append(self._decoder.decode(chunk, final))
        except UnicodeDecodeError:
            return False
        self._checked += len(chunk)
        return True

    def _resume(self, src: Any, pos: int, out: list[Any]
                ) -> int | tuple[list[Any], bytes | None]:
        """Go on with the held frame: once it is whole, its message goes to `out` and the
        position after it is returned; else take()'s answer."""
        held = self._held
        assert held is not None
        n = len(src)
        self._cut = len(held)
        if self._hlen < 0:  # the header was not whole: complete it (at most 14 bytes)
            head = held + src[pos:pos + 14]
            kind, h, ln = self._header(head, 0, len(head))
            if kind == _SHORT:
                held += src[pos:]
                return out, None
            if kind != _SIMPLE:
                self._held = None
                end = self._passed(kind, head[0], pos + h + ln - len(held), n)
                return self._handover(src, pos, end, out, bytes(held))
            self._hlen, self._plen = h, ln
            self._decoder = _new_utf8() if head[0] == 0x81 else None
            self._parts, self._checked = [], 0
        missing = self._hlen + self._plen - len(held)
        if n - pos < missing:
            held += memoryview(src)[pos:]
            if self._decoder is None or self._check(False):
                return out, None
            return self._fail(src, n, out)
        held += memoryview(src)[pos:pos + missing]
        pos += missing
        if self._decoder is not None:
            if not self._check(True):
                return self._fail(src, pos, out)
            out.append("".join(self._parts))
            self._decoder = None
            self._parts = []
        elif self._keep:
            h = self._hlen
            out.append(mask(memoryview(held)[h:], held[h - 4:h]))
        else:
            out.append(bytes(memoryview(held)[self._hlen:]))
        self._held = None
        return pos

    def _fail(self, src: Any, pos: int, out: list[Any]) -> tuple[list[Any], bytes | None]:
        """The held text frame is not UTF-8: it and everything after it go to wsproto in two
        pieces, what came before this read and the rest. wsproto decodes each piece as it
        gets it, and its error's words (sent in the close frame) count the position from the
        start of the piece, with the end of a character cut by the previous read: it says
        what it would have said alone."""
        held = self._held
        assert held is not None
        cut = self._cut
        self._held = self._decoder = None
        self.active = False
        self._queue = [bytes(memoryview(held)[cut:]) + src[pos:]]
        return out, bytes(memoryview(held)[:cut])
