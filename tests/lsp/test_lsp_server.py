"""`evt lsp` as an editor meets it: a subprocess spoken to in JSON-RPC over its stdin and
stdout (tests/lsp/lspclient.py), never its Python functions.

A session: initialize, didOpen, didChange with broken and fixed texts (the diagnostics
published for each version, with exact ranges), completion, hover, definition (into an
imported file too), document symbols, shutdown and exit with exit code 0.
"""

from __future__ import annotations

from pathlib import Path

from lsp_texts import LIB, MAIN
from lspclient import Client, position_of, uri

from lang import config
from lang.syntax.keywords import CONSTANTS, KEYWORDS


def _range(sl: int, sc: int, el: int, ec: int) -> dict:
    return {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}


def _labels(result: dict | list) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result
    return [i["label"] for i in items]


def test_initialize_announces_the_features(project: Path) -> None:
    c = Client(cwd=project)
    try:
        result = c.initialize(project)
        caps = result["capabilities"]
        assert result["serverInfo"]["name"] == "evt"
        assert caps["textDocumentSync"]["change"] == 2  # incremental
        assert caps["textDocumentSync"]["openClose"] is True
        for provider in ("completionProvider", "hoverProvider", "definitionProvider",
                         "documentSymbolProvider"):
            assert caps.get(provider) not in (None, False), provider
        assert c.close() == 0
    finally:
        c.kill()


