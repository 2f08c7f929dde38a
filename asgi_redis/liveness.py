"""This process's clients of process-local channels: their liveness marks, and rejoining
their groups when a beat finds that Redis judged them dead (see ``memberships``).

A client (the ``a.b!`` head of an event loop's process-local channels) is kept alive by the
heartbeat of the loop that made or receives on its channels (``loopstate``); each beat writes
the marks of its heads, each on its own server, with ``heartbeat.lua``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from . import commands, keys
from .buffers import now_ms
from .memberships import Memberships
from .metrics import Counters
from .servers import Servers

# add_member(group, channel, added_ms): store a membership again (the layer's group_add step).
AddMember = Callable[[str, str, int], Awaitable[None]]


class Liveness:
    """The heads of this process's process-local channels and their memberships.

    Args:
        servers: where each head's mark lives.
        prefix, heartbeat_s, group_expiry_s: the layer's options.
        add_member: how a membership is stored again on rejoin.
        counters: the layer's counters (``rejoins``).
    """

    def __init__(
        self,
        servers: Servers,
        prefix: str,
        heartbeat_s: float,
        group_expiry_s: int,
        add_member: AddMember,
        counters: Counters,
    ) -> None:
        self._servers = servers
        self._prefix = prefix
        self._beat_ms = int(heartbeat_s * 1000)
        self._group_expiry_s = group_expiry_s
        self._add_member = add_member
        self._counters = counters
        self.own_heads: set[str] = set()
        self.memberships = Memberships()
        self.rejoining: set[str] = set()  # clients found dropped, not yet back in every group
        self.beaten: set[str] = set()  # clients whose mark a beat of this layer has written

    def added(self, group: str, channel: str, added_ms: int) -> None:
        """``channel`` joined ``group``: remembered if it is one of this process's own."""
        if keys.split_channel(channel)[0] in self.own_heads:
            self.memberships.added(group, channel, added_ms)

    def discarded(self, group: str, channel: str) -> None:
        """``channel`` left ``group``: no longer rejoined."""
        self.memberships.discarded(group, channel)

    async def beat(self, heads: list[str]) -> None:
        """Write the liveness marks of ``heads``, each on its own server; a client whose mark
        was gone (judged dead while cut off) adds its memberships again (``memberships``)."""
        by_shard: dict[int, list[str]] = {}
        for head in heads:
            by_shard.setdefault(self._servers.shard_of(head), []).append(head)
        gone = await asyncio.gather(
            *(
                self._servers.routes[shard].run(
                    "heartbeat",
                    partial(
                        commands.heartbeat,
                        prefix=self._prefix,
                        heads=shard_heads,
                        beat_ms=self._beat_ms,
                    ),
                )
                for shard, shard_heads in by_shard.items()
            )
        )
        # A client's first beat may find no mark (its group_add may not have written it yet):
        # only a mark that this process's beats had written and that is gone now means more.
        self.rejoining.update(
            head for shard_gone in gone for head in shard_gone if head in self.beaten
        )
        self.beaten.update(heads)
        for head in sorted(self.rejoining):
            rejoined = await self.memberships.rejoin(
                head, now_ms(), self._group_expiry_s, self._add_member
            )
            self.rejoining.discard(head)  # only once every membership is back
            if rejoined:
                self._counters.rejoins += 1

    def forget(self, client_id: str) -> None:
        """A loop's client id is gone with it: nothing of its channels is kept to rejoin."""
        heads = {head for head in self.own_heads if head.endswith(f".{client_id}!")}
        self.own_heads -= heads
        self.beaten -= heads
        self.rejoining -= heads
        self.memberships.forget(heads)
