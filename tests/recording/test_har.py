"""HAR files in and out (lang/recording/har.py, SPEC §14): what Chrome, Firefox, evt and
leaner tools write is read; what evt writes reads back equal and passes the HAR 1.2 JSON
schema (vendored in data/har-schema/); malformed input of any kind raises HarError and
nothing else, with the file and the place in its message."""

from __future__ import annotations

import base64
import copy
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lang.recording import har as har_module
from lang.recording.har import HarError, har_document, har_entry, parse_har, read_har
from lang.recording.model import Conversation, Message, close_payload

DATA = Path(__file__).parent / "data"


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def header_list(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": n, "value": v} for n, v in pairs]


# ---- samples, shaped as the real exports are -------------------------------------------

WS_REQUEST = (("Host", "example.com"), ("Connection", "Upgrade"), ("Upgrade", "websocket"),
              ("Origin", "https://example.com"), ("Sec-WebSocket-Version", "13"),
              ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
              ("Sec-WebSocket-Protocol", "chat"))
WS_RESPONSE = (("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
               ("Sec-WebSocket-Protocol", "chat"))


def chrome_har() -> dict[str, Any]:
    """As Chrome DevTools' "Save all as HAR" writes it (front_end/models/har/Log.ts): a
    page, the document, a script, and the WebSocket with its frames."""
    timings = {"blocked": 2.1, "dns": -1, "ssl": -1, "connect": -1, "send": 0.2, "wait": 30.5,
               "receive": 1.4, "_blocked_queueing": 1.8, "_workerStart": -1, "_workerReady": -1,
               "_workerFetchStart": -1, "_workerRespondWithSettled": -1}

    def http(url: str, kind: str, mime: str, started: str) -> dict[str, Any]:
        return {
            "_connectionId": "41", "_initiator": {"type": "other"}, "_priority": "VeryHigh",
            "_resourceType": kind, "cache": {}, "connection": "443", "pageref": "page_1",
            "request": {"method": "GET", "url": url, "httpVersion": "http/2.0",
                        "headers": header_list((":authority", "example.com"), (":method", "GET")),
                        "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
            "response": {"status": 200, "statusText": "", "httpVersion": "http/2.0",
                         "headers": header_list(("content-type", mime)), "cookies": [],
                         "content": {"size": 1234, "mimeType": mime, "compression": 600},
                         "redirectURL": "", "headersSize": -1, "bodySize": 634,
                         "_transferSize": 834, "_error": None, "_fetchedViaServiceWorker": False},
            "serverIPAddress": "93.184.216.34", "startedDateTime": started, "time": 34.2,
            "timings": timings}

    ws = {
        "_initiator": {"type": "script", "stack": {"callFrames": [
            {"functionName": "connect", "scriptId": "12", "url": "https://example.com/app.js",
             "lineNumber": 9, "columnNumber": 14}]}},
        "_priority": None, "_resourceType": "websocket",
        "_webSocketMessages": [
            {"type": "send", "time": 1714637730.52, "opcode": 1, "data": '{"op":"hello"}'},
            {"type": "receive", "time": 1714637730.601, "opcode": 1, "data": "welcome ✓"},
            {"type": "send", "time": 1714637731.25, "opcode": 2, "data": "AAEC/w=="},
            {"type": "error", "time": 1714637731.3, "opcode": -1, "data": "Invalid frame header"},
            {"type": "receive", "time": 1714637731.75, "opcode": 2, "data": ""},
        ],
        "cache": {}, "pageref": "page_1",
        "request": {"method": "GET", "url": "wss://example.com/socket?room=1",
                    "httpVersion": "HTTP/1.1", "headers": header_list(*WS_REQUEST),
                    "queryString": [{"name": "room", "value": "1"}], "cookies": [],
                    "headersSize": 466, "bodySize": 0},
        "response": {"status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1",
                     "headers": header_list(*WS_RESPONSE), "cookies": [],
                     "content": {"size": 0, "mimeType": "x-unknown", "compression": 166},
                     "redirectURL": "", "headersSize": 166, "bodySize": -166, "_transferSize": 0,
                     "_error": None, "_fetchedViaServiceWorker": False},
        "serverIPAddress": "", "startedDateTime": "2024-05-02T08:15:30.481Z", "time": 1269.3,
        "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0,
                    "wait": 1268.9, "receive": 0.4, "_blocked_queueing": -1}}
    return {"log": {
        "version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
        "pages": [{"startedDateTime": "2024-05-02T08:15:30.102Z", "id": "page_1",
                   "title": "https://example.com/", "pageTimings": {"onContentLoad": 210.3,
                                                                    "onLoad": 260.7}}],
        "entries": [http("https://example.com/", "document", "text/html",
                         "2024-05-02T08:15:30.102Z"),
                    http("https://example.com/app.js", "script", "text/javascript",
                         "2024-05-02T08:15:30.301Z"),
                    ws]}}


CHROME_CONVERSATION = Conversation(
    url="wss://example.com/socket?room=1",
    messages=[Message("send", 1, '{"op":"hello"}', 1714637730.52),
              Message("receive", 1, "welcome ✓", 1714637730.601),
              Message("send", 2, b"\x00\x01\x02\xff", 1714637731.25),
              Message("receive", 2, b"", 1714637731.75)],
    request_headers=list(WS_REQUEST), response_headers=list(WS_RESPONSE), status=101,
    started=ts("2024-05-02T08:15:30.481+00:00"))


def firefox_har() -> dict[str, Any]:
    """As Firefox DevTools' "Save All As HAR" writes it (netmonitor/src/har/har-builder.js):
    version 1.1, dates with the local offset, and for the WebSocket only its handshake (an
    http:// URL, status 101): Firefox writes no WebSocket messages."""
    def entry(url: str, started: str, status: int, status_text: str, mime: str | None,
              request: tuple[tuple[str, str], ...], response: tuple[tuple[str, str], ...]
              ) -> dict[str, Any]:
        content: dict[str, Any] = {"size": 0 if mime is None else 512}
        if mime is not None:  # Firefox writes `mimeType: undefined`, which JSON leaves out
            content["mimeType"] = mime
        content["comment"] = "Response bodies are not included."
        return {
            "startedDateTime": started,
            "request": {"bodySize": 0, "method": "GET", "url": url, "httpVersion": "HTTP/1.1",
                        "headers": header_list(*request), "cookies": [], "queryString": [],
                        "headersSize": 412},
            "response": {"status": status, "statusText": status_text, "httpVersion": "HTTP/1.1",
                         "headers": header_list(*response), "cookies": [], "content": content,
                         "redirectURL": "", "headersSize": 167, "bodySize": 0},
            "cache": {},
            "timings": {"blocked": 0, "dns": 0, "connect": 0, "ssl": 0, "send": 0, "wait": 3,
                        "receive": 0},
            "time": 3, "_securityState": "insecure", "serverIPAddress": "127.0.0.1",
            "connection": "8000", "pageref": "page_1"}

    return {"log": {
        "version": "1.1", "creator": {"name": "Firefox", "version": "128.0"},
        "browser": {"name": "Firefox", "version": "128.0"},
        "pages": [{"id": "page_1", "pageTimings": {"onContentLoad": 58, "onLoad": 61},
                   "startedDateTime": "2024-05-02T10:15:30.100+02:00",
                   "title": "http://localhost:8000/"}],
        "entries": [
            entry("http://localhost:8000/", "2024-05-02T10:15:30.100+02:00", 200, "OK",
                  "text/html", (("Host", "localhost:8000"),), (("Content-Type", "text/html"),)),
            entry("http://localhost:8000/socket?v=2", "2024-05-02T10:15:30.250+02:00", 101,
                  "Switching Protocols", None,
                  (("Host", "localhost:8000"), ("Upgrade", "websocket"),
                   ("Connection", "keep-alive, Upgrade"), ("Sec-WebSocket-Protocol", "chat")),
                  (("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", "chat")))]}}


LEAN = {"log": {"entries": [
    {"request": {"url": "ws://127.0.0.1:9001/echo"},
     "_webSocketMessages": [
         {"type": "send", "data": "ping?"},
         {"type": "receive", "opcode": 9, "data": ""},  # ping: skipped
         {"type": "receive", "data": "pong!"},
         {"type": "send", "opcode": 0, "data": "AA=="},  # continuation: skipped
         {"type": "send", "opcode": 8, "data": base64.b64encode(close_payload(1000, "done")).decode()},
     ]}]}}


# ---- reading ----------------------------------------------------------------------------


def test_chrome_export_is_read() -> None:
    assert parse_har(json.dumps(chrome_har()), "chrome.har") == [CHROME_CONVERSATION]
    assert CHROME_CONVERSATION.subprotocol == "chat"


def test_chrome_export_without_resource_type_or_with_http_url_is_read() -> None:
    doc = chrome_har()
    ws = doc["log"]["entries"][2]
    del ws["_resourceType"]
    ws["request"]["url"] = "https://example.com/socket?room=1"
    assert parse_har(json.dumps(doc), "chrome.har") == [CHROME_CONVERSATION]


def test_firefox_export_is_read_as_a_handshake_without_messages() -> None:
    [c] = parse_har(json.dumps(firefox_har()), "firefox.har")
    assert c.url == "ws://localhost:8000/socket?v=2" and c.path == "/socket?v=2"
    assert c.messages == [] and c.status == 101 and c.subprotocol == "chat"
    assert ("Upgrade", "websocket") in c.request_headers
    assert c.started == ts("2024-05-02T08:15:30.250+00:00")


def test_a_lean_file_is_read() -> None:
    [c] = parse_har(json.dumps(LEAN), "lean.har")
    assert c == Conversation("ws://127.0.0.1:9001/echo", [
        Message("send", 1, "ping?", None), Message("receive", 1, "pong!", None),
        Message("send", 8, close_payload(1000, "done"), None)])
    assert c.messages[-1].close_code == 1000 and c.messages[-1].close_reason == "done"


def test_mitmproxy_like_file_and_times_in_milliseconds() -> None:
    doc = {"log": {"version": "1.2", "creator": {"name": "mitmproxy", "version": "11"},
                   "entries": [{
                       "startedDateTime": "2022-10-20T08:48:38.013394+00:00",
                       "request": {"method": "GET", "url": "https://demo.example/v3/ch?k=1",
                                   "headers": []},
                       "response": {"status": 101, "headers": []},
                       "_resourceType": "websocket",
                       "_webSocketMessages": [
                           {"type": "receive", "time": 1666255718.5, "opcode": 1, "data": "a"},
                           {"type": "send", "time": 1666255719250, "opcode": 1, "data": "b"}]}]}}
    [c] = parse_har(json.dumps(doc), "m.har")
    assert c.url == "wss://demo.example/v3/ch?k=1" and c.started == ts("2022-10-20T08:48:38.013394+00:00")
    assert [m.time for m in c.messages] == [1666255718.5, 1666255719.25]


def test_several_connections_and_no_connection() -> None:
    doc = chrome_har()
    doc["log"]["entries"].append(copy.deepcopy(doc["log"]["entries"][2]))
    assert parse_har(json.dumps(doc), "two.har") == [CHROME_CONVERSATION] * 2
    doc["log"]["entries"] = doc["log"]["entries"][:2]
    with pytest.raises(HarError, match=r"^two\.har: no WebSocket connection in it$"):
        parse_har(json.dumps(doc), "two.har")


def test_read_har_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "chrome.har"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chrome_har(), ensure_ascii=False).encode())
    assert read_har(str(path)) == [CHROME_CONVERSATION]


