"""A real Redis for the cluster tests (SPEC §16): Debian's `redis-server`, started by the test
on a free port with nothing saved to disk, and stopped (or killed, and started again on the
same port) by it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

SERVER = shutil.which("redis-server")
T = 30  # seconds: the hard limit on a wait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert SERVER is not None
        self.proc = subprocess.Popen(
            [SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:  # up when it answers PING
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(T)
        self.proc = None

    def subscriber(self, *channels: str) -> Subscriber:
        return Subscriber(self.port, channels)

    def command(self, *words: str) -> str | int | list | None:
        """One command in RESP, its reply (simple, integer, bulk or an array of those)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=T) as s:
            out = f"*{len(words)}\r\n" + "".join(
                f"${len(w.encode())}\r\n{w}\r\n" for w in words)
            s.sendall(out.encode())
            f = s.makefile("rb")
            return _reply(f)


def _reply(f: object) -> str | int | list | None:
    line = f.readline().rstrip(b"\r\n")  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]  # type: ignore[attr-defined]
        return data.decode()
    if kind == b"*":
        return [_reply(f) for _ in range(int(rest))]
    raise RuntimeError(f"unexpected reply {line!r}")


class Subscriber:
    """`redis-cli subscribe CHANNEL...`: a raw RESP connection that reads messages."""

    def __init__(self, port: int, channels: tuple[str, ...]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=T)
        words = ("SUBSCRIBE", *channels)
        self.sock.sendall((f"*{len(words)}\r\n" + "".join(
            f"${len(w.encode())}\r\n{w}\r\n" for w in words)).encode())
        self.file = self.sock.makefile("rb")
        for _ in channels:  # the confirmations
            assert _reply(self.file)[0] == "subscribe"

    def next_message(self) -> tuple[str, str]:
        kind, channel, data = _reply(self.file)  # type: ignore[misc]
        assert kind == "message"
        return channel, data

    def close(self) -> None:
        self.file.close()
        self.sock.close()
