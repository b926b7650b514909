"""`evt codegen` (SPEC §14): the evt script a person would have written to do what `evt replay`
does with a recording: a mock server (`serve`) or a regression test (`client`). Named after
the paths, commented step by step (`# message N`, N counting a conversation's messages from 1
in both directions), and it passes `evt check`. No I/O here: `generate` returns the text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from urllib.parse import parse_qsl, urlsplit

import stdlib
from lang.recording.model import BINARY, CLOSE, RECEIVE, SEND, TEXT, Conversation, Message
from lang.syntax.keywords import CONSTANTS, KEYWORDS
from lang.wire.codes import valid_close_code

LONG = 60  # a literal longer than this is named (a `let` at the end), so each step stays short
SHOWN = 50  # characters of a value a failure message shows
WITHIN = "10s"  # how long the client waits for its connection, each reply and a close
LISTEN = "127.0.0.1:8765"
MiB = 1024 * 1024

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a map key that needs no quotes (not a keyword)
Numbered = list[tuple[int, Message]]  # messages with their numbers in the conversation

_ESCAPES = {"\\": "\\\\", "$": "\\$", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_BYTE_ESCAPES = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r"}


def _char(ch: str) -> str:
    """A character as it stands in an evt string: itself when printable, else an escape."""
    if ch in _ESCAPES or ch.isprintable():
        return _ESCAPES.get(ch, ch)
    if 0xD800 <= ord(ch) <= 0xDFFF:
        return "\\u{fffd}"  # a lone surrogate (JSON's "\ud800") has no UTF-8: as it is sent
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{{{ord(ch):x}}}"


def quote(text: str) -> str:
    """An evt string literal of `text`: `\\` and `$` escaped (`${` would interpolate), and
    every character that is not printable as `\\n`, `\\xHH` or `\\u{H..}`. In `'...'` when
    the text has `"` but no `'` (JSON reads better so), else in `"..."`."""
    mark = "'" if '"' in text and "'" not in text else '"'
    return mark + "".join("\\" + ch if ch == mark else _char(ch) for ch in text) + mark


def quote_bytes(data: bytes) -> str:
    """An evt bytes literal: printable ASCII as it is, the rest as escapes."""
    return 'b"' + "".join(_BYTE_ESCAPES.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
                          for b in data) + '"'


def literal(msg: Message) -> str:
    """The evt literal of a data message: a string for text, bytes for binary."""
    return quote_bytes(msg.data) if isinstance(msg.data, bytes) else quote(msg.data)


def _shown(msg: Message) -> str:
    """A value as a failure message shows it: bytes as `b"..."`, text in double quotes with
    its unprintable characters escaped; cut at SHOWN characters."""
    if isinstance(msg.data, bytes):
        text = quote_bytes(msg.data)
    else:
        text = '"' + "".join(c if c in "\\$" else _char(c) for c in msg.data) + '"'
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


def _close_words(msg: Message) -> str:
    """`4000 "done"`: a close frame's code and reason, as comments and failures say them."""
    reason = f" {quote(msg.close_reason)}" if msg.close_reason else ""
    return "no code" if msg.close_code is None else f"{msg.close_code}{reason}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _printable(text: str) -> str:
    """Text for a comment: what is not printable (a line break) as `?`."""
    return "".join(c if c.isprintable() else "?" for c in text)


class Names:
    """Valid evt names that are no keyword, built-in or name already given."""

    def __init__(self, *taken: str) -> None:
        self.taken = set(KEYWORDS) | set(CONSTANTS) | set(stdlib.load()) | {"args", *taken}

    def give(self, wanted: str, fallback: str) -> str:
        name = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                       for c in wanted.lower()).strip("_")
        if not name or name[0].isdigit() or name in self.taken or re.fullmatch(r"m\d+", name):
            name = fallback  # m1, m2 ... are the client's replies
        base, n = name, 2
        while name in self.taken:
            name, n = f"{base}_{n}", n + 1
        self.taken.add(name)
        return name


@dataclass
class Plan:
    """One conversation, prepared: its name, its numbered data messages up to the first close
    frame, and that close frame (the end of the conversation: nothing after it is replayed)."""

    number: int
    conv: Conversation
    name: str
    steps: Numbered = field(default_factory=list)
    close: tuple[int, Message] | None = None
    closed_by_server: bool = False

    def turns(self) -> tuple[Numbered, list[tuple[int, Message, Numbered]]]:
        """The greeting (the server messages before the first client message), then each
        client message with the server messages after it up to the next client message."""
        greeting: Numbered = []
        turns: list[tuple[int, Message, Numbered]] = []
        for n, msg in self.steps:
            if msg.type == SEND:
                turns.append((n, msg, []))
            else:
                (turns[-1][2] if turns else greeting).append((n, msg))
        return greeting, turns


