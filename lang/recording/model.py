"""A recorded WebSocket conversation, as read from or written to a HAR file: what the
recorder fills in, the replay and codegen read. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

TEXT, BINARY, CLOSE = 1, 2, 8  # opcodes, as HAR's _webSocketMessages write them
SEND, RECEIVE = "send", "receive"  # always from the client's side


@dataclass
class Message:
    """One message of a conversation. `type` is "send" (client to server) or "receive"
    (server to client), whichever side recorded it. `opcode` 1 text (`data` a str), 2
    binary (`data` bytes), 8 a close frame (`data` its payload: the code in two bytes, then
    the reason). `time` is Unix seconds, or None when the file has none."""

    type: str
    opcode: int
    data: str | bytes
    time: float | None = None

    @property
    def close_code(self) -> int | None:
        """A close frame's code (None for a data message or a close without a code)."""
        if self.opcode != CLOSE or not isinstance(self.data, bytes) or len(self.data) < 2:
            return None
        return int.from_bytes(self.data[:2], "big")

    @property
    def close_reason(self) -> str:
        if self.opcode != CLOSE or not isinstance(self.data, bytes):
            return ""
        return self.data[2:].decode("utf-8", "replace")


@dataclass
class Conversation:
    """One WebSocket connection: its handshake and its messages in the order they passed."""

    url: str  # ws://host:port/path?query (wss:// for TLS)
    messages: list[Message] = field(default_factory=list)
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    status: int = 101
    started: float | None = None  # Unix seconds (HAR's startedDateTime)

    @property
    def path(self) -> str:
        """The path with its query, as a client asks for it (`/chat?room=1`)."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    @property
    def subprotocol(self) -> str | None:
        for name, value in self.response_headers:
            if name.lower() == "sec-websocket-protocol":
                return value
        return None


def close_payload(code: int | None, reason: str = "") -> bytes:
    """A close frame's payload for `code` (empty for a close without a code)."""
    if code is None:
        return b""
    return code.to_bytes(2, "big") + reason.encode("utf-8")
