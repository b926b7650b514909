"""`evt lsp`: the language server (SPEC §17), on pygls.

Rules of this module:
- The server keeps the open documents itself (lang.lsp.text.Document: lines as LSP counts
  them), not in pygls's workspace, whose line splitting knows more line breaks than the
  protocol does.
- A change marks its document (a change on the disk, told by workspace/didChangeWatchedFiles,
  marks that file); the marked documents, and every open document whose program reads one
  of them through `import`, are analysed once the waiting messages are handled,
  and each gets its diagnostics published, stamped with the version analysed. A request
  first brings the analysis up to date, so it never answers from an older text.
- Whatever a text holds, an analysis ends with diagnostics: a failure of evt's own becomes
  an "internal error" diagnostic (and a traceback on stderr), never a silent document.
- Only the syntax, check and stdlib-registry layers are imported: no event loop of evt's,
  no network stack.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from typing import Any

from lsprotocol import types as T
from pygls.lsp.server import LanguageServer
from pygls.protocol.language_server import LanguageServerProtocol, lsp_method
from pygls.uris import to_fs_path

from lang.api import VERSION, builtins
from lang.lsp import diagnostics, features
from lang.lsp.program import Analysis, Parsed, SourceFile, analyse, disk_reader
from lang.lsp.resolve import View
from lang.lsp.text import UTF8, UTF16, UTF32, Document

logger = logging.getLogger("evt.lsp")

_ENCODINGS = {T.PositionEncodingKind.Utf8: UTF8, T.PositionEncodingKind.Utf16: UTF16,
              T.PositionEncodingKind.Utf32: UTF32}


class _Protocol(LanguageServerProtocol):
    @lsp_method(T.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: T.DidChangeTextDocumentParams) -> Any:
        # the server applies changes to its own documents (see the rules above)
        if (handler := self.fm.features.get(T.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None


class EvtServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("evt", VERSION, protocol_cls=_Protocol,
                         text_document_sync_kind=T.TextDocumentSyncKind.Incremental)
        self.registry = builtins()
        self.docs: dict[str, Document] = {}  # uri -> document
        self.analyses: dict[str, Analysis] = {}  # uri -> its latest analysis
        self.good: dict[str, SourceFile] = {}  # path -> the latest text of it that parsed
        self.parsed_ok: dict[str, Analysis] = {}  # uri -> its latest analysis that parsed it
        self.parsed = Parsed()
        self.dirty: set[str] = set()  # paths changed since the last analysis
        self.scheduled = False
        self.shutdown_requested = False

    @property
    def encoding(self) -> str:
        try:
            chosen = self.workspace.position_encoding
        except RuntimeError:  # not initialized yet
            return UTF16
        return _ENCODINGS.get(chosen, UTF16)  # type: ignore[arg-type]

    # ------------------------------------------------------------ documents

    def opened(self, item: T.TextDocumentItem) -> None:
        path = os.path.normpath(to_fs_path(item.uri) or item.uri)
        self.docs[item.uri] = Document(item.uri, path, item.text, item.version)
        self.touch(path)

    def changed(self, params: T.DidChangeTextDocumentParams) -> None:
        doc = self.docs.get(params.text_document.uri)
        if doc is None:
            return
        for change in params.content_changes:
            if isinstance(change, T.TextDocumentContentChangePartial):
                r = change.range
                doc.apply(change.text, (r.start.line, r.start.character),
                          (r.end.line, r.end.character), self.encoding)
            else:
                doc.apply(change.text)
        doc.version = params.text_document.version
        self.touch(doc.path)

    def closed(self, uri: str) -> None:
        doc = self.docs.pop(uri, None)
        self.analyses.pop(uri, None)
        self.parsed_ok.pop(uri, None)
        if doc is not None:
            self.text_document_publish_diagnostics(T.PublishDiagnosticsParams(uri, []))
            self.touch(doc.path)  # its importers read it from the disk again

    def touch(self, path: str) -> None:
        self.dirty.add(path)
        if not self.scheduled:
            self.scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a test calling the handlers directly)
                self.flush()

    def read(self, path: str) -> str:
        """A file's text: the editor's when it is open there, else the disk's."""
        for doc in self.docs.values():
            if doc.path == path:
                return doc.text
        return disk_reader(path)

    # ------------------------------------------------------------ analysis

    def flush(self) -> None:
        """Analyse what changed (and what imports it) and publish the diagnostics."""
        self.scheduled = False
        if not self.dirty:
            return
        dirty, self.dirty = self.dirty, set()
        for uri, doc in list(self.docs.items()):
            before = self.analyses.get(uri)
            reached = set(before.files) if before is not None else set()
            if doc.path in dirty or reached & dirty or before is None:
                self.publish(doc)

    def publish(self, doc: Document) -> None:
        try:
            analysis = analyse(doc.path, doc.text, self.registry, self.parsed, self.read)
            self.analyses[doc.uri] = analysis
            root = analysis.files.get(doc.path)
            if root is not None and root.module is not None:
                self.parsed_ok[doc.uri] = analysis
            for path, f in analysis.files.items():
                if f.module is not None:
                    self.good[path] = f
            found = diagnostics.to_lsp(analysis, doc, self.encoding)
        except Exception as e:  # a bug of ours: say so in the editor, keep serving
            logger.error("evt lsp: analysing %s failed:\n%s", doc.uri, traceback.format_exc())
            found = [diagnostics.internal_error(f"{type(e).__name__}: {e}")]
        self.text_document_publish_diagnostics(
            T.PublishDiagnosticsParams(doc.uri, found, doc.version))

    def view(self, uri: str) -> tuple[Document, View] | None:
        """The document and the view of its program, analysed up to its latest text."""
        self.flush()
        doc = self.docs.get(uri)
        if doc is None:
            return None
        analysis = self.analyses.get(uri)
        paths = list(analysis.files) if analysis is not None else [doc.path]
        root = analysis.files.get(doc.path) if analysis is not None else None
        if root is None or root.module is None:
            # the document does not parse now: the files its last good text imported
            last = self.parsed_ok.get(uri)
            paths += [p for p in (last.files if last is not None else ()) if p not in paths]
        files: dict[str, SourceFile] = {}
        for path in paths:
            f = analysis.files.get(path) if analysis is not None else None
            if f is None or f.module is None:
                f = self.good.get(path)
            if f is not None:
                files[path] = f
        return doc, View(doc.path, files, self.registry)


