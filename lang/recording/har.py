"""HAR files of WebSocket conversations (SPEC §14): read the ones Chrome/Edge DevTools,
Firefox DevTools, evt and leaner tools write; write one the way Chrome DevTools does.

What the browsers write (read from their sources):

- Chrome/Edge DevTools ("Save all as HAR", front_end/models/har/Log.ts in
  ChromeDevTools/devtools-frontend): a WebSocket connection is one entry with
  `_resourceType: "websocket"`, `request.url` the ws:// or wss:// URL (fragment cut), the
  handshake's headers as `[{name, value}]`, `response.status` 101, and
  `_webSocketMessages: [{type, time, opcode, data}]` made from the Network domain's frames:
  `type` "send" or "receive" (or "error", opcode -1, for a frame error: skipped here),
  `time` the frame's timestamp as wall-clock Unix seconds (a float), `opcode` the frame's,
  `data` its payloadData: the text for opcode 1, base64 for the others. (Seen from real
  Chromium in tests/recording/test_chromium_har.py: the ws:// URL, and no close frame
  among the frames, only data frames.)
- Firefox DevTools (devtools/client/netmonitor/src/har/har-builder.js, also in the
  current HarBuilder class): writes no WebSocket messages at all, neither
  `_webSocketMessages` nor any other field; a connection is a plain entry with status 101
  ("Switching Protocols"), the handshake headers (`Upgrade: websocket`), dates with the
  local offset (`2024-05-02T10:15:30.123+02:00`), and `request.url` the URL of the HTTP
  channel the handshake went over (http(s):// as we understand Firefox's WebSocketChannel,
  not checked on a real Firefox here; ws(s):// is read the same).
  Such an entry is read as a conversation with its handshake and no messages. So there is
  no Firefox time unit to convert; still, a message `time` above 1e11 (past the year 5138
  in seconds) is taken for milliseconds, as a few tools write them.
- Leaner tools (mitmproxy's HAR export, hand-written files) may leave out
  `_resourceType`, `opcode` (then the message is text), `time` (then it is None), the
  response, or write http(s):// URLs: all read.

Numbers in error messages count from 1: `rec.har: entry 3: message 7: data is not base64`.
"""

from __future__ import annotations

import base64
import binascii
import http
import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lang.recording.model import BINARY, CLOSE, RECEIVE, SEND, TEXT, Conversation, Message

MAX_BYTES = 1 << 30  # a HAR file larger than 1 GiB is refused, not read
_MS_THRESHOLD = 1e11  # a message time above this is milliseconds, not seconds
_FIRST_DAY, _LAST_DAY = -62135596800, 253402300799.999  # what a date can be: 0001 to 9999
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


class HarError(Exception):
    """A HAR file that cannot be read: the text names the file and the place."""


# ---- reading ----------------------------------------------------------------------------


