"""The hand-off from the reader to waiting ``receive`` calls, for one event loop and server.

An entry of a named channel is taken from Redis only for a ``receive`` waiting at that
moment. If that ``receive`` gives up (cancelled, or served by another channel) before it
takes the entry, another waiter of this process gets it, or it goes back to the head of its
queue at once, where any process can take it. Process-local messages can only be received
here: they wait in this process's buffer for the next ``receive`` of their channel, and go
back to Redis when the layer closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from functools import partial
from typing import Any

from . import keys
from .backgroundloop import gate
from .buffers import Buffers, Item, now_ms
from .codec import Codec, MsgpackSerializer
from .copies import HeldCopies
from .handback import Releases, Returns
from .lanes import Lanes
from .metrics import Counters
from .routes import Route

logger = logging.getLogger(__name__)

# How many entries one pop may take from a process-local queue (all of them are ours).
LOCAL_BATCH = 100
SWEEP_EVERY_S = 1.0


class Receiver:
    """Waiters and buffers of one event loop on one server; owns that server's reader."""

    def __init__(
        self,
        route: Route,
        prefix: str,
        client_id: str,
        expiry_s: int,
        codec: Codec | None = None,
        counters: Counters | None = None,
        capacity_for: Callable[[str], int] = lambda channel: 100,
    ) -> None:
        self.counters = counters or Counters()  # the layer's, shared by all its receivers
        self.dropped_undecodable = 0  # messages that failed to decrypt or deserialize
        self.dropped_malformed = 0  # entries whose header did not parse
        self._codec = codec or Codec(MsgpackSerializer())
        self._prefix = prefix
        self._label = route.label
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._channels_of: dict[str, set[str]] = {}  # queue key -> channels with waiters
        self._releases = Releases(route, prefix, expiry_s)
        self._buffers = Buffers(self._left, self.counters)
        self._copies = HeldCopies(
            route, prefix, expiry_s, capacity_for, self._idle, self._deliver, self.counters
        )
        self._returns = Returns(route, prefix, expiry_s, self._unwanted, self._returned)
        wake_tag = route.wake_tag or keys.tag_of(client_id)
        self._reader = Lanes(
            route,
            prefix,
            keys.wake_key(prefix, client_id, wake_tag),
            self._wanted,
            self._dispatch,
            self._fail_waiters,
            route.max_lanes,
        )
        self._closed = False
        self._last_sweep = 0.0
        self._sweep_timer: asyncio.TimerHandle | None = None

    # -- the caller side -------------------------------------------------------------

    def receive_many(
        self, channels: Sequence[str]
    ) -> Coroutine[Any, Any, tuple[str, dict[str, Any]]]:
        """Wait for the next message on any of ``channels`` (``receive_from``'s coroutine
        itself: one coroutine less to resume on every delivery)."""
        return receive_from([(self, channels)])

    def take_any(self, channels: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
        """A buffered message of the first of ``channels`` that has one, or None."""
        for channel in channels:
            message = self._take(channel)
            if message is not None:
                return channel, message
        return None

    def wait_on(self, channels: Sequence[str], woken: asyncio.Future[None]) -> None:
        """Register ``woken`` to be set when a message for one of ``channels`` arrives."""
        if self._closed:
            raise RuntimeError("the channel layer is closed on this event loop")
        queues = []
        for channel in channels:
            queue = keys.queue_key(self._prefix, channel)
            waiting = self._waiters.get(channel)
            if waiting is None:
                waiting = self._waiters[channel] = []
                self._channels_of.setdefault(queue, set()).add(channel)
            waiting.append(woken)
            queues.append(queue)
        self._reader.ensure(queues)

    def stop_waiting(self, channels: Sequence[str], woken: asyncio.Future[None]) -> None:
        """Unregister ``woken``; what was buffered for it goes to another waiter or back."""
        for channel in channels:
            waiting = self._waiters.get(channel)
            if waiting is not None and woken in waiting:
                waiting.remove(woken)
                if not waiting:
                    del self._waiters[channel]
                    self._forget_channel(channel)
        unwanted = []
        for channel in channels:
            if "!" in channel:
                if self._buffers.count(channel) and not self._notify(channel):
                    self._copies.unclaimed(channel, partial(self._take_all, channel))
                continue
            self._settle_named(channel)
            if not any(not waiter.done() for waiter in self._waiters.get(channel, ())):
                unwanted.append(keys.queue_key(self._prefix, channel))
        if unwanted:
            self._reader.reconsider(unwanted)

    def _forget_channel(self, channel: str) -> None:
        """``channel`` has no waiters left: its queue's registry entry loses it."""
        queue = keys.queue_key(self._prefix, channel)
        channels = self._channels_of.get(queue)
        if channels is not None:
            channels.discard(channel)
            if not channels:
                del self._channels_of[queue]

    def _take(self, channel: str) -> dict[str, Any] | None:
        """The next live, decodable buffered message of ``channel``, or None."""
        while (item := self._buffers.take(channel)) is not None:
            try:
                message = self._codec.loads(item.payload)
            except Exception:  # tampered, wrong key, garbage: never the reader's problem
                self.dropped_undecodable += 1
                self.counters.dropped += 1
                logger.warning(
                    "Dropped a message on %s that could not be decrypted or decoded", channel
                )
                continue
            self.counters.delivered += 1
            return message
        return None

    def _take_all(self, channel: str) -> list[Item]:
        """Remove every live buffered item of ``channel`` (oldest first), still held."""
        return self._buffers.take_newest(channel, self._buffers.count(channel))

    def _left(self, item: Item) -> None:
        """A process-local item left the buffer: release its count or its reserved slot."""
        if item.counted:
            self._releases.add(item.queue, item.suffix)
        else:
            self._copies.left(item)

    def _idle(self, channel: str) -> bool:
        """Whether ``channel`` has a waiting receive and nothing buffered for it."""
        if self._buffers.count(channel):
            return False
        return any(not waiter.done() for waiter in self._waiters.get(channel, ()))

    def _deliver(self, channel: str, item: Item) -> None:
        """Buffer a process-local item and wake a receive of its channel."""
        self._buffers.add(channel, item)
        self._notify(channel)

    def _notify(self, channel: str) -> bool:
        """Wake the first waiter of ``channel`` that is not woken yet; False if none."""
        for waiter in self._waiters.get(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def _settle_named(self, channel: str) -> None:
        """Give each unclaimed entry of a named channel to an idle waiter, or send it back.

        A woken waiter has claimed one buffered entry; entries beyond those claims have
        nobody here waiting for them.
        """
        claimed = sum(waiter.done() for waiter in self._waiters.get(channel, ()))
        for _ in range(self._buffers.count(channel) - claimed):
            if not self._notify(channel):
                self._returns.request()
                return

    def _unwanted(self) -> dict[str, list[bytes]]:
        """Take the named-channel entries nobody here claims, for return to their queues."""
        by_queue: dict[str, list[bytes]] = {}
        for channel in self._buffers.channels():
            if "!" in channel:
                continue
            claimed = sum(waiter.done() for waiter in self._waiters.get(channel, ()))
            for item in self._buffers.take_newest(channel, self._buffers.count(channel) - claimed):
                by_queue.setdefault(item.queue, []).append(item.entry())
        return by_queue

    def _returned(self, queue: str) -> None:
        """Entries are back in ``queue``: pop there again if someone waits for it."""
        if self._waiters and not self._closed:
            self._reader.ensure([queue])

    def _fail_waiters(self, exc: Exception) -> None:
        """The server was never reached or refuses us: fail the waiting receives clearly."""
        error = type(exc)(f"receive from Redis at {self._label} failed: {exc}")
        for waiting in self._waiters.values():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_exception(error)

    # -- demand and dispatch -----------------------------------------------------------

    def _wanted(self, queues: Collection[str]) -> dict[str, int]:
        """Of ``queues``, those a lane should pop from, with how many entries each.

        Costs O(len(queues)) (plus the channels of a client queue up to its first idle
        waiter), not O(every waiter): each lane asks only for its own queues.
        """
        self._sweep()
        wanted: dict[str, int] = {}
        returning = self._returns.returning
        for queue in queues:
            demand = self._demand(queue, queue in returning)
            if demand:
                wanted[queue] = demand
        if not wanted:  # the lane stops: expire what is buffered on a timer instead
            self._sweep_later()
        return wanted

    def _demand(self, queue: str, returning: bool) -> int:
        """How many entries the idle waiters of ``queue``'s channels want from it now."""
        total = 0
        for channel in self._channels_of.get(queue, ()):
            waiting = self._waiters[channel]
            idle = 0
            for waiter in waiting:
                if not waiter.done():
                    idle += 1
            if not idle:
                continue
            if "!" in channel:  # every entry of a client queue is this process's
                return LOCAL_BATCH
            if returning:  # FIFO: let the returned entries reach the head first
                return 0
            unclaimed = self._buffers.count(channel) - (len(waiting) - idle)
            total += max(idle - max(unclaimed, 0), 0)
        return total

    def _dispatch(self, queue: str, entry: bytes) -> None:
        """Buffer one popped entry for each of its channels and wake their waiters."""
        head = keys.queue_part(self._prefix, queue)
        try:
            deadline_ms, suffixes, payload = keys.parse_entry(entry)
        except ValueError:
            self.dropped_malformed += 1
            self.counters.dropped += 1
            logger.warning("Dropped a malformed entry from the queue of %s", head)
            return
        expired = deadline_ms <= now_ms()
        counted = not keys.is_group_entry(entry)
        for suffix in suffixes or [""]:
            item = Item(deadline_ms, suffix, payload, queue, counted)
            if expired:
                self.counters.expired += 1
                if suffix and counted:
                    self._releases.add(queue, suffix)
            elif suffix:
                self._copies.offer(head + suffix, item)  # capacity of group copies, FIFO
            else:
                self._buffers.add(head, item)
                if not self._notify(head):
                    self._returns.request()  # its receive gave up while the pop was under way

    # -- housekeeping ------------------------------------------------------------------

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
        if not self._reader.running:
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

        Receives still waiting raise RuntimeError. Raises if Redis refuses the hand-back;
        the messages then stay here and a later ``close`` tries again.
        """
        self._closed = True
        for channel, waiting in self._waiters.items():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_exception(
                        RuntimeError(f"the channel layer was closed while receiving on {channel}")
                    )
        await self._reader.stop()
        self._cancel_sweep()
        self._copies.release_all()
        await self._returns.close(self._buffers.drain())
        try:
            await self._releases.close()
            await self._copies.close()
        except Exception as exc:  # the counts key expires with the queue: a leak heals
            logger.warning("Could not update channel counts on close: %r", exc)

    @property
    def held(self) -> int:
        """Popped messages still in this process (buffered, or on their way back)."""
        return len(self._buffers) + len(self._returns)

    def clear(self) -> None:
        """Forget buffered messages and pending writes (after a flush)."""
        self._buffers.clear()
        self._releases.clear()
        self._copies.clear()
        self._returns.clear()
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

    One future waits in every receiver at once, so at most one message is taken for it;
    whatever was popped for it and not taken goes to another waiter or back to Redis.
    """
    loop = asyncio.get_running_loop()
    # A receive run for a caller on another loop (offload.py) takes only while that caller waits.
    call = gate.get()
    while True:
        got = _take_from(parts) if call is None else call.take(_take_from, parts)
        if got is not None:
            return got
        woken: asyncio.Future[None] = loop.create_future()
        got = None
        try:
            for receiver, channels in parts:
                receiver.wait_on(channels, woken)
            await woken
            # before stop_waiting, which would pass it on
            got = _take_from(parts) if call is None else call.take(_take_from, parts)
        finally:
            for receiver, channels in parts:
                receiver.stop_waiting(channels, woken)
        if got is not None:
            return got


def _take_from(
    parts: Sequence[tuple[Receiver, Sequence[str]]],
) -> tuple[str, dict[str, Any]] | None:
    """A buffered message of any channel of ``parts``, or None."""
    for receiver, channels in parts:
        got = receiver.take_any(channels)
        if got is not None:
            return got
    return None