def _plans(conversations: list[Conversation], names: Names) -> list[Plan]:
    plans = []
    for i, conv in enumerate(conversations, 1):
        segments = [s for s in conv.path.partition("?")[0].split("/") if s]
        plan = Plan(i, conv, names.give(segments[-1] if segments else "", f"conn{i}"))
        for n, msg in enumerate(conv.messages, 1):
            if msg.opcode == CLOSE:
                plan.close, plan.closed_by_server = (n, msg), msg.type == RECEIVE
                break
            if msg.opcode in (TEXT, BINARY):
                plan.steps.append((n, msg))
        plans.append(plan)
    return plans


class Script:
    """The lines of the script being written, and the long values named at its end."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self.lines: list[str] = []
        self.values: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def value(self, plan: Plan, n: int, msg: Message) -> str:
        """A message's value in the code: its literal, or for a long one a name for it."""
        text = literal(msg)
        if len(text) <= LONG:
            return text
        name = self.names.give(f"{plan.name}_message_{n}", f"message_{plan.number}_{n}")
        unit = "bytes" if isinstance(msg.data, bytes) else "characters"
        self.values.append(f"let {name} = {text}  # {len(msg.data):,} {unit}")
        return name

    def text(self) -> str:
        if self.values:
            self.add("", "# ---- the longer messages, named to keep the steps short", "",
                     *self.values)
        return "\n".join(self.lines) + "\n"

    def header(self, title: str, plans: list[Plan], source: str, about: list[str]) -> None:
        count = _count(sum(len(p.conv.messages) for p in plans), "message")
        self.add(f"# {title}: generated by evt codegen from {source} ("
                 f"{_count(len(plans), 'conversation')}, {count})", *(f"# {line}" for line in about))
        for p in plans:
            who = "server" if p.closed_by_server else "client"
            end = f", the {who} closes with {_close_words(p.close[1])}" if p.close else ""
            self.add(f"#   {p.number}. {p.name}: {_printable(p.conv.url)} "
                     f"({_count(len(p.conv.messages), 'message')}{end})")
        self.add("")


def _options(plans: list[Plan], protocols: list[str]) -> list[str]:
    """The keys beyond the address: the subprotocols, a larger max_message where needed."""
    keys = []
    if protocols:
        keys.append(f"    subprotocols = [{', '.join(quote(s) for s in protocols)}]")
    if (largest := max((len(m.data) for p in plans for _, m in p.steps), default=0)) > MiB:
        keys.append(f"    max_message = {math.ceil(largest / MiB)}MiB")
    return keys


# ---------------------------------------------------------------- serve: a mock server


def _serve(plans: list[Plan], stem: str, source: str, names: Names) -> str:
    script, title = Script(names), f"{stem}_mock.evt"
    firsts: dict[str, Plan] = {}
    live = [firsts.setdefault(p.conv.path, p) for p in plans if p.conv.path not in firsts]
    left_out = ", ".join(str(p.number) for p in plans if p not in live)
    script.header(title, plans, source, [
        "A mock server that plays the server's side of the recording. A client that connects",
        "plays the conversation of the same path and query, else of the same path, else the",
        "first. It gets the server's recorded greeting at once; then each message it sends",
        "that equals (same type, same value) a recorded client message of its conversation",
        "not matched yet (the next, or a later one: those between are skipped, as `evt",
        "replay` does) gets the server messages recorded after that one, at once. Any other",
        'message is printed ("unexpected message from peer N: ...") and gets no answer.',
        *([f"Left out: conversation {left_out} (an earlier one has the same path and query)."]
          if left_out else []),
        *(["Recorded over wss://: this server speaks ws:// (set certfile and keyfile for wss)."]
          if any(p.conv.url.startswith("wss:") for p in live) else []),
        f"Run: evt run [--set listen=HOST:PORT] {title}   (default {LISTEN})",
        "Conversations:"])
    server = names.give("mock", "mock")
    protocols = list(dict.fromkeys(p.conv.subprotocol for p in live if p.conv.subprotocol))
    script.add(f"let listen = {quote(LISTEN)}", "", f"server {server} {{",
               "    listen = listen", *_options(live, protocols), "}", "",
               f"on project start {{ start {server} }}", "",
               f"on websocket start {server} from p {{")
    several = len(live) > 1
    if several:
        script.add("    p.conversation = conversation_of(p)")
    script.add("    p.step = 0  # the turns of its conversation it is past")
    for p in live:
        greeting, turns = p.turns()
        if not greeting and (turns or not p.closed_by_server):
            continue
        if several:
            script.add(f"    if p.conversation == {p.number} {{  # {p.name}: the greeting")
        _replies(script, p, greeting, "        " if several else "    ", not turns)
        if several:
            script.add("    }")
    script.add("}", "", f"on websocket receive {server} as m from p {{")
    answering = [p for p in live if p.turns()[1]]  # those with client messages
    if answering:
        script.add("    # each func answers a message of its conversation and says if it matched")
    for p in answering:
        test = f"p.conversation == {p.number} and " if several else ""
        script.add(f"    if {test}{p.name}(p, m) {{ return }}")
    script.add('    print "unexpected message from peer ${p.id}: ${m}"', "}")
    if several:
        _choose(script, live)
    for p in answering:
        _serve_func(script, p)
    return script.text()


