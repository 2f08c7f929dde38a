"""What a process owes Redis after popping: count releases, and entries it will not deliver."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from . import commands, keys, sidetask
from .routes import Route
from .sidetask import BACKOFF_MIN_S, SideTask

logger = logging.getLogger(__name__)


# close() retries a failed hand-back for this long (pauses from BACKOFF_MIN_S doubling up to
# CLOSE_BACKOFF_MAX_S) before it gives up and raises; the messages then stay in the process.
CLOSE_RETRY_S = 5.0
CLOSE_BACKOFF_MAX_S = 1.0

# Count releases start at most one write per this many seconds (per event loop and server).
# A lone delivery is released at once; in a steady stream, what is delivered while a write is
# paced waits for the next one, so one write releases tens of messages instead of one command
# per message. Counts only ever lag behind deliveries, never run ahead: a channel never holds
# more than its capacity, and a send may be refused for at most this long after room was made.
RELEASE_EVERY_S = 0.01

# A count-release batch is marked applied for this many times the layer's expiry; one not
# acknowledged by then is given up (see Releases).
RELEASE_MARK_EXPIRIES = 10


@dataclass
class _ReleaseBatch:
    """One numbered batch of releases, resent unchanged until Redis acknowledges it."""

    number: int
    mark_key: str
    counts: list[str]
    pairs: list[tuple[int, str]]
    first_sent_s: float


class Releases:
    """Process-local messages that left this process (delivered, dropped, expired).

    They count against their channel's capacity until the counts hash hears of it, which a
    side task does soon after, in one script call for everything released meanwhile. Batches
    are numbered and sent one at a time; the script records the last number applied, so a
    batch retried after a lost reply never lowers a count twice (a channel would then admit
    more than its capacity). A batch still unacknowledged ``RELEASE_MARK_EXPIRIES`` x
    ``expiry`` after its first try is given up, since its mark may have expired: its messages
    keep counting until their counts key expires, ``expiry`` after the client's last send.
    Writes start at most every ``RELEASE_EVERY_S``: a steady stream pays one per batch.
    """

    def __init__(self, route: Route, prefix: str, expiry_s: int) -> None:
        self._route = route
        self._prefix = prefix
        self._mark_s = expiry_s * RELEASE_MARK_EXPIRIES
        self._releaser = secrets.token_hex(8)
        self._numbered = 0
        self._pending: list[tuple[str, str]] = []  # (queue key, suffix)
        self._batch: _ReleaseBatch | None = None  # sent, not acknowledged yet
        self.given_up = 0  # messages whose release was abandoned
        self._sealed_s = -RELEASE_EVERY_S  # when the last batch was sealed (monotonic)
        self._task = SideTask("update channel counts", self._paced_write)

    def __len__(self) -> int:
        return len(self._pending) + (len(self._batch.pairs) if self._batch else 0)

    def add(self, queue: str, suffix: str) -> None:
        """One message of the local channel ``suffix`` of ``queue`` no longer counts."""
        self._pending.append((queue, suffix))
        self._task.start()

    def clear(self) -> None:
        """Forget pending releases (their keys were flushed)."""
        self._pending.clear()
        self._batch = None

    async def close(self) -> None:
        """Stop the side task and write what is left once; raises if Redis refuses."""
        await self._task.stop()
        while await _within_bound(self._write(), "update channel counts"):
            pass

    def _seal(self) -> _ReleaseBatch | None:
        """Number the pending releases as the next batch (None when there are none)."""
        batch, self._pending = self._pending, []
        if not batch:
            return None
        counts: list[str] = []
        index: dict[str, int] = {}
        pairs = []
        for queue, suffix in batch:
            if queue not in index:
                index[queue] = len(counts)
                counts.append(keys.counts_key(self._prefix, keys.queue_part(self._prefix, queue)))
            pairs.append((index[queue], suffix))
        self._numbered += 1
        self._sealed_s = time.monotonic()
        mark_key = keys.release_mark_key(self._prefix, batch[0][0], self._releaser)
        return _ReleaseBatch(self._numbered, mark_key, counts, pairs, self._sealed_s)

    async def _paced_write(self) -> bool:
        """``_write``, once ``RELEASE_EVERY_S`` has passed since the last batch was sealed."""
        wait_s = self._sealed_s + RELEASE_EVERY_S - time.monotonic()
        if wait_s > 0 and self._batch is None:
            await asyncio.sleep(wait_s)  # more releases join the next batch meanwhile
        return await self._write()

    async def _write(self) -> bool:
        """Send the unacknowledged batch, or else the pending releases; False when none."""
        if self._batch is None:
            self._batch = self._seal()
        batch = self._batch
        if batch is None:
            return False
        if time.monotonic() - batch.first_sent_s > self._mark_s:
            self.given_up += len(batch.pairs)
            logger.error(
                "Gave up updating channel counts for %d delivered messages after %.0f s: "
                "their channels count them until their counts expire",
                len(batch.pairs),
                self._mark_s,
            )
            self._batch = None
            return True
        await self._route.run(
            "update channel counts",
            partial(
                commands.release,
                mark_key=batch.mark_key,
                batch=batch.number,
                mark_s=self._mark_s,
                counts=batch.counts,
                releases=batch.pairs,
            ),
        )
        self._batch = None
        return True


class Returns:
    """Popped entries this process will not deliver, on their way back to their queues' heads.

    ``collect`` hands over the entries to return (by queue key, oldest first) and forgets them
    locally. Each batch gets a token, so a retry after a lost reply never pushes twice.
    ``on_returned`` is told when a queue has nothing on its way back any more.
    """

    def __init__(
        self,
        route: Route,
        prefix: str,
        expiry_s: int,
        collect: Callable[[], dict[str, list[bytes]]],
        on_returned: Callable[[str], None],
    ) -> None:
        self._route = route
        self._prefix = prefix
        self._expiry_s = expiry_s
        self._collect = collect
        self._on_returned = on_returned
        self._batches: list[tuple[str, str, list[bytes]]] = []  # (queue, token key, entries)
        self._task = SideTask("return undelivered messages to Redis", self._write)

    def __len__(self) -> int:
        return sum(len(entries) for _, _, entries in self._batches)

    @property
    def returning(self) -> set[str]:
        """Queue keys with entries on their way back: popping there now would overtake them."""
        return {queue for queue, _, _ in self._batches}

    def request(self) -> None:
        """Look for entries to return on the next loop turn."""
        self._task.start()

    def add(self, by_queue: dict[str, list[bytes]]) -> None:
        """Return these entries (by queue key, oldest first)."""
        for queue, entries in by_queue.items():
            if entries:
                token = keys.requeue_token_key(self._prefix, queue, secrets.token_hex(8))
                self._batches.append((queue, token, entries))

    def clear(self) -> None:
        """Forget pending returns (their keys were flushed)."""
        self._batches.clear()

    async def close(self, remaining: dict[str, list[bytes]]) -> None:
        """Return ``remaining`` and anything pending now, retrying with backoff for up to
        ``CLOSE_RETRY_S``; then raises the last error.

        What could not be written stays pending, so a later ``close`` tries again.
        """
        await self._task.stop()
        self.add(remaining)
        deadline = time.monotonic() + CLOSE_RETRY_S
        pause_s = BACKOFF_MIN_S
        while True:
            try:
                while await _within_bound(self._write(), "return undelivered messages"):
                    pass
                return
            except Exception as exc:
                if time.monotonic() + pause_s > deadline:
                    raise
                logger.warning(
                    "Could not return %d messages to Redis on close (%r); retrying in %.1f s",
                    len(self),
                    exc,
                    pause_s,
                )
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, CLOSE_BACKOFF_MAX_S)

    async def _write(self) -> bool:
        """Write every pending batch; False when there was nothing to write."""
        self.add(self._collect())
        if not self._batches:
            return False
        while self._batches:
            batch = self._batches[0]
            queue, token_key, entries = batch
            await self._route.run(
                f"hand-back of {len(entries)} entries",
                partial(
                    commands.requeue,
                    queue=queue,
                    token_key=token_key,
                    entries=entries,
                    expiry_s=self._expiry_s,
                ),
            )
            # A flush meanwhile (``clear``) dropped this batch and may have queued others:
            # only the batch just written leaves, never one that was not sent.
            if self._batches and self._batches[0] is batch:
                self._batches.pop(0)
            if queue not in self.returning:
                self._on_returned(queue)
        return True


async def _within_bound(write: Awaitable[bool], what: str) -> bool:
    """``write`` from close(), cut off after ``sidetask.STOP_TIMEOUT_S`` with a TimeoutError
    naming ``what``: a write that neither answers nor fails must not hold close() forever
    (both writes are idempotent, so what was cut is sent again by a later try)."""
    try:
        return await asyncio.wait_for(write, sidetask.STOP_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise TimeoutError(
            f"could not {what} on close: no answer within {sidetask.STOP_TIMEOUT_S:g} s"
        ) from None
