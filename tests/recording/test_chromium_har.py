"""A HAR exported by real Chromium (SPEC §14): headless Debian Chromium, driven by Selenium,
loads a page from a local HTTP server; the page opens a WebSocket to a local `websockets`
echo server, sends a text and a binary message, gets both back and closes with code 4000.

Chromium has no headless "Save all as HAR": DevTools' frontend builds the HAR from the
Network domain's events. So does `devtools_har` here, from the events of Chromium's
performance log, following DevTools' own code (front_end/models/har/Log.ts for the HAR's
fields, core/sdk/NetworkManager.ts and NetworkRequest.ts for how the events fill a
request) field by field. The HAR is saved to a file and read back with `read_har`.

`chromium_har(tmp_path) -> Path` is a fixture other tests can use (a replay, say); the
messages the page exchanged are `EXCHANGED`. It skips (loudly) without Chromium.
"""

from __future__ import annotations

import json
import math
import queue
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import pytest
from helpers.browser import CHROMEDRIVER, CHROMIUM, T, skip_unless_chromium
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from lang.recording.har import iso_time, read_har

CLOSE_CODE, CLOSE_REASON = 4000, "bye"
TEXT_SENT = "hello ✓ <b>"
BINARY_SENT = bytes([0, 1, 2, 255])
# What the page exchanged, as the HAR has it: (type, opcode, data). Chromium reports no close
# frame among a WebSocket's frames (only the connection's closing), so there is none here.
EXCHANGED = [("send", 1, TEXT_SENT), ("send", 2, BINARY_SENT),
             ("receive", 1, TEXT_SENT), ("receive", 2, BINARY_SENT)]
PATH = "/chat?room=1&who=chromium"

PAGE = Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>evt HAR page</title></head><body><pre id="log"></pre>
<script>
const ws = new WebSocket(new URLSearchParams(location.search).get("ws"));
ws.binaryType = "arraybuffer";
window.evtGot = [];
ws.onopen = () => { ws.send($text); ws.send(new Uint8Array($binary)); };
ws.onmessage = (e) => {
  window.evtGot.push(typeof e.data === "string" ? e.data : Array.from(new Uint8Array(e.data)));
  if (window.evtGot.length === 2) ws.close($code, $reason);
};
ws.onclose = (e) => { window.evtClosed = e.code; };
</script></body></html>
""").substitute(text=json.dumps(TEXT_SENT), binary=json.dumps(list(BINARY_SENT)),
                code=CLOSE_CODE, reason=json.dumps(CLOSE_REASON))


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/page.html":
            self.send_error(404)
            return
        body = PAGE.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _chromium_with_network_log(profile: Path) -> Any:
    """tests/helpers/browser.py's headless Chromium, with the performance log (the DevTools
    protocol's Network and Page events) switched on."""
    skip_unless_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True,
                                                         "enablePage": True})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(T)
    driver.set_script_timeout(T)
    return driver


def _events(driver: Any) -> list[dict[str, Any]]:
    return [json.loads(e["message"])["message"] for e in driver.get_log("performance")]


# ---- DevTools' "Save all as HAR", from the protocol's events ---------------------------


def _headers(headers: dict[str, str]) -> list[dict[str, str]]:
    """NetworkManager.headersMapToHeadersArray: a value with newlines is several headers."""
    return [{"name": n, "value": v} for n, vs in headers.items() for v in str(vs).split("\n")]


def _query(url: str) -> list[dict[str, str]]:
    """NetworkRequest.parseParameters: split at `&`, then at the first `=`; nothing decoded."""
    query = url.split("#")[0].partition("?")[2]
    pairs = [p.partition("=") for p in query.split("&")] if query else []
    return [{"name": name, "value": value} for name, _, value in pairs]


def _http_version(headers_text: str, protocol: str, request: bool) -> str:
    if not headers_text:
        return "http/2.0" if protocol.lower() == "h2" else protocol.lower()
    first = headers_text.split("\r\n")[0]
    m = re.search(r"(HTTP/\d+\.\d+)$" if request else r"^(HTTP/\d+\.\d+)", first)
    return m[1] if m else "HTTP/0.9"


