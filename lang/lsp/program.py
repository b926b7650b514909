"""One document analysed as `evt check` analyses a file: parsed, its imports followed, the
whole program checked.

Rules of this module:
- The pipeline is lang.api.load_and_check's, with one difference: the text of a file comes
  from the editor when it is open there (an import included) and from the disk otherwise
  (lang.syntax.loader.read_source, with its limits). Imports resolve as the loader resolves
  them: relative to the importing file, each file once, only .evt files.
- A syntax error stops the check, as it does for `evt check`: past it the program cannot be
  read. The files that did parse are still kept, for navigation.
- A parsed file is kept while its text is unchanged, so an edit re-parses one file, not the
  files it imports.
- Nothing is raised for a script's fault: problems are values. What this module cannot
  analyse (a program nested too deeply) is a problem too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lang import ast as A
from lang.check import check
from lang.errors import SOURCES, Diagnostic, EvtSyntaxError, EvtUsageError
from lang.syntax.loader import read_source
from lang.syntax.parser import parse_module

Reader = Callable[[str], str]  # path -> its text (raises EvtUsageError)

TOO_DEEP = "this program is nested too deeply to analyse"


@dataclass
class SourceFile:
    path: str
    text: str
    module: A.Module | None  # None: it does not parse


@dataclass
class Analysis:
    """A document's program: every file reached (the document's first), the problems in
    source order (a syntax error is the one problem when there is one), and for each
    imported file the `import` of the document through which it was reached."""

    path: str
    files: dict[str, SourceFile] = field(default_factory=dict)
    problems: list[Diagnostic] = field(default_factory=list)
    syntax: EvtSyntaxError | None = None
    via: dict[str, A.Import] = field(default_factory=dict)
    # every declaration of the program, each import replaced by what it declares (the
    # loader's order: "source order" runs across files)
    decls: list[A.Node] = field(default_factory=list)


class Parsed:
    """A cache of parsed files: path -> (text, module)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, A.Module]] = {}

    def module(self, path: str, text: str) -> A.Module:
        """The module of `text` (raises EvtSyntaxError, RecursionError)."""
        hit = self._cache.get(path)
        if hit is not None and hit[0] == text:
            return hit[1]
        self._cache.pop(path, None)
        module = parse_module(text, path)
        self._cache[path] = (text, module)
        return module

    def forget(self, path: str) -> None:
        self._cache.pop(path, None)


def disk_reader(path: str) -> str:
    return read_source(path)


def analyse(path: str, text: str, registry: dict[str, Any], parsed: Parsed,
            read: Reader = disk_reader) -> Analysis:
    """Parse `text` (the file at `path`), follow its imports and check the program."""
    out = Analysis(path)
    SOURCES.set_anchor(path, ())
    try:
        _visit(out, path, text, parsed, read, {os.path.realpath(path)}, (), None)
        if out.syntax is None:
            problems = out.problems + check(out.decls, registry)
            out.problems = sorted(problems, key=lambda d: SOURCES.order_key(d.span))
    except RecursionError:
        out.problems = [Diagnostic(A.Span(path, 1, 1), TOO_DEEP)]
    return out


def _visit(out: Analysis, path: str, text: str, parsed: Parsed, read: Reader,
           seen: set[str], anchor: tuple, via: A.Import | None) -> None:
    try:
        module = parsed.module(path, text)
    except EvtSyntaxError as e:
        out.files[path] = SourceFile(path, text, None)
        if out.syntax is None:
            out.syntax = e
            out.problems = [e.diagnostic]
        return
    out.files[path] = SourceFile(path, text, module)
    base = os.path.dirname(path)
    for d in module.decls:
        if not isinstance(d, A.Import):
            out.decls.append(d)
            continue
        target = os.path.normpath(os.path.join(base, d.path))
        if not d.path.endswith(".evt"):
            _problem(out, Diagnostic(d.span, f"import takes .evt files only, got '{d.path}'"))
            continue
        real = os.path.realpath(target)
        if real in seen:
            continue
        seen.add(real)
        try:
            imported = read(target)
        except EvtUsageError as e:
            _problem(out, Diagnostic(d.span, e.message))
            continue
        child = (*anchor, (d.span.line, d.span.col))
        SOURCES.set_anchor(target, child)
        _visit(out, target, imported, parsed, read, seen, child, via or d)
        out.via.setdefault(target, via or d)


def _problem(out: Analysis, diagnostic: Diagnostic) -> None:
    if out.syntax is None:
        out.problems.append(diagnostic)