def _replies(script: Script, plan: Plan, replies: Numbered, indent: str, last: bool) -> None:
    """`send p ...` for each recorded server message; after the last turn, the server's
    recorded close as `close p ...`."""
    for n, msg in replies:
        script.add(f"{indent}send p {script.value(plan, n, msg)}  # message {n}")
    if not last or not plan.closed_by_server or plan.close is None:
        return
    n, msg = plan.close
    code, reason = msg.close_code, f", {quote(msg.close_reason)}" if msg.close_reason else ""
    if code is None:
        script.add(f"{indent}close p  # message {n}: a close without a code (evt sends 1000)")
    elif not valid_close_code(code):
        script.add(f"{indent}close p 1000{reason}  # message {n}: recorded {code}, a code a "
                   "script cannot send")
    else:
        script.add(f"{indent}close p {code}{reason}  # message {n}")


def _choose(script: Script, live: list[Plan]) -> None:
    script.add("", "# the conversation a client plays: the one of the same path and query, else of",
               "# the same path, else the first", "func conversation_of(p) {")
    paths = {p.number: p.conv.path.partition("?")[0] for p in live}
    for p in live:
        query = parse_qsl(urlsplit(p.conv.url).query, keep_blank_values=True)
        pairs = ", ".join(f"{k if _BARE.fullmatch(k) and k not in KEYWORDS + CONSTANTS else quote(k)}: "
                          f"{quote(v)}" for k, v in dict(query).items())
        script.add(f"    if p.path == {quote(paths[p.number])} and p.query == {{{pairs}}} {{ "
                   f"return {p.number} }}")
    for path in dict.fromkeys(paths.values()):
        first = next(n for n, other in paths.items() if other == path)
        script.add(f"    if p.path == {quote(path)} {{ return {first} }}")
    script.add(f"    return {live[0].number}", "}")


def _serve_func(script: Script, plan: Plan) -> None:
    _, turns = plan.turns()
    script.add("", f"# conversation {plan.number}: {_printable(plan.conv.url)}: a message answers"
               " the first", "# turn, at p.step or later, whose recorded message it equals",
               f"func {plan.name}(p, m) {{")
    for step, (n, msg, replies) in enumerate(turns):
        script.add(f"    # message {n}",
                   f"    if p.step <= {step} and m == {script.value(plan, n, msg)} {{",
                   f"        p.step = {step + 1}")
        _replies(script, plan, replies, "        ", step == len(turns) - 1)
        script.add("        return true", "    }")
    script.add("    return false", "}")


# ---------------------------------------------------------------- client: a regression test


