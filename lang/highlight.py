"""A Pygments lexer for evt: the REPL's colours, and `pygmentize -l evt` (it is installed as
a Pygments plugin through the `pygments.lexers` entry point)."""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, include, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from lang.syntax.keywords import CONSTANTS, KEYWORDS


class EvtLexer(RegexLexer):
    name = "evt"
    aliases = ["evt"]
    filenames = ["*.evt"]
    mimetypes = ["text/x-evt"]

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#.*$", Comment.Single),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (r"(func)(\s+)([A-Za-z_]\w*)", bygroups(Keyword, Whitespace, Name.Function)),
            (r"[A-Za-z_]\w*(?=\s*\()", Name.Function),
            (r"0[xX][0-9a-fA-F]+", Number.Hex),
            (r"\d+(\.\d+)?([eE][+-]?\d+)?(ms|s|m|h|B|KiB|MiB|GiB)?\b", Number),
            (r'b"', String.Affix, "bytes_dq"),
            (r"b'", String.Affix, "bytes_sq"),
            (r'"', String.Double, "dq"),
            (r"'", String.Single, "sq"),
            (r"==|!=|<=|>=|[-+*/%<>=]", Operator),
            (r"[{}()\[\],:;.]", Punctuation),
            (r"[A-Za-z_]\w*", Name),
            (r".", Text),
        ],
        "escape": [
            (r"\\(u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)", String.Escape),
        ],
        "dq": [
            include("escape"),
            (r"\$\{", String.Interpol, "interp"),
            (r'"', String.Double, "#pop"),
            (r'[^"\\$]+|\$', String.Double),
        ],
        "sq": [
            include("escape"),
            (r"\$\{", String.Interpol, "interp"),
            (r"'", String.Single, "#pop"),
            (r"[^'\\$]+|\$", String.Single),
        ],
        "bytes_dq": [include("escape"), (r'"', String.Affix, "#pop"), (r'[^"\\]+', String)],
        "bytes_sq": [include("escape"), (r"'", String.Affix, "#pop"), (r"[^'\\]+", String)],
        "interp": [
            (r"\{", Punctuation, "braces"),  # a map literal: its '}' does not end the ${
            (r"\}", String.Interpol, "#pop"),
            include("root"),
        ],
        "braces": [
            (r"\{", Punctuation, "#push"),
            (r"\}", Punctuation, "#pop"),
            include("root"),
        ],
    }
