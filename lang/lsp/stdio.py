"""The server's connection: JSON-RPC messages framed with Content-Length on stdin/stdout.

Rules of this module:
- One daemon thread reads stdin and hands each whole message to the event loop; the loop
  handles them one after the other, in order. The thread never keeps the process alive: an
  `exit` ends the server even while the client still holds stdin open.
- The loop handles every message that is waiting before it turns to the work a message left
  for later (the server's diagnostics): a burst of edits is analysed once, at its end.
- The exit code is LSP's: 0 when `shutdown` came before `exit` (or before the end of
  stdin), else 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from pygls.io_ import StdoutWriter

logger = logging.getLogger("evt.lsp")

MAX_MESSAGE = 256 * 1024 * 1024  # bytes: a larger body is not a message of an editor's


def read_messages(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """The bodies of the messages that `read` (os.read on a descriptor, say) gives, until its
    end; a broken frame ends it too."""
    buf = bytearray()
    while True:
        while (head_end := buf.find(b"\r\n\r\n")) < 0:
            if not _fill(buf, read):
                return
        length = None
        for line in bytes(buf[:head_end]).split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None
        del buf[:head_end + 4]
        if length is None or not 0 <= length <= MAX_MESSAGE:
            logger.error("evt lsp: a frame without a valid Content-Length; closing")
            return
        while len(buf) < length:
            if not _fill(buf, read):
                return
        body = bytes(buf[:length])
        del buf[:length]
        yield body


def _fill(buf: bytearray, read: Callable[[int], bytes]) -> bool:
    chunk = read(1 << 16)
    buf += chunk
    return bool(chunk)


def serve(server: Any, read: Callable[[int], bytes], stdout: BinaryIO) -> int:
    """Run `server` (a pygls LanguageServer whose `shutdown_requested` tells whether the
    client asked for a shutdown) until `exit` or the end of its input. `read(n)` gives up to
    n bytes of input, b"" at its end: os.read on the descriptor, not a buffered stream,
    whose lock a reading daemon thread would still hold when the interpreter ends."""
    try:
        asyncio.run(_main(server, read, stdout))
    except SystemExit as e:  # pygls ends its `exit` handler with sys.exit
        logger.debug("exit %s", e.code)
    except (BrokenPipeError, ConnectionResetError):
        logger.info("evt lsp: the client went away")
    return 0 if getattr(server, "shutdown_requested", False) else 1


async def _main(server: Any, read: Callable[[int], bytes], stdout: BinaryIO) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def put(item: bytes | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server has ended
            pass

    def reader() -> None:
        try:
            for body in read_messages(read):
                put(body)
        except (OSError, ValueError):
            pass
        finally:
            put(None)

    threading.Thread(target=reader, name="evt-lsp-stdin", daemon=True).start()
    protocol = server.protocol
    protocol.set_writer(StdoutWriter(stdout))
    while (body := await queue.get()) is not None:
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
        except ValueError:
            logger.error("evt lsp: a message that is not JSON: %.200r", body)
            continue
        protocol.handle_message(message)
