"""`evt run --record FILE.har` (SPEC §14): every WebSocket conversation of the run, client
and server side, into one HAR file as Chrome DevTools writes it.

Rules of this module:
- The endpoints call in (`opened` at each handshake, then the handle's `message`,
  `closing` and `ended`); they pass plain values and know nothing of HAR.
- `type` is from the client's side whichever side recorded it: what a client connection
  sends and what a server's peer receives are both "send".
- The file is rewritten (a temporary file renamed over it) at most once a second while the
  run goes, and once more at its end: a crash loses at most the last second, and a reader
  always finds a whole, valid HAR. An ended conversation is serialised once.
"""

from __future__ import annotations

import json

import anyio

from lang.files import write_atomically
from lang.recording.har import har_document, har_entry
from lang.recording.model import CLOSE, RECEIVE, SEND, Conversation, Message, close_payload
from lang.runtime.virtualtime import wall

WRITE_EVERY = 1.0  # seconds between rewrites of the file while it changes
_SPOT = "\x00evt-entries\x00"


class Recording:
    """One conversation being recorded (what the endpoints hold)."""

    __slots__ = ("conversation", "our_close", "recorder", "we_are_client")

    def __init__(self, recorder: Recorder, conversation: Conversation,
                 we_are_client: bool) -> None:
        self.recorder = recorder
        self.conversation = conversation
        self.we_are_client = we_are_client
        self.our_close: tuple[int, str] | None = None

    def message(self, from_client: bool, data: str | bytes) -> None:
        opcode = 1 if type(data) is str else 2
        self.conversation.messages.append(
            Message(SEND if from_client else RECEIVE, opcode, data, wall()))
        self.recorder.dirty = True

    def closing(self, code: int, reason: str) -> None:
        """The script closes it (`close`, `stop`) with this code and reason."""
        if self.our_close is None:
            self.our_close = (code, reason)

    def ended(self, code: int | None, reason: str, by_peer: bool) -> None:
        """The session is over: its close frame, as the side that began the close sent it
        (nothing when the connection ended without one: 1006)."""
        if code is not None and code not in (1005, 1006, 1015):
            if not by_peer and self.our_close is not None:
                code, reason = self.our_close
            from_client = self.we_are_client != by_peer
            self.conversation.messages.append(Message(
                SEND if from_client else RECEIVE, CLOSE, close_payload(code, reason), wall()))
        self.recorder.ended(self)


class Recorder:
    def __init__(self, path: str, version: str) -> None:
        self.path = path
        self.version = version
        self.dirty = True
        self.entries: list[Recording | str] = []  # in the order they opened; ended: JSON
        self._index: dict[int, int] = {}  # id(recording) -> its place in entries

    def check_writable(self) -> str | None:
        """Why the file cannot be written (a usage error before anything runs), or None."""
        try:
            self._write()
        except OSError as e:
            return f"--record {self.path}: {e.strerror or e}"
        return None

    def opened(self, url: str, request: list[tuple[str, str]],
               response: list[tuple[str, str]], we_are_client: bool) -> Recording:
        c = Conversation(url, [], request, response, 101, wall())
        rec = Recording(self, c, we_are_client)
        self._index[id(rec)] = len(self.entries)
        self.entries.append(rec)
        self.dirty = True
        return rec

    def ended(self, rec: Recording) -> None:
        at = self._index.pop(id(rec), None)
        if at is not None:
            self.entries[at] = json.dumps(har_entry(rec.conversation))
        self.dirty = True

    async def run(self) -> None:
        """Beside the program: rewrite the file each second while it changes."""
        while True:
            await anyio.sleep(WRITE_EVERY)
            if self.dirty:
                self._write_quietly()

    def finish(self) -> None:
        """The run is over (its connections closed): the last write."""
        for i, e in enumerate(self.entries):
            if isinstance(e, Recording):  # still open at the end (a bug elsewhere, a kill)
                self.entries[i] = json.dumps(har_entry(e.conversation))
        self._index.clear()
        self._write_quietly()

    def _write_quietly(self) -> None:
        try:
            self._write()
        except OSError:
            pass  # the disk filled up or the directory went away: try again next second

    def _write(self) -> None:
        self.dirty = False
        parts = [e if isinstance(e, str) else json.dumps(har_entry(e.conversation))
                 for e in self.entries]
        head = json.dumps(har_document([], self.version), indent=1)
        text = head.replace('"entries": []', f'"entries": [{_SPOT}]', 1)
        text = text.replace(_SPOT, ",\n".join(parts))
        # rewritten each second: flushed, not synced (a crash of evt, not of the machine,
        # is what loses at most a second)
        write_atomically(self.path, text.encode("utf-8"), sync=False)
