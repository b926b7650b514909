"""A server's rooms (SPEC §16): named sets of its peers, for `broadcast ... to ROOM`.
Membership is this process's; the cluster (lang.interpreter.cluster) is told when a room
gains its first member here and loses its last, so that this process reads a room's channel
only while it has a member in it."""

from __future__ import annotations

from typing import Any


class Rooms:
    """Peers by room and rooms by peer, both in the order of joining."""

    __slots__ = ("by_peer", "members")

    def __init__(self) -> None:
        self.members: dict[str, dict[Any, None]] = {}
        self.by_peer: dict[Any, dict[str, None]] = {}

    def join(self, peer: Any, room: str) -> bool:
        """Add the peer; True when the room had no member here before."""
        members = self.members.get(room)
        first = members is None
        if members is None:
            members = self.members[room] = {}
        members[peer] = None
        self.by_peer.setdefault(peer, {})[room] = None
        return first

    def leave(self, peer: Any, room: str) -> bool:
        """Remove the peer; True when that emptied the room here."""
        rooms = self.by_peer.get(peer)
        if rooms is None or room not in rooms:
            return False
        del rooms[room]
        if not rooms:
            del self.by_peer[peer]
        members = self.members[room]
        del members[peer]
        if not members:
            del self.members[room]
            return True
        return False

    def leave_all(self, peer: Any) -> list[str]:
        """The peer leaves every room (it closed); the rooms that it left empty."""
        emptied = []
        for room in list(self.by_peer.get(peer, ())):
            if self.leave(peer, room):
                emptied.append(room)
        return emptied

    def of(self, peer: Any) -> list[str]:
        return list(self.by_peer.get(peer, ()))

    def in_room(self, room: str) -> list[Any]:
        return list(self.members.get(room, ()))
