"""The opening handshake's HTTP request head, read within bounds whatever the reads.

h11 bounds a request head only while it is incomplete: 10,000 headers or a 64 KiB url that
arrive in one read get through. Here the head is collected before h11 sees it, and refused
as the `websockets` library refuses it:
- a request line over MAX_LINE bytes: 414;
- a header line over MAX_LINE bytes, more than MAX_HEADERS headers, or a head over MAX_HEAD
  bytes: 431;
and once it is complete (`check`), what wsproto lets through:
- HTTP/1.0 (or any version but 1.1): 505;
- a body (Content-Length other than 0, or Transfer-Encoding): 400;
- a Sec-WebSocket-Key that is not 16 bytes in base64: 400;
- a Sec-WebSocket-Version other than 13: 426, with `Sec-WebSocket-Version: 13`.
What comes after the head in the same reads (`rest`) is the client's first WebSocket bytes.
This module knows nothing of WebSocket connections or of evt.
"""

from __future__ import annotations

import base64
import binascii
import re

MAX_LINE = 8192  # bytes in the request line and in one header line (as websockets, nginx)
MAX_HEADERS = 128  # header lines (as websockets)
MAX_HEAD = 16384  # bytes in the whole head, the final empty line included

_VERSION = re.compile(rb"HTTP/\d\.\d")


class BadRequest(Exception):
    """A request refused before wsproto sees it: the HTTP status, why (in words), and headers
    for the answer."""

    def __init__(self, status: int, reason: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


class RequestHead:
    """Bytes of one request, up to the empty line that ends its head. `feed` each read; once
    it returns True, `head` is the head and `rest` what followed it. Each byte is looked at
    once, and at most MAX_HEAD bytes of head are kept."""

    __slots__ = ("_buffer", "_line_start", "_lines", "head", "rest")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._line_start = 0  # where the line not yet ended starts
        self._lines = 0  # lines ended so far (the request line included)
        self.head = b""
        self.rest = b""

    def feed(self, data: bytes) -> bool:
        """Take one read; True when the head is complete. Raises BadRequest (414, 431) as soon
        as the bytes so far are over a bound. Past the bound nothing is copied: a read of
        200 KB of headers costs no more than MAX_HEAD bytes here."""
        buffer = self._buffer
        room = MAX_HEAD + 1 - len(buffer)  # one byte over tells that the head is too long
        beyond = data[room:] if len(data) > room else b""
        buffer += data[:room] if beyond else data
        start = self._line_start
        while True:
            end = buffer.find(b"\n", start, start + MAX_LINE + 2)
            if end < 0:
                self._over(len(buffer) - start, len(buffer))
                self._line_start = start
                return False
            self._over(end - start, end + 1)
            if self._lines and (end == start or (end == start + 1 and buffer[start] == 13)):
                self.head = bytes(buffer[:end + 1])
                self.rest = bytes(buffer[end + 1:]) + beyond
                self._buffer = bytearray()
                return True
            self._lines += 1
            if self._lines > MAX_HEADERS + 1:
                raise BadRequest(431, f"more than {MAX_HEADERS} headers")
            start = end + 1

    def forget(self) -> None:
        """Drop what was collected (the request is refused)."""
        self._buffer = bytearray()

    def _over(self, line: int, head: int) -> None:
        """Refuse a line of `line` bytes (its CR included) or a head of `head` bytes so far."""
        if line > MAX_LINE + 1:  # the CR of CRLF is not counted
            if self._lines == 0:
                raise BadRequest(414, f"request line over {MAX_LINE} bytes")
            raise BadRequest(431, f"header line over {MAX_LINE} bytes")
        if head > MAX_HEAD:
            raise BadRequest(431, f"request head over {MAX_HEAD} bytes")


def check(head: bytes) -> None:
    """What wsproto does not check in a complete head, answered as the `websockets` library
    answers it. Raises BadRequest."""
    lines = head.split(b"\n")
    parts = lines[0].rstrip(b"\r").split(b" ")
    if len(parts) == 3 and parts[2] != b"HTTP/1.1" and _VERSION.fullmatch(parts[2]):
        version = parts[2].decode("ascii")
        raise BadRequest(505, f"{version} cannot upgrade to WebSocket: HTTP/1.1 is needed")
    keys: list[bytes] = []
    version_header: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue  # the final empty line, or a bad line h11 answers with 400
        name = name.strip().lower()
        value = value.strip(b" \t\r")
        if name == b"content-length" and value != b"0":
            raise BadRequest(400, "a WebSocket handshake request has no body "
                                  f"(Content-Length: {_shown(value)})")
        if name == b"transfer-encoding":
            raise BadRequest(400, "a WebSocket handshake request has no body "
                                  f"(Transfer-Encoding: {_shown(value)})")
        if name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            version_header = value
    if len(keys) > 1:
        raise BadRequest(400, "more than one Sec-WebSocket-Key header")
    if keys and not _valid_key(keys[0]):
        raise BadRequest(400, f"Sec-WebSocket-Key {_shown(keys[0])} is not 16 bytes in base64")
    if version_header is not None and version_header != b"13":
        raise BadRequest(426, f"unsupported WebSocket version {_shown(version_header)} "
                              "(this server speaks 13)", (("Sec-WebSocket-Version", "13"),))


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _shown(value: bytes) -> str:
    """A header value for an answer's text: quoted, escaped, cut short."""
    text = value[:40].decode("latin-1")
    return repr(text if len(value) <= 40 else text + "...")
