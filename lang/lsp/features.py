"""The answers to the editor's requests: completion, hover, definition, document symbols.

Rules of this module:
- Each function takes the document as the editor has it, the View of its program and an
  offset, and returns protocol values (lsprotocol); none of them raises for any text, however
  broken: a position where nothing applies gets an empty answer.
- Positions go out in the encoding agreed at `initialize` (lang.lsp.text).
"""

from __future__ import annotations

import re

from lsprotocol import types as T
from pygls.uris import from_fs_path

from lang import ast as A
from lang.lsp import docs
from lang.lsp.resolve import View, import_target, resolve, scope_at, visible
from lang.lsp.symbols import Decl, Outline, outline
from lang.lsp.text import Context, Document, context_at, next_char, statement_end, word_at
from lang.syntax.keywords import CONSTANTS, KEYWORDS

_ITEM_KIND = {
    "connection": T.CompletionItemKind.Interface, "server": T.CompletionItemKind.Struct,
    "func": T.CompletionItemKind.Function, "scene": T.CompletionItemKind.Module,
    "variable": T.CompletionItemKind.Variable,
}
_SYMBOL_KIND = {
    "connection": T.SymbolKind.Interface, "server": T.SymbolKind.Struct,
    "func": T.SymbolKind.Function, "scene": T.SymbolKind.Namespace,
    "variable": T.SymbolKind.Variable, "handler": T.SymbolKind.Event,
    "timer": T.SymbolKind.Event, "test": T.SymbolKind.Method,
    "threshold": T.SymbolKind.Constant, "import": T.SymbolKind.File,
}
# SPEC §5: what may follow `on`, and `on websocket`
EVENT_WORDS = ("project", "websocket", "event", "change", "input", "scene", "message",
               "cluster")
WEBSOCKET_WORDS = ("start", "stop", "error", "receive", "request")
_TARGET_VERBS = {"start", "stop", "send", "broadcast", "close", "expect", "ping", "join",
                 "leave"}
_IMPORT = re.compile(r"""^[ \t\f]*import[ \t\f]+(["'])([^"'\r\n]*)\1""")


def span_offset(doc: Document, span: A.Span) -> int:
    """The offset of a span's point in `doc` (columns count after a byte order mark)."""
    if not 1 <= span.line <= len(doc.starts):
        return len(doc.text) if span.line > 0 else 0
    start = doc.starts[span.line - 1]
    bom = 1 if span.line == 1 and doc.text.startswith("\ufeff") else 0
    return min(start + max(span.col - 1, 0) + bom, start + len(doc.line_text(span.line - 1)))


def _uri(path: str) -> str:
    return from_fs_path(path) or path


def lsp_range(doc: Document, start: int, end: int, encoding: str) -> T.Range:
    a, b = doc.position(start, encoding), doc.position(end, encoding)
    return T.Range(T.Position(*a), T.Position(*b))


def _name_range(doc: Document, span: A.Span, encoding: str) -> T.Range:
    start = span_offset(doc, span)
    w = word_at(doc.text, start)
    end = w[1] if w is not None and w[0] == start else start
    return lsp_range(doc, start, end, encoding)


def _position(doc: Document, offset: int) -> tuple[int, int]:
    """(line, col) from 1, in code points, of an offset: the parser's span coordinates."""
    line, _ = doc.position(offset, "utf-32")
    bom = 1 if line == 0 and doc.text.startswith("\ufeff") else 0
    return line + 1, offset - doc.starts[line] + 1 - bom


# ---------------------------------------------------------------- completion


def _item(label: str, kind: T.CompletionItemKind, detail: str | None = None,
          markdown: str | None = None, sort: str = "5") -> T.CompletionItem:
    return T.CompletionItem(
        label=label, kind=kind, detail=detail, sort_text=f"{sort}{label}",
        documentation=T.MarkupContent(T.MarkupKind.Markdown, markdown) if markdown else None)


def _decl_items(decls: list[Decl], kinds: tuple[str, ...] | None = None) -> list[T.CompletionItem]:
    out = []
    for d in decls:
        if kinds is None or d.kind in kinds:
            out.append(_item(d.name, _ITEM_KIND[d.kind], d.detail, sort="1"))
    return out


def _keyword_items(words: tuple[str, ...] = KEYWORDS + CONSTANTS) -> list[T.CompletionItem]:
    return [_item(w, T.CompletionItemKind.Keyword, "keyword", sort="3") for w in words]


def _builtin_items(view: View) -> list[T.CompletionItem]:
    return [_item(name, T.CompletionItemKind.Function, docs.signature(b),
                  docs.builtin_markdown(b), sort="2")
            for name, b in sorted(view.registry.items())]


def key_items(role: str) -> list[T.CompletionItem]:
    return [_item(k.key, T.CompletionItemKind.Property, docs.key_detail(role, k.key),
                  k.markdown(), sort="0") for k in docs.keys(role)]


