"""The documentation of the `connection`, `server` and `cluster` keys, as the reference
shows it.

Rules of this module:
- This is the one text of each key: docs/reference.md §5 prints these rows as its tables
  (tests/lsp/test_docs.py holds the two to each other), and the language server's hover and
  completion show them. lang.config stays the one place where a key is *defined* (its kind,
  default value and checks); the same test holds the keys here to the keys there.
- A row is one line of a reference table: the keys it names (a row may name several), the
  type, default and meaning cells, written in Markdown as the table writes them. A server
  row whose default is "as above" takes its type and default from the connection's row of
  the same key.
- No imports of evt: anything may read it without loading the language.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyRow:
    keys: tuple[str, ...]
    type: str
    default: str
    meaning: str


@dataclass(frozen=True)
class KeyDoc:
    """One key's documentation, resolved from its row."""

    role: str  # "connection" | "server" | "cluster"
    key: str
    type: str
    default: str
    meaning: str

    def markdown(self) -> str:
        """The hover text: the key, its type and default, then what it means."""
        kind = f"`{self.type}`" if self.type else "value"
        default = "required" if self.default == "required" else f"default {self.default}"
        return f"**{self.key}** ({self.role} key): {kind}, {default}\n\n{self.meaning}"


AS_ABOVE = "as above"

CONNECTION_ROWS: tuple[KeyRow, ...] = (
    KeyRow(("url",), "string", "required",
           "`ws://` or `wss://` URL with host, optional port and path"),
    KeyRow(("port",), "int", "from url", "overrides the url's port"),
    KeyRow(("headers",), "map", "`{}`",
           "extra handshake headers: names are HTTP tokens (letters, digits, "
           "``!#$%&'*+-.^_`|~``), values printable ASCII (no line breaks or other control "
           "characters; spaces around a value are dropped)"),
    KeyRow(("subprotocols",), "list", "`[]`",
           "offered subprotocols; the chosen one is `subprotocol(NAME)`"),
    KeyRow(("connect_timeout",), "duration", "`10s`", "TCP + TLS + handshake"),
    KeyRow(("ping_interval",), "duration", "`20s`", "keep-alive pings; `0` disables"),
    KeyRow(("ping_timeout",), "duration", "`20s`",
           "no pong within this: error event, close with 1011; must be more than 0 "
           "(`ping_interval = 0` turns keep-alive off)"),
    KeyRow(("close_timeout",), "duration", "`5s`",
           "wait for the peer's close frame, then drop TCP"),
    KeyRow(("max_message",), "size", "`1MiB`",
           "a larger incoming message: error event, close with 1009"),
    KeyRow(("max_queue",), "int", "`64`",
           "received messages waiting for handlers before reading pauses"),
    KeyRow(("compression",), "bool", "`false`", "negotiate permessage-deflate"),
    KeyRow(("reconnect",), "bool", "`false`",
           "after an unexpected close or a failed connect, retry"),
    KeyRow(("reconnect_min", "reconnect_max"), "duration", "`0.5s`, `30s`",
           "backoff bounds (doubling, ±20% jitter)"),
    KeyRow(("verify_tls",), "bool", "`true`", "`false` accepts any certificate"),
    KeyRow(("ca_file",), "string", "system", "extra trust anchors (PEM) for wss"),
    KeyRow(("proxy",), "string or null", "the environment",
           "`http://[user:pass@]host:port`, `socks5://...`, `socks5h://...`; null: direct (§4e)"),
    KeyRow(("certfile",), "string", "none",
           "client certificate (PEM) for wss; may hold the key too (§4e)"),
    KeyRow(("keyfile",), "string", "none", "its private key (PEM), unencrypted"),
)

SERVER_ROWS: tuple[KeyRow, ...] = (
    KeyRow(("listen",), "string", "required",
           '`"host:port"` (`"[::1]:80"` too); port 0 picks a free port'),
    KeyRow(("path",), "string", "any",
           "only this request path is accepted; others get HTTP 404; starts with `/`"),
    KeyRow(("origins",), "list", "any",
           "allowed `Origin` values; others get 403; no Origin passes only if the list "
           "holds `null`"),
    KeyRow(("subprotocols",), "list", "`[]`", "supported, in preference order"),
    KeyRow(("max_clients",), "int", "`1024`", "more concurrent clients get HTTP 503"),
    KeyRow(("handshake_timeout",), "duration", "`10s`",
           "a client that does not finish the handshake (TLS included) is dropped"),
    KeyRow(("ping_interval", "ping_timeout", "close_timeout", "max_message", "max_queue",
            "compression"), "", AS_ABOVE, "per client"),
    KeyRow(("certfile", "keyfile"), "string", "none", "serve wss (both needed)"),
    KeyRow(("client_ca",), "string", "none",
           "the CAs (PEM) client certificates must chain to; needs wss and `verify_client` "
           "(§4e)"),
    KeyRow(("verify_client",), 'bool or `"optional"`', "`false`",
           '`true`: a client certificate is required; `"optional"`: asked for, checked when '
           "given; `false` or null: not asked (§4e)"),
)

CLUSTER_ROWS: tuple[KeyRow, ...] = (  # SPEC §16
    KeyRow(("url",), "string", "required",
           '`"redis://[user:pass@]host[:port][/db]"`, `"rediss://..."` (TLS) or '
           '`"unix:///path/redis.sock"`'),
    KeyRow(("prefix",), "string", '`"evt"`',
           "the start of every channel and key this cluster uses; not empty"),
    KeyRow(("presence_ttl",), "duration", "`10s`",
           "a process that stops refreshing its peer counts for this long drops out of "
           "`cluster_peers()`; at least `0.3s`"),
    KeyRow(("connect_timeout",), "duration", "`5s`",
           "how long the start waits for the bus before going on without it (it is "
           "retried)"),
)

ROWS: dict[str, tuple[KeyRow, ...]] = {"connection": CONNECTION_ROWS, "server": SERVER_ROWS,
                                       "cluster": CLUSTER_ROWS}


def _resolve(role: str, row: KeyRow, key: str) -> KeyDoc:
    if row.default == AS_ABOVE:
        above = key_doc("connection", key)
        assert above is not None, f"server key {key} is 'as above' with no connection row"
        return KeyDoc(role, key, above.type, above.default, f"{above.meaning} ({row.meaning})")
    defaults = row.default.split(", ") if len(row.keys) > 1 else [row.default]
    default = defaults[row.keys.index(key)] if len(defaults) == len(row.keys) else row.default
    return KeyDoc(role, key, row.type, default, row.meaning)


def key_doc(role: str, key: str) -> KeyDoc | None:
    """The documentation of one key of `role` ("connection", "server", "cluster"), or None."""
    for row in ROWS.get(role, ()):
        if key in row.keys:
            return _resolve(role, row, key)
    return None


def key_docs(role: str) -> list[KeyDoc]:
    """Every key of `role`, in the reference's order."""
    return [_resolve(role, row, key) for row in ROWS.get(role, ()) for key in row.keys]