def read_har(path: str) -> list[Conversation]:
    """The WebSocket conversations of the HAR file at `path` (HarError if it has none or
    cannot be read)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except MemoryError:
        raise HarError(f"{path}: too large to read") from None
    except OSError as e:
        raise HarError(f"{path}: cannot read it: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise HarError(f"{path}: too large (more than 1 GiB)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HarError(f"{path}: not a HAR file: not UTF-8 text (byte {e.start})") from None
    finally:
        del raw
    return parse_har(text, path)


def parse_har(text: str, name: str) -> list[Conversation]:
    """The WebSocket conversations of a HAR document's text; `name` (the file's) begins
    every error message."""
    if len(text) > MAX_BYTES:
        raise HarError(f"{name}: too large (more than 1 GiB)")
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise HarError(f"{name}: not a HAR file: JSON nested too deeply") from None
    except MemoryError:
        raise HarError(f"{name}: too large to read") from None
    except ValueError as e:  # json.JSONDecodeError, NaN, an integer of too many digits
        raise HarError(f"{name}: not a HAR file: not JSON ({_short(e)})") from None
    log = doc.get("log") if isinstance(doc, dict) else None
    if not isinstance(log, dict) or "entries" not in log:
        raise HarError(f"{name}: not a HAR file: no log.entries")
    entries = log["entries"]
    if not isinstance(entries, list):
        raise HarError(f"{name}: not a HAR file: log.entries is not a list")
    conversations = []
    for i, entry in enumerate(entries, 1):
        where = f"{name}: entry {i}"
        if not isinstance(entry, dict):
            raise HarError(f"{where}: not an object")
        if _is_websocket(entry):
            conversations.append(_conversation(entry, where))
    if not conversations:
        raise HarError(f"{name}: no WebSocket connection in it")
    return conversations


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) <= 120 else text[:117] + "..."


def _is_websocket(entry: dict[str, Any]) -> bool:
    """Chrome's and evt's mark, or any `_webSocketMessages`, or a ws(s):// URL, or (as
    Firefox writes them) a 101 answer to a request with `Upgrade: websocket`."""
    if "_webSocketMessages" in entry:
        return True
    kind = entry.get("_resourceType")
    if isinstance(kind, str) and kind.lower() == "websocket":
        return True
    request, response = entry.get("request"), entry.get("response")
    if not isinstance(request, dict):
        return False
    url = request.get("url")
    if isinstance(url, str) and url[:5].lower() in ("ws://", "wss:/"):
        return True
    if not isinstance(response, dict) or response.get("status") != 101:
        return False
    headers = request.get("headers")
    return isinstance(headers, list) and any(
        isinstance(h, dict) and isinstance(h.get("name"), str)
        and h["name"].lower() == "upgrade" and isinstance(h.get("value"), str)
        and h["value"].strip().lower() == "websocket" for h in headers)


def _conversation(entry: dict[str, Any], where: str) -> Conversation:
    request = entry.get("request")
    if not isinstance(request, dict):
        raise HarError(f"{where}: {'no request' if request is None else 'request is not an object'}")
    url = _ws_url(request.get("url"), where)
    request_headers = _headers(request.get("headers", []), f"{where}: request.headers")
    response = entry.get("response", {})
    if response is None:
        response = {}
    if not isinstance(response, dict):
        raise HarError(f"{where}: response is not an object")
    status = response.get("status", 101)
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 999:
        raise HarError(f"{where}: response.status is not an HTTP status")
    response_headers = _headers(response.get("headers", []), f"{where}: response.headers")
    started = _started(entry.get("startedDateTime"), where)
    raw = entry.get("_webSocketMessages", [])
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise HarError(f"{where}: _webSocketMessages is not a list")
    messages = []
    for j, item in enumerate(raw, 1):
        message = _message(item, f"{where}: message {j}")
        if message is not None:
            messages.append(message)
    return Conversation(url, messages, request_headers, response_headers, status, started)


def _ws_url(url: Any, where: str) -> str:
    if not isinstance(url, str):
        raise HarError(f"{where}: {'no request.url' if url is None else 'request.url is not a string'}")
    try:
        parts = urlsplit(_text(url, f"{where}: request.url"))
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.netloc:
            raise ValueError
        _ = parts.port  # a bad port raises ValueError
    except ValueError:
        raise HarError(f"{where}: request.url is not a ws://, wss://, http:// or https:// URL") from None
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _headers(value: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise HarError(f"{where} is not a list")
    headers = []
    for k, header in enumerate(value, 1):
        if not (isinstance(header, dict) and isinstance(header.get("name"), str)
                and isinstance(header.get("value"), str)):
            raise HarError(f"{where}: header {k} is not a {{name, value}} object of strings")
        headers.append((_text(header["name"], f"{where}: header {k}"),
                        _text(header["value"], f"{where}: header {k}")))
    return headers


def _started(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise HarError(f"{where}: startedDateTime is not a string")
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:  # no offset: taken as UTC
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise HarError(f"{where}: startedDateTime is not an ISO 8601 date: {value[:40]!r}") from None


def _message(item: Any, where: str) -> Message | None:
    """One of `_webSocketMessages` as a Message; None for what a conversation skips
    (ping, pong, continuation, Chrome's frame errors)."""
    if not isinstance(item, dict):
        raise HarError(f"{where}: not an object")
    kind = item.get("type")
    if kind == "error":  # Chrome: a frame error (opcode -1, data the error's text)
        return None
    if kind not in (SEND, RECEIVE):
        raise HarError(f"{where}: type is not \"send\" or \"receive\"")
    opcode = item.get("opcode", TEXT)
    if not isinstance(opcode, int) or isinstance(opcode, bool):
        raise HarError(f"{where}: opcode is not an integer")
    when = item.get("time")
    if when is not None:
        if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
            raise HarError(f"{where}: time is not a number")
        when = float(when) / 1000 if when > _MS_THRESHOLD else float(when)
    data = item.get("data", "")
    if data is None:
        data = ""
    if not isinstance(data, str):
        raise HarError(f"{where}: data is not a string")
    if opcode == TEXT:
        return Message(kind, TEXT, _text(data, f"{where}: data"), when)
    if opcode not in (BINARY, CLOSE):
        return None
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise HarError(f"{where}: data is not base64") from None
    return Message(kind, opcode, payload, when)


def _text(value: str, where: str) -> str:
    """`value`, unless it cannot be sent as UTF-8 (a lone surrogate from a \\u escape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HarError(f"{where} is not valid Unicode text") from None
    return value


# ---- writing ----------------------------------------------------------------------------


def har_entry(c: Conversation) -> dict[str, Any]:
    """`c` as one HAR 1.2 entry, in the form Chrome DevTools writes (SPEC §14). A message
    with no time is written without one; a conversation with no `started` gets its first
    message's time (else the epoch). `startedDateTime` keeps milliseconds, like Chrome's."""
    times = [m.time for m in c.messages if m.time is not None]
    started = c.started if c.started is not None else (times[0] if times else 0.0)
    total = round(max(0.0, (max(times) - started) * 1000), 3) if times else 0.0
    location = next((v for n, v in c.response_headers if n.lower() == "location"), "")
    try:
        status_text = http.HTTPStatus(c.status).phrase
    except ValueError:
        status_text = ""
    query = urlsplit(c.url).query
    return {
        "_resourceType": "websocket",
        "_webSocketMessages": [_har_message(m) for m in c.messages],
        "cache": {},
        "request": {
            "method": "GET",
            "url": c.url,
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": n, "value": v} for n, v in c.request_headers],
            "queryString": [_parameter(p) for p in query.split("&")] if query else [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": c.status,
            "statusText": status_text,
            "httpVersion": "HTTP/1.1",
            "headers": [{"name": n, "value": v} for n, v in c.response_headers],
            "cookies": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": -1,
        },
        "startedDateTime": iso_time(started),
        "time": total,
        "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1,
                    "send": 0, "wait": 0, "receive": total},
    }


def har_document(entries: list[dict[str, Any]], creator_version: str) -> dict[str, Any]:
    """A HAR 1.2 document holding `entries` (from `har_entry`), created by evt."""
    return {"log": {"version": "1.2", "creator": {"name": "evt", "version": creator_version},
                    "pages": [], "entries": entries}}


def iso_time(seconds: float) -> str:
    """Unix seconds as Chrome writes a date: `2024-05-02T08:15:30.123Z` (UTC, milliseconds;
    kept within the years 1 to 9999)."""
    ms = round(min(max(seconds, _FIRST_DAY), _LAST_DAY) * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _har_message(m: Message) -> dict[str, Any]:
    if m.opcode == TEXT:
        data = m.data if isinstance(m.data, str) else m.data.decode("utf-8", "replace")
    else:
        payload = m.data.encode("utf-8") if isinstance(m.data, str) else m.data
        data = base64.b64encode(payload).decode("ascii")
    out: dict[str, Any] = {"type": m.type}
    if m.time is not None:
        out["time"] = m.time
    out["opcode"] = m.opcode
    out["data"] = data
    return out


def _parameter(pair: str) -> dict[str, str]:
    """A query parameter as DevTools splits it: at the first `=`, nothing decoded."""
    name, _, value = pair.partition("=")
    return {"name": name, "value": value}
