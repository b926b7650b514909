"""One text per key and per built-in: what the language server shows (lang.keydocs, the
stdlib registry) is what docs/reference.md prints, and names exactly the keys lang.config
defines and the built-ins the registry holds.

AWAITING_REFERENCE names the entries the reference does not print as the source has them
yet (a docs change is pending); the test fails both when another entry drifts and when one
of these is fixed (then remove it here), so the set only ever shrinks.
"""

from __future__ import annotations

import re
from pathlib import Path

from lang import config, keydocs
from lang.lsp import docs
from stdlib import load

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"

AWAITING_REFERENCE: set[tuple[str, str]] = set()


def _section(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i:text.index(end, i + len(start))]


def _cells(row: str) -> list[str]:
    # split on the '|' that separate cells, not those inside backticks (``!#$%&'*+-.^_`|~``)
    cells, cell, ticks = [], "", ""
    i = 0
    while i < len(row):
        if row[i] == "`":
            j = i
            while j < len(row) and row[j] == "`":
                j += 1
            run = row[i:j]
            ticks = "" if ticks == run else (ticks or run)
            cell += run
            i = j
            continue
        if row[i] == "|" and not ticks:
            cells.append(cell.strip())
            cell = ""
        else:
            cell += row[i]
        i += 1
    return cells[1:]


def reference_rows(role: str) -> list[keydocs.KeyRow]:
    text = REFERENCE.read_text(encoding="utf-8")
    section = _section(text, "## 5. Connection and server keys", "## 6. Events")
    part = section.split(f"### {role} (")[1].split("\n### ")[0]
    rows = []
    for line in part.splitlines():
        if not line.startswith("| `"):
            continue
        key_cell, type_, default, meaning = _cells(line)
        keys = tuple(re.findall(r"`([a-z_]+)`", key_cell))
        rows.append(keydocs.KeyRow(keys, type_, default, meaning))
    return rows


def test_the_key_docs_name_exactly_the_keys_of_lang_config() -> None:
    for role, keys in (("connection", config.CLIENT_KEYS), ("server", config.SERVER_KEYS),
                       ("cluster", config.CLUSTER_KEYS)):
        assert [d.key for d in keydocs.key_docs(role)] and \
            sorted(d.key for d in keydocs.key_docs(role)) == sorted(keys), role


def test_the_reference_tables_print_the_key_docs() -> None:
    found = set()
    for role in ("connection", "server", "cluster"):
        printed = {k: row for row in reference_rows(role) for k in row.keys}
        for row in keydocs.ROWS[role]:
            for key in row.keys:
                if printed.get(key) != row:
                    found.add((f"{role} key", key))
        extra = set(printed) - {k for row in keydocs.ROWS[role] for k in row.keys}
        assert extra == set(), f"the reference's {role} table has keys the source lacks"
    assert found == {f for f in AWAITING_REFERENCE if f[0].endswith(" key")}, found


def reference_builtins() -> dict[str, tuple[str, str]]:
    text = REFERENCE.read_text(encoding="utf-8")
    section = _section(text, "## 11. Built-in functions", "## 12. Tools")
    rows = re.findall(r"^\| `([a-z_0-9]+)\(([^)]*)\)` \| (.*) \|$", section, re.M)
    return {name: (params, doc) for name, params, doc in rows}


def builtin_drift() -> dict[str, str]:
    """Each built-in whose reference row is missing or differs from the registry, with what
    differs in words."""
    registry = load()
    printed = reference_builtins()
    out = {}
    for name, b in sorted(registry.items()):
        row = printed.get(name)
        if row is None:
            out[name] = f"no row `{name}({b.params})` in §11 (its docstring: {docs.builtin_doc(b)!r})"
        elif row[0] != b.params:
            out[name] = f"the reference writes ({row[0]}), the registry ({b.params})"
        elif row[1] != docs.builtin_doc(b):
            out[name] = f"the reference says {row[1]!r}; the docstring {docs.builtin_doc(b)!r}"
    for name in sorted(set(printed) - set(registry)):
        out[name] = "the reference lists a built-in the registry does not have"
    return out


def test_the_reference_lists_every_builtin_as_the_registry_has_it() -> None:
    drift = builtin_drift()
    awaiting = {name for kind, name in AWAITING_REFERENCE if kind == "built-in"}
    unexpected = {k: v for k, v in drift.items() if k not in awaiting}
    assert unexpected == {}, "docs/reference.md §11 and the stdlib registry disagree"
    assert set(drift) == awaiting, f"fixed, remove from AWAITING_REFERENCE: {awaiting - set(drift)}"


def test_hover_texts_come_from_the_sources() -> None:
    registry = load()
    text = docs.builtin_markdown(registry["upper"])
    assert text.startswith("```evt\nupper(s)\n```\n\n" + docs.builtin_doc(registry["upper"]))
    key = keydocs.key_doc("server", "ping_timeout")
    assert key is not None and key.type == "duration" and key.default == "`20s`"
    assert key.meaning.endswith("(per client)")
    assert keydocs.key_doc("connection", "reconnect_max").default == "`30s`"
    assert docs.key_markdown("connection", "nope") is None
