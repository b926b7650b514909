"""The problems of a program as the editor shows them: one diagnostic per problem, with a
range, in the document that was analysed.

Rules of this module:
- A problem's span is a point; its range runs to the end of the token there
  (lang.lsp.text.token_range), so `unknown name 'x'` underlines `x`, and a syntax error at
  the end of a line or of the file is an empty range at that point.
- A problem in an imported file is shown at the document's `import` through which that file
  is reached, naming the file and position, with the exact place as related information
  (the editor shows it in the imported file when that file is opened on its own, too).
- The message is the checker's, the same words `evt check` prints.
"""

from __future__ import annotations

import os

from lsprotocol import types as T
from pygls.uris import from_fs_path

from lang import ast as A
from lang.errors import Diagnostic
from lang.lsp.features import lsp_range, span_offset
from lang.lsp.program import Analysis
from lang.lsp.text import Document, token_range

SOURCE = "evt"
_SEVERITY = {"error": T.DiagnosticSeverity.Error, "warning": T.DiagnosticSeverity.Warning,
             "note": T.DiagnosticSeverity.Information}


def _range(doc: Document, span: A.Span, encoding: str) -> T.Range:
    start, end = token_range(doc, span_offset(doc, span))
    return lsp_range(doc, start, end, encoding)


def to_lsp(analysis: Analysis, doc: Document, encoding: str) -> list[T.Diagnostic]:
    """The diagnostics of `doc` (the document `analysis` analysed)."""
    out = []
    docs: dict[str, Document] = {}
    for p in analysis.problems:
        severity = _SEVERITY.get(p.severity, T.DiagnosticSeverity.Error)
        if p.span.file == doc.path or p.span is A.NOSPAN or p.span.line < 1:
            where = _range(doc, p.span, encoding) if p.span.line >= 1 else \
                T.Range(T.Position(0, 0), T.Position(0, 0))
            out.append(T.Diagnostic(where, p.message, severity, source=SOURCE))
            continue
        out.append(_imported(analysis, doc, p, severity, docs, encoding))
    return out


def _imported(analysis: Analysis, doc: Document, p: Diagnostic, severity: T.DiagnosticSeverity,
              docs: dict[str, Document], encoding: str) -> T.Diagnostic:
    file = p.span.file
    via = analysis.via.get(file)
    where = _range(doc, via.span, encoding) if via is not None else \
        T.Range(T.Position(0, 0), T.Position(0, 0))
    shown = os.path.relpath(file, os.path.dirname(doc.path) or ".")
    message = f"{shown}:{p.span.line}:{p.span.col}: {p.message}"
    related = None
    source = analysis.files.get(file)
    if source is not None:
        other = docs.get(file) or docs.setdefault(file, Document("", file, source.text))
        uri = from_fs_path(file) or file
        related = [T.DiagnosticRelatedInformation(T.Location(uri, _range(other, p.span,
                                                                         encoding)), p.message)]
    return T.Diagnostic(where, message, severity, source=SOURCE, related_information=related)


def internal_error(what: str) -> T.Diagnostic:
    """What the editor is shown when the analysis itself failed (a bug of evt's)."""
    return T.Diagnostic(T.Range(T.Position(0, 0), T.Position(0, 0)),
                        f"evt lsp: internal error: {what}", T.DiagnosticSeverity.Error,
                        source=SOURCE)