# ---- writing ----------------------------------------------------------------------------


def schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT6

    base = "https://har-schema.invalid/"
    registry = Registry().with_resources(
        (base + p.name, Resource.from_contents(json.loads(p.read_text()), default_specification=DRAFT6))
        for p in (DATA / "har-schema").glob("*.json"))
    return jsonschema.Draft6Validator({"$ref": base + "har.json"}, registry=registry,
                                      format_checker=jsonschema.FormatChecker())


VALIDATOR = None


def assert_valid_har(doc: dict[str, Any]) -> None:
    global VALIDATOR
    VALIDATOR = VALIDATOR or schema_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert not errors, errors


def round_trip(c: Conversation) -> Conversation:
    [back] = parse_har(json.dumps(har_document([har_entry(c)], "0.1.0")), "evt.har")
    return back


MESSAGES = {
    "text": [Message("send", 1, "hello", 1700000000.25), Message("receive", 1, "hi", 1700000000.5)],
    "binary": [Message("send", 2, bytes(range(256)), 1700000001.0)],
    "empty": [Message("send", 1, "", 1700000000.0), Message("receive", 2, b"", 1700000000.1)],
    "non-ascii": [Message("send", 1, "héllo ✓ 😀 \u2028 \x00", 1700000000.0),
                  Message("receive", 2, "✓".encode(), 1700000000.2)],
    "close": [Message("send", 8, close_payload(4000, "bye ✓"), 1700000002.0),
              Message("receive", 8, b"", 1700000002.1)],
    "no times": [Message("send", 1, "a"), Message("receive", 1, "b")],
    "none": [],
}


