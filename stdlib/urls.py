"""The url family (SPEC §18): url_encode url_decode query_string parse_url.

Percent-encoding is RFC 3986's, as Python's urllib.parse.quote(s, safe="") and unquote do
(and JavaScript's encodeURIComponent / decodeURIComponent, but for `!'()*`, which are
encoded here): everything but `A-Z a-z 0-9 - . _ ~` is encoded as the %XX of its UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

from lang.limits import MAX_RESULT
from lang.values import to_repr, to_str
from stdlib import args
from stdlib.registry import builtin

DEFAULT_PORTS = {"ws": 80, "wss": 443, "http": 80, "https": 443}


def _encoded(fn: str, v: str | bytes) -> str:
    try:
        text = quote(v, safe="")
    except UnicodeEncodeError:  # a lone surrogate (from json_parse of "\ud800", say)
        raise args.error(fn, "the string holds a lone surrogate, which has no UTF-8 form"
                         ) from None
    if len(text) > MAX_RESULT:
        raise args.error(fn, "result too large")
    return text


@builtin("url")
def url_encode(s: Any) -> str:
    """Percent-encode a string's UTF-8 bytes (or bytes): all but A-Z a-z 0-9 - . _ ~."""
    args.one_of("url_encode", 1, "s", s, (str, bytes), "a string or bytes")
    return _encoded("url_encode", s)


@builtin("url")
def url_decode(s: Any) -> str:
    """Decode %XX escapes as UTF-8 (bad bytes: U+FFFD); `+` stays `+`, a stray `%` stays."""
    return unquote(args.string("url_decode", 1, "s", s), errors="replace")


def _text(fn: str, v: Any) -> str:
    if type(v) is bytes:
        return _encoded(fn, v)  # the bytes themselves, percent-encoded
    return _encoded(fn, to_str(v))


@builtin("url")
def query_string(m: Any) -> str:
    """A map as key=value pairs joined by &, percent-encoded; a list value repeats its key."""
    args.map_("query_string", 1, "m", m)
    parts: list[str] = []
    size = 0
    for k, v in m.items():
        key = _text("query_string", k)
        for item in (v if type(v) is list else (v,)):
            part = f"{key}={_text('query_string', item)}"
            size += len(part) + 1
            if size > MAX_RESULT:
                raise args.error("query_string", "result too large")
            parts.append(part)
    return "&".join(parts)


def _query(query: str) -> dict[str, Any]:
    """A query's parameters, decoded (`+` is a space, as in a form); a key given more than
    once has the list of its values, in order."""
    params: dict[str, Any] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        key = unquote(key.replace("+", " "), errors="replace")
        value = unquote(value.replace("+", " "), errors="replace")
        if key not in params:
            params[key] = value
        elif type(params[key]) is list:
            params[key].append(value)
        else:
            params[key] = [params[key], value]
    return params


@builtin("url")
def parse_url(s: Any) -> dict[str, Any]:
    """A URL's parts as a map: scheme, host, port, path, query (a map of its parameters)."""
    args.string("parse_url", 1, "s", s)
    shown = to_repr(s if len(s) <= 80 else s[:80] + "...")
    try:
        parts = urlsplit(s.strip())
    except ValueError as e:  # "Invalid IPv6 URL"
        raise args.error("parse_url", f"{shown} is not a URL ({e})") from None
    scheme = parts.scheme
    netloc = parts.netloc.rpartition("@")[2]  # without user:password@
    if netloc.startswith("["):  # IPv6: kept in its brackets, as address() shows it
        host = netloc[: netloc.find("]") + 1].lower()
    else:
        host = netloc.partition(":")[0].lower()
    if not scheme or not host:
        raise args.error("parse_url", f"{shown} is not a URL: it needs a scheme and a host, "
                                      "as in ws://host:port/path")
    try:
        port = parts.port
    except ValueError:
        raise args.error("parse_url", f"{shown} has a port that is not a number from 0 to "
                                      "65535") from None
    if port is None:
        port = DEFAULT_PORTS.get(scheme)
    return {"scheme": scheme, "host": host, "port": port, "path": parts.path or "/",
            "query": _query(parts.query)}
