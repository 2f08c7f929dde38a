"""The memberships of this process's own process-local channels, kept to rejoin groups.

A process cut off from Redis for longer than 3 heartbeats is rightly judged dead: a group_send
drops its members and queue. When it can reach Redis again its heartbeat finds its liveness
mark gone (or saying dead), and the layer adds every remembered membership of that client
again, each with the time of its own latest group_add, so ``group_expiry`` still counts from
there. Its consumers, still connected to their websockets, get broadcasts again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from . import keys

logger = logging.getLogger(__name__)


class Memberships:
    """``group_add``/``group_discard`` of process-local channels, by client queue part."""

    def __init__(self) -> None:
        # head (``a.b!``) -> {(group, channel): time of the latest group_add, ms}
        self._by_head: dict[str, dict[tuple[str, str], int]] = {}

    def added(self, group: str, channel: str, time_ms: int) -> None:
        """``channel`` (process-local) joined ``group`` at ``time_ms``."""
        head = keys.split_channel(channel)[0]
        self._by_head.setdefault(head, {})[(group, channel)] = time_ms

    def discarded(self, group: str, channel: str) -> None:
        """``channel`` left ``group``."""
        head = keys.split_channel(channel)[0]
        joined = self._by_head.get(head)
        if joined is not None:
            joined.pop((group, channel), None)
            if not joined:
                del self._by_head[head]

    def forget(self, heads: set[str]) -> None:
        """Drop what is kept for ``heads`` (their event loop was closed)."""
        for head in heads:
            self._by_head.pop(head, None)

    def of(self, head: str, now_ms: int, group_expiry_s: int) -> list[tuple[str, str, int]]:
        """The live memberships of client ``head`` as (group, channel, time ms); those older
        than ``group_expiry_s`` are forgotten (their groups dropped them already)."""
        joined = self._by_head.get(head, {})
        cutoff_ms = now_ms - group_expiry_s * 1000
        for stale in [pair for pair, time_ms in joined.items() if time_ms <= cutoff_ms]:
            del joined[stale]
        return [(group, channel, time_ms) for (group, channel), time_ms in joined.items()]

    async def rejoin(
        self,
        head: str,
        now_ms: int,
        group_expiry_s: int,
        add: Callable[[str, str, int], Awaitable[None]],
    ) -> int:
        """Add client ``head``'s memberships again with ``add(group, channel, time_ms)``, with
        one warning. Returns how many there were (0: nothing to do, nothing logged)."""
        memberships = self.of(head, now_ms, group_expiry_s)
        if not memberships:
            return 0
        logger.warning(
            "Client %s found its liveness mark gone (judged dead while it could not reach "
            "Redis, or the mark ran out during an outage): adding its %d group memberships "
            "again",
            head,
            len(memberships),
        )
        for group, channel, time_ms in memberships:
            await add(group, channel, time_ms)
        return len(memberships)