def _ms(seconds: float) -> float:
    return -1 if seconds == -1 else seconds * 1000


def _least_non_negative(values: list[float]) -> float:
    return min([v for v in values if v >= 0], default=float("inf"))


def _timings(r: dict[str, Any]) -> dict[str, float]:
    """Log.ts Entry.buildTimings, for a request's `timing` (the protocol's ResourceTiming)."""
    timing, issue, start = r.get("timing"), r["issueTime"], r["startTime"]
    queued = _ms(start - issue if issue < start else -1)
    out: dict[str, float] = {"blocked": queued, "dns": -1, "ssl": -1, "connect": -1,
                             "send": 0, "wait": 0, "receive": 0, "_blocked_queueing": queued}
    highest = 0.0
    if timing:
        blocked_start = _least_non_negative(
            [timing["dnsStart"], timing["connectStart"], timing["sendStart"]])
        if blocked_start != float("inf"):
            out["blocked"] += blocked_start
        if timing["proxyEnd"] != -1:
            out["_blocked_proxy"] = timing["proxyEnd"] - timing["proxyStart"]
            out["blocked"] = max(out["blocked"], out["_blocked_proxy"])
        dns_end = timing["dnsEnd"] if timing["dnsEnd"] >= 0 else -1
        out["dns"] = dns_end - (blocked_start if timing["dnsEnd"] >= 0 else 0)
        ssl_end = timing["sslEnd"] if timing["sslEnd"] > 0 else -1
        out["ssl"] = ssl_end - (timing["sslStart"] if timing["sslEnd"] > 0 else 0)
        has_connect = timing["connectEnd"] >= 0
        connect_end = timing["connectEnd"] if has_connect else -1
        out["connect"] = connect_end - (
            _least_non_negative([dns_end, blocked_start]) if has_connect else 0)
        send_end = timing["sendEnd"] if timing["sendEnd"] >= 0 else 0
        send_start = max(connect_end, dns_end, blocked_start) if timing["sendEnd"] >= 0 else 0
        out["send"] = max(send_end - send_start, 0)
        highest = max(send_end, connect_end, ssl_end, dns_end, blocked_start, 0)
        for key in ("workerStart", "workerReady", "workerFetchStart", "workerRespondWithSettled"):
            if key in timing:
                out["_" + key] = timing[key]
    elif r.get("responseReceivedTime", -1) == -1:
        out["blocked"] = _ms(r.get("endTime", issue) - issue)
        return out
    request_time = timing["requestTime"] if timing else start
    wait_end = _ms(r["responseReceivedTime"] - request_time)
    out["wait"] = wait_end - highest
    out["receive"] = max(_ms(r.get("endTime", r["responseReceivedTime"]) - request_time) - wait_end, 0)
    return out


def _initiator(initiator: dict[str, Any] | None) -> dict[str, Any] | None:
    """Log.ts exports these fields of the protocol's Initiator, no others."""
    if not initiator:
        return None
    return {k: initiator[k] for k in ("type", "url", "requestId", "lineNumber", "stack")
            if k in initiator}


