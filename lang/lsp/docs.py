"""The words the editor shows: hover texts and completion details, in Markdown.

Rules of this module:
- A built-in's text is its registry entry (stdlib.registry.Builtin: the signature and the
  docstring), the text docs/reference.md §11 prints; a key's is lang.keydocs', the rows of
  the reference's §5 tables. Nothing here writes documentation of its own. (The keys offered
  are lang.config's; one it defines that lang.keydocs lacks is shown with lang.config's own
  line, while tests/lsp/test_docs.py fails until it is documented.)
- A declaration is shown by its first line, as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lang import config, keydocs
from lang.lsp.symbols import Decl


def signature(b: Any) -> str:
    """`name(params)` of a built-in (a stdlib.registry.Builtin)."""
    return f"{b.name}({b.params})"


def builtin_doc(b: Any) -> str:
    """The docstring of a built-in as one paragraph (the reference's cell)."""
    return " ".join(b.doc.split())


def builtin_markdown(b: Any) -> str:
    return f"```evt\n{signature(b)}\n```\n\n{builtin_doc(b)}\n\n*built-in, {b.family}*"


def _key(role: str, key: str) -> keydocs.KeyDoc | None:
    """A key's documentation; for a key lang.config defines that the reference does not
    document yet, what lang.config says of it (tests/lsp/test_docs.py fails meanwhile)."""
    doc = keydocs.key_doc(role, key)
    if doc is None and key in config.keys_for(role):
        spec = config.keys_for(role)[key]
        default = "required" if config.REQUIRED.get(role) == key else f"`{spec.default!r}`"
        doc = keydocs.KeyDoc(role, key, spec.kind, default, spec.doc)
    return doc


def keys(role: str) -> list[keydocs.KeyDoc]:
    """The keys of `role` as lang.config defines them, in the reference's order."""
    return [d for key in sorted(config.keys_for(role), key=_order(role))
            if (d := _key(role, key)) is not None]


def _order(role: str) -> Callable[[str], int]:
    rank = {d.key: i for i, d in enumerate(keydocs.key_docs(role))}
    return lambda key: rank.get(key, len(rank))


def key_markdown(role: str, key: str) -> str | None:
    doc = _key(role, key)
    return doc.markdown() if doc is not None else None


def key_detail(role: str, key: str) -> str:
    """The one line a completion list shows beside a key."""
    doc = _key(role, key)
    if doc is None:
        return f"{role} key"
    default = "required" if doc.default == "required" else f"default {doc.default}"
    return f"{doc.type or role + ' key'}, {default}".replace("`", "")


def decl_markdown(decl: Decl, first_line: str, shown_path: str | None) -> str:
    """A declaration: its first line as code, and the file it is in when that is another
    file than the one hovered."""
    text = f"```evt\n{first_line.strip()}\n```"
    if decl.scene is not None and decl.kind in ("func", "variable"):
        text += f"\n\nin scene `{decl.scene}`"
    if shown_path is not None:
        text += f"\n\ndeclared in `{shown_path}` line {decl.span.line}"
    return text
