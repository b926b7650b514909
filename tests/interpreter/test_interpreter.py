"""The interpreter, in-process: values and printing, statements, events, scenes, timers,
runtime errors and the execution model (SPEC §3, §5-§8).

Every script runs through `run_evt` (parse, check, run on the test's event loop) and each test
asserts the exact lines the script printed. Timers inside scripts are short (a few ms to a few
tens of ms) and the assertions never depend on exact timing: they compare orders and counts
that hold however slow the machine is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from helpers import Result, run_evt

pytestmark = pytest.mark.anyio


async def run(tmp_path: Path, source: str, **kw) -> Result:
    return await run_evt(source, tmp_path=tmp_path, **kw)


def where(tmp_path: Path) -> str:
    """The file name diagnostics of a run_evt script start with."""
    return str(tmp_path / "test.evt")


def no_traceback(r: Result) -> None:
    assert "Traceback" not in r.err
    assert "internal error" not in r.err


# ================================================================ values and printing


async def test_print_scalars(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print 42, -7, 3.0, 0.25, 2.5, true, false, null
            print 1 / 3, 1e3, 0x1F, 10 - 0.5
        }
    """)
    assert r.lines == ["42 -7 3.0 0.25 2.5 true false null",
                       "0.3333333333333333 1000.0 31 9.5"]
    assert (r.code, r.err) == (0, "")


async def test_print_unit_literals(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print 250ms, 1.5s, 2m, 1h, 64KiB, 1MiB, 10B
        }
    """)
    assert r.lines == ["0.25 1.5 120.0 3600.0 65536 1048576 10"]


async def test_print_lists_and_maps(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print [1, "a", [2, {k: "v"}]]
            print {a: 1, "b-c": [true, null, 2.0]}
            print [], {}
            print ["x y", 'q"uote']
        }
    """)
    assert r.lines == ['[1, "a", [2, {"k": "v"}]]',
                       '{"a": 1, "b-c": [true, null, 2.0]}',
                       "[] {}",
                       '["x y", "q\\"uote"]']


async def test_print_bytes(tmp_path: Path) -> None:
    r = await run(tmp_path, r"""
        on project start {
            print b"\x01ok"
            print [b"\x01", b"ab"]
            print b"" + b"\xff\x00"
        }
    """)
    assert r.lines == [r'b"\x01ok"', r'[b"\x01", b"ab"]', r'b"\xff\x00"']


async def test_str_and_interpolation_print_like_print(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let name = "Ada"
        on project start {
            let n = 41
            let m = {k: "v"}
            print "hi ${name}, you are ${n + 1}"
            print "${m['k']} ${null} ${1.5} ${true} ${[1, 'a']} ${m}"
            print str([1, "a"]), str(3.0), str(null)
            print "cost: \\${n}"
        }
    """)
    assert r.lines == ["hi Ada, you are 42",
                       'v null 1.5 true [1, "a"] {"k": "v"}',
                       '[1, "a"] 3.0 null',
                       "cost: ${n}"]


async def test_print_several_values_and_none(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "a", 1, [2, "b"], null
            print
            print "end"
        }
    """)
    assert r.lines == ['a 1 [2, "b"] null', "", "end"]


async def test_equality_across_int_and_float_never_bool(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let one = 1
            let t = true
            print 1 == 1.0, one == 1.0, 2.5 == 2.5, 1 != 1.0
            print true == 1, one == t, false == 0, 0 == false, 1 != true
            print [1, 2] == [1.0, 2], {a: 1} == {a: 1.0}, [true] == [1], [0] == [false]
            print "1" == 1, null == false, null == null, null == 0
        }
    """)
    assert r.lines == ["true true true false",
                       "false false false false true",
                       "true true false false",
                       "false false true false"]


async def test_in_operator(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "ell" in "hello", "z" in "hello", "" in "abc"
            print 2 in [1, 2], 2.0 in [1, 2], 3 in [1, 2], "a" in ["a"], null in [null]
            print "k" in {k: 1}, "v" in {k: "v"}, "z" not in {k: 1}
            print 1 in [true], true in [1], false in [0], 0 in [false]
        }
    """)
    assert r.lines == ["true false true",
                       "true true false true true",
                       "true false true",
                       "false false false false"]


async def test_map_keys_follow_python_true_and_1_are_one_key(tmp_path: Path) -> None:
    # docs/reference.md, values: as in Python, 1, 1.0 and true are the same map key
    r = await run(tmp_path, """
        on project start {
            let m = {1: "one"}
            print true in m, 1 in m
            m[true] = "yes"
            print len(m)
        }
    """)
    assert r.lines == ["true true", "1"]


