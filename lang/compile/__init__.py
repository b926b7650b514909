"""The closure compiler: AST -> Python closures, compiled once, run many times.

- compiler: the Compiler (bodies, blocks, the dispatch to `s_<Node>` and `e_<Node>`)
- statements, expressions: the two halves of the Compiler, one method per kind of node
- support: signals, the frame layout (Layout, Scope), the closures everything is built from
- fast: the inlined arithmetic paths (duplicating lang.ops on purpose, for speed)
- analysis: which bodies wait, found for the whole program before anything is compiled
"""

from lang.compile.analysis import BLOCKING_STMTS, body_has, functions_with, waiting_functions
from lang.compile.compiler import Compiler
from lang.compile.support import Layout, Scope

__all__ = ["BLOCKING_STMTS", "Compiler", "Layout", "Scope", "body_has", "functions_with",
           "waiting_functions"]