def build_server() -> EvtServer:
    """The language server with every feature registered."""
    ls = EvtServer()

    @ls.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(server: EvtServer, params: T.DidOpenTextDocumentParams) -> None:
        server.opened(params.text_document)

    @ls.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(server: EvtServer, params: T.DidChangeTextDocumentParams) -> None:
        server.changed(params)

    @ls.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(server: EvtServer, params: T.DidCloseTextDocumentParams) -> None:
        server.closed(params.text_document.uri)

    @ls.feature(T.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(server: EvtServer, params: T.DidChangeWatchedFilesParams) -> None:
        # a file changed on the disk (an import that is not open): its importers again
        for change in params.changes:
            server.touch(os.path.normpath(to_fs_path(change.uri) or change.uri))

    @ls.feature(T.TEXT_DOCUMENT_COMPLETION, T.CompletionOptions())
    def completion(server: EvtServer, params: T.CompletionParams) -> T.CompletionList | None:
        found = server.view(params.text_document.uri)
        if found is None:
            return None
        doc, view = found
        offset = doc.offset(params.position.line, params.position.character, server.encoding)
        return features.complete(doc, view, offset)

    @ls.feature(T.TEXT_DOCUMENT_HOVER)
    def hover(server: EvtServer, params: T.HoverParams) -> T.Hover | None:
        found = server.view(params.text_document.uri)
        if found is None:
            return None
        doc, view = found
        offset = doc.offset(params.position.line, params.position.character, server.encoding)
        return features.hover(doc, view, offset, server.encoding)

    @ls.feature(T.TEXT_DOCUMENT_DEFINITION)
    def definition(server: EvtServer, params: T.DefinitionParams) -> T.Location | None:
        found = server.view(params.text_document.uri)
        if found is None:
            return None
        doc, view = found
        offset = doc.offset(params.position.line, params.position.character, server.encoding)
        return features.definition(doc, view, offset, server.encoding)

    @ls.feature(T.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(server: EvtServer, params: T.DocumentSymbolParams
                ) -> list[T.DocumentSymbol] | None:
        found = server.view(params.text_document.uri)
        if found is None:
            return None
        return features.document_symbols(found[1], server.encoding)

    @ls.feature(T.SHUTDOWN)
    def shutdown(server: EvtServer, params: Any) -> None:
        server.shutdown_requested = True

    return ls