@pytest.mark.parametrize("kind", MESSAGES)
def test_round_trip(kind: str) -> None:
    c = Conversation("wss://h.example:8443/p/a%20th?x=1&y", MESSAGES[kind],
                     [("Host", "h.example:8443"), ("X-Empty", "")], [("Upgrade", "websocket")],
                     101, 1700000000.123)
    assert round_trip(c) == c


def test_written_entry_is_chrome_shaped_and_valid() -> None:
    c = Conversation("ws://127.0.0.1:8080/chat?room=1&x", MESSAGES["text"] + MESSAGES["close"],
                     [("Host", "127.0.0.1:8080")], [("Upgrade", "websocket")], 101, 1700000000.0)
    doc = har_document([har_entry(c)], "9.9")
    assert_valid_har(doc)
    log = doc["log"]
    assert log["version"] == "1.2" and log["creator"] == {"name": "evt", "version": "9.9"}
    [e] = log["entries"]
    assert e["_resourceType"] == "websocket" and e["startedDateTime"] == "2023-11-14T22:13:20.000Z"
    assert e["request"]["url"] == "ws://127.0.0.1:8080/chat?room=1&x"
    assert e["request"]["queryString"] == [{"name": "room", "value": "1"}, {"name": "x", "value": ""}]
    assert e["response"]["statusText"] == "Switching Protocols"
    assert e["response"]["content"] == {"size": 0, "mimeType": "x-unknown"}
    assert e["time"] == pytest.approx(2100) and e["timings"]["receive"] == e["time"]
    assert e["_webSocketMessages"][0] == {"type": "send", "time": 1700000000.25, "opcode": 1,
                                          "data": "hello"}
    assert e["_webSocketMessages"][2]["data"] == base64.b64encode(close_payload(4000, "bye ✓")).decode()
    assert list(e["_webSocketMessages"][0]) == ["type", "time", "opcode", "data"]


