"""The two files of the project the LSP tests open: main.evt imports lib.evt."""

LIB = """\
# lib.evt: pieces that main.evt imports
connection feed {
    url = "ws://127.0.0.1:9/"
}

func greet(who) {
    return "hi ${who}"
}
"""

MAIN = """\
import "lib.evt"

server hub {
    listen = "127.0.0.1:0"
}

let total = 0

func twice(x) {
    return x * 2
}

scene lobby {
    let users = 0
    on scene start {
        users = users + 1
    }
}

on project start {
    start feed
    print greet("ana"), twice(total)
    change scene lobby
}

on websocket receive hub as msg from peer {
    send peer upper(msg)
}
"""
