"""The server's answer to a client's opening handshake, read without h11 when it is a plain
`101 Switching Protocols` (it knows nothing of evt).

wsproto reads the response through h11: 26 us of CPU a connection, most of what a client's
handshake costs in Python. A plain 101 (HTTP/1.1, CRLF lines, ASCII header fields, no
extension) is read here in a few microseconds and judged as wsproto judges it, in wsproto's
words and order (Connection: Upgrade, Upgrade: websocket, the accept token, the subprotocol,
the extensions); the connection is then wsproto's `Connection`, given what followed the
headers. Anything else (another status, a header this reader does not take, a response not
complete yet at 16 KiB) is left to wsproto, fed the same bytes: it reads it as it always did.
"""

from __future__ import annotations

import re

from wsproto.handshake import client_extensions_handshake
from wsproto.utilities import RemoteProtocolError, generate_accept_token, split_comma_header

HEAD_LIMIT = 16 * 1024  # h11's own limit on an incomplete response head
_STATUS = re.compile(rb"HTTP/1\.1 101(?: [\t\x20-\x7e]*)?\r\n")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"
                    rb"((?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?)[ \t]*\r\n")
_KEY = re.compile(rb"\r\nSec-WebSocket-Key: ([A-Za-z0-9+/=]+)\r\n")


def request_key(request: bytes) -> bytes | None:
    """The Sec-WebSocket-Key of a request wsproto made."""
    m = _KEY.search(request)
    return m[1] if m else None


class Accepted:
    __slots__ = ("headers", "rest", "subprotocol")

    def __init__(self, subprotocol: str | None, headers: list[tuple[bytes, bytes]],
                 rest: bytes) -> None:
        self.subprotocol = subprotocol
        self.headers = headers  # the others, names in lower case (as wsproto gives them)
        self.rest = rest  # what came after the head: the first frames


def read_accept(head: bytes, key: bytes, offered: list[str]) -> Accepted | None:
    """The 101 in `head` (the bytes read so far, a CRLF CRLF among them), or None when it is
    not one this reader takes. Raises RemoteProtocolError, as wsproto would, for a 101 that
    does not accept this handshake."""
    m = _STATUS.match(head)
    if m is None:
        return None
    pos = m.end()
    fields = []
    while not head.startswith(b"\r\n", pos):
        m = _FIELD.match(head, pos)
        if m is None:
            return None
        fields.append((m[1].lower(), m[2]))
        pos = m.end()
    connection = accept = subprotocol = None
    upgrade = b""
    accepts: list[str] = []
    headers = []
    for name, value in fields:
        if name == b"connection":
            connection = split_comma_header(value)
        elif name == b"sec-websocket-extensions":
            accepts = split_comma_header(value)
        elif name == b"sec-websocket-accept":
            accept = value
        elif name == b"sec-websocket-protocol":
            subprotocol = value.decode("ascii")
        elif name == b"upgrade":
            upgrade = value
        else:
            headers.append((name, value))
    if connection is None or not any(t.lower() == "upgrade" for t in connection):
        raise RemoteProtocolError("Missing header, 'Connection: Upgrade'")
    if upgrade.lower() != b"websocket":
        raise RemoteProtocolError("Missing header, 'Upgrade: websocket'")
    if accept != generate_accept_token(key):
        raise RemoteProtocolError("Bad accept token")
    if subprotocol is not None and subprotocol not in offered:
        raise RemoteProtocolError(f"unrecognized subprotocol {subprotocol}")
    client_extensions_handshake(accepts, [])  # none offered: any named is refused
    return Accepted(subprotocol, headers, head[pos + 2:])
