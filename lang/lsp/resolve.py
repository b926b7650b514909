"""A program as the editor sees it at one position: which declarations are in view, and what
a name there refers to.

Rules of this module:
- A View is built from an Analysis; a file that does not parse now is seen as it was when it
  last parsed (so completion and navigation go on while a line is half typed), the others as
  they are.
- The scope at a position is the top-level declaration whose first line is the last at or
  before it (within a scene, the scene's member likewise); bindings count from where they are
  made. Resolution order is the checker's (lang.lsp.symbols).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from lang import ast as A
from lang.lsp.program import SourceFile
from lang.lsp.symbols import Decl, declarations, local_bindings
from lang.lsp.text import Document


@dataclass
class View:
    root: str
    files: dict[str, SourceFile]  # every file reached that has a module (maybe an older one)
    registry: dict[str, Any]
    _docs: dict[str, Document] = field(default_factory=dict, repr=False)
    _decls: list[Decl] | None = field(default=None, repr=False)

    def document(self, path: str) -> Document:
        """The text a file's module was parsed from, as a Document (for positions)."""
        doc = self._docs.get(path)
        if doc is None:
            text = self.files[path].text if path in self.files else ""
            doc = self._docs[path] = Document("", path, text)
        return doc

    def lines(self, path: str) -> list[str]:
        doc = self.document(path)
        out = [doc.line_text(i) for i in range(len(doc.starts))]
        if out and out[0].startswith("\ufeff"):
            out[0] = out[0][1:]  # the parser drops a byte order mark: columns count after it
        return out

    def module(self, path: str) -> A.Module | None:
        f = self.files.get(path)
        return f.module if f is not None else None

    def program_decls(self) -> list[A.Node]:
        """The declarations of the program, imports replaced by what they declare."""
        out: list[A.Node] = []
        seen: set[str] = set()

        def visit(path: str) -> None:
            seen.add(os.path.realpath(path))
            module = self.module(path)
            if module is None:
                return
            for d in module.decls:
                if not isinstance(d, A.Import):
                    out.append(d)
                    continue
                target = import_target(path, d.path)
                if os.path.realpath(target) not in seen:
                    visit(target)

        visit(self.root)
        return out

    def declared(self) -> list[Decl]:
        if self._decls is None:
            self._decls = declarations(self.program_decls())
        return self._decls


def import_target(importer: str, path: str) -> str:
    """The file an `import "path"` in `importer` names (as lang.syntax.loader resolves it)."""
    return os.path.normpath(os.path.join(os.path.dirname(importer), path))


def _start_line(d: A.Node) -> int:
    return getattr(d, "span", A.NOSPAN).line


def enclosing(view: View, line: int) -> tuple[A.Node | None, A.Scene | None, A.Node | None]:
    """At 1-based `line` of the root file: the top-level declaration around it, the scene
    (when that is one) and the scene's member around it."""
    module = view.module(view.root)
    if module is None:
        return None, None, None
    top = None
    for d in module.decls:
        if _start_line(d) <= line:
            top = d
        else:
            break
    if not isinstance(top, A.Scene):
        return top, None, top
    member = None
    for item in top.items:
        if _start_line(item) <= line:
            member = item
    return top, top, member


@dataclass(frozen=True)
class Scope:
    """The names in view at one position of the root file."""

    locals: list[Decl]  # bound before the position, innermost (latest) last
    scene: str | None
    declared: list[Decl]  # project declarations and scene members


def scope_at(view: View, line: int, col: int) -> Scope:
    _top, scene, member = enclosing(view, line)
    bound: list[Decl] = []
    if member is not None and not isinstance(member, A.Scene):
        bound = [b for b in local_bindings(member, view.lines(view.root))
                 if (b.span.line, b.span.col) <= (line, col)]
    return Scope(bound, scene.name if scene is not None else None, view.declared())


def visible(scope: Scope) -> list[Decl]:
    """Every name in view, the nearest first: locals (latest first), then the scene's
    members, then project declarations (other scenes' members are not in view)."""
    out = list(reversed(scope.locals))
    out += [d for d in scope.declared if d.scene is not None and d.scene == scope.scene]
    out += [d for d in scope.declared if d.scene is None]
    return out


_VALUE_ORDER = ("variable", "connection", "server")


def resolve(scope: Scope, name: str, call: bool = False, scene_word: bool = False
            ) -> Decl | None:
    """What `name` refers to: a function when it is called (`call`), a scene after
    `change scene` (`scene_word`), else a variable, connection or server, else any
    declaration of that name (a function or scene named without a call)."""
    names = [d for d in visible(scope) if d.name == name]
    if scene_word:
        return next((d for d in names if d.kind == "scene"), None)
    if call:
        return next((d for d in names if d.kind == "func"), None)
    for kind in _VALUE_ORDER:
        hit = next((d for d in names if d.kind == kind), None)
        if hit is not None:
            return hit
    return names[0] if names else None
