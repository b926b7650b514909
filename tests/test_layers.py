"""The package's shape: the layers import only downwards, nothing imports in a circle, no module
grows past 600 lines, no module takes another's underscore (private) names, and every syntax
node has its check and its compile method.

The import graph is read from the source (every `import` statement, those inside functions
included; those under `if TYPE_CHECKING:` are not imports at run time and are left out), so a
cycle hidden in a function body is found as surely as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lang", "stdlib")
MAX_LINES = 600

# Each layer and the layers it may import from (besides itself). Lower layers come first.
LAYERS: dict[str, set[str]] = {
    "base": set(),  # lang.ast, lang.nodes, lang.errors, lang.limits, lang.keywords
    "values": {"base"},  # lang.values, lang.ops, lang.config
    "wire": set(),  # the WebSocket protocol over anyio: nothing of evt
    "cluster": set(),  # SPEC §16's Redis bus (lang.cluster): nothing of evt either
    "syntax": {"base"},
    "metrics": {"base"},  # SPEC §12's registry and outputs: nothing of the language
    "stdlib": {"base", "values"},
    "check": {"base", "values", "syntax", "metrics"},
    "compile": {"base", "values", "runtime"},
    "runtime": {"base", "values"},
    "endpoints": {"base", "values", "runtime", "compile", "wire"},
    "interp": {"base", "values", "runtime", "compile", "endpoints", "check", "metrics"},
    "front": {"base", "values", "syntax", "check", "compile", "runtime", "endpoints",
              "interp", "stdlib", "wire", "metrics", "cluster"},
}


# Modules with no imports of their own that any layer may read: the close codes are a fact of
# the protocol (lang.wire) that the checker judges literals against.
LEAVES = {"lang.wire.codes"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "stdlib":
        return "stdlib"
    sub = parts[1] if len(parts) > 1 else ""
    if sub in ("ast", "nodes", "errors", "limits", "keywords", ""):
        return "base"
    if sub in ("values", "ops", "config"):
        return "values"
    if sub in ("wire", "syntax", "check", "compile", "runtime", "endpoints", "metrics",
               "cluster"):
        return sub
    if sub in ("interp",):
        return "interp"
    return "front"  # api, cli, repl, highlight, lsp, __main__


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `module` imports when it runs (any depth of nesting)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out: set[str] = set()

    def add(name: str) -> None:
        # the module itself, or for `from pkg import name` the nearest module of ours
        # (importing a.b also runs a's __init__ first; that is not counted: a package that
        # re-exports its modules would otherwise always be a cycle)
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def test_the_graph_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    # the checker of this file must itself be able to fail
    (tmp_path / "a.py").write_text("def f():\n    from . import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\nimport p.a\n")
    known = {"p", "p.a", "p.b", "p.c"}
    assert imports_of("p.a", tmp_path / "a.py", known) == {"p.b"}
    assert imports_of("p.b", tmp_path / "b.py", known) == {"p.a"}
    assert cycles({"p.a": {"p.b"}, "p.b": {"p.a"}, "p.c": set()}) == [["p.a", "p.b"]]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_layers_import_only_downwards() -> None:
    wrong = []
    for module, targets in sorted(import_graph().items()):
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if theirs != mine and theirs not in LAYERS[mine] and target not in LEAVES:
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def test_wire_imports_nothing_of_evt() -> None:
    graph = import_graph()
    wire = {m: t for m, t in graph.items() if layer_of(m) == "wire"}
    assert wire, "no wire modules found"
    assert {m: sorted(t for t in ts if layer_of(t) != "wire") for m, ts in wire.items()} == {
        m: [] for m in wire}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The underscore names of other modules of ours that `module` uses: `from m import _x`
    (at any depth, under `if TYPE_CHECKING:` too) and `m._x` where m names a module of ours."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    mods: dict[str, str] = {}  # local name -> module of ours
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in known:
                continue
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    mods[alias.asname or alias.name] = f"{target}.{alias.name}"
                elif _private(alias.name) and target != module:
                    out.add(f"{target}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    mods[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and \
                isinstance(node.value, ast.Name) and node.value.id in mods:
            out.add(f"{mods[node.value.id]}.{node.attr}")
    return out


def test_the_private_import_reader_sees_them(tmp_path: Path) -> None:
    # the checker of this file must itself be able to fail
    (tmp_path / "a.py").write_text(
        "from p.b import _x, y, __all__\nfrom . import c as cc\n"
        "def f():\n    from .b import _z\n    return cc._w, cc.v\n")
    known = {"p", "p.a", "p.b", "p.c"}
    assert private_imports("p.a", tmp_path / "a.py", known) == {"p.b._x", "p.b._z", "p.c._w"}


def test_no_module_imports_another_modules_underscore_names() -> None:
    mods = modules()
    known = set(mods)
    found = {(m, name) for m, p in mods.items() for name in private_imports(m, p, known)}
    assert sorted(found) == []


def test_no_module_is_too_long() -> None:
    long = {m: n for m, p in modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _concrete_nodes(base: type) -> list[type]:
    out = []
    for cls in base.__subclasses__():
        if "_fields" in vars(cls):  # a node made by lang.ast._node, not a base
            out.append(cls)
        out.extend(_concrete_nodes(cls))
    return out


def test_every_statement_has_its_check_and_compile_method() -> None:
    # both dispatch on the node's class name: a node without its method would fail only
    # when a script first used it
    from lang import ast as A
    from lang.check import Checker
    from lang.compile import Compiler

    nodes = _concrete_nodes(A.Stmt)
    assert len(nodes) > 20
    missing = [f"{owner.__name__}.{prefix}{n.__name__}" for n in nodes
               for owner, prefix in ((Checker, "_s_"), (Compiler, "s_"))
               if not hasattr(owner, prefix + n.__name__)]
    assert missing == []


def test_every_expression_has_its_compile_method() -> None:
    # (the checker walks expressions with one isinstance chain that raises on a node it
    # does not know, and every expression kind is checked by tests/syntax/test_parser_fuzz.py)
    from lang import ast as A
    from lang.compile import Compiler

    nodes = _concrete_nodes(A.Expr)
    assert len(nodes) > 8
    assert [n.__name__ for n in nodes if not hasattr(Compiler, "e_" + n.__name__)] == []


def test_one_keyword_list_for_grammar_parser_highlighter_and_hints() -> None:
    from lang import highlight
    from lang.syntax import keywords, messages
    from lang.syntax.parser import _tables

    # (`else` is a pattern in the grammar, not a plain word: the parser's tables do not list it)
    assert set(_tables().keywords) | {"else"} == set(keywords.TERMINALS)
    assert highlight.KEYWORDS == keywords.KEYWORDS
    assert highlight.CONSTANTS == keywords.CONSTANTS
    # the hints' sets name only keyword terminals the grammar has
    terminals = set(keywords.TERMINALS.values())
    assert messages._STMT_START <= terminals and messages._DECL_START <= terminals
    assert messages._KEYWORD_TYPES <= terminals
