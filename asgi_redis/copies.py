"""Group copies this process holds for its process-local channels: capacity checked here.

A group_send writes one group entry per client queue and counts nothing. The receiving
process gives each listed channel its copy only within the slots it reserved in Redis for
that channel (the ``+<suffix>`` field of the client's counts hash, which a direct ``send``
counts too), so a channel never holds more than its capacity:

- a channel with an idle ``receive`` and nothing waiting gets its copy at once (it is handed
  over, not held: no slot needed);
- otherwise a copy within the reserved slots is held at once;
- beyond them it waits, with anything that arrives after it for that channel (FIFO), while
  one script call per client queue raises the reservation as far as the channel's direct
  messages leave room. Copies beyond the grant are dropped, the newest first: counted as
  ``channel_full``, with a warning naming the channel at most once a minute.

Slots are kept while the channel uses them: every ``GIVE_BACK_S`` the slots above the most a
channel held since the previous look are given back, in the same batched call. So a channel
that keeps receiving broadcasts costs no reservation write per message, and a direct send
may be refused for up to about two ``GIVE_BACK_S`` after a burst while the channel holds fewer
than its capacity - never accepted beyond it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from . import commands, keys
from .buffers import Item
from .metrics import Counters
from .routes import Route
from .sidetask import SideTask

logger = logging.getLogger(__name__)

WARN_EVERY_S = 60.0
# How often slots a channel no longer uses are given back (see the module docstring).
GIVE_BACK_S = 0.5
# Remembered warning times beyond this many are pruned (a process with many full channels).
WARNED_MAX = 10_000

Key = tuple[str, str]  # (queue key, suffix) of one process-local channel


class _Channel:
    """What this process holds of one channel's group copies (a plain class with slots: one
    is made whenever a channel that held nothing gets a copy)."""

    __slots__ = ("held", "keep", "peak", "pending", "reserved")

    def __init__(self) -> None:
        self.held = 0  # copies in the buffer (handed-over ones included until taken)
        self.reserved = 0  # slots Redis holds for them (never above what Redis has)
        self.peak = 0  # the most held since the last give-back look
        self.keep = 0  # slots to keep when giving back (that look's peak)
        self.pending: deque[Item] = deque()  # waiting for a reservation


class HeldCopies:
    """Capacity of the group copies one receiver holds (see the module docstring).

    Args:
        route: the server (or cluster tag) of the client queues.
        prefix: the layer's key prefix.
        expiry_s: the layer's expiry (lifetime of the counts key after a reservation).
        capacity_for: a channel's capacity.
        idle: whether a channel has an idle ``receive`` and nothing waiting for it.
        deliver: buffer an item for a channel and wake its receive.
        counters: the layer's counters (``channel_full`` counts dropped copies).
    """

    def __init__(
        self,
        route: Route,
        prefix: str,
        expiry_s: int,
        capacity_for: Callable[[str], int],
        idle: Callable[[str], bool],
        deliver: Callable[[str, Item], None],
        counters: Counters,
    ) -> None:
        self._route = route
        self._prefix = prefix
        self._expiry_s = expiry_s
        self._capacity_for = capacity_for
        self._idle = idle
        self._deliver = deliver
        self._counters = counters
        self._channels: dict[Key, _Channel] = {}
        self._dirty: set[Key] = set()  # reservations to write (raise or give back)
        self._warned: dict[str, float] = {}
        self._task = SideTask("reserve capacity for group copies", self._write)
        self._give_back: asyncio.TimerHandle | None = None

    def offer(self, channel: str, item: Item) -> None:
        """A popped item for process-local ``channel``: hand it over, hold it, or wait."""
        key = (item.queue, item.suffix)
        state = self._channels.get(key)
        if state is not None and state.pending:
            state.pending.append(item)  # FIFO: behind what waits for a reservation
            return
        if item.counted:
            self._deliver(channel, item)
            return
        if state is None:
            state = self._channels[key] = _Channel()
        if state.held < state.reserved or self._idle(channel):
            self._hold(state, channel, item)
            return
        state.pending.append(item)
        self._dirty.add(key)
        self._task.start()

    def unclaimed(self, channel: str, take_all: Callable[[], list[Item]]) -> None:
        """Nobody waits for ``channel`` any more, though something is buffered for it.

        A copy handed to a receive that then gave up holds no slot: what the channel has
        buffered (that copy first) waits for a reservation again, in order, so a direct send
        never finds room that copy already takes. ``take_all`` removes the channel's live
        buffered items without reporting them as left.
        """
        key = (keys.queue_key(self._prefix, channel), keys.split_channel(channel)[1])
        state = self._channels.get(key)
        if state is None or state.held <= state.reserved:
            return
        items = take_all()
        state = self._channels.setdefault(key, state)  # an expired copy may have removed it
        state.held -= sum(not item.counted for item in items)
        state.pending.extendleft(reversed(items))
        self._dirty.add(key)
        self._task.start()

    def left(self, item: Item) -> None:
        """A group copy left the buffer (taken, expired or returned)."""
        key = (item.queue, item.suffix)
        state = self._channels.get(key)
        if state is None:
            return
        state.held -= 1
        if not state.held and not state.pending and not state.reserved:
            del self._channels[key]

    def _hold(self, state: _Channel, channel: str, item: Item) -> None:
        """Hold a copy for ``channel`` (within its slots, or handed to a waiting receive)."""
        state.held += 1
        state.peak = max(state.peak, state.held)
        self._deliver(channel, item)

    def _look_again(self) -> None:
        """Timer: mark the slots above what each channel used lately for giving back."""
        self._give_back = None
        waiting = False
        for key, state in self._channels.items():
            if state.reserved:
                state.keep = max(state.peak, state.held)
                state.peak = state.held
                if state.keep < state.reserved:
                    self._dirty.add(key)
                waiting = True
        if self._dirty:
            self._task.start()
        if waiting:
            self._schedule()

    def _schedule(self) -> None:
        """Look for slots to give back in ``GIVE_BACK_S`` (once)."""
        if self._give_back is None:
            loop = asyncio.get_running_loop()
            self._give_back = loop.call_later(GIVE_BACK_S, self._look_again)

    def release_all(self) -> None:
        """Hand pending items to the buffer (close: they go back to Redis with it)."""
        for (queue, suffix), state in self._channels.items():
            channel = keys.queue_part(self._prefix, queue) + suffix
            while state.pending:
                item = state.pending.popleft()
                state.held += not item.counted
                self._deliver(channel, item)

    async def close(self) -> None:
        """Give every reservation back (the buffer was returned); raises if Redis refuses."""
        self._cancel_timer()
        await self._task.stop()
        for key, state in self._channels.items():
            state.held = state.keep = 0
            if state.reserved:
                self._dirty.add(key)
        await self._write()

    def clear(self) -> None:
        """Forget everything (the keys were flushed)."""
        self._cancel_timer()
        self._channels.clear()
        self._dirty.clear()

    def _cancel_timer(self) -> None:
        """Stop looking for slots to give back."""
        if self._give_back is not None:
            self._give_back.cancel()
            self._give_back = None

    async def _write(self) -> bool:
        """One reservation call per client queue for the channels that changed."""
        dirty, self._dirty = self._dirty, set()
        if not dirty:
            return False
        by_queue: dict[str, list[tuple[str, int, int]]] = {}
        for queue, suffix in dirty:
            state = self._channels.get((queue, suffix))
            if state is None:
                continue
            wanted = state.held + sum(not item.counted for item in state.pending)
            wanted = max(wanted, min(state.keep, state.reserved))
            # Giving back takes effect here at once: Redis keeps more until the write lands.
            state.reserved = min(state.reserved, wanted)
            capacity = self._capacity_for(keys.queue_part(self._prefix, queue) + suffix)
            by_queue.setdefault(queue, []).append((suffix, wanted, capacity))
        pending = list(by_queue.items())
        for position, (queue, triples) in enumerate(pending):
            try:
                granted = await self._reserve(queue, triples)
            except BaseException:
                for later_queue, later in pending[position:]:
                    self._dirty.update((later_queue, suffix) for suffix, _, _ in later)
                raise
            for (suffix, wanted, _), slots in zip(triples, granted, strict=True):
                self._granted((queue, suffix), wanted, slots)
        return True

    async def _reserve(self, queue: str, triples: list[tuple[str, int, int]]) -> list[int]:
        """One reserve.lua call for the channels of one client queue."""
        counts = keys.counts_key(self._prefix, keys.queue_part(self._prefix, queue))
        return await self._route.run(
            "reserve capacity for group copies",
            partial(commands.reserve, counts=counts, ttl_s=self._expiry_s, wanted=triples),
        )

    def _granted(self, key: Key, wanted: int, slots: int) -> None:
        """Redis reserved ``slots`` of the ``wanted`` for a channel: hold its pending copies
        within them. Only a grant below what was asked means the channel is full; copies that
        came after the request wait for the next one."""
        state = self._channels.get(key)
        if state is None:
            return
        state.reserved = slots
        channel = keys.queue_part(self._prefix, key[0]) + key[1]
        if slots:
            self._schedule()
        while state.pending:
            item = state.pending[0]
            if item.counted:
                self._deliver(channel, state.pending.popleft())
            elif state.held < state.reserved:
                self._hold(state, channel, state.pending.popleft())
            elif slots < wanted:
                state.pending.popleft()
                self._drop(channel)
            else:
                self._dirty.add(key)
                self._task.start()
                return
        if not state.held and not state.reserved:
            del self._channels[key]

    def _drop(self, channel: str) -> None:
        """A copy for a full channel is dropped (the newest); warn at most once a minute."""
        self._counters.channel_full += 1
        now = time.monotonic()
        if now - self._warned.get(channel, -WARN_EVERY_S) < WARN_EVERY_S:
            return
        if len(self._warned) >= WARNED_MAX:
            self._warned = {
                name: at for name, at in self._warned.items() if now - at < WARN_EVERY_S
            }
        self._warned[channel] = now
        logger.warning(
            "Channel %s is full: dropped the newest group message (warned once a minute)",
            channel,
        )