def _unique(items: list[T.CompletionItem]) -> list[T.CompletionItem]:
    seen: set[tuple[str, int | None]] = set()
    out = []
    for item in items:
        key = (item.label, item.kind)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def complete(doc: Document, view: View, offset: int) -> T.CompletionList:
    ctx = context_at(doc.text, offset)
    if ctx.in_string or ctx.in_comment:
        return T.CompletionList(is_incomplete=False, items=[])
    return T.CompletionList(is_incomplete=False, items=_unique(_completions(doc, view, offset,
                                                                            ctx)))


def _completions(doc: Document, view: View, offset: int, ctx: Context
                 ) -> list[T.CompletionItem]:
    if ctx.at_key and ctx.role is not None:
        return key_items(ctx.role)
    scope = scope_at(view, *_position(doc, offset))
    names = visible(scope)
    before = ctx.before
    if before == ("change", "scene"):
        return _decl_items(names, ("scene",))
    if before == ("on",):
        return _keyword_items(EVENT_WORDS)
    if before == ("on", "websocket"):
        return _keyword_items(WEBSOCKET_WORDS)
    if before == ("on", "cluster"):
        return _keyword_items(("error",))
    if len(before) == 3 and before[:2] == ("on", "websocket"):
        return _decl_items(names, ("connection", "server"))
    if before == ("on", "change"):
        return _decl_items(names, ("variable",))
    if before == ("open",):
        return _decl_items(names, ("connection",))
    if len(before) == 1 and before[0] in _TARGET_VERBS:
        return _decl_items(names, ("connection", "server", "variable"))
    return _decl_items(names) + _builtin_items(view) + _keyword_items()


# ---------------------------------------------------------------- hover and definition


def _target(doc: Document, view: View, offset: int
            ) -> tuple[tuple[int, int, str], Decl | None, Context] | None:
    """The name at `offset`, the declaration it refers to (or None) and its context."""
    w = word_at(doc.text, offset)
    if w is None:
        return None
    ctx = context_at(doc.text, w[0])
    if ctx.in_string or ctx.in_comment:
        return None
    scope = scope_at(view, *_position(doc, w[0]))
    call = next_char(doc.text, w[1]) == "("
    decl = resolve(scope, w[2], call=call, scene_word=ctx.before == ("change", "scene"))
    return w, decl, ctx


def hover(doc: Document, view: View, offset: int, encoding: str) -> T.Hover | None:
    found = _target(doc, view, offset)
    if found is None:
        return None
    (start, end, word), decl, ctx = found
    text = None
    if ctx.at_key and ctx.role is not None:
        text = docs.key_markdown(ctx.role, word)
    elif decl is not None:
        text = _decl_hover(view, decl)
    elif word in view.registry:
        text = docs.builtin_markdown(view.registry[word])
    if text is None:
        return None
    return T.Hover(T.MarkupContent(T.MarkupKind.Markdown, text),
                   lsp_range(doc, start, end, encoding))


def _decl_hover(view: View, decl: Decl) -> str:
    path = decl.span.file
    lines = view.lines(path) if path in view.files else []
    first = lines[decl.span.line - 1] if 1 <= decl.span.line <= len(lines) else decl.detail
    return docs.decl_markdown(decl, first, None if path == view.root else path)


def definition(doc: Document, view: View, offset: int, encoding: str) -> T.Location | None:
    target = _import_at(doc, offset)
    if target is not None:
        path = import_target(view.root, target)
        return T.Location(_uri(path), T.Range(T.Position(0, 0), T.Position(0, 0)))
    found = _target(doc, view, offset)
    if found is None or found[1] is None or found[2].at_key:
        return None  # (a key of a connection or server block is no declared name)
    decl = found[1]
    path = decl.span.file
    return T.Location(_uri(path), _name_range(view.document(path), decl.span, encoding))


def _import_at(doc: Document, offset: int) -> str | None:
    line, _ = doc.position(offset, "utf-32")
    m = _IMPORT.match(doc.line_text(line))
    if m is None:
        return None
    col = offset - doc.starts[line]
    return m.group(2) if m.start(1) <= col <= m.end() else None


# ---------------------------------------------------------------- document symbols


def document_symbols(view: View, encoding: str) -> list[T.DocumentSymbol]:
    module = view.module(view.root)
    if module is None:
        return []
    doc = view.document(view.root)
    return [_symbol(doc, o, encoding) for o in outline(module.decls, view.lines(view.root))]


def _symbol(doc: Document, o: Outline, encoding: str) -> T.DocumentSymbol:
    start = span_offset(doc, o.span)
    end = max(statement_end(doc.text, span_offset(doc, o.name_span)), start)
    selection = _name_range(doc, o.name_span, encoding)
    return T.DocumentSymbol(
        name=o.name, kind=_SYMBOL_KIND[o.kind], range=lsp_range(doc, start, end, encoding),
        selection_range=selection, detail=o.detail or None,
        children=[_symbol(doc, c, encoding) for c in o.children] or None)
