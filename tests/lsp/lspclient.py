"""A small LSP client for the tests: `evt lsp` as a subprocess, JSON-RPC with Content-Length
framing over its stdin and stdout, written here (not a library's) so the tests see the wire
as an editor does.

Every wait has a deadline: a thread reads the server's stdout into a queue and the test
takes from it with a timeout, so a server that stops answering fails the test instead of
hanging it. Nothing sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from helpers import ENV_FOR_CLI, ROOT

TIMEOUT = 30.0  # seconds for any one answer (generous: the tests run beside CPU hogs)


def uri(path: Path | str) -> str:
    return Path(path).resolve().as_uri()


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """One message from `stream`, or None at its end."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            if length is not None:
                break
            continue
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = stream.read(length)
    if len(body) < length:
        return None
    return json.loads(body)


class LspError(AssertionError):
    pass


class Client:
    def __init__(self, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lang", "lsp"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd or ROOT,
            env={**ENV_FOR_CLI, **(env or {})})
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.notes: list[dict[str, Any]] = []  # notifications taken while awaiting an answer
        self.next_id = 0
        self.stderr = b""
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while (msg := read_frame(self.proc.stdout)) is not None:
            self.inbox.put(msg)
        self.inbox.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    # ------------------------------------------------------------ sending

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame({"jsonrpc": "2.0", **message}))
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.send({"method": method, **({"params": params} if params is not None else {})})

    def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and wait for its answer (the result; an error fails)."""
        self.next_id += 1
        rid = self.next_id
        self.send({"id": rid, "method": method,
                   **({"params": params} if params is not None else {})})
        msg = self._take(lambda m: m.get("id") == rid and "method" not in m,
                         f"the answer to {method}")
        if "error" in msg:
            raise LspError(f"{method} failed: {msg['error']}")
        return msg.get("result")

    # ------------------------------------------------------------ receiving

    def _take(self, want: Any, what: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        for i, m in enumerate(self.notes):
            if want(m):
                return self.notes.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LspError(f"no {what} within {timeout}s; stderr:\n"
                               f"{self.stderr.decode(errors='replace')}")
            try:
                msg = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                raise LspError(f"the server closed its output before {what}; stderr:\n"
                               f"{self._stderr_now()}")
            if want(msg):
                return msg
            if msg.get("method") == "window/showMessage" and \
                    msg["params"].get("type") == 1:
                raise LspError(f"the server reported an error: {msg['params']['message']}")
            self.notes.append(msg)

    def _stderr_now(self) -> str:
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        return self.stderr.decode(errors="replace")

    def diagnostics(self, doc_uri: str, version: int | None = None) -> list[dict[str, Any]]:
        """The next diagnostics published for `doc_uri` (for that version, when given)."""
        def want(m: dict[str, Any]) -> bool:
            return m.get("method") == "textDocument/publishDiagnostics" and \
                m["params"]["uri"] == doc_uri and \
                (version is None or m["params"].get("version") == version)
        return self._take(want, f"diagnostics of {doc_uri} v{version}")["params"]["diagnostics"]

    # ------------------------------------------------------------ the session

    def initialize(self, root: Path | None = None,
                   encodings: list[str] | None = None) -> dict[str, Any]:
        capabilities: dict[str, Any] = {
            "textDocument": {"hover": {"contentFormat": ["markdown", "plaintext"]},
                             "documentSymbol": {"hierarchicalDocumentSymbolSupport": True},
                             "publishDiagnostics": {"relatedInformation": True}}}
        if encodings is not None:
            capabilities["general"] = {"positionEncodings": encodings}
        result = self.request("initialize", {
            "processId": os.getpid(), "rootUri": uri(root or ROOT),
            "capabilities": capabilities})
        self.notify("initialized", {})
        return result

    def open(self, doc_uri: str, text: str, version: int = 1) -> None:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": doc_uri, "languageId": "evt", "version": version, "text": text}})

    def change(self, doc_uri: str, version: int, text: str,
               range_: dict[str, Any] | None = None) -> None:
        change: dict[str, Any] = {"text": text}
        if range_ is not None:
            change["range"] = range_
        self.notify("textDocument/didChange", {
            "textDocument": {"uri": doc_uri, "version": version}, "contentChanges": [change]})

    def at(self, method: str, doc_uri: str, line: int, character: int) -> Any:
        return self.request(method, {"textDocument": {"uri": doc_uri},
                                     "position": {"line": line, "character": character}})

    def close(self) -> int:
        """shutdown, exit, and the server's exit code."""
        if self.proc.poll() is None:
            self.request("shutdown")
            self.notify("exit")
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def position_of(text: str, needle: str, offset: int = 0, nth: int = 0) -> tuple[int, int]:
    """(line, character) from 0 of `needle` (its nth occurrence) plus `offset` characters,
    in UTF-16 units (the test texts are ASCII where this is used)."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    at += offset
    line = text.count("\n", 0, at)
    return line, at - (text.rfind("\n", 0, at) + 1)
