"""Writing a file that other programs read while it changes (evt test's reports, the HAR
of --record): whole or not at all."""

from __future__ import annotations

import os
import secrets


def write_atomically(path: str, data: bytes, sync: bool = True) -> None:
    """Write `data` to `path` whole or not at all: a temporary file in the same directory
    (created with the usual permissions, 0666 less the umask), flushed (and with `sync` on
    disk), then renamed over it. A reader sees the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