def test_dates_are_written_as_chrome_writes_them() -> None:
    assert har_module.iso_time(1714637730.4815) == "2024-05-02T08:15:30.482Z"
    assert har_module.iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert har_module.iso_time(-1e13) == "0001-01-01T00:00:00.000Z"  # kept within a date's range
    assert har_module.iso_time(1e13) == "9999-12-31T23:59:59.999Z"
    c = Conversation("ws://h/", [Message("send", 1, "x", -1e13)])  # a time from a strange file
    assert har_entry(c)["startedDateTime"] == "0001-01-01T00:00:00.000Z"


def test_the_schema_catches_a_broken_document() -> None:
    doc = har_document([har_entry(Conversation("ws://h/", []))], "1")
    doc["log"]["entries"][0]["request"]["headers"] = [{"name": 1}]
    with pytest.raises(AssertionError, match="is not of type 'string'"):
        assert_valid_har(doc)


texts = st.text(max_size=40)
conversations = st.builds(
    Conversation,
    url=st.builds(lambda s, h, p, q: f"{s}://{h}/{p}" + (f"?{q}" if q else ""),
                  st.sampled_from(["ws", "wss"]), st.sampled_from(["h", "127.0.0.1:9", "[::1]:80"]),
                  st.from_regex(r"[a-z0-9/%]{0,12}", fullmatch=True),
                  st.from_regex(r"[a-z0-9=&]{0,12}", fullmatch=True)),
    messages=st.lists(st.one_of(
        st.builds(Message, st.sampled_from(["send", "receive"]), st.just(1), texts,
                  st.none() | st.floats(0, 1e10)),
        st.builds(Message, st.sampled_from(["send", "receive"]), st.sampled_from([2, 8]),
                  st.binary(max_size=40), st.none() | st.floats(0, 1e10))), max_size=8),
    request_headers=st.lists(st.tuples(texts, texts), max_size=3),
    response_headers=st.lists(st.tuples(texts, texts), max_size=3),
    status=st.sampled_from([101, 200, 426]),
    started=st.integers(0, 4102444800000).map(lambda ms: ms / 1000))