async def test_plus(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print 1 + 2, 1 + 2.5, 0.1 + 0.2
            print "ab" + "cd", [1] + [2, 3], b"a" + b"b"
            let xs = [1]
            let ys = xs + [2]
            print xs, ys
        }
    """)
    assert r.lines == ["3 3.5 0.30000000000000004", 'abcd [1, 2, 3] b"ab"', "[1] [1, 2]"]


@pytest.mark.parametrize("expr", ['"n=" + 1', '1 + "a"', '"x" + 2.5', '"x" + true'])
async def test_string_plus_number_suggests_interpolation(tmp_path: Path, expr: str) -> None:
    r = await run(tmp_path, f"""
        on project start {{
            print {expr}
            print "not reached"
        }}
    """)
    assert r.lines == []
    assert r.code == 1
    assert "runtime error: cannot add" in r.err
    assert "interpolation" in r.err
    no_traceback(r)


async def test_division_and_remainder(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print 7 / 2, 6 / 3, type(6 / 3), -7 / 2, 1 / 4
            print 7 % 3, 6 % 3, 7.5 % 2, 2 * 3, 2 * 3.0, 5 - 7
        }
    """)
    assert r.lines == ["3.5 2.0 float -3.5 0.25", "1 0 1.5 6 6.0 -2"]


async def test_division_by_zero_is_a_runtime_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let zero = 0
            print 1 / zero
        }
        on project start { print 1.5 / 0 }
        on project start { print 5 % 0 }
        on project start { print "still running" }
    """)
    assert r.lines == ["still running"]
    assert r.code == 1
    assert r.err.count("runtime error: division by zero") == 2
    assert r.err.count("runtime error: remainder by zero") == 1
    assert r.err.startswith(f"{where(tmp_path)}:4:13: runtime error: division by zero\n")
    no_traceback(r)


async def test_indexing(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let xs = [10, 20, 30]
            let m = {k: 1, "a b": 2, nested: {deep: [5, 6]}}
            print xs[0], xs[2], xs[-1], xs[-3]
            print m["k"], m.k, m["a b"], m.nested.deep[1], m["nested"]["deep"][-2]
            print "abc"[1], "abc"[-1]
            print get(m, "k", 0), get(m, "zz", "dflt"), get(m, "zz")
        }
    """)
    assert r.lines == ["10 30 30 10", "1 1 2 6 5", "b c", "1 dflt null"]


async def test_missing_map_key_is_an_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let m = {a: 1}
            print m.b
        }
        on project start {
            let m = {a: 1}
            print m["c"]
        }
    """)
    assert r.lines == []
    assert r.code == 1
    f = where(tmp_path)
    assert re.search(rf"^{re.escape(f)}:4:\d+: runtime error: .*\"b\"", r.err, re.M)
    assert re.search(rf"^{re.escape(f)}:8:\d+: runtime error: .*\"c\"", r.err, re.M)
    no_traceback(r)


async def test_list_index_out_of_range_is_an_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let xs = [1, 2]
            print xs[2]
        }
        on project start {
            let xs = [1, 2]
            print xs[-3]
        }
    """)
    assert r.lines == []
    assert r.code == 1
    assert r.err.count("runtime error: index") == 2
    assert "out of range" in r.err


async def test_mutation_of_lists_and_maps(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let xs = [1, 2, 3]
            let m = {k: 1}
            xs[0] = 10
            xs[-1] = 30
            m.k = 2
            m["new"] = 3
            m.inner = {}
            m.inner.x = [0]
            m.inner.x[0] = 9
            push(xs, 4)
            print xs, m
            let alias = xs
            push(alias, 5)
            alias[1] = 20
            print xs
        }
    """)
    assert r.lines == ['[10, 2, 30, 4] {"k": 2, "new": 3, "inner": {"x": [9]}}',
                       "[10, 20, 30, 4, 5]"]


async def test_map_keys_from_bare_names_are_strings(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let m = {a: 1, "b": 2, if: 3}
            for k in m { print k, type(k) }
            print m["a"], m["if"], "a" in m
        }
    """)
    assert r.lines == ["a string", "b string", "if string", "1 3 true"]


async def test_maps_keep_insertion_order(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let m = {z: 1, a: 2}
            m.m = 3
            m.z = 4
            print m
            print keys(m)
        }
    """)
    assert r.lines == ['{"z": 4, "a": 2, "m": 3}', '["z", "a", "m"]']


async def test_type_names(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        connection c { url = "ws://127.0.0.1:9/" }
        server s { listen = "127.0.0.1:0" }
        on project start {
            print type(null), type(true), type(1), type(1.5), type("s"), type(b"")
            print type([]), type({}), type(c), type(s)
            let t = after 1ms { }
            print type(t)
        }
    """)
    assert r.lines == ["null bool int float string bytes", "list map connection server",
                       "timer"]
    assert r.code == 0


async def test_type_of_peer_and_unassigned_peer_field(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        server srv { listen = "127.0.0.1:0" }
        connection cli { url = "ws://${address(srv)}/" }
        on project start {
            start srv
            start cli
        }
        on websocket start srv from p {
            print type(p), p.nickname
            p.nickname = "bob"
            print p.nickname
            send p "hi"
        }
        on websocket receive cli as m {
            print "got", m
            exit
        }
    """)
    assert r.lines == ["peer null", "bob", "got hi"]
    assert r.code == 0


async def test_round_is_half_away_from_zero(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print round(0.5), round(1.5), round(2.5), round(-2.5), round(-0.5), round(2.4)
            print type(round(2.5))
        }
    """)
    assert r.lines == ["1 2 3 -3 -1 2", "int"]


