"""The keys of `connection` and `server` blocks: their types, defaults and checks.

Rules of this module:
- One table per role, the only place where a key is defined. The checker uses it to judge
  literal values before anything runs; the runtime uses it to judge the evaluated values.
- A duration is a number of seconds (units are optional: `ping_interval = 20` is 20 seconds),
  a size a whole number of bytes. A duration over 1e9 seconds (about 32 years, `pow(10, 400)`
  too) means "never", as it does for timers: it is taken as 1e9 (`value_for`). A size over
  2**62 bytes means "no limit" and is taken as 2**62.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lang.values import brief, type_name


@dataclass(frozen=True)
class Key:
    kind: str  # string int duration size bool map list
    default: Any
    doc: str


CLIENT_KEYS: dict[str, Key] = {
    "url": Key("string", None, "ws:// or wss:// URL with host, optional port and path"),
    "port": Key("int", None, "overrides the url's port"),
    "headers": Key("map", {}, "extra handshake headers"),
    "subprotocols": Key("list", [], "offered subprotocols"),
    "connect_timeout": Key("duration", 10.0, "TCP + TLS + handshake"),
    "ping_interval": Key("duration", 20.0, "keep-alive pings; 0 disables"),
    "ping_timeout": Key("duration", 20.0, "no pong within this: error, then close 1011"),
    "close_timeout": Key("duration", 5.0, "wait for the peer's close frame, then drop TCP"),
    "max_message": Key("size", 1024 * 1024, "a larger incoming message closes with 1009"),
    "max_queue": Key("int", 64, "received messages waiting for handlers before reading pauses"),
    "compression": Key("bool", False, "negotiate permessage-deflate"),
    "reconnect": Key("bool", False, "retry with backoff after an unexpected close"),
    "reconnect_min": Key("duration", 0.5, "shortest wait before a reconnect"),
    "reconnect_max": Key("duration", 30.0, "longest wait before a reconnect"),
    # unset: True, the environment's proxy (as lang.wire.proxy.choose_proxy takes it),
    # a value no script can give (true is not a string); null: none
    "proxy": Key("string", True, '"http://[user:pass@]host:port", "socks5://...", '
                 '"socks5h://..." (the proxy resolves names), or null for none; unset: '
                 "from the environment (no_proxy, wss_proxy/ws_proxy, https_proxy, "
                 "http_proxy)"),
    "verify_tls": Key("bool", True, "false accepts any certificate"),
    "ca_file": Key("string", None, "extra trust anchors for wss"),
    "certfile": Key("string", None, "client certificate (PEM; with its key unless keyfile)"),
    "keyfile": Key("string", None, "the client certificate's private key (PEM)"),
}

SERVER_KEYS: dict[str, Key] = {
    "listen": Key("string", None, '"host:port"; port 0 picks a free port'),
    "path": Key("string", None, "only this request path is accepted (others: 404)"),
    "origins": Key("list", None, "allowed Origin values (others: 403)"),
    "subprotocols": Key("list", [], "supported subprotocols, in preference order"),
    "max_clients": Key("int", 1024, "more concurrent clients get 503"),
    "handshake_timeout": Key("duration", 10.0, "a client that does not finish is dropped"),
    "ping_interval": CLIENT_KEYS["ping_interval"],
    "ping_timeout": CLIENT_KEYS["ping_timeout"],
    "close_timeout": CLIENT_KEYS["close_timeout"],
    "max_message": CLIENT_KEYS["max_message"],
    "max_queue": CLIENT_KEYS["max_queue"],
    "compression": CLIENT_KEYS["compression"],
    "certfile": Key("string", None, "certificate chain (PEM) to serve wss"),
    "keyfile": Key("string", None, "private key (PEM) to serve wss"),
    "client_ca": Key("string", None, "CA (PEM) that signs the client certificates"),
    # true, "optional" or false (problem() judges it: a bool or that one string)
    "verify_client": Key("bool", False, 'true: a client certificate is required; '
                         '"optional": asked for, checked when given; false: not asked'),
}

CLUSTER_KEYS: dict[str, Key] = {  # SPEC §16
    "url": Key("string", None, 'the Redis server: "redis://[user:pass@]host[:port][/db]", '
               '"rediss://..." (TLS) or "unix:///path/redis.sock"'),
    "prefix": Key("string", "evt", "the start of every channel and key this cluster uses"),
    "presence_ttl": Key("duration", 10.0, "a process that stops refreshing its peer counts "
                        "for this long is dropped from cluster_peers()"),
    "connect_timeout": Key("duration", 5.0, "how long the start waits for the bus before "
                           "going on without it (it is retried)"),
}

REQUIRED = {"connection": "url", "server": "listen", "cluster": "url"}

_KIND_WORDS = {"string": "a string", "int": "an int", "duration": "a duration (seconds)",
               "size": "a size (bytes)", "bool": "a bool", "map": "a map", "list": "a list"}


MAX_SECONDS = 1e9  # a longer duration means "never" (lang.ops.duration does the same)
MAX_SIZE = 2 ** 62  # a larger size means "no limit" (zlib takes sizes as C integers)
# RFC 9110 §5.1, §5.5: a header name is a token; a value printable ASCII, spaces and tabs
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def keys_for(role: str) -> dict[str, Key]:
    if role == "cluster":
        return CLUSTER_KEYS
    return CLIENT_KEYS if role == "connection" else SERVER_KEYS


# Keys of SPEC Part 2 that evt does not have yet: named as such, never "did you mean" a key
# that does something else ('certfile' on a connection suggested 'ca_file')
_NOT_YET: dict[tuple[str, str], str] = {
}


def defaults(role: str) -> dict[str, Any]:
    """A fresh configuration of `role` with every key at its default."""
    return {k: v.default for k, v in keys_for(role).items()}


def unknown_key_message(role: str, key: str) -> str:
    if (role, key) in _NOT_YET:
        return f"{role} key '{key}' is not supported yet: {_NOT_YET[role, key]}"
    known = keys_for(role)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {role} key '{key}'{hint}"


def problem(role: str, key: str, value: Any) -> str | None:
    """What is wrong with `value` for `key`, or None when it is fine."""
    spec = keys_for(role)[key]
    kind = spec.kind
    t = type(value)
    if key == "proxy":
        return _proxy_problem(value)
    if key == "verify_client" and (value is None or value == "optional"):
        return None  # null: not asked, as false
    if value is None and spec.default is None and key not in REQUIRED.values():
        return None  # an optional key set to null means "not set"
    ok = {
        "string": t is str,
        "int": t is int,
        "duration": t in (int, float),
        "size": t is int or (t is float and value.is_integer()),
        "bool": t is bool,
        "map": t is dict,
        "list": t is list,
    }[kind]
    if not ok and key == "verify_client":
        return (f"'verify_client' must be true (required), \"optional\" or false, got "
                f"{_quoted(value) if t is str else type_name(value)}")
    if not ok:
        return f"'{key}' must be {_KIND_WORDS[kind]}, got {type_name(value)}"
    if kind == "duration" and t is float and math.isnan(value):
        return f"'{key}' must be a number of seconds, got nan"
    if kind in ("duration", "size", "int") and value < 0:
        return f"'{key}' cannot be negative"
    if key == "ping_timeout" and value == 0:
        return "'ping_timeout' must be more than 0 (ping_interval = 0 turns keep-alive off)"
    if key == "url":
        return _redis_url_problem(value) if role == "cluster" else _url_problem(value)
    if key == "prefix" and not value:
        return "'prefix' cannot be empty"
    if key == "presence_ttl" and value < 0.3:
        return "'presence_ttl' must be at least 0.3 seconds"
    if key == "listen":
        return _listen_problem(value)
    if key == "port" and not 0 < value < 65536:
        return f"'port' must be between 1 and 65535, got {brief(value)}"
    if key in ("subprotocols", "origins") and not all(
            type(x) is str or (key == "origins" and x is None) for x in value):
        return f"'{key}' must be a list of strings"
    if key == "headers":
        return _headers_problem(value)
    if key == "path" and not value.startswith("/"):
        return f"'path' must start with '/' (a request path is '/' or '/...'), got {_quoted(value)}"
    if key == "max_queue" and value < 1:
        return "'max_queue' must be at least 1"
    return None


def _redis_url_problem(value: str) -> str | None:
    try:
        u = urlsplit(value)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        return f"'url' is not a valid URL: {e}"
    if u.scheme not in ("redis", "rediss", "unix"):
        # (the URL itself is not shown: it may hold a password)
        return (f"the cluster's 'url' must start with redis://, rediss:// or unix://, got "
                f"{_quoted(u.scheme + '://') if u.scheme else 'no scheme'}")
    if u.scheme != "unix" and not u.hostname:
        return "the cluster's 'url' needs a host"
    return None


def value_for(role: str, key: str, value: Any) -> Any:
    """A value that passed `problem`, as the runtime uses it: durations over MAX_SECONDS
    are MAX_SECONDS ("never"), sizes over MAX_SIZE are MAX_SIZE."""
    kind = keys_for(role)[key].kind
    if kind == "duration" and value is not None and value > MAX_SECONDS:
        return MAX_SECONDS
    if kind == "size" and value is not None and value > MAX_SIZE:
        return MAX_SIZE
    return value


def tls_problems(role: str, name: str, values: dict[str, Any]) -> list[str]:
    """What is wrong with the TLS keys of one block taken together. `values`: the keys the
    block sets (the checker's: literal values, and a marker where a value is not a literal:
    set, of unknown value) or a whole evaluated configuration (the runtime's: every key,
    the unset ones at their defaults, so "absent" never holds there)."""
    def given(key: str) -> bool:
        return values.get(key) is not None and values.get(key) is not False

    problems = []
    if role == "connection":
        url = values.get("url")
        if given("keyfile") and not given("certfile"):
            problems.append(f"connection '{name}' has 'keyfile' but no 'certfile' (the "
                            "client certificate)")
        if given("certfile") and type(url) is str and url[:5].lower() == "ws://":
            problems.append(f"connection '{name}': a client certificate ('certfile') needs "
                            "a wss:// url (ws:// has no TLS)")
        return problems
    if given("certfile") != given("keyfile"):
        problems.append(f"server '{name}' needs both 'certfile' and 'keyfile' for wss")
    verify = values.get("verify_client")  # a computed one is judged when the server starts
    if (verify is True or verify == "optional") and not given("client_ca"):
        problems.append(f"server '{name}': 'verify_client' needs 'client_ca' (the CA that "
                        "signs the client certificates)")
    if given("client_ca") and not (given("certfile") or given("keyfile")):
        problems.append(f"server '{name}': 'client_ca' needs wss ('certfile' and "
                        "'keyfile'): client certificates come with TLS")
    elif given("client_ca") and "verify_client" not in values:
        problems.append(f"server '{name}': 'client_ca' alone asks no client for a "
                        "certificate: add verify_client = true (required) or \"optional\"")
    return problems


def _headers_problem(headers: dict) -> str | None:
    for name, value in headers.items():
        if type(name) is not str or type(value) not in (str, int, float):
            return "'headers' must map header names to strings"
        if not _TOKEN.fullmatch(name):
            return (f"'headers': {_quoted(name)} is not a valid header name (letters, digits "
                    f"and !#$%&'*+-.^_`|~, no spaces)")
        if type(value) is str and not _HEADER_VALUE.fullmatch(value):
            return (f"'headers': the value of {_quoted(name)} must be printable ASCII "
                    f"(no line breaks or other control characters)")
    return None


def _quoted(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return repr(shown)


def _proxy_problem(url: Any) -> str | None:
    """The cheap checks of lang.wire.proxy's parse_proxy (it cannot be imported here), in
    its words; never showing credentials. Null means no proxy."""
    if url is None:
        return None
    if type(url) is not str:
        return f"'proxy' must be a proxy url (a string) or null, got {type_name(url)}"
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    shown = f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}" if sep else url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"bad proxy '{shown}': the port must be a number from 1 to 65535"
    words = None
    if parts.scheme.lower() == "https":
        words = "https:// proxies (TLS to the proxy itself) are not supported; an http:// " \
                "proxy tunnels wss:// too"
    elif parts.scheme.lower() not in ("http", "socks5", "socks5h"):
        words = "a proxy url starts with http://, socks5:// or socks5h://"
    elif not parts.hostname:
        words = "it has no host"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        words = "a proxy url is scheme://host:port, with no path, query or fragment"
    elif port == 0:
        words = "the port must be a number from 1 to 65535"
    elif parts.username is not None and parts.password is None:
        words = "it has a user name but no password (user:pass@host)"
    return f"bad proxy '{shown}': {words}" if words else None


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        text = str(e)
        if "cast to integer" in text:  # urllib's words
            port = text.rpartition(" as ")[2]
            text = f"the port {port} is not a number"
        elif "out of range" in text:
            text = "the port must be 0 to 65535"
        elif "IPv6" in text:
            text = "an IPv6 address goes between [ and ]: ws://[::1]:8765/"
        return f"bad url '{url}': {text}"
    if parts.scheme not in ("ws", "wss"):
        return f"the url must start with ws:// or wss://, got '{url}'"
    if not parts.hostname:
        return f"the url has no host: '{url}'"
    return None


def split_listen(listen: str) -> tuple[str, int]:
    """'host:port' -> (host, port); '[::1]:80' works too. Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"'listen' must be \"host:port\", got '{listen}'")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise ValueError(f"port {number} is out of range")
    return host or "0.0.0.0", number


def _listen_problem(listen: str) -> str | None:
    try:
        split_listen(listen)
    except ValueError as e:
        return str(e)
    return None
