"""evt: an event-scripting language and its interpreter for WebSocket work.

The layers, lowest first; a module imports only from its own layer and those below it
(tests/test_layers.py checks this, with imports inside functions, and that there is no
import cycle, no module over 600 lines, and no import of another module's `_name`: an
underscore means "this module only"):

- lang.ast, lang.errors, lang.limits: the syntax tree, diagnostics, the language's limits.
  Below everything.
- lang.values, lang.ops, lang.config: evt values, operators, the keys of connection and
  server blocks.
- lang.wire: the WebSocket protocol over anyio byte streams (wsproto, sans-IO, with our I/O
  glue): frames, the connection, keep-alive, the client and server handshakes. It imports
  nothing of evt. (lang.wire.codes, the close codes, has no imports at all: the checker
  reads it too.)
- lang.syntax: the grammar, the LALR driver, syntax errors in words, the transformer to
  the AST, the loader of imports. Reentrant: threads may parse at once (the tables are
  shared and read-only; each thread has its own transformer).
- lang.check: the static checks.
- lang.runtime: invocations, sources, timers, standard I/O, and the Protocols naming what
  the lower layers need from the running program.
- lang.compile: the closure compiler (uses lang.runtime).
- lang.endpoints: connections, servers and their peers at run time (uses lang.compile,
  lang.runtime, lang.wire).
- lang.interpreter: the Runtime, which assembles all of the above.
- lang.api: the one pipeline (load, parse, check, compile, run) that lang.cli, lang.repl
  and the tests call; the version and the choice of event loop.
- lang.cli, lang.repl, lang.highlight: the front ends.

stdlib (the built-ins by family, registered in stdlib.registry) sits beside lang.values.
"""
