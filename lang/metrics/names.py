"""The built-in metrics' names, kinds and units, and the stats: the table of SPEC §12,
shared by the registry and the checker (which must not import the registry's sketch
library: `evt check` starts fast)."""

from __future__ import annotations

# name -> (kind, unit, what): SPEC §12's table, in its order
BUILTIN: dict[str, tuple[str, str, str]] = {
    "ws_sessions": ("counter", "", "connections whose handshake completed"),
    "ws_connecting": ("trend", "s", "TCP + TLS + handshake time of a client connection"),
    "ws_session_duration": ("trend", "s", "from handshake to close"),
    "ws_msgs_sent": ("counter", "", "whole messages sent"),
    "ws_msgs_received": ("counter", "", "whole messages received"),
    "data_sent": ("counter", "B", "message payload bytes sent"),
    "data_received": ("counter", "B", "message payload bytes received"),
    "ws_ping": ("trend", "s", "ping to pong round trip"),
    "ws_expect_duration": ("trend", "s", "from the latest send (or the handler's start) to "
                                         "the message `expect` matched"),
    "ws_errors": ("counter", "", "error events"),
}
COUNTER_STATS = ("count", "rate")
TREND_STATS = ("count", "rate", "avg", "min", "med", "max", "p90", "p95", "p99")
QUANTILES = {"med": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
# the Tally attribute of each built-in counter
TALLY = {"ws_sessions": "sessions", "ws_msgs_sent": "msgs_sent",
         "ws_msgs_received": "msgs_received", "data_sent": "data_sent",
         "data_received": "data_received", "ws_errors": "errors"}