def devtools_har(events: list[dict[str, Any]], page_url: str, user_agent: str) -> dict[str, Any]:
    """The HAR DevTools' "Save all as HAR" writes for these Network and Page events, from
    the navigation to `page_url` on."""
    requests: dict[str, dict[str, Any]] = {}
    page: dict[str, Any] = {}
    for event in events:
        method, p = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent" and p.get("type") == "Document" \
                and p["requestId"] == p.get("loaderId") and p["request"]["url"] == page_url:
            requests.clear()  # a navigation: DevTools' log (without "Preserve log") starts anew
            page = {"loaderId": p["loaderId"]}
        if not page:
            continue
        r = requests.get(p.get("requestId", ""))
        if method == "Network.requestWillBeSent" and r is None \
                and p.get("loaderId") == page["loaderId"]:  # not the previous page's leftovers
            r = requests[p["requestId"]] = {
                "url": p["request"]["url"], "method": p["request"]["method"],
                "requestHeaders": _headers(p["request"]["headers"]), "initiator": p.get("initiator"),
                "priority": p["request"].get("initialPriority"), "type": p.get("type", "Other"),
                "issueTime": p["timestamp"], "wall": p["wallTime"], "startTime": p["timestamp"],
                "resourceSize": 0, "transferSize": 0}
            page.setdefault("request", r)
        elif method == "Network.requestWillBeSentExtraInfo" and r is not None:
            r["requestHeaders"] = _headers(p["headers"])
        elif method == "Network.responseReceived" and r is not None:
            resp = p["response"]
            r.update(status=resp["status"], statusText=resp["statusText"],
                     responseHeaders=_headers(resp["headers"]), mimeType=resp.get("mimeType", ""),
                     protocol=resp.get("protocol", ""), timing=resp.get("timing"),
                     remote=resp.get("remoteIPAddress", ""), port=resp.get("remotePort"),
                     connectionId=str(resp.get("connectionId", "0")),
                     responseReceivedTime=p["timestamp"])
            if r["timing"]:  # NetworkRequest's `set timing`
                r["startTime"] = r["timing"]["requestTime"]
                headers_end = r["startTime"] + r["timing"]["receiveHeadersEnd"] / 1000
                r["responseReceivedTime"] = max(min(p["timestamp"], headers_end), r["startTime"])
        elif method == "Network.responseReceivedExtraInfo" and r is not None:
            r["responseHeadersText"] = p.get("headersText", "")
        elif method == "Network.dataReceived" and r is not None:
            r["resourceSize"] += p["dataLength"]
        elif method in ("Network.loadingFinished", "Network.loadingFailed") and r is not None:
            r["endTime"] = p["timestamp"]
            r["transferSize"] = p.get("encodedDataLength", r["transferSize"])
        elif method == "Network.webSocketCreated":
            requests[p["requestId"]] = {
                "url": p["url"], "method": "", "initiator": p.get("initiator"), "priority": None,
                "type": "WebSocket", "requestHeaders": [], "frames": [], "resourceSize": 0,
                "transferSize": 0, "issueTime": 0, "startTime": 0, "wall": None}
        elif method == "Network.webSocketWillSendHandshakeRequest" and r is not None:
            r.update(method="GET", requestHeaders=_headers(p["request"]["headers"]),
                     issueTime=p["timestamp"], startTime=p["timestamp"], wall=p["wallTime"])
        elif method == "Network.webSocketHandshakeResponseReceived" and r is not None:
            resp = p["response"]
            r.update(status=resp["status"], statusText=resp["statusText"],
                     responseHeaders=_headers(resp["headers"]),
                     responseHeadersText=resp.get("headersText") or "",
                     responseReceivedTime=p["timestamp"], protocol="websocket")
            if resp.get("requestHeaders"):
                r["requestHeaders"] = _headers(resp["requestHeaders"])
            if resp.get("requestHeadersText"):
                r["requestHeadersText"] = resp["requestHeadersText"]
        elif method in ("Network.webSocketFrameSent", "Network.webSocketFrameReceived",
                        "Network.webSocketFrameError") and r is not None:
            frame = p.get("response", {})
            kind = {"Network.webSocketFrameSent": "send", "Network.webSocketFrameReceived":
                    "receive"}.get(method, "error")
            r["frames"].append({"type": kind, "time": p["timestamp"],
                                "opcode": frame.get("opcode", -1),
                                "data": frame.get("payloadData", p.get("errorMessage", ""))})
            if kind != "send":
                r["responseReceivedTime"] = p["timestamp"]
        elif method == "Network.webSocketClosed" and r is not None:
            r["endTime"] = p["timestamp"]
        elif method == "Page.domContentEventFired":
            page["contentLoadTime"] = p["timestamp"]
        elif method == "Page.loadEventFired":
            page["loadTime"] = p["timestamp"]

    def wall(r: dict[str, Any], monotonic: float) -> float:  # NetworkRequest.pseudoWallTime
        return r["wall"] - r["issueTime"] + monotonic if r["wall"] else monotonic

    def entry(r: dict[str, Any]) -> dict[str, Any]:
        timings = _timings(r)
        request_text, response_text = r.get("requestHeadersText", ""), r.get("responseHeadersText", "")
        body_size = r["transferSize"] - len(response_text) if response_text else -1
        content: dict[str, Any] = {"size": r["resourceSize"], "mimeType": r.get("mimeType") or "x-unknown"}
        if response_text:
            content["compression"] = r["resourceSize"] - body_size
        location = next((h["value"] for h in r.get("responseHeaders", [])
                         if h["name"].lower() == "location"), "")
        out: dict[str, Any] = {}  # in Log.ts's order, which JSON.stringify keeps
        if r.get("connectionId", "0") != "0":
            out["_connectionId"] = r["connectionId"]
        out["_initiator"] = _initiator(r["initiator"])
        out["_priority"] = r["priority"]
        out["_resourceType"] = r["type"].lower()
        if r["type"] == "WebSocket":
            out["_webSocketMessages"] = [dict(f, time=wall(r, f["time"])) for f in r["frames"]]
        out["cache"] = {}
        if r.get("port"):
            out["connection"] = str(r["port"])
        out["pageref"] = "page_1"
        out["request"] = {
            "method": r["method"], "url": r["url"].split("#")[0],
            "httpVersion": _http_version(request_text, r.get("protocol", ""), True),
            "headers": r["requestHeaders"], "queryString": _query(r["url"]), "cookies": [],
            "headersSize": len(request_text) if request_text else -1, "bodySize": 0}
        out["response"] = {
            "status": r.get("status", 0), "statusText": r.get("statusText", ""),
            "httpVersion": _http_version(response_text, r.get("protocol", ""), False),
            "headers": r.get("responseHeaders", []), "cookies": [], "content": content,
            "redirectURL": location, "headersSize": len(response_text) if response_text else -1,
            "bodySize": body_size, "_transferSize": r["transferSize"], "_error": None,
            "_fetchedViaServiceWorker": False}
        out["serverIPAddress"] = r.get("remote", "")
        out["startedDateTime"] = iso_time(wall(r, r["issueTime"]))
        out["time"] = sum(max(timings[k], 0) for k in ("blocked", "dns", "connect", "send",
                                                        "wait", "receive"))
        out["timings"] = timings
        return out

    main = page["request"]

    def since(t: float | None) -> float:  # Log.ts pageEventTime
        return -1 if t is None else (t - main["startTime"]) * 1000

    webkit = re.search(r"AppleWebKit/([^ ]+)", user_agent)
    return {"log": {
        "version": "1.2", "creator": {"name": "WebInspector", "version": webkit[1] if webkit else "n/a"},
        "pages": [{"startedDateTime": iso_time(wall(main, main["startTime"])), "id": "page_1",
                   "title": main["url"], "pageTimings": {
                       "onContentLoad": since(page.get("contentLoadTime")),
                       "onLoad": since(page.get("loadTime"))}}],
        "entries": [entry(r) for r in requests.values() if r["wall"] is not None]}}


