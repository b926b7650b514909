"""The command-line side of recordings: `evt replay`, `evt codegen` and `--record`'s
set-up (lang.cli parses the options and calls these)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from lang.recording.har import HarError, read_har
from lang.recording.model import Conversation

MATCHES = ("exact", "json", "any")
PACES = ("fast", "recorded")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _read(path: str) -> list[Conversation] | None:
    try:
        return read_har(path)
    except HarError as e:
        _err(f"evt: error: {e}")
        return None


def cmd_replay(opts: argparse.Namespace, host_port: Any, duration: Any) -> int:
    """`evt replay FILE.har --serve HOST:PORT | --url [URL]`: 0, 1 (differences), 2."""
    import anyio

    from lang.recording.replay import Mock, ReplayOptions, check

    if (opts.serve is None) == (opts.url is None):
        _err("evt: error: replay takes one of --serve HOST:PORT (a mock server) and --url "
             "[URL] (a test of a live server)")
        return 2
    try:
        timeout = duration(opts.timeout)
    except ValueError as e:
        _err(f"evt: error: --timeout: {e}")
        return 2
    listen = None
    if opts.serve is not None:
        try:
            listen = host_port(opts.serve)
        except ValueError as e:
            _err(f"evt: error: --serve: {e}")
            return 2
    conversations = _read(opts.file)
    if conversations is None:
        return 2
    ignore = frozenset(k.strip() for k in (opts.ignore or "").split(",") if k.strip())
    ropts = ReplayOptions(match=opts.match, ignore=ignore, pace=opts.pace, timeout=timeout)
    name = os.path.basename(opts.file)
    if listen is not None:
        mock = Mock(conversations, name, ropts, _err)

        async def serve() -> None:
            with anyio.open_signal_receiver(*_stop_signals()) as signals:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(mock.serve, *listen)
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        break

        try:
            anyio.run(serve)
        except KeyboardInterrupt:
            pass
        except OSError as e:
            _err(f"evt: error: --serve {opts.serve}: {e.strerror or e}")
            return 2
        return 0

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        return anyio.run(check, conversations, name, ropts, say, opts.url or None)
    except KeyboardInterrupt:
        return 130


def _stop_signals() -> tuple[int, ...]:
    import signal

    return tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP")
                 if hasattr(signal, s))


def cmd_codegen(opts: argparse.Namespace) -> int:
    """`evt codegen FILE.har --serve | --client`: the script on standard output."""
    from lang.recording.codegen import generate

    conversations = _read(opts.file)
    if conversations is None:
        return 2
    text = generate(conversations, "serve" if opts.serve else "client",
                    os.path.basename(opts.file))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def make_recorder(path: str, version: str) -> tuple[Any, str | None]:
    """`--record FILE.har`: the recorder, or why the file cannot be written."""
    from lang.recording.recorder import Recorder

    recorder = Recorder(path, version)
    return recorder, recorder.check_writable()
