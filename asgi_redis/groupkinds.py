"""Which kinds of members each group had at this process's latest group_send to it.

A group_send runs two scripts, one per kind of member (named channels; client queues of
process-local ones), and used to send the message to both. Most groups hold one kind (a chat
room: websocket consumers only), so the script of the other kind gets no payload: it only
counts its members. When that count says a member of that kind has joined since, the message
goes to it at once in a second round trip, so a stale memory costs time, never a delivery.
"""

from __future__ import annotations

from typing import NamedTuple

# Groups remembered; beyond this the memory starts again (each forgotten group only costs its
# next group_send the payload twice, as without this memory).
KINDS_MAX = 10_000


class Kinds(NamedTuple):
    """Kinds of members of a group (or the scripts that get a group_send's payload)."""

    named: bool
    local: bool

    def without(self, other: Kinds) -> Kinds:
        """The kinds here that ``other`` lacks."""
        return Kinds(self.named and not other.named, self.local and not other.local)


BOTH = Kinds(named=True, local=True)


class GroupKinds:
    """The kinds each group had at its latest group_send (a bounded memory)."""

    def __init__(self) -> None:
        self._kinds: dict[str, Kinds] = {}

    def payload_to(self, group: str) -> Kinds:
        """The scripts that get the payload: the kinds seen last time, both for a new group."""
        return self._kinds.get(group, BOTH)

    def seen(self, group: str, kinds: Kinds) -> None:
        """A group_send found these kinds of members in ``group``."""
        if len(self._kinds) >= KINDS_MAX and group not in self._kinds:
            self._kinds.clear()
        self._kinds[group] = kinds

    def clear(self) -> None:
        """Forget everything (the keys were flushed)."""
        self._kinds.clear()