async def test_args_is_a_list_of_strings(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func first() { return args[0] }
        on project start {
            print args, type(args), type(args[1]), len(args), first()
        }
    """, args=("one", "2"))
    assert r.lines == ['["one", "2"] list string 2 one']


async def test_args_is_empty_without_arguments(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print args, len(args) }
    """)
    assert r.lines == ["[] 0"]


async def test_set_overrides_a_top_level_let(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let n = 1
        let url = "default"
        let doubled = n * 2
        on project start { print n, url, doubled }
    """, sets={"n": 21, "url": "ws://h:1/"})
    assert r.lines == ["21 ws://h:1/ 42"]


# ================================================================ statements


async def test_let_is_block_scoped(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let x = 1
            if true {
                let x = 2
                print "inner", x
                x = 3
                print "inner", x
            }
            print "outer", x
            if true { x = 4 }
            print "outer", x
        }
    """)
    assert r.lines == ["inner 2", "inner 3", "outer 1", "outer 4"]


async def test_let_is_not_visible_after_its_block(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            if true {
                let y = 3
            }
            print y
        }
    """)
    assert r.code == 3
    assert f"{where(tmp_path)}:6:11: error: unknown name 'y'" in r.err
    assert r.out == ""


async def test_let_in_loop_body_is_not_visible_after_the_loop(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for i in range(2) {
                let inside = i
            }
            print inside
        }
    """)
    assert r.code == 3
    assert "unknown name 'inside'" in r.err


async def test_let_in_loop_body_is_fresh_each_iteration(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for i in range(3) {
                let acc = []
                push(acc, i)
                print acc
            }
        }
    """)
    assert r.lines == ["[0]", "[1]", "[2]"]


async def test_assignment_to_project_variable(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let total = 0
        func add(n) { total = total + n }
        on project start {
            add(2)
            add(3)
            total = total * 10
        }
        on project start { print total }
    """)
    assert r.lines == ["50"]


async def test_if_else_if_else(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func classify(n) {
            if n < 0 {
                return "negative"
            } else if n == 0 {
                return "zero"
            }
            else if n < 10 { return "small" }
            else {
                return "big"
            }
        }
        on project start {
            for n in [-5, 0, 3, 99] { print classify(n) }
            if 0 { print "0 is true" } else { print "0 is false" }
            if "" { print "empty is true" } else { print "empty is false" }
            if [0] { print "[0] is true" }
            if {} { print "{} is true" } else { print "{} is false" }
        }
    """)
    assert r.lines == ["negative", "zero", "small", "big", "0 is false", "empty is false",
                       "[0] is true", "{} is false"]


async def test_while_with_break_and_continue(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let i = 0
            while true {
                i = i + 1
                if i < 3 { continue }
                if i > 5 { break }
                print "i", i
            }
            print "done", i
            while false { print "never" }
        }
    """)
    assert r.lines == ["i 3", "i 4", "i 5", "done 6"]


async def test_for_over_list_with_break_and_continue(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for x in [1, 2, 3, 4, 5, 6] {
                if x == 2 { continue }
                if x == 5 { break }
                print x
            }
            for x in [] { print "never" }
        }
    """)
    assert r.lines == ["1", "3", "4"]


async def test_for_over_map_keys_in_insertion_order(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let m = {z: 1, a: 2, m: 3}
            for k in m { print k }
        }
    """)
    assert r.lines == ["z", "a", "m"]


async def test_for_over_range_and_string(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for i in range(3) { print "r", i }
            for i in range(2, 8, 3) { print "s", i }
            for i in range(3, 0, -1) { print "d", i }
            for i in range(0) { print "never" }
            for c in "héy" { print c }
        }
    """)
    assert r.lines == ["r 0", "r 1", "r 2", "s 2", "s 5", "d 3", "d 2", "d 1",
                       "h", "é", "y"]


async def test_for_pairs_over_items_and_over_a_map(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let m = {b: 1, a: [2]}
            for k, v in items(m) { print k, v }
            for k, v in m { print "m", k, v }
        }
    """)
    assert r.lines == ["b 1", "a [2]", "m b 1", "m a [2]"]


async def test_for_range_does_not_build_a_list(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for i in range(1000000000000) {
                if i == 3 { break }
                print i
            }
            for i in range(999999999999, 1000000000000) { print i }
        }
    """)
    assert r.lines == ["0", "1", "2", "999999999999"]


async def test_return_from_a_function_inside_loops(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func index_of(xs, wanted) {
            let i = 0
            for x in xs {
                while true {
                    if x == wanted { return i }
                    break
                }
                i = i + 1
            }
            return -1
        }
        func nothing() { return }
        func implicit() { let a = 1 }
        on project start {
            print index_of([5, 6, 7], 7), index_of([5], 9), nothing(), implicit()
        }
    """)
    assert r.lines == ["2 -1 null null"]


