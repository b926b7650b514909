"""Close codes (RFC 6455 §7.4): their names, and which a script may send. No imports, so
the checker can ask without loading the network stack."""

from __future__ import annotations

from typing import Any

CLOSE_NAMES = {
    1000: "OK", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
    1005: "no status", 1006: "abnormal closure", 1007: "invalid data",
    1008: "policy violation", 1009: "message too big", 1010: "extension required",
    1011: "internal error", 1012: "service restart", 1013: "try again later",
    1014: "bad gateway", 1015: "TLS failure",
}

# what a script may send, in words, for the messages that refuse another code
SENDABLE = "1000, 1001, 1003, 1007-1014, or 3000-4999"


def valid_close_code(code: Any) -> bool:
    """Close codes a script may send (1004-1006 and 1015 are never sent; 1002 is ours to
    send when the peer breaks the protocol)."""
    return type(code) is int and (code in (1000, 1001, 1003) or 1007 <= code <= 1014
                                  or 3000 <= code <= 4999)