def js_json(value: Any) -> Any:
    """`value` as JSON.stringify sees it: a non-finite number (DevTools' timings can have
    -Infinity) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: js_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [js_json(v) for v in value]
    return value


# ---- the browser, the servers, the HAR ---------------------------------------------------


def record_chromium_har(directory: Path) -> Path:
    """Run the page in headless Chromium against a local echo server and save the HAR that
    DevTools would save, as `directory/chromium.har`."""
    closes: queue.Queue[int | None] = queue.Queue()  # the codes the server's side saw

    def echo(ws: ServerConnection) -> None:
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass
        closes.put(ws.close_code)

    driver = _chromium_with_network_log(directory / "chromium-profile")
    ws_server = serve(echo, "127.0.0.1", 0)
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    threads = [threading.Thread(target=s.serve_forever, daemon=True)
               for s in (ws_server, http_server)]
    for thread in threads:
        thread.start()
    try:
        ws_url = f"ws://127.0.0.1:{ws_server.socket.getsockname()[1]}{PATH}"
        page_url = f"http://127.0.0.1:{http_server.server_address[1]}/page.html?ws={quote(ws_url, safe='')}"
        events: list[dict[str, Any]] = []
        _events(driver)  # what the browser did before: not the page's
        driver.get(page_url)
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, T, poll_frequency=0.05).until(
            lambda d: d.execute_script("return window.evtClosed !== undefined"))
        got = driver.execute_script("return [window.evtGot, window.evtClosed]")
        assert got == [[TEXT_SENT, list(BINARY_SENT)], CLOSE_CODE], got
        deadline = time.monotonic() + T  # the log may trail the page's onclose
        while not any(e["method"] == "Network.webSocketClosed" for e in events):
            assert time.monotonic() < deadline, "no Network.webSocketClosed in the log"
            events += _events(driver)
            time.sleep(0.05)  # a poll, as WebDriverWait's, under the deadline above
        user_agent = driver.execute_script("return navigator.userAgent")
        assert closes.get(timeout=T) == CLOSE_CODE
    finally:
        driver.quit()
        ws_server.shutdown()
        http_server.shutdown()
        http_server.server_close()
        for thread in threads:
            thread.join(T)
    har = directory / "chromium.har"
    doc = js_json(devtools_har(events, page_url, user_agent))
    har.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    return har


@pytest.fixture
def chromium_har(tmp_path: Path) -> Path:
    """A HAR file saved from real Chromium (see the module's docstring; `EXCHANGED`)."""
    return record_chromium_har(tmp_path)


def test_a_har_exported_by_chromium_is_read(chromium_har: Path) -> None:
    doc = json.loads(chromium_har.read_text(encoding="utf-8"))
    kinds = [e["_resourceType"] for e in doc["log"]["entries"]]
    assert "document" in kinds and kinds.count("websocket") == 1, kinds

    [conversation] = read_har(str(chromium_har))
    assert [(m.type, m.opcode, m.data) for m in conversation.messages] == EXCHANGED
    assert conversation.url.startswith("ws://127.0.0.1:") and conversation.path == PATH
    assert conversation.status == 101
    headers = {n.lower(): v for n, v in conversation.request_headers}
    assert headers["upgrade"] == "websocket" and headers["origin"].startswith("http://127.0.0.1:")
    assert any(n.lower() == "sec-websocket-accept" for n, _ in conversation.response_headers)
    times = [m.time for m in conversation.messages if m.time is not None]
    assert len(times) == len(EXCHANGED) and times == sorted(times)
    assert conversation.started is not None
    assert abs(conversation.started - time.time()) < 3600  # wall-clock seconds, not monotonic
    assert conversation.started <= times[0] + 0.001


@pytest.mark.anyio
async def test_evt_replay_serves_the_chromium_har_to_a_client(chromium_har: Path) -> None:
    """The HAR Chromium gave, served by `evt replay --serve` to a `websockets` client that
    says what the page said: it gets what the page got, in order."""
    import sys

    import anyio
    import websockets
    from helpers.run import ENV_FOR_CLI

    with anyio.fail_after(60):
        async with await anyio.open_process(
                [sys.executable, "-m", "lang", "replay", str(chromium_har), "--serve",
                 "127.0.0.1:0"], env=ENV_FOR_CLI) as proc:
            assert proc.stderr is not None
            line = b""
            while b"replaying on" not in line:
                line += await proc.stderr.receive()
            url = line.decode().split("replaying on ", 1)[1].split()[0]
            try:
                async with websockets.connect(url.rstrip("/") + PATH) as ws:
                    sent = [(d, data) for d, _, data in EXCHANGED if d == "send"]
                    for _, data in sent:
                        await ws.send(data)
                    got = [await ws.recv() for _ in range(len(EXCHANGED) - len(sent))]
            finally:
                proc.terminate()
                await proc.wait()
    assert got == [data for d, _, data in EXCHANGED if d == "receive"]