async def test_bare_return_ends_a_handler_early(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "one"
            for i in range(5) {
                if i == 1 { return }
                print "loop", i
            }
            print "not reached"
        }
        on project start { print "next handler" }
    """)
    assert r.lines == ["one", "loop 0", "next handler"]
    assert r.code == 0


async def test_wait_pauses_only_this_handler(tmp_path: Path) -> None:
    # (timers and waits in these tests wait for what they wait for, not for a time that a
    # busy machine can outlast: a wait that blocked everything would never end)
    r = await run(tmp_path, """
        let fired = false
        after 0ms { print "timer"; fired = true }
        on project start {
            print "begin"
            while not fired { wait 5ms }
            print "end"
        }
    """)
    assert sorted(r.lines) == ["begin", "end", "timer"]
    assert r.lines.index("begin") < r.lines.index("end")
    assert r.lines.index("timer") < r.lines.index("end")


async def test_after_statement_runs_later_on_a_copy_of_the_locals(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let x = 1
            let xs = []
            after 10ms {
                print "timer sees", x, xs
                x = 99
                push(xs, "from timer")
            }
            x = 2
            push(xs, "shared")
            print "handler goes on"
            while len(xs) < 2 { wait 5ms }  # until the timer has pushed
            print "handler sees", x, xs
        }
    """)
    assert r.lines == ["handler goes on", 'timer sees 1 ["shared"]',
                       'handler sees 2 ["shared", "from timer"]']


async def test_every_statement_keeps_its_copy_across_runs(tmp_path: Path) -> None:
    # (with `wait 60ms` for the three ticks, a busy machine skipped ticks: two came)
    r = await run(tmp_path, """
        let done = false
        on project start {
            let n = 0
            let t = every 5ms {
                n = n + 1
                print "tick", n
                if n == 3 { cancel t; done = true }
            }
            while not done { wait 5ms }
            print "handler n", n, type(t)
        }
    """)
    assert r.lines == ["tick 1", "tick 2", "tick 3", "handler n 0 timer"]
    assert r.code == 0


async def test_cancel_before_the_first_run(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let t = every 5ms { print "tick" }
            let a = after 5ms { print "after" }
            cancel t
            cancel a
            wait 30ms
            print "done"
        }
    """)
    assert r.lines == ["done"]


async def test_timer_assigned_to_an_existing_variable_can_be_cancelled(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let tm = null
        let ticks = 0
        on project start {
            tm = every 5ms { ticks = ticks + 1 }
            let t2 = null
            t2 = after 5ms { print "t2 ran" }
            cancel t2
            print type(tm), type(t2)
        }
        on project start {
            while ticks == 0 { wait 5ms }
            cancel tm
            let seen = ticks
            wait 30ms
            print ticks == seen, seen > 0
        }
    """)
    assert r.lines == ["timer timer", "true true"]


async def test_cancel_null_does_nothing_and_cancel_twice_is_fine(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let ran = false
        on project start {
            cancel null
            let t = after 0ms { print "ran"; ran = true }
            while not ran { wait 5ms }
            cancel t
            cancel t
            print "ok"
        }
    """)
    assert r.lines == ["ran", "ok"]
    assert (r.code, r.err) == (0, "")


async def test_cancel_something_else_is_a_runtime_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let n = 5
            cancel n
            print "not reached"
        }
    """)
    assert r.lines == []
    assert r.code == 1
    assert "runtime error: cancel needs a timer, got int" in r.err


async def test_top_level_timers(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let ticks = 0
        every 5ms {
            let fresh = 0
            fresh = fresh + 1
            ticks = ticks + 1
            if fresh != 1 { print "locals leaked" }
            if ticks == 3 { print "three ticks" }
        }
        after 60ms {
            while ticks < 3 { wait 5ms }  # a busy machine may have skipped ticks by now
            print "after ran", ticks >= 3
            exit
        }
    """)
    assert r.lines == ["three ticks", "after ran true"]
    assert r.code == 0


async def test_emit_runs_handlers_inline(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on event ping as v {
            print "ping", v
            emit pong v * 2
            print "ping done"
        }
        on event pong as v { print "pong", v }
        on event pong { print "pong without as" }
        on event nobody { print "never" }
        on project start {
            print "before"
            emit ping 5
            print "after"
            emit pong
            emit unheard 1
            print "end"
        }
    """)
    assert r.lines == ["before", "ping 5", "pong 10", "pong without as", "ping done", "after",
                       "pong null", "pong without as", "end"]


async def test_emit_handler_that_waits_finishes_before_the_emitter_goes_on(tmp_path: Path
                                                                           ) -> None:
    r = await run(tmp_path, """
        on event slow { print "slow begin"; wait 20ms; print "slow end" }
        on project start {
            emit slow
            print "after emit"
        }
    """)
    assert r.lines == ["slow begin", "slow end", "after emit"]


async def test_call_statement(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let log = []
        func note(s) { push(log, s); print "noted", s }
        on project start {
            note("a")
            note("b")
            push(log, "c")
            print log
        }
    """)
    assert r.lines == ["noted a", "noted b", '["a", "b", "c"]']


async def test_assert_that_holds_does_nothing(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            assert 1 + 1 == 2
            assert true, "never shown"
            print "ok"
        }
    """)
    assert r.lines == ["ok"]
    assert (r.code, r.err) == (0, "")