@settings(max_examples=300, deadline=None)
@given(conversations)
def test_round_trip_of_any_conversation(c: Conversation) -> None:
    doc = har_document([har_entry(c)], "0")
    assert round_trip(c) == c
    assert_valid_har(json.loads(json.dumps(doc)))


# ---- errors -----------------------------------------------------------------------------


def evt_doc() -> dict[str, Any]:
    c = Conversation("ws://h/", [Message("send", 1, f"m{i}", 1.0) for i in range(1, 8)])
    entries = [{"request": {"url": "http://h/x.js"}}, {"request": {"url": "http://h/y.css"}},
               har_entry(c)]
    return har_document(entries, "0")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][6].update(opcode=2, data="no!"),
     "rec.har: entry 3: message 7: data is not base64"),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][6].update(opcode=2, data="AAE"),
     "rec.har: entry 3: message 7: data is not base64"),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][0].update(type="sent"),
     'rec.har: entry 3: message 1: type is not "send" or "receive"'),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][1].update(opcode="1"),
     "rec.har: entry 3: message 2: opcode is not an integer"),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][1].update(time="now"),
     "rec.har: entry 3: message 2: time is not a number"),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"][1].update(data=[1]),
     "rec.har: entry 3: message 2: data is not a string"),
    (lambda d: d["log"]["entries"][2]["_webSocketMessages"].__setitem__(2, "hi"),
     "rec.har: entry 3: message 3: not an object"),
    (lambda d: d["log"]["entries"][2].update(_webSocketMessages={}),
     "rec.har: entry 3: _webSocketMessages is not a list"),
    (lambda d: d["log"]["entries"][2]["request"].update(url="ftp://h/"),
     "rec.har: entry 3: request.url is not a ws://, wss://, http:// or https:// URL"),
    (lambda d: d["log"]["entries"][2]["request"].update(url=7),
     "rec.har: entry 3: request.url is not a string"),
    (lambda d: d["log"]["entries"][2].pop("request"), "rec.har: entry 3: no request"),
    (lambda d: d["log"]["entries"][2]["request"].update(headers=[{"name": "A"}]),
     "rec.har: entry 3: request.headers: header 1 is not a {name, value} object of strings"),
    (lambda d: d["log"]["entries"][2]["response"].update(headers={}),
     "rec.har: entry 3: response.headers is not a list"),
    (lambda d: d["log"]["entries"][2]["response"].update(status="101"),
     "rec.har: entry 3: response.status is not an HTTP status"),
    (lambda d: d["log"]["entries"][2].update(response=[]),
     "rec.har: entry 3: response is not an object"),
    (lambda d: d["log"]["entries"][2].update(startedDateTime="yesterday"),
     "rec.har: entry 3: startedDateTime is not an ISO 8601 date: 'yesterday'"),
    (lambda d: d["log"]["entries"][2].update(startedDateTime=0),
     "rec.har: entry 3: startedDateTime is not a string"),
    (lambda d: d["log"]["entries"].__setitem__(1, None), "rec.har: entry 2: not an object"),
    (lambda d: d["log"].update(entries={}), "rec.har: not a HAR file: log.entries is not a list"),
    (lambda d: d["log"].pop("entries"), "rec.har: not a HAR file: no log.entries"),
    (lambda d: d.update(log=[]), "rec.har: not a HAR file: no log.entries"),
    (lambda d: d["log"]["entries"].pop(2), "rec.har: no WebSocket connection in it"),
])
def test_errors_name_the_file_and_the_place(change: Any, message: str) -> None:
    doc = evt_doc()
    change(doc)
    with pytest.raises(HarError) as e:
        parse_har(json.dumps(doc), "rec.har")
    assert str(e.value) == message


