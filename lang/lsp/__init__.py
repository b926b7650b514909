"""`evt lsp`: a Language Server for `.evt` files (SPEC §17), on pygls, over stdio.

- server: the documents, the analysis after each change, the request handlers
- program: one document analysed as `evt check` does (parse, imports, check)
- diagnostics: the problems as ranges in the editor
- features: completion, hover, definition, document symbols
- resolve, symbols: what a program declares and what a name refers to
- docs: hover and completion texts (from the stdlib registry and lang.keydocs)
- text: documents, positions and a forgiving scanner
- stdio: the Content-Length framed connection

It reads the syntax, check and stdlib layers only: never the runtime or the network stack.
"""

from __future__ import annotations

import os
import sys


def cmd_lsp() -> int:
    """Serve on stdin/stdout until the client says `exit`; returns the exit code."""
    try:
        from lang.lsp.server import build_server
        from lang.lsp.stdio import serve
    except ImportError as e:  # an install without the server's two libraries
        if e.name not in ("pygls", "lsprotocol") and not str(e.name).startswith("pygls."):
            raise
        sys.stderr.write(f"evt: error: `evt lsp` needs {e.name}: pip install pygls "
                         "lsprotocol\n")
        return 2

    fd = sys.stdin.fileno()
    # The protocol gets a stream of its own on the standard output, and the descriptor 1
    # itself goes to stderr: a stray print (or a library's) cannot break the protocol, and
    # pygls closing its stream at `exit` leaves sys.stdout usable for the CLI's last flush.
    sys.stdout.flush()
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        return serve(build_server(), lambda n: os.read(fd, n), protocol_out)
    finally:
        if not protocol_out.closed:
            protocol_out.close()


__all__ = ["cmd_lsp"]