async def test_failed_assert(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "before"
            assert 1 == 2, "math is ${1 + 1}"
            print "not reached"
        }
        after 5s { print "never" }
        on project stop { print "stop ran" }
    """)
    assert r.lines == ["before", "stop ran"]
    assert r.code == 1
    err = r.err.splitlines()
    assert err[0] == f"{where(tmp_path)}:4:5: assertion failed: math is 2"
    assert err[1].strip() == 'assert 1 == 2, "math is ${1 + 1}"'
    assert err[2].strip() == "^"
    assert err[2].index("^") == err[1].index("assert")
    no_traceback(r)


async def test_exit_with_code_runs_project_stop(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "start"
            exit 7
            print "not reached"
        }
        after 5s { print "never" }
        on project stop { print "stop" }
    """)
    assert r.lines == ["start", "stop"]
    assert r.code == 7


async def test_exit_without_code_is_0(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        every 10ms { print "tick" }
        on project start { exit }
    """)
    assert r.code == 0


async def test_exit_without_code_after_a_runtime_error_is_1(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print 1 / 0 }
        on project start { exit }
        on project stop { print "stop" }
    """)
    assert r.lines == ["stop"]
    assert r.code == 1


async def test_explicit_exit_code_wins_over_errors(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print 1 / 0 }
        on project start { exit 0 }
    """)
    assert r.code == 0
    assert "division by zero" in r.err


async def test_exit_1(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { exit 1 }
    """)
    assert (r.code, r.err) == (1, "")


async def test_exit_code_out_of_range_is_a_runtime_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let code = 256
        on project start { exit code }
    """)
    assert r.code == 1
    assert "runtime error: an exit code must be an int from 0 to 255" in r.err


async def test_exit_stops_the_other_handlers_of_the_event(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print "first"; exit 3 }
        on project start { print "second" }
        on project stop { print "stop" }
    """)
    assert r.lines == ["first", "stop"]
    assert r.code == 3


async def test_exit_inside_an_emitted_handler_ends_the_emitter(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on event e { print "in e"; exit 2 }
        on event e { print "second e" }
        on project start { emit e; print "after emit" }
        on project stop { print "stop" }
    """)
    assert r.lines == ["in e", "stop"]
    assert r.code == 2


async def test_failed_assert_inside_an_emitted_handler_ends_the_emitter(tmp_path: Path
                                                                        ) -> None:
    r = await run(tmp_path, """
        on event e { assert false, "boom" }
        on project start { emit e; print "after emit" }
        on project stop { print "stop" }
    """)
    assert r.lines == ["stop"]
    assert r.code == 1
    assert "assertion failed: boom" in r.err


async def test_exit_inside_scene_start_ends_the_changer(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene a { on scene start { print "a start"; exit 4 } }
        on project start { change scene a; print "after change" }
        on project stop { print "stop" }
    """)
    assert r.lines[0] == "a start"
    assert "after change" not in r.lines
    assert r.code == 4


async def test_exit_inside_on_change_skips_the_other_change_handlers(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let x = 0
        on change x { print "changed"; exit 4 }
        on change x { print "changed 2" }
        on project start { x = 1 }
        on project stop { print "stop" }
    """)
    assert r.lines == ["changed", "stop"]
    assert r.code == 4


# ================================================================ events and the model


async def test_project_start_runs_first(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        after 0ms { print "timer" }
        every 1ms { print "tick"; exit }
        on project start { print "start" }
    """)
    assert r.lines[0] == "start"


async def test_project_start_handlers_run_in_order_across_wait(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "first begin"
            wait 20ms
            print "first end"
        }
        on project start { print "second" }
        on project start { print "third" }
    """)
    assert r.lines == ["first begin", "first end", "second", "third"]


async def test_project_stop_runs_last_on_natural_end(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project stop { print "stop" }
        on project start { print "start" }
        after 20ms { print "late timer" }
        on project stop { print "stop 2" }
    """)
    assert r.lines == ["start", "late timer", "stop", "stop 2"]
    assert r.code == 0


async def test_natural_end_is_prompt(tmp_path: Path) -> None:
    """It ends by itself (run_evt's hard limit fails a run that does not)."""
    r = await run(tmp_path, """
        on project start { print 1 }
    """)
    assert r.lines == ["1"]
    assert r.code == 0


