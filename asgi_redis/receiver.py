"""Background reading and the hand-off to waiting ``receive`` calls.

One ``Receiver`` per event loop owns one reader task. The reader is the only code that pops
from Redis, and callers can never cancel it: a ``receive`` that is cancelled only stops
waiting, while whatever Redis handed over stays in this process's buffer for the next
``receive`` of that channel, or goes back to the head of its queue on ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import commands, keys
from .buffers import Buffers, Item, now_ms
from .codec import Codec, MsgpackSerializer
from .connections import BLOCK_TIMEOUT_S

logger = logging.getLogger(__name__)

# How many entries one pop may take from a process-local queue (all of them are ours).
LOCAL_BATCH = 100
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
SWEEP_EVERY_S = 1.0
TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class Receiver:
    """Buffers, waiters and the single reader of one event loop."""

    def __init__(
        self,
        client: Redis,
        prefix: str,
        client_id: str,
        expiry_s: int,
        codec: Codec | None = None,
    ) -> None:
        self.dropped_undecodable = 0  # messages that failed to decrypt or deserialize
        self._codec = codec or Codec(MsgpackSerializer())
        self._client = client
        self._prefix = prefix
        self._expiry_s = expiry_s
        self._wake_key = keys.wake_key(prefix, client_id)
        self._buffers = Buffers(self._release)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._releases: list[tuple[str, str]] = []  # (queue, suffix) delivered or dropped
        self._reader: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._blocking_on: frozenset[str] | None = None
        self._woken = False
        self._closing = False
        self._multi_pop = True  # BLMPOP until the server says it has none
        self._last_sweep = 0.0
        self._sweep_timer: asyncio.TimerHandle | None = None

    # -- the caller side -------------------------------------------------------------

    async def receive_many(self, channels: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """Wait for the next message on any of ``channels``."""
        return await receive_from([(self, channels)])

    def take_any(self, channels: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
        """A buffered message of the first of ``channels`` that has one, or None."""
        for channel in channels:
            message = self._take(channel)
            if message is not None:
                return channel, message
        return None

    def wait_on(self, channels: Sequence[str], woken: asyncio.Future[None]) -> None:
        """Register ``woken`` to be set when a message for one of ``channels`` arrives."""
        for channel in channels:
            self._waiters.setdefault(channel, []).append(woken)
        self._ensure_reader(channels)

    def stop_waiting(
        self, channels: Sequence[str], woken: asyncio.Future[None], *, pass_on: bool
    ) -> None:
        """Unregister ``woken``; with ``pass_on``, wake others for messages it won't take."""
        self._forget(channels, woken)
        if pass_on:
            self._pass_on(channels)

    def _take(self, channel: str) -> dict[str, Any] | None:
        """The next live, decodable buffered message of ``channel``, or None."""
        while (item := self._buffers.take(channel)) is not None:
            try:
                return self._codec.loads(item.payload)
            except Exception:  # tampered, wrong key, garbage: never the reader's problem
                self.dropped_undecodable += 1
                logger.warning(
                    "Dropped a message on %s that could not be decrypted or decoded", channel
                )
        return None

    def _forget(self, channels: Sequence[str], woken: asyncio.Future[None]) -> None:
        """Unregister one waiter from its channels."""
        for channel in channels:
            waiting = self._waiters.get(channel)
            if waiting is not None and woken in waiting:
                waiting.remove(woken)
                if not waiting:
                    del self._waiters[channel]

    def _pass_on(self, channels: Sequence[str]) -> None:
        """Wake another waiter for channels that still have buffered messages."""
        for channel in channels:
            if self._buffers.count(channel):
                self._notify(channel)

    def _notify(self, channel: str) -> None:
        """Wake the first waiter of ``channel`` that is not woken yet."""
        for waiter in self._waiters.get(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- demand ----------------------------------------------------------------------

    def _wanted(self) -> dict[str, int]:
        """Queues the reader should pop from, with how many entries each."""
        wanted: dict[str, int] = {}
        for channel, waiting in self._waiters.items():
            queue = keys.queue_key(self._prefix, channel)
            if "!" in channel:
                if any(not waiter.done() for waiter in waiting):  # a woken one has its message
                    wanted[queue] = LOCAL_BATCH
                continue
            missing = len(waiting) - self._buffers.count(channel)
            if missing > 0:
                wanted[queue] = wanted.get(queue, 0) + missing
        return wanted

    def _ensure_reader(self, channels: Sequence[str]) -> None:
        """Start the reader, or wake it when it blocks on a set lacking these channels."""
        if self._reader is None:
            self._closing = False
            self._reader = asyncio.get_running_loop().create_task(self._read())
            return
        blocking_on = self._blocking_on
        if blocking_on is None or self._woken:
            return
        if any(keys.queue_key(self._prefix, ch) not in blocking_on for ch in channels):
            self._wake()

    def _wake(self) -> None:
        """Make the reader's blocking pop return (it then looks at the demand again)."""
        self._woken = True
        asyncio.get_running_loop().create_task(self._push_wake())

    async def _push_wake(self) -> None:
        """Push one token to this reader's wake list."""
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(self._wake_key, b"1")
                pipe.expire(self._wake_key, BLOCK_TIMEOUT_S * 2)
                await pipe.execute()
        except TRANSIENT_ERRORS as exc:
            logger.warning("Could not wake the reader: %s", exc)

    # -- the reader ------------------------------------------------------------------

    async def _read(self) -> None:
        """Pop for waiting receives until nobody waits; never cancelled by callers."""
        backoff_s = BACKOFF_MIN_S
        try:
            while not self._closing:
                try:
                    if not await self._read_once():
                        return
                    backoff_s = BACKOFF_MIN_S
                except TRANSIENT_ERRORS as exc:
                    logger.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                except Exception:
                    logger.exception("Reader failed; retrying in %.1f s", backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        finally:
            self._reader = None
            self._blocking_on = None
            if self._buffers:
                self._sweep_later()

    async def _read_once(self) -> bool:
        """One round of popping; False when nobody waits any more."""
        self._sweep()
        wanted = self._wanted()
        if not wanted:
            return False
        if self._multi_pop:
            await self._block(wanted)
        elif not await self._pop(wanted):  # Redis < 7: the script, then BLPOP
            wanted = self._wanted()
            if wanted and not self._closing:
                await self._block(wanted)
        return True

    async def _pop(self, wanted: dict[str, int]) -> bool:
        """Run the receive script for ``wanted`` plus pending releases; True if it popped."""
        releases, self._releases = self._releases, []
        queues = [(queue, self._counts_key(queue), count) for queue, count in wanted.items()]
        index = {queue: pos for pos, (queue, _, _) in enumerate(queues)}
        pairs = []
        for queue, suffix in releases:
            if queue not in index:
                index[queue] = len(queues)
                queues.append((queue, self._counts_key(queue), 0))
            pairs.append((index[queue], suffix))
        try:
            popped = await commands.receive(
                self._client, now_ms=now_ms(), queues=queues, releases=pairs
            )
        except BaseException:
            self._releases[:0] = releases
            raise
        for pos, entry in popped:
            self._dispatch(queues[pos][0], entry)
        return bool(popped)

    async def _block(self, wanted: dict[str, int]) -> None:
        """Blocking pop on the wanted queues and the wake list.

        BLMPOP takes a batch from the first non-empty queue in one round trip; its single COUNT
        is the smallest demand, so a named channel never gets more than its waiters asked for.
        """
        queues = list(wanted)
        self._blocking_on = frozenset(queues)
        self._woken = False
        shift = int(time.monotonic() * 1000) % len(queues)  # no queue always comes first
        order = [*queues[shift:], *queues[:shift], self._wake_key]
        try:
            if self._multi_pop:
                result = await self._multi_pop_or_fall_back(order, min(wanted.values()))
            else:
                popped = await self._client.blpop(order, timeout=BLOCK_TIMEOUT_S)
                result = None if popped is None else [popped[0], [popped[1]]]
        finally:
            self._blocking_on = None
        if result is not None:
            popped_from, entries = result
            queue = popped_from.decode() if isinstance(popped_from, bytes) else popped_from
            if queue != self._wake_key:
                for entry in entries:
                    self._dispatch(queue, entry if isinstance(entry, bytes) else entry.encode())

    async def _multi_pop_or_fall_back(self, order: list[str], count: int) -> Any:
        """BLMPOP (Redis >= 7); on servers without it, switch to the script and BLPOP."""
        try:
            return await self._client.blmpop(
                BLOCK_TIMEOUT_S, len(order), *order, direction="LEFT", count=count
            )
        except ResponseError as exc:
            if "unknown command" not in str(exc).lower():
                raise
            logger.info("Redis has no BLMPOP; popping with the script and BLPOP instead")
            self._multi_pop = False
            return None

    def _dispatch(self, queue: str, entry: bytes) -> None:
        """Buffer one popped entry for each of its channels and wake their waiters."""
        deadline_ms, suffixes, payload = keys.parse_entry(entry)
        expired = deadline_ms <= now_ms()
        head = queue[len(self._prefix) + 2 :]
        for suffix in suffixes or [""]:
            item = Item(deadline_ms, suffix, payload, queue)
            if expired:
                if suffix:
                    self._release(item)
                continue
            self._buffers.add(head + suffix, item)
            self._notify(head + suffix)

    def _counts_key(self, queue: str) -> str:
        """The counts hash that belongs to a queue key."""
        return keys.counts_key(self._prefix, queue[len(self._prefix) + 2 :])

    # -- releases and housekeeping ---------------------------------------------------

    def _release(self, item: Item) -> None:
        """A process-local message left this process's count; tell Redis soon."""
        self._releases.append((item.queue, item.suffix))
        self._start_flush()

    def _start_flush(self) -> None:
        """Send pending releases from a side task while the reader blocks or sleeps."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_releases())

    async def _flush_releases(self) -> None:
        """Run the receive script with no pops, only releases; retry while Redis is away.

        Until they reach Redis, delivered messages still count against their channel's
        capacity. On close, ``close()`` sends what is left itself instead.
        """
        backoff_s = BACKOFF_MIN_S
        try:
            await asyncio.sleep(0)  # one call for all deliveries of this loop turn
            while self._releases:  # more may come while a call is under way
                try:
                    await self._pop({})
                    backoff_s = BACKOFF_MIN_S
                except TRANSIENT_ERRORS as exc:
                    if self._closing:
                        return
                    logger.warning(
                        "Could not update channel counts (%s); retrying in %.1f s", exc, backoff_s
                    )
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        finally:
            self._flusher = None

    def _sweep_later(self) -> None:
        """While no reader runs, drop buffered messages when the first of them expires."""
        first_ms = self._buffers.first_deadline_ms()
        if self._sweep_timer is not None or first_ms is None:
            return
        delay_s = max(0.0, (first_ms - now_ms()) / 1000) + 0.01
        self._sweep_timer = asyncio.get_running_loop().call_later(delay_s, self._sweep_now)

    def _sweep_now(self) -> None:
        """Timer callback: sweep, then re-arm while no reader runs."""
        self._sweep_timer = None
        self._last_sweep = 0.0
        self._sweep()
        if self._reader is None:
            self._sweep_later()

    def _sweep(self) -> None:
        """Drop expired buffered messages, at most once a second."""
        now = time.monotonic()
        if now - self._last_sweep >= SWEEP_EVERY_S:
            self._last_sweep = now
            self._buffers.drop_expired()

    # -- shutdown --------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the reader and put every buffered message back at the head of its queue.

        Receives still waiting raise RuntimeError instead of waiting forever.
        """
        self._closing = True
        for channel, waiting in self._waiters.items():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_exception(
                        RuntimeError(f"the channel layer was closed while receiving on {channel}")
                    )
        reader = self._reader
        if reader is not None:
            if self._blocking_on is not None:
                await self._push_wake()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), BLOCK_TIMEOUT_S + 2)
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._restore()
        if self._releases:
            await self._pop({})

    async def _restore(self) -> None:
        """LPUSH buffered entries back in their original order."""
        by_queue = self._buffers.drain()
        self._cancel_sweep()
        if not by_queue:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for queue, entries in by_queue.items():
                pipe.lpush(queue, *reversed(entries))
                pipe.expire(queue, self._expiry_s)
            await pipe.execute()

    def clear(self) -> None:
        """Forget buffered messages and pending releases (after a flush)."""
        self._buffers.clear()
        self._releases.clear()
        self._cancel_sweep()

    def _cancel_sweep(self) -> None:
        """Stop the idle sweep timer."""
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None


async def receive_from(
    parts: Sequence[tuple[Receiver, Sequence[str]]],
) -> tuple[str, dict[str, Any]]:
    """Wait for the next message on any channel of ``parts`` (receivers of several servers).

    One future waits in every receiver at once; cancelling the wait loses nothing, since a
    message stays in its receiver's buffer until a ``receive`` takes it.
    """
    loop = asyncio.get_running_loop()
    while True:
        for receiver, channels in parts:
            got = receiver.take_any(channels)
            if got is not None:
                return got
        woken: asyncio.Future[None] = loop.create_future()
        for receiver, channels in parts:
            receiver.wait_on(channels, woken)
        try:
            await woken
        except BaseException:
            handed = woken.done() and not woken.cancelled()  # woken, then cancelled
            for receiver, channels in parts:
                receiver.stop_waiting(channels, woken, pass_on=handed)
            raise
        for receiver, channels in parts:
            receiver.stop_waiting(channels, woken, pass_on=False)
