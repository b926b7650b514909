"""SPEC §18's built-ins: copy, url_encode, url_decode, query_string, parse_url, called
directly and (for what only a script shows: evt values, error positions) through run_evt."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from helpers import run_evt
from hypothesis import given
from hypothesis import strategies as st

import stdlib
from lang.errors import EvtRuntimeError

R = stdlib.load()  # every family (importing only some would leave the registry partial)


def call(name: str, *args: Any) -> Any:
    return R[name].fn(*args)


def fails(name: str, *args: Any) -> str:
    with pytest.raises(EvtRuntimeError) as info:
        call(name, *args)
    return info.value.message


# ---------------------------------------------------------------- copy


def test_copy_is_deep_for_lists_and_maps() -> None:
    inner = {"k": [1, 2]}
    v = [inner, [3, [4]], "s"]
    c = call("copy", v)
    assert c == v
    assert c is not v and c[0] is not inner and c[0]["k"] is not inner["k"]
    assert c[1][1] is not v[1][1]
    c[0]["k"].append(9)
    assert inner == {"k": [1, 2]}


def test_copy_gives_other_values_as_they_are() -> None:
    b = b"\x00"
    for v in (None, True, 3, 2.5, "s", b):
        assert call("copy", v) is v
    peer = object()  # a peer, a connection, a timer: a handle, not copied
    assert call("copy", [peer])[0] is peer


def test_copy_keeps_sharing_and_cycles() -> None:
    shared = [1]
    v: list = [shared, shared]
    v.append(v)
    c = call("copy", v)
    assert c[0] is c[1] and c[0] is not shared
    assert c[2] is c


def test_copy_of_a_value_nested_deeper_than_the_stack() -> None:
    v: list = []
    for _ in range(200_000):
        v = [v]
    c = call("copy", v)
    depth = 0
    while c:
        c = c[0]
        depth += 1
    assert depth == 200_000


def test_copy_keeps_map_order_and_keys() -> None:
    v = {"b": 1, 2: [], "a": {}}
    c = call("copy", v)
    assert list(c) == ["b", 2, "a"] and c == v


# ---------------------------------------------------------------- url_encode / url_decode


def test_url_encode_is_quote_with_nothing_safe() -> None:
    assert call("url_encode", "a b+c/é~-._?&=") == "a%20b%2Bc%2F%C3%A9~-._%3F%26%3D"
    assert call("url_encode", "") == ""
    assert call("url_encode", b"\x00\xff ") == "%00%FF%20"


def test_url_decode_keeps_plus_and_stray_percents() -> None:
    assert call("url_decode", "a%20b+c%2F%C3%A9") == "a b+c/é"
    assert call("url_decode", "100%") == "100%"
    assert call("url_decode", "%zz%4") == "%zz%4"
    assert call("url_decode", "%FF") == "\ufffd"  # not UTF-8: replaced


@given(st.text())
def test_url_decode_undoes_url_encode(s: str) -> None:
    encoded = call("url_encode", s)
    assert encoded == quote(s, safe="")
    assert call("url_decode", encoded) == s == unquote(encoded)


def test_url_functions_refuse_other_types() -> None:
    assert fails("url_encode", 1) == "url_encode: argument 1 (s) must be a string or bytes, got int"
    assert fails("url_decode", b"x") == "url_decode: argument 1 (s) must be a string, got bytes"
    assert "lone surrogate" in fails("url_encode", "\ud800")


# ---------------------------------------------------------------- query_string


def test_query_string_in_map_order_with_values_as_str_shows_them() -> None:
    m = {"a": 1, "b": "x y", "c": True, "d": None, "e": 2.5, "f": [1, "two"], "g": {"k": 1}}
    assert call("query_string", m) == (
        "a=1&b=x%20y&c=true&d=null&e=2.5&f=1&f=two&g=%7B%22k%22%3A%201%7D")


def test_query_string_edge_cases() -> None:
    assert call("query_string", {}) == ""
    assert call("query_string", {"a": []}) == ""  # an empty list: no pair
    assert call("query_string", {"a b&": "=&+"}) == "a%20b%26=%3D%26%2B"
    assert call("query_string", {1: 2}) == "1=2"
    assert call("query_string", {"b": b"\x00\xff"}) == "b=%00%FF"  # bytes: their own bytes
    assert call("query_string", {"n": [[1, 2]]}) == "n=%5B1%2C%202%5D"


def test_query_string_needs_a_map() -> None:
    assert fails("query_string", [1]) == (
        "query_string: argument 1 (m) must be a map, got list")


# ---------------------------------------------------------------- parse_url


def test_parse_url_parts_and_default_ports() -> None:
    assert call("parse_url", "ws://Example.COM:8765/chat/room?x=1") == {
        "scheme": "ws", "host": "example.com", "port": 8765, "path": "/chat/room",
        "query": {"x": "1"}}
    for url, port in [("ws://h", 80), ("wss://h", 443), ("http://h", 80), ("https://h", 443),
                      ("WSS://h/", 443), ("ftp://h/x", None), ("redis://h:6379", 6379)]:
        parts = call("parse_url", url)
        assert parts["port"] == port, url
        assert parts["path"] in ("/", "/x")
    assert list(call("parse_url", "ws://h")) == ["scheme", "host", "port", "path", "query"]


def test_parse_url_query_is_decoded_and_repeated_keys_give_a_list() -> None:
    q = call("parse_url", "ws://h/?a=1&b=x%20y&a=2&c&d=&e=a+b&a=3&f=%C3%A9#frag")["query"]
    assert q == {"a": ["1", "2", "3"], "b": "x y", "c": "", "d": "", "e": "a b", "f": "é"}
    assert call("parse_url", "ws://h/?")["query"] == {}
    # query_string and parse_url undo each other
    m = {"a": ["1", "2"], "b": "x y+z", "c": "é&="}
    assert call("parse_url", "ws://h/?" + call("query_string", m))["query"] == m


def test_parse_url_hosts() -> None:
    assert call("parse_url", "ws://[::1]:9000/")["host"] == "[::1]"  # as address() shows it
    assert call("parse_url", "wss://user:pw@Host.example/")["host"] == "host.example"
    assert call("parse_url", "ws://127.0.0.1/p%20q")["path"] == "/p%20q"  # not decoded


@pytest.mark.parametrize("url, words", [
    ("not a url", "is not a URL: it needs a scheme and a host"),
    ("localhost:8080", "is not a URL: it needs a scheme and a host"),
    ("ws:///path", "is not a URL: it needs a scheme and a host"),
    ("", "is not a URL: it needs a scheme and a host"),
    ("ws://h:abc/", "has a port that is not a number from 0 to 65535"),
    ("ws://h:70000/", "has a port that is not a number from 0 to 65535"),
    ("http://[::1/", "is not a URL (Invalid IPv6 URL)"),
])
def test_parse_url_bad_input_is_a_clear_error(url: str, words: str) -> None:
    message = fails("parse_url", url)
    assert message.startswith("parse_url: ") and words in message


def test_parse_url_needs_a_string() -> None:
    assert fails("parse_url", None) == "parse_url: argument 1 (s) must be a string, got null"


# ---------------------------------------------------------------- through a script


@pytest.mark.anyio
async def test_the_built_ins_in_a_script(tmp_path: Path) -> None:
    r = await run_evt("""
        let a = {xs: [1, 2], n: 1}
        on project start {
            let b = copy(a)
            push(b.xs, 3)
            b.n = 2
            print a, b
            print url_encode("a b/ü"), url_decode("a%20b%2F%C3%BC")
            print query_string({q: "evt lang", page: 2, tag: ["a", "b"]})
            let u = parse_url("wss://example.com/feed?token=x%2By&v=1&v=2")
            print u.scheme, u.host, u.port, u.path, u.query.token, u.query.v
            print type(u.port), type(parse_url("ftp://h").port)
        }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == [
        '{"xs": [1, 2], "n": 1} {"xs": [1, 2, 3], "n": 2}',
        "a%20b%2F%C3%BC a b/ü",
        "q=evt%20lang&page=2&tag=a&tag=b",
        'wss example.com 443 /feed x+y ["1", "2"]',
        "int null",
    ]


@pytest.mark.anyio
async def test_a_bad_url_is_a_runtime_error_at_the_call_and_the_program_goes_on(
        tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            let u = parse_url("nowhere")
            print "not reached"
        }
        on project start {
            print "goes on"
        }
    """, tmp_path=tmp_path)
    assert r.code == 1
    assert r.lines == ["goes on"]
    assert 'test.evt:3:13: runtime error: parse_url: "nowhere" is not a URL' in r.err
    assert "Traceback" not in r.err


@pytest.mark.anyio
async def test_wrong_arity_is_a_check_error(tmp_path: Path) -> None:
    r = await run_evt("""
        on project start {
            print copy()
            print query_string({}, 1)
        }
    """, tmp_path=tmp_path)
    assert r.code == 3
    assert "copy() takes 1 argument (copy(v)), got 0" in r.err
    assert "query_string() takes 1 argument (query_string(m)), got 2" in r.err