async def test_natural_end_waits_for_a_pending_after(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = await run(tmp_path, """
        on project start {
            after 50ms { print "late" }
            print "start"
        }
        on project stop { print "stop" }
    """)
    assert r.lines == ["start", "late", "stop"]
    assert time.monotonic() - t0 >= 0.045


async def test_on_change_fires_only_for_a_different_value(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let x = 1
        func setx(v) { x = v }
        on change x as v { print "x ->", v, type(v) }
        on project start {
            x = 1
            x = 1.0
            x = true
            setx(7)
            x = 7
            x = [1]
            x = [1]
            x = [1, 2]
        }
    """)
    assert r.lines == ["x -> true bool", "x -> 7 int", "x -> [1] list", "x -> [1, 2] list"]


async def test_on_change_without_as_and_several_handlers(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let state = "idle"
        on change state { print "changed to", state }
        on change state as s { print "second handler", s }
        on project start {
            state = "busy"
            wait 20ms
            state = "busy"
            wait 20ms
            state = "done"
        }
    """)
    assert r.lines == ["changed to busy", "second handler busy",
                       "changed to done", "second handler done"]


async def test_on_change_of_a_scene_variable(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene s {
            let level = 0
            on change level as v { print "level", v }
            on scene start {
                level = 0
                level = 3
                level = 3
                level = 4
            }
        }
        on project start { change scene s }
    """)
    assert r.lines == ["level 3", "level 4"]


# ---------------------------------------------------------------- scenes


async def test_scene_change_order(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func init(s) { print "init", s; return 0 }
        scene a {
            let n = init("a")
            on scene start { print "a start", n; n = n + 1 }
            on scene stop { print "a stop", n }
        }
        scene b {
            let m = init("b")
            after 0ms { print "b timer" }
            on scene start { print "b start", m }
            on scene stop { print "b stop" }
        }
        on project start {
            print "go"
            change scene a
            print "in a"
            change scene b
            print "in b"
            change scene a
            print "back in a"
            exit
        }
        on project stop { print "project stop" }
    """)
    assert r.lines == ["go", "init a", "a start 0", "in a",
                       "a stop 1", "init b", "b start 0", "in b",
                       "b stop", "init a", "a start 0", "back in a",
                       "a stop 1", "project stop"]


async def test_scene_timers_run_until_after_stop_and_from_before_start(tmp_path: Path
                                                                       ) -> None:
    # §7: the old scene's stop handler runs before its timers are cancelled; the new scene's
    # timers are started before its start handler runs.
    # each handler waits for a tick of its scene's timer: had the timer been stopped (or not
    # started), it would wait for ever
    r = await run(tmp_path, """
        let ticks = 0
        scene a {
            every 5ms { print "a tick"; ticks = ticks + 1 }
            on scene stop {
                print "a stop begin"
                let seen = ticks
                while ticks == seen { wait 5ms }
                print "a stop end"
            }
        }
        scene b {
            every 5ms { print "b tick"; ticks = ticks + 1 }
            on scene start {
                print "b start begin"
                let seen = ticks
                while ticks == seen { wait 5ms }
                print "b start end"
            }
        }
        on project start {
            change scene a
            change scene b
            exit
        }
    """)
    lines = r.lines
    stop_begin, stop_end = lines.index("a stop begin"), lines.index("a stop end")
    start_begin, start_end = lines.index("b start begin"), lines.index("b start end")
    assert stop_begin < stop_end < start_begin < start_end
    assert "a tick" in lines[stop_begin:stop_end]
    assert "a tick" not in lines[stop_end:]
    assert "b tick" in lines[start_begin:start_end]
    assert "b tick" not in lines[:start_begin]


async def test_project_handlers_run_before_scene_handlers(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene s {
            on event e as x { print "scene 1", x }
            on event e { print "scene 2" }
        }
        on event e as x { print "project 1", x }
        on project start {
            emit e 1
            change scene s
            emit e 2
        }
        on event e { print "project 2" }
    """)
    assert r.lines == ["project 1 1", "project 2",
                       "project 1 2", "project 2", "scene 1 2", "scene 2"]


async def test_scene_variables_and_functions(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let total = 0
        scene s {
            let count = 10
            func bump(n) { count = count + n; total = total + n; return count }
            on scene start { print bump(1), bump(2), count, total }
        }
        on project start { change scene s }
    """)
    assert r.lines == ["11 13 13 3"]


async def test_scene_variables_reset_on_reentry(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene a {
            let visits = 0
            let xs = []
            on scene start {
                visits = visits + 1
                push(xs, visits)
                print "a", visits, xs
            }
        }
        scene b { }
        on project start {
            change scene a
            change scene b
            change scene a
            change scene a
        }
    """)
    assert r.lines == ["a 1 [1]", "a 1 [1]", "a 1 [1]"]


async def test_scene_timers_stop_after_leaving(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let decl_ticks = 0
        let stmt_ticks = 0
        scene a {
            every 5ms { decl_ticks = decl_ticks + 1 }
            on scene start { every 5ms { stmt_ticks = stmt_ticks + 1 } }
        }
        scene b { }
        on project start {
            change scene a
            while decl_ticks == 0 or stmt_ticks == 0 { wait 5ms }
            change scene b
            let d = decl_ticks
            let s = stmt_ticks
            wait 40ms
            print d > 0, s > 0, decl_ticks == d, stmt_ticks == s
        }
    """)
    assert r.lines == ["true true true true"]
    assert r.code == 0


async def test_shutdown_runs_scene_stop_then_project_stop(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene s {
            on scene stop { print "scene stop" }
        }
        on project start { change scene s; print "changed" }
        on project stop { print "project stop" }
    """)
    assert r.lines == ["changed", "scene stop", "project stop"]
    assert r.code == 0


async def test_leaving_a_scene_drops_its_handlers(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene a { on event e { print "a sees e" } }
        scene b { on event e { print "b sees e" } }
        on project start {
            emit e
            change scene a
            emit e
            change scene b
            emit e
        }
    """)
    assert r.lines == ["a sees e", "b sees e"]


# ---------------------------------------------------------------- timers and loops


async def test_every_never_overlaps_and_skips_ticks(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let busy = false
        let runs = 0
        let t0 = monotonic()
        every 20ms {
            assert not busy, "a run started while the previous one was going"
            busy = true
            runs = runs + 1
            wait 70ms
            busy = false
        }
        after 300ms {
            while runs < 2 { wait 5ms }  # (each run takes 70 ms or more)
            let due = floor((monotonic() - t0) / 0.02)
            print runs >= 2, runs < due
            exit
        }
    """)
    assert r.lines == ["true true"]
    assert (r.code, r.err) == (0, "")


async def test_while_true_does_not_starve_a_timer(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print "looping"; while true { } }
        after 30ms { print "timer ran"; exit 4 }
        on project stop { print "stop" }
    """)
    assert r.lines == ["looping", "timer ran", "stop"]
    assert r.code == 4


async def test_long_for_loop_does_not_starve_a_timer(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let n = 0
        on project start { for i in range(1000000000000) { n = i } }
        after 30ms { print "timer ran", n > 0; exit }
    """)
    assert r.lines == ["timer ran true"]
    assert r.code == 0


async def test_runtime_error_in_a_timer_keeps_the_timer_going(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let n = 0
        every 5ms {
            n = n + 1
            if n == 1 { print 1 / 0 }
            print "tick", n
            if n == 3 { exit }
        }
    """)
    assert r.lines == ["tick 2", "tick 3"]
    assert r.code == 1
    assert r.err.count("runtime error") == 1
    assert "  in every block (" in r.err


# ================================================================ functions


async def test_functions(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func fib(n) {
            if n < 2 { return n }
            return fib(n - 1) + fib(n - 2)
        }
        func total(n) {
            let s = 0
            for i in range(n) { s = s + i }
            return s
        }
        func both(a) { return fib(a) + total(a) }
        func slow(x) { wait 5ms; return x * 2 }
        on project start {
            print fib(20), total(5), both(6)
            print slow(2) + slow(3), [slow(1), total(3)], {k: slow(4)}, "${slow(5)}"
            if slow(1) == 2 { print "cond ok" }
        }
    """)
    assert r.lines == ["6765 10 23", '10 [2, 3] {"k": 8} 10', "cond ok"]


async def test_function_locals_are_per_call(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func count_down(n) {
            let here = n
            if n > 0 { count_down(n - 1) }
            print here
        }
        on project start { count_down(3) }
    """)
    assert r.lines == ["0", "1", "2", "3"]


async def test_waiting_functions_in_a_top_level_let(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func slow(x) { wait 1ms; return x }
        let v = slow(5)
        on project start { print v }
    """)
    assert r.lines == ["5"]


async def test_recursion_limit_is_400_calls(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func down(n) {
            if n == 0 { return 0 }
            return 1 + down(n - 1)
        }
        on project start { print down(399) }
        on project start { print down(400) }
    """)
    assert r.lines == ["399"]
    assert r.code == 1
    assert r.err.count("runtime error: too much recursion") == 1
    assert f"  in on project start ({where(tmp_path)}:7:1)" in r.err


async def test_recursion_limit(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func f(n) {
            return f(n + 1)
        }
        on project start {
            print f(0)
            print "not reached"
        }
        on project start { print "program goes on" }
    """)
    assert r.lines == ["program goes on"]
    assert r.code == 1
    f = where(tmp_path)
    assert re.match(rf"{re.escape(f)}:3:12: runtime error: too much recursion", r.err)
    m = re.search(r"^  \.\.\. the same call (\d+) more times$", r.err, re.M)
    assert m is not None and 390 <= int(m.group(1)) <= 400
    assert len(r.err.splitlines()) < 15
    assert f"  in on project start ({f}:5:1)" in r.err
    no_traceback(r)


async def test_emit_recursion_limit(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let depth = 0
        on event deep { depth = depth + 1; emit deep }
        on project start {
            emit deep
            print "after", depth > 100
        }
    """)
    assert r.lines == ["after true"]
    assert r.code == 1
    assert "runtime error: too much recursion" in r.err
    no_traceback(r)


# ================================================================ runtime errors


async def test_runtime_error_format(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func inner(m) {
            return m.missing
        }
        func outer() { return inner({a: 1}) }
        on project start {
            print outer()
        }
    """)
    f = where(tmp_path)
    err = r.err.splitlines()
    assert re.match(rf"{re.escape(f)}:3:14: runtime error: no key \"missing\"", err[0])
    assert err[1] == "        return m.missing"
    assert err[2] == " " * 17 + "^"
    assert err[3].startswith("  in func inner (")
    assert err[4].startswith("  in func outer (")
    assert err[5] == f"  in on project start ({f}:6:1)"
    assert len(err) == 6
    assert r.code == 1


async def test_runtime_error_aborts_only_that_handler(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            print "a"
            let x = [1][3]
            print "not reached"
        }
        on project start { print "b" }
        after 10ms { print "timer" }
        on project stop { print "stop" }
    """)
    # (the timer may come before "b" on a busy machine: that order is not the point)
    assert r.lines[0] == "a" and sorted(r.lines[1:3]) == ["b", "timer"]
    assert r.lines[3:] == ["stop"]
    assert r.code == 1
    assert r.err.count("runtime error") == 1


@pytest.mark.parametrize(("stmt", "message"), [
    ("print len(5)", "len"),
    ("print upper([1])", "upper"),
    ("let x = 5; print x[0]", "cannot index"),
    ("for i in 5 { print i }", "cannot loop over"),
    ('let s = "abc"; s.foo = 1', "cannot set a field"),
    ('let s = "abc"; s[0] = "x"', "strings cannot be changed"),
    ('print "ab" * "c"', "cannot multiply"),
    ('print -"a"', "cannot negate"),
    ("print [1] < [2]", "cannot compare"),
    ("let m = {}; m[[1]] = 2", "cannot be a map key"),
    ("print null.x", "no fields"),
    ('print 5 in "abc"', "'in'"),
    ("print [1, 2][true]", "must be an int"),
    ("let n = -1; wait n", "wait"),
    ('print int("x")', "int"),
    ("for a, b in [1, 2] { }", "for a, b"),
    ("let a = []; push(a, a); let b = []; push(b, b); print a == b", "recursion"),
])
async def test_runtime_errors_never_show_a_python_traceback(tmp_path: Path, stmt: str,
                                                            message: str) -> None:
    r = await run(tmp_path, f"""
        on project start {{
            {stmt}
            print "not reached"
        }}
        on project start {{ print "goes on" }}
    """)
    assert r.lines == ["goes on"]
    assert r.code == 1
    assert "runtime error" in r.err
    assert message in r.err
    no_traceback(r)


@pytest.mark.parametrize("expr", ["pow(10, 400) * 1.0", "pow(10, 400) + 0.5",
                                  "1.5 - pow(10, 400)", "pow(10, 400) % 1.5"])
async def test_float_overflow_is_a_runtime_error(tmp_path: Path, expr: str) -> None:
    r = await run(tmp_path, f"""
        on project start {{ print {expr} }}
    """)
    assert r.code == 1
    assert "runtime error" in r.err
    no_traceback(r)


# ================================================================ found in review


async def test_for_pairs_over_range_is_a_runtime_error(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { for k, v in range(3) { print k } }
        on project stop { print "went on" }
    """)
    no_traceback(r)
    assert r.lines == ["went on"]
    assert "'for a, b in xs' needs a map or a list of two-item lists, found an int" in r.err
    assert r.code == 1


async def test_for_over_range_takes_whole_floats_as_the_builtin_does(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            for i in range(3.0) { print i }
            print range(1, 3.0)
            for i in range(1, 5, 0) { print i }
        }
    """)
    no_traceback(r)
    assert r.lines == ["0", "1", "2", "[1, 2]"]
    assert "runtime error: range: step must not be 0" in r.err


async def test_a_duration_too_large_for_a_float_means_never(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start {
            let t = after pow(10, 400) { print "must not run" }
            cancel t
            let u = every pow(10, 400) { print "must not run either" }
            cancel u
            print "ok"
        }
    """)
    no_traceback(r)
    assert (r.lines, r.code) == (["ok"], 0)


async def test_exit_in_a_project_variable_initialiser(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func f() { exit 3 }
        let x = f()
        on project start { print "must not run" }
    """)
    no_traceback(r)
    assert (r.lines, r.code) == ([], 3)


async def test_assert_in_a_project_variable_initialiser(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func f() { assert false, "no" }
        let x = f()
    """)
    no_traceback(r)
    assert "assertion failed: no" in r.err
    assert r.code == 1


async def test_exit_in_a_top_level_timer_interval(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        func f() { exit 4 }
        every f() { print "must not run" }
    """)
    no_traceback(r)
    assert (r.lines, r.code) == ([], 4)


async def test_exit_in_scene_stop_runs_it_once(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        scene a { on scene stop { print "a stop"; exit 2 } }
        scene b { on scene start { print "must not start" } }
        on project start { change scene a; change scene b }
    """)
    no_traceback(r)
    assert (r.lines, r.code) == (["a stop"], 2)


async def test_a_timer_started_after_its_scene_ended_never_runs(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        let in_b = false
        scene a {
            let sv = "a"
            on event go {
                while not in_b { wait 5ms }  # scene a has ended
                print "late"
                every 5ms { print "zombie", sv }
            }
        }
        scene b { on scene start { print "b"; in_b = true } }
        on project start { change scene a; after 1ms { change scene b }; emit go }
    """)
    no_traceback(r)
    # the program ends by itself: a zombie timer would keep it alive until the timeout
    assert (sorted(r.lines), r.code) == (["b", "late"], 0)


async def test_for_over_range_with_an_integral_float_is_lazy_too(tmp_path: Path) -> None:
    """Found in review: `range(0, pow(2.0, 60))` went to the built-in, which builds a list:
    "too many elements", while `range(0, pow(2, 60))` walked lazily."""
    r = await run(tmp_path, """
        on project start {
            for i in range(0, pow(2.0, 60)) {
                if i == 2 { print "lazy", i; break }
            }
            for i in range(1.0, 7, 2.0) { print i }
        }
    """)
    no_traceback(r)
    assert (r.lines, r.code) == (["lazy 2", "1", "3", "5"], 0)


async def test_the_arity_message_says_at_least_1_argument(tmp_path: Path) -> None:
    r = await run(tmp_path, """
        on project start { print min() }
    """)
    assert r.code == 3
    assert "min() takes at least 1 argument (min(x, more...)), got 0" in r.err