def _client(plans: list[Plan], stem: str, source: str, names: Names) -> str:
    script, title = Script(names), f"{stem}_test.evt"
    origins = list(dict.fromkeys(
        urlsplit(p.conv.url)._replace(path="", query="", fragment="").geturl() for p in plans))
    if len(plans) == 1:
        urls, lets = {plans[0].name: "url"}, [("url", plans[0].conv.url)]
        run = f"evt run [--set url=ws://HOST:PORT/PATH] {title}"
    elif len(origins) == 1:
        urls = {p.name: (q := quote(p.conv.path))[0] + "${base}" + q[1:] for p in plans}
        lets = [("base", origins[0])]
        run = f"evt run [--set base=ws://HOST:PORT] {title}"
    else:
        urls = {p.name: names.give(f"{p.name}_url", f"url{p.number}") for p in plans}
        lets = [(urls[p.name], p.conv.url) for p in plans]
        some = f" [--set {lets[0][0]}=ws://HOST:PORT/PATH ...]" if lets else ""
        run = f"evt run{some} {title}"
    script.header(title, plans, source, [
        "A regression test: plays the client's side of the recording against a server and",
        "checks each server message (exact match: same type, same value), one conversation",
        "after the other (a func each when there are several). At the first difference it",
        'prints "message N: expected ..., got ..." and exits 1; when every message matched it',
        "exits 0 (`evt test` runs it too).",
        f"Run: {run}", "Conversations:"])
    script.add(*(f"let {name} = {quote(url)}" for name, url in lets), "")
    closed: dict[str, str] = {}
    for p in plans:  # offered as recorded, else the one the server chose
        protocols = [s.strip() for k, v in p.conv.request_headers
                     if k.lower() == "sec-websocket-protocol" for s in v.split(",") if s.strip()]
        protocols = protocols or ([p.conv.subprotocol] if p.conv.subprotocol else [])
        script.add(f"connection {p.name} {{", f"    url = {urls[p.name]}",
                   *_options([p], protocols), "}", "")
        if p.closed_by_server:
            closed[p.name] = names.give(f"{p.name}_closed", f"closed{p.number}")
            script.add(f"let {closed[p.name]} = null  # {{code, reason, clean}} once it closed",
                       f"on websocket stop {p.name} as info {{ {closed[p.name]} = info }}", "")
        script.add(f"on websocket error {p.name} as e {{", "    print e", "    exit 1", "}", "")
    if len(plans) == 1:  # the steps in the handler; else a func per conversation
        script.add("on project start {")
        _client_steps(script, plans[0], closed.get(plans[0].name), "")
        script.add("    exit 0", "}")
        return script.text()
    funcs = [names.give(f"play_{p.name}", f"play{p.number}") for p in plans]
    script.add("on project start {", *(f"    {f}()" for f in funcs), "    exit 0", "}")
    for f, p in zip(funcs, plans, strict=True):
        script.add("", f"func {f}() {{")
        _client_steps(script, p, closed.get(p.name), f"{p.name}: ")
        script.add("}")
    return script.text()


def _fail(script: Script, words: str) -> None:
    """The end of an `else {` block that reports a difference."""
    script.add(f"        print {quote(words)}", "        exit 1", "    }")


def _client_steps(script: Script, plan: Plan, closed: str | None, label: str) -> None:
    name = plan.name
    script.add(f"    # ---- conversation {plan.number}: {_printable(plan.conv.url)}",
               f"    start {name}",
               f"    wait until connected({name}) within {WITHIN} else {{")
    _fail(script, f"{label}no connection within {WITHIN}")
    for n, msg in plan.steps:
        value = script.value(plan, n, msg)
        if msg.type == SEND:
            script.add(f"    # message {n}: to the server", f"    send {name} {value}")
            continue
        script.add(f"    # message {n}: from the server",
                   f"    expect {name} as m{n} where m{n} == {value} within {WITHIN} else {{")
        _fail(script, f"{label}message {n}: expected {_shown(msg)}, got nothing")
    if plan.close is None:
        script.add(f"    stop {name}  # the recording ends without a close: close with 1000")
        return
    n, msg = plan.close
    code, words = msg.close_code, _close_words(msg)
    if closed is None:  # the client closes
        args = f" {code}" + (f", {quote(msg.close_reason)}" if msg.close_reason else "") \
            if code and valid_close_code(code) else ""
        script.add(f"    # message {n}: the client closes with {words}", f"    close {name}{args}")
        return
    expected = code if code is not None else 1005  # how a close without a code reads
    script.add(f"    # message {n}: the server closes with {words}",
               f"    wait until {closed} != null within {WITHIN} else {{")
    _fail(script, f"{label}message {n}: expected close {words}, got nothing")
    q = quote(f"{label}message {n}: expected close {words}, got close ")
    script.add(f"    if {closed}.code != {expected} {{",
               f"        print {q[:-1]}${{{closed}.code}}{q[-1]}", "        exit 1", "    }")


# ---------------------------------------------------------------- the entry point


def generate(conversations: list[Conversation], mode: str, source: str) -> str:
    """The evt script for `evt codegen`: mode "serve" (a mock server) or "client" (a
    regression test) of the recorded conversations; `source` is the HAR file's name."""
    if mode not in ("serve", "client"):
        raise ValueError(f"codegen mode must be 'serve' or 'client', not {mode!r}")
    source = _printable(PurePath(source).name) or "recording.har"
    stem = re.sub(r"[^\w.-]", "_", PurePath(source).stem, flags=re.ASCII) or "recording"
    names = Names("url", "base", "listen", "conversation_of", "m", "p", "e", "info")
    plans = _plans(conversations, names)
    return (_serve if mode == "serve" else _client)(plans, stem, source, names)
