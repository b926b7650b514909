"""lang/syntax/tables.py: the parser's tables saved as data load without Lark and parse
every example and golden file to the same trees as the tables Lark builds; a saved file
that is damaged, or of another format, is built again (and the parse is right)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import ENV_FOR_CLI, ROOT

from lang.syntax import parser as P
from lang.syntax import tables

FILES = sorted(glob.glob(str(ROOT / "examples" / "*.evt"))
               + glob.glob(str(ROOT / "tests" / "golden" / "parser" / "*.evt")))

# a fresh process with XDG_CACHE_HOME set: which tables it used, and whether Lark came in
PROBE = r"""
import sys
from lang.syntax import parser as P
m = P.parse_module('on project start { print "a ${1 + 2}" }\n', "probe.evt")
assert m.decls, m
print("lark" in sys.modules)
"""


def _probe(cache: Path) -> str:
    env = dict(ENV_FOR_CLI, XDG_CACHE_HOME=str(cache))
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _saved(cache: Path) -> list[str]:
    return glob.glob(str(cache / "evt" / f"grammar-*.tables{tables.FORMAT}"))


def test_a_second_start_runs_without_lark_and_a_damaged_file_is_built_again(
        tmp_path: Path) -> None:
    assert _probe(tmp_path) == "True"  # nothing saved: Lark builds the tables
    (saved,) = _saved(tmp_path)
    assert _probe(tmp_path) == "False"  # loaded from the file alone
    good = Path(saved).read_bytes()
    for damage in (b"", good[: len(good) // 2], b"\x00garbage", good.replace(b"pair", b"pear")):
        Path(saved).write_bytes(damage)
        assert _probe(tmp_path) == "True", damage[:20]  # built again, and written again
        assert _probe(tmp_path) == "False"


def test_loaded_tables_parse_everything_as_the_built_ones(tmp_path: Path) -> None:
    assert len(FILES) > 20
    grammar = P._GRAMMAR_PATH.read_text(encoding="utf-8")
    built_template = P.ToAst()
    built = tables.build(grammar, built_template)
    assert built["specs"] is not None, "a callback Lark made could not be written as data"
    path = str(tmp_path / "t.tables")
    tables.save(path, built)
    loaded_template = P.ToAst()
    loaded = tables.load(path, loaded_template)
    assert loaded is not None
    for key in ("actions", "start_states", "end_states", "keywords", "punct"):
        assert loaded[key] == built[key], key
    trees = []
    for data, template in ((built, built_template), (loaded, loaded_template)):
        tb = object.__new__(P._Tables)
        tb.template, tb.template_taken, tb.units = template, False, {}
        for key in ("actions", "rules", "start_states", "end_states", "keywords", "punct"):
            setattr(tb, key, data[key])
        ctx = P._Context(tb)
        out: list[Any] = []
        for f in FILES:
            ctx.transformer.file = os.path.basename(f)
            try:
                out.append(P._run(ctx, Path(f).read_text(encoding="utf-8"), "start"))
            except Exception as e:  # a golden file of a syntax error: the same error
                out.append(repr(e))
        trees.append(out)
    assert trees[0] == trees[1]
