"""Liveness marks of the process-local queues one event loop owns.

A group_send drops the process-local members of a client whose mark has expired (3 beats
unseen), so a process killed outright leaves its groups within a few heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# A client unseen for this many heartbeats of its server's uptime is dead (lua/_helpers.lua).
BEATS_TO_DEATH = 3
# A liveness mark's wall-time lifetime, in heartbeats (lua/_helpers.lua MARK_BEATS): a mark
# that runs out means nothing by itself, it only frees the memory of clients that are gone.
MARK_BEATS = 12


class Heartbeat:
    """Refreshes the marks of ``heads`` (queue parts such as ``specific.ab12!``) every beat.

    Args:
        beat: writes the marks of the given heads (and rejoins what was dropped).
        interval_s: seconds between beats (the layer's ``heartbeat`` option).
    """

    def __init__(self, beat: Callable[[list[str]], Awaitable[None]], interval_s: float) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._heads: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, head: str) -> None:
        """Keep ``head`` alive from now on (the first beat comes on the next loop turn)."""
        if head in self._heads:
            return
        self._heads.add(head)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop beating; the marks expire on their own (a SET cut short is harmless)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        """Beat until closed; a failed beat is retried at the next one."""
        while True:
            try:
                await self._beat(sorted(self._heads))
            except Exception as exc:
                logger.warning(
                    "Could not refresh liveness marks (%r); next try in %.1f s",
                    exc,
                    self._interval_s,
                )
            await asyncio.sleep(self._interval_s)
