"""Liveness marks of the process-local queues one event loop owns.

A group_send drops the process-local members of a client whose mark has expired (3 beats
unseen), so a process killed outright leaves its groups within a few heartbeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# A client unseen for this many heartbeats is dead.
BEATS_TO_DEATH = 3


class Heartbeat:
    """Refreshes the marks of ``heads`` (queue parts such as ``specific.ab12!``) every beat.

    Args:
        beat: writes the marks of the given heads with the given lifetime in ms.
        interval_s: seconds between beats (the layer's ``heartbeat`` option).
    """

    def __init__(
        self, beat: Callable[[list[str], int], Awaitable[None]], interval_s: float
    ) -> None:
        self._beat = beat
        self._interval_s = interval_s
        self._heads: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def ttl_ms(self) -> int:
        """How long one mark lives."""
        return int(self._interval_s * BEATS_TO_DEATH * 1000)

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
                await self._beat(sorted(self._heads), self.ttl_ms)
            except Exception as exc:
                logger.warning(
                    "Could not refresh liveness marks (%r); next try in %.1f s",
                    exc,
                    self._interval_s,
                )
            await asyncio.sleep(self._interval_s)