@pytest.mark.parametrize(("text", "message"), [
    ("", "rec.har: not a HAR file: not JSON (Expecting value: line 1 column 1 (char 0))"),
    ('{"log": {"entries": [', "rec.har: not a HAR file: not JSON (Expecting value: line 1 column 22 (char 21))"),
    ("[]", "rec.har: not a HAR file: no log.entries"),
    ("null", "rec.har: not a HAR file: no log.entries"),
    ('{"log": {"entries": [NaN]}}', "rec.har: not a HAR file: not JSON (NaN is not a JSON number)"),
    ("[" * 100_000 + "]" * 100_000, "rec.har: not a HAR file: JSON nested too deeply"),
    ('{"log": {"entries": [{"_webSocketMessages": [], "request": {"url": "ws://h/\\ud800"}}]}}',
     "rec.har: entry 1: request.url is not valid Unicode text"),
    ('{"log": {"entries": [{"_webSocketMessages": [{"type": "send", "data": "\\udfff"}],'
     ' "request": {"url": "ws://h/"}}]}}', "rec.har: entry 1: message 1: data is not valid Unicode text"),
    ('{"log": {"entries": [{"_webSocketMessages": [{"type": "send", "time": 1e999}],'
     ' "request": {"url": "ws://h/"}}]}}', "rec.har: entry 1: message 1: time is not a number"),
])
def test_malformed_text(text: str, message: str) -> None:
    with pytest.raises(HarError) as e:
        parse_har(text, "rec.har")
    assert str(e.value) == message


def test_file_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.har"
    with pytest.raises(HarError, match=rf"^{re.escape(str(missing))}: cannot read it: No such file or directory$"):
        read_har(str(missing))
    with pytest.raises(HarError, match=rf"^{re.escape(str(tmp_path))}: cannot read it: Is a directory$"):
        read_har(str(tmp_path))
    latin = tmp_path / "latin.har"
    latin.write_bytes(b'{"log": "\xe9"}')
    with pytest.raises(HarError, match=rf"^{re.escape(str(latin))}: not a HAR file: not UTF-8 text \(byte 9\)$"):
        read_har(str(latin))
    big = tmp_path / "big.har"
    big.write_text(json.dumps(evt_doc()))
    monkeypatch.setattr(har_module, "MAX_BYTES", 100)
    with pytest.raises(HarError, match=rf"^{re.escape(str(big))}: too large \(more than 1 GiB\)$"):
        read_har(str(big))
    with pytest.raises(HarError, match=r"^big\.har: too large \(more than 1 GiB\)$"):
        parse_har(big.read_text(), "big.har")


# ---- fuzzing: HarError or conversations, nothing else ----------------------------------


def parses_or_har_error(text: str) -> None:
    try:
        result = parse_har(text, "fuzz.har")
    except HarError as e:
        assert str(e).startswith("fuzz.har: ")
    else:
        assert result and all(isinstance(c, Conversation) for c in result)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["log", "entries", "request", "response", "url", "headers", "name",
                         "value", "status", "_webSocketMessages", "_resourceType", "type",
                         "time", "opcode", "data", "startedDateTime"]) | st.text(max_size=5),
        inner, max_size=5),
    max_leaves=30)


@settings(max_examples=1000, deadline=None)
@given(json_values)
def test_fuzz_any_json_value(value: Any) -> None:
    parses_or_har_error(json.dumps(value))
    parses_or_har_error(json.dumps({"log": {"entries": [value]}}))
    parses_or_har_error(json.dumps({"log": {"entries": [
        {"request": {"url": "ws://h/"}, "_webSocketMessages": [value]}]}}))


VALID = json.dumps(chrome_har())


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


PATHS = paths(json.loads(VALID))[1:]


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(PATHS), json_values | st.just("AAEC/w==") | st.just("ws://x/"))
def test_fuzz_replace_any_part_of_a_valid_har(path: tuple[Any, ...], value: Any) -> None:
    doc = json.loads(VALID)
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    parses_or_har_error(json.dumps(doc))


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_fuzz_truncate_and_mutate_the_text(data: st.DataObject) -> None:
    text = VALID
    cut = data.draw(st.integers(0, len(text)))
    parses_or_har_error(text[:cut])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        text = text[:i] + data.draw(st.text(min_size=0, max_size=3)) + text[i + 1:]
    parses_or_har_error(text)


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "fuzz.har"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.builds(lambda b, i: VALID.encode()[:i] + b,
                                             st.binary(max_size=8), st.integers(0, len(VALID))))
def test_fuzz_random_bytes_in_a_file(fuzz_file: Path, raw: bytes) -> None:
    fuzz_file.write_bytes(raw)
    try:
        result = read_har(str(fuzz_file))
    except HarError as e:
        assert str(e).startswith(f"{fuzz_file}: ")
    else:
        assert all(isinstance(c, Conversation) for c in result)