def test_diagnostics_follow_the_edits_with_exact_ranges(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    assert client.diagnostics(main, 1) == []

    # a check error: the range is the unknown name
    broken = MAIN.replace("twice(total)", "twice(totl)")
    client.change(main, 2, broken)
    line, col = position_of(broken, "totl")
    [d] = client.diagnostics(main, 2)
    assert d["range"] == _range(line, col, line, col + 4)
    assert d["message"] == "unknown name 'totl'; did you mean 'total'?"
    assert d["severity"] == 1 and d["source"] == "evt"

    # a syntax error: the range is the token the parser stopped at (the '}' after the call)
    broken = MAIN.replace("upper(msg)", "upper(msg")
    client.change(main, 3, broken)
    [d] = client.diagnostics(main, 3)
    line, col = position_of(broken, "}", nth=broken.count("}") - 1)
    assert d["range"] == _range(line, col, line, col + 1)
    assert d["message"].startswith("expected ')' or ',', found '}'")

    # fixed by an incremental edit: insert the ')' where it was
    line, col = position_of(broken, "upper(msg", offset=len("upper(msg"))
    client.change(main, 4, ")", _range(line, col, line, col))
    assert client.diagnostics(main, 4) == []

    # two problems at once, in source order
    broken = MAIN.replace("start feed", "start fed").replace("change scene lobby",
                                                             "change scene loby")
    client.change(main, 5, broken)
    found = client.diagnostics(main, 5)
    assert [d["message"] for d in found] == [
        "unknown connection or server 'fed'; did you mean 'feed'?",
        "unknown scene 'loby'; did you mean 'lobby'?"]
    line, col = position_of(broken, "fed")
    assert found[0]["range"] == _range(line, col, line, col + 3)
    assert client.close() == 0


def test_columns_are_utf16_units(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    text = MAIN.replace('greet("ana")', 'greet("😀 ana"), totl')
    client.open(main, text, 1)
    [d] = client.diagnostics(main, 1)
    line, col = position_of(text, "totl")
    col += 1  # the emoji before it is one code point, two UTF-16 units
    assert d["range"] == _range(line, col, line, col + 4)
    assert client.close() == 0


def test_columns_in_the_encoding_the_client_chose(project: Path) -> None:
    c = Client(cwd=project)
    try:
        result = c.initialize(project, encodings=["utf-32"])
        assert result["capabilities"]["positionEncoding"] == "utf-32"
        main = uri(project / "main.evt")
        text = MAIN.replace('greet("ana")', 'greet("😀 ana"), totl')
        c.open(main, text, 1)
        [d] = c.diagnostics(main, 1)
        line, col = position_of(text, "totl")  # code points: the emoji counts one
        assert d["range"] == _range(line, col, line, col + 4)
        # an edit after the emoji, in code points too: `totl` becomes `total`
        c.change(main, 2, "a", _range(line, col + 3, line, col + 3))
        assert c.diagnostics(main, 2) == []
        assert c.close() == 0
    finally:
        c.kill()


def test_problems_of_an_imported_file_show_at_the_import(client: Client,
                                                          project: Path) -> None:
    (project / "lib.evt").write_text(LIB.replace('"hi ${who}"', '"hi ${whoo}"'),
                                     encoding="utf-8")
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    [d] = client.diagnostics(main, 1)
    assert d["range"] == _range(0, 7, 0, 16)  # the "lib.evt" of the import
    assert d["message"] == "lib.evt:7:18: unknown name 'whoo'; did you mean 'who'?"
    [related] = d["relatedInformation"]
    assert related["location"] == {"uri": uri(project / "lib.evt"),
                                   "range": _range(6, 17, 6, 21)}

    # the library changed on the disk, as the editor's file watcher tells
    (project / "lib.evt").write_text(LIB.replace('"hi ${who}"', '"hi ${wh}"'),
                                     encoding="utf-8")
    client.notify("workspace/didChangeWatchedFiles", {"changes": [
        {"uri": uri(project / "lib.evt"), "type": 2}]})
    [d] = client.diagnostics(main, 1)
    assert d["message"] == "lib.evt:7:18: unknown name 'wh'; did you mean 'who'?"

    # the library opened and fixed in the editor: main.evt is analysed again with that text
    lib = uri(project / "lib.evt")
    client.open(lib, LIB, 1)
    assert client.diagnostics(lib, 1) == []
    assert client.diagnostics(main, 1) == []
    assert client.close() == 0


def test_completion(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    client.diagnostics(main, 1)

    # an empty line inside a handler: keywords, declared names, built-ins
    text = MAIN.replace("    start feed\n", "    start feed\n    \n")
    client.change(main, 2, text)
    client.diagnostics(main, 2)
    line, _ = position_of(text, "    \n")
    result = client.at("textDocument/completion", main, line, 4)
    labels = _labels(result)
    for word in (*KEYWORDS, *CONSTANTS, "hub", "feed", "total", "twice", "greet", "lobby",
                 "upper", "json_parse", "len"):
        assert word in labels, word
    assert "users" not in labels  # a member of scene lobby: not in view out here
    keywords = {i["label"] for i in result["items"] if i["kind"] == 14}  # Keyword
    assert keywords == set(KEYWORDS) | set(CONSTANTS)  # the grammar's list, no other
    items = {i["label"]: i for i in result["items"]}
    assert items["upper"]["detail"] == "upper(s)"
    assert "upper case" in items["upper"]["documentation"]["value"]
    assert items["twice"]["detail"] == "func twice(x)"
    assert items["feed"]["detail"] == "connection feed"

    # at the start of an entry of a server block: exactly the server keys
    text = MAIN.replace('    listen = "127.0.0.1:0"\n', '    listen = "127.0.0.1:0"\n    ma\n')
    client.change(main, 3, text)
    client.diagnostics(main, 3)
    line, _ = position_of(text, "    ma\n")
    result = client.at("textDocument/completion", main, line, 6)
    assert sorted(_labels(result)) == sorted(config.SERVER_KEYS)
    items = {i["label"]: i for i in result["items"]}
    assert items["max_clients"]["detail"] == "int, default 1024"
    assert "503" in items["max_clients"]["documentation"]["value"]

    # after `change scene`: the scenes
    text = MAIN.replace("change scene lobby", "change scene ")
    client.change(main, 4, text)
    client.diagnostics(main, 4)
    line, col = position_of(text, "change scene ", offset=len("change scene "))
    assert _labels(client.at("textDocument/completion", main, line, col)) == ["lobby"]

    # inside a scene's handler: its variables are in view
    line, col = position_of(text, "users = users", offset=8)
    assert "users" in _labels(client.at("textDocument/completion", main, line, col))

    # nothing inside a comment
    client.change(main, 5, "# a comment\n" + MAIN)
    client.diagnostics(main, 5)
    assert _labels(client.at("textDocument/completion", main, 0, 5)) == []

    # in a cluster block (SPEC §16): its keys; after `on cluster`: error
    text = 'cluster {\n    pr\n}\n' + MAIN + "on cluster \n"
    client.change(main, 6, text)
    client.diagnostics(main, 6)
    result = client.at("textDocument/completion", main, 1, 6)
    assert sorted(_labels(result)) == sorted(config.CLUSTER_KEYS)
    items = {i["label"]: i for i in result["items"]}
    assert items["prefix"]["detail"] == 'string, default "evt"'
    line = text.count("\n") - 1
    assert _labels(client.at("textDocument/completion", main, line, 11)) == ["error"]
    assert client.close() == 0


def test_hover(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    client.diagnostics(main, 1)

    line, col = position_of(MAIN, "upper(msg)", offset=2)
    hover = client.at("textDocument/hover", main, line, col)
    assert hover["contents"]["kind"] == "markdown"
    assert hover["contents"]["value"].startswith("```evt\nupper(s)\n```\n\n")
    assert hover["range"] == _range(line, col - 2, line, col + 3)

    line, col = position_of(MAIN, "listen")
    value = client.at("textDocument/hover", main, line, col)["contents"]["value"]
    assert value.startswith("**listen** (server key): `string`, required")
    assert "port 0 picks a free port" in value

    line, col = position_of(MAIN, "twice(total)")
    value = client.at("textDocument/hover", main, line, col)["contents"]["value"]
    assert value == "```evt\nfunc twice(x) {\n```"

    line, col = position_of(MAIN, "start feed", offset=7)
    value = client.at("textDocument/hover", main, line, col)["contents"]["value"]
    assert value.startswith("```evt\nconnection feed {\n```")
    assert "lib.evt" in value and "line 2" in value

    line, col = position_of(MAIN, "upper(msg)", offset=7)
    value = client.at("textDocument/hover", main, line, col)["contents"]["value"]
    assert value == "```evt\non websocket receive hub as msg from peer {\n```"

    line, col = position_of(MAIN, "    return x", offset=1)  # a space: nothing there
    assert client.at("textDocument/hover", main, line, col) is None
    assert client.close() == 0


def test_definition(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    lib = uri(project / "lib.evt")
    client.open(main, MAIN, 1)
    client.diagnostics(main, 1)

    def jump(needle: str, offset: int = 0, nth: int = 0) -> dict | None:
        line, col = position_of(MAIN, needle, offset, nth)
        return client.at("textDocument/definition", main, line, col)

    def at(text: str, needle: str, length: int, offset: int = 0) -> dict:
        line, col = position_of(text, needle, offset)
        return _range(line, col, line, col + length)

    assert jump("twice(total)") == {"uri": main, "range": at(MAIN, "twice(x)", 5)}
    assert jump("total)") == {"uri": main, "range": at(MAIN, "total = 0", 5)}
    assert jump("lobby", nth=1) == {"uri": main, "range": at(MAIN, "lobby {", 5)}
    assert jump("users + 1") == {"uri": main, "range": at(MAIN, "users = 0", 5)}
    assert jump("msg)") == {"uri": main, "range": at(MAIN, "msg from", 3)}
    assert jump("peer upper") == {"uri": main, "range": at(MAIN, "peer {", 4)}
    assert jump("hub as") == {"uri": main, "range": at(MAIN, "hub {", 3)}
    assert jump("x * 2") == {"uri": main, "range": at(MAIN, "x) {", 1)}
    # into the imported file
    assert jump("start feed", 6) == {"uri": lib, "range": at(LIB, "feed {", 4)}
    assert jump("greet(") == {"uri": lib, "range": at(LIB, "greet(who)", 5)}
    # the import itself
    assert jump('"lib.evt"', 3) == {"uri": lib, "range": _range(0, 0, 0, 0)}
    # a built-in and a keyword have no declaration
    assert jump("upper(") is None
    assert jump("print") is None
    assert client.close() == 0


def test_document_symbols(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    client.diagnostics(main, 1)
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": main}})
    shown = [(s["name"], s["kind"], s["range"]["start"]["line"], s["range"]["end"]["line"])
             for s in symbols]
    assert shown == [
        ('import "lib.evt"', 1, 0, 0),  # File
        ("hub", 23, 2, 4),  # Struct
        ("total", 13, 6, 6),  # Variable
        ("twice", 12, 8, 10),  # Function
        ("lobby", 3, 12, 17),  # Namespace
        ("on project start", 24, 19, 23),  # Event
        ("on websocket receive hub", 24, 25, 27),
    ]
    lobby = symbols[4]
    assert [(s["name"], s["kind"]) for s in lobby["children"]] == [
        ("users", 13), ("on scene start", 24)]
    line, col = position_of(MAIN, "lobby")
    assert lobby["selectionRange"] == _range(line, col, line, col + 5)
    assert symbols[6]["detail"] == "as msg from peer"
    assert client.close() == 0


def test_navigation_goes_on_while_a_line_is_half_typed(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    client.diagnostics(main, 1)
    text = MAIN.replace("    start feed\n", "    start feed\n    send hub {\n")
    client.change(main, 2, text)
    assert len(client.diagnostics(main, 2)) == 1  # the syntax error
    line, col = position_of(text, "twice(total)")
    assert client.at("textDocument/definition", main, line, col)["uri"] == main
    labels = _labels(client.at("textDocument/completion", main, line, col))
    assert "twice" in labels and "greet" in labels  # greet: from the imported file
    line, col = position_of(text, "greet(")
    assert client.at("textDocument/definition", main, line, col)["uri"] == \
        uri(project / "lib.evt")
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": main}})
    assert "twice" in [s["name"] for s in symbols]
    assert client.close() == 0


def test_close_clears_the_diagnostics(client: Client, project: Path) -> None:
    main = uri(project / "main.evt")
    client.open(main, "let x = y\n", 1)
    assert len(client.diagnostics(main, 1)) == 1
    client.notify("textDocument/didClose", {"textDocument": {"uri": main}})
    assert client.diagnostics(main) == []
    assert client.close() == 0


def test_a_document_that_is_not_a_file(client: Client) -> None:
    doc = "untitled:Untitled-1"
    client.open(doc, "let x = y\n", 1)
    [d] = client.diagnostics(doc, 1)
    assert d["range"] == _range(0, 8, 0, 9)
    assert client.at("textDocument/hover", doc, 0, 4)["contents"]["value"] == \
        "```evt\nlet x = y\n```"
    assert client.close() == 0


def test_exit_without_shutdown_is_exit_code_1(project: Path) -> None:
    c = Client(cwd=project)
    try:
        c.initialize(project)
        c.notify("exit")
        assert c.proc.wait(timeout=30) == 1
    finally:
        c.kill()


def test_exit_ends_the_server_while_stdin_stays_open(project: Path) -> None:
    # the client does not close the server's stdin after `exit`: the server ends anyway
    c = Client(cwd=project)
    try:
        c.initialize(project)
        c.request("shutdown")
        c.notify("exit")
        assert c.proc.wait(timeout=30) == 0
    finally:
        c.kill()


def test_end_of_input_ends_the_server(project: Path) -> None:
    c = Client(cwd=project)
    try:
        c.initialize(project)
        assert c.proc.stdin is not None
        c.proc.stdin.close()  # the editor went away without shutdown: exit code 1
        assert c.proc.wait(timeout=30) == 1
    finally:
        c.kill()


def test_a_message_that_is_not_json_is_skipped(client: Client, project: Path) -> None:
    assert client.proc.stdin is not None
    client.proc.stdin.write(b"Content-Length: 9\r\n\r\n{not json")
    client.proc.stdin.flush()
    main = uri(project / "main.evt")
    client.open(main, MAIN, 1)
    assert client.diagnostics(main, 1) == []
    assert client.close() == 0
