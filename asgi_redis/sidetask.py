"""A background task that writes pending work to Redis, retrying until it succeeds or stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0


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
        """Stop retrying and wait for a step under way (never cancelled: it may have run)."""
        self._stopping = True
        self._retry_now.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

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
