"""A background task that writes pending work to Redis, retrying until it succeeds or stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from .redis_options import SOCKET_TIMEOUT_S

logger = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# How long ``stop`` waits for a step under way: past one Redis command's socket timeout and
# one pause, so only a step stuck without bound (e.g. waiting for a free pooled connection)
# is cut short. Both writers that use this (hand-backs, count releases) are safe to resend.
STOP_TIMEOUT_S = SOCKET_TIMEOUT_S + BACKOFF_MAX_S


class SideTask:
    """Runs ``step`` from one task until it reports nothing left; never raises to anyone.

    ``step`` returns False when there is nothing left to write. Any exception (an outage, but
    also OOM, READONLY or NOPERM) is logged and the step retried after a growing pause, so
    pending work waits for Redis instead of being dropped with a dead task.
    """

    def __init__(self, what: str, step: Callable[[], Awaitable[bool]]) -> None:
        self._what = what
        self._step = step
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retry_now = asyncio.Event()

    def start(self) -> None:
        """Run the task if it is not running (it first lets this loop turn add more work)."""
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop retrying and wait for a step under way.

        The step is cancelled only when it has not ended within ``STOP_TIMEOUT_S`` (logged):
        what it was writing stays pending, and the caller's own final write sends it again.
        """
        self._stopping = True
        self._retry_now.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not done:
            logger.error(
                "Could not %s: a write under way did not end within %.0f s; cancelled it",
                self._what,
                STOP_TIMEOUT_S,
            )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        """Call ``step`` until it reports nothing left; back off after failures."""
        backoff_s = BACKOFF_MIN_S
        try:
            await asyncio.sleep(0)  # one call for everything this loop turn adds
            while not self._stopping:
                try:
                    if not await self._step():
                        return
                    backoff_s = BACKOFF_MIN_S
                except Exception as exc:
                    logger.warning(
                        "Could not %s (%r); retrying in %.1f s", self._what, exc, backoff_s
                    )
                    await self._pause(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        finally:
            self._task = None

    async def _pause(self, delay_s: float) -> None:
        """Sleep before a retry; ``stop`` ends the pause at once."""
        self._retry_now.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._retry_now.wait(), delay_s)
