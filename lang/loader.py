"""Reading script files and following `import`.

Rules of this module:
- A file names its imports relative to its own directory; each file is read once, so an
  import cycle is harmless. Imported declarations take the place of the `import` line, which
  keeps "source order" meaningful across files.
- An unreadable main file is a usage error (exit 2); a bad import is a check error (exit 3).
"""

from __future__ import annotations

import os

from . import ast as A
from .errors import SOURCES, Diagnostic, EvtUsageError
from .parser import parse_module


def read_source(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise EvtUsageError(f"cannot read '{path}': {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EvtUsageError(f"'{path}' is not UTF-8 text (bad byte at offset {e.start})") from None


def load(path: str) -> tuple[list[A.Node], list[Diagnostic]]:
    """Parse `path` and everything it imports. Raises EvtUsageError (main file unreadable) and
    EvtSyntaxError; returns the declarations and the import problems found."""
    decls: list[A.Node] = []
    problems: list[Diagnostic] = []
    seen = {os.path.realpath(path)}
    SOURCES.set_anchor(path, ())
    _visit(path, read_source(path), decls, problems, seen)
    return decls, problems


def _visit(path: str, text: str, decls: list[A.Node], problems: list[Diagnostic],
           seen: set[str], anchor: tuple = ()) -> None:
    module = parse_module(text, path)
    base = os.path.dirname(path)
    for d in module.decls:
        if not isinstance(d, A.Import):
            decls.append(d)
            continue
        target = os.path.normpath(os.path.join(base, d.path)) if base else os.path.normpath(d.path)
        if not d.path.endswith(".evt"):
            problems.append(Diagnostic(d.span, f"import takes .evt files only, got '{d.path}'"))
            continue
        real = os.path.realpath(target)
        if real in seen:
            continue
        seen.add(real)
        try:
            imported = read_source(target)
        except EvtUsageError as e:
            problems.append(Diagnostic(d.span, e.message))
            continue
        child = (*anchor, (d.span.line, d.span.col))
        SOURCES.set_anchor(target, child)
        _visit(target, imported, decls, problems, seen, child)
