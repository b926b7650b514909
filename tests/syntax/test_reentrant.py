"""The parser is reentrant: threads that parse different files at once each get their own
spans (file, line and column of every node, also inside '${ }'), and the first parses racing
to build the LALR tables build them once."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

from helpers import ENV_FOR_CLI, ROOT

from lang import ast as A
from lang.ast import Span
from lang.syntax.parser import parse_module

THREADS = 4
ROUNDS = 3


def gen_file(k: int, units: int = 120) -> str:
    """A script that differs per k in where its lines and columns fall: k comment lines on
    top, k spaces of indent, interpolations at columns that depend on k."""
    pad = " " * k
    out = [f"# file {k}, line {i}" for i in range(k * 3)]
    out.append('connection api { url = "ws://127.0.0.1:9/"; ping_interval = 5s }')
    for i in range(units):
        out += [
            f"func f{k}_{i}(a, b) {{",
            f"{pad}    let x = a + b * {i} - (a / 2)",
            f"{pad}    if x > 10 and not (b == null) {{",
            f'{pad}        print "{pad}x is ${{x + {k}}} and ${{f{k}_{i}(a, [b])}}", {{k: x}}',
            f"{pad}    }} else {{ x = x % 7 }}",
            f"{pad}    for v in range(3) {{ x = x + v }}",
            f"{pad}    return x",
            "}",
            f"on websocket receive api json as m{i} from peer{k} {{",
            f'{pad}    if m{i}.id == {i} {{ send api {{op: "ack ${{m{i}.id}}", id: m{i}.id}} }}',
            f"{pad}    emit got{i} m{i}",
            "}",
        ]
    return "\n".join(out) + "\n"


def spans(node: Any, where: str = "") -> Iterator[tuple[str, Span]]:
    """(path to the field, span) for every span field of every node in the tree."""
    if isinstance(node, A.Node):
        for name in A.node_fields(node):
            value = getattr(node, name)
            if name.endswith("span"):
                yield f"{where}.{type(node).__name__}.{name}", value
            else:
                yield from spans(value, f"{where}.{name}")
    elif isinstance(node, (tuple, list)):
        for i, item in enumerate(node):
            yield from spans(item, f"{where}[{i}]")


def all_spans(module: A.Module) -> list[tuple[str, Span]]:
    return list(spans(module))


def test_threads_parsing_at_once_get_their_own_spans() -> None:
    texts = [gen_file(k) for k in range(THREADS)]
    paths = [f"/tmp/thread{k}/script{k}.evt" for k in range(THREADS)]
    alone = [all_spans(parse_module(t, p)) for t, p in zip(texts, paths, strict=True)]
    for k, expected in enumerate(alone):
        assert len(expected) > 3000
        assert {s.file for _, s in expected} == {paths[k]}
        assert len({s.line for _, s in expected}) > 1000
    results: dict[int, list[list[tuple[str, Span]]]] = {k: [] for k in range(THREADS)}
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(k: int) -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(ROUNDS):
                results[k].append(all_spans(parse_module(texts[k], paths[k])))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that parses interleave finely
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
            assert not t.is_alive()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    for k in range(THREADS):
        assert len(results[k]) == ROUNDS
        for got in results[k]:
            wrong = [(w, s, e) for (w, s), (_, e) in zip(got, alone[k], strict=True) if s != e]
            assert not wrong, f"thread {k}: {len(wrong)} spans differ, first {wrong[:3]}"


RACE = r"""
import sys, threading
from lang.syntax import parser as P
built = []
class Counting(P._Tables):
    def __init__(self):
        built.append(threading.get_ident())
        super().__init__()
P._Tables = Counting
texts = [f'on project start {{ print "a ${{{k} + 1}}" }}\n' for k in range(4)]
barrier = threading.Barrier(4)
out = {}
def work(k):
    barrier.wait(timeout=60)
    out[k] = P.parse_module(texts[k], f"race{k}.evt")
threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join(timeout=300)
assert len(out) == 4, out
for k, m in out.items():
    (h,) = m.decls
    assert h.span.file == f"race{k}.evt", h.span
print("built", len(built))
"""


def test_threads_racing_to_build_the_tables_build_them_once(tmp_path: Any) -> None:
    # a fresh process with an empty grammar cache: the first parse builds the tables slowly
    env = dict(ENV_FOR_CLI, XDG_CACHE_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "built 1"
