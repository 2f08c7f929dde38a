"""Messages that Redis handed to this process and that wait here for a ``receive``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from . import keys
from .metrics import Counters


def now_ms() -> int:
    """Wall clock in ms: entries carry absolute deadlines shared by all processes."""
    return int(time.time() * 1000)


class Item(NamedTuple):
    """One popped entry waiting in this process for a ``receive``.

    A named tuple, not a dataclass: one is made per channel of every popped group entry, and
    a tuple is built several times faster.
    """

    deadline_ms: int
    suffix: str
    payload: bytes
    queue: str
    counted: bool = True  # False for a group copy: no count in Redis holds it

    def entry(self) -> bytes:
        """The queue entry for this item alone (a group entry is split per channel)."""
        if not self.counted:
            return keys.make_group_entry(self.deadline_ms, [self.suffix], self.payload)
        return keys.make_entry(self.deadline_ms, self.suffix, self.payload)


class Buffers:
    """A FIFO per channel; every process-local item that leaves is reported to ``on_leave``.

    A process-local message counts against its channel's capacity until it leaves this
    buffer (delivered or expired), so ``on_leave`` tells Redis to release it.
    """

    def __init__(self, on_leave: Callable[[Item], None], counters: Counters | None = None) -> None:
        self._on_leave = on_leave
        self._counters = counters or Counters()
        self._items: dict[str, deque[Item]] = {}

    def __bool__(self) -> bool:
        return any(self._items.values())

    def add(self, channel: str, item: Item) -> None:
        """Queue ``item`` for ``channel``."""
        items = self._items.get(channel)
        if items is None:
            items = self._items[channel] = deque()
        items.append(item)

    def channels(self) -> list[str]:
        """Channels that have buffered items."""
        return [channel for channel, items in self._items.items() if items]

    def take_newest(self, channel: str, count: int) -> list[Item]:
        """Remove up to ``count`` of the newest live items of ``channel``, oldest first.

        They are not reported as leaving: they go back to Redis still counted.
        """
        items = self._items.get(channel)
        taken: list[Item] = []
        while items and len(taken) < count:
            taken.append(items.pop())
        if items is not None and not items:
            del self._items[channel]
        deadline = now_ms()
        live = [item for item in reversed(taken) if item.deadline_ms > deadline]
        for item in taken:
            if item.deadline_ms <= deadline:
                self._expire(item)
        return live

    def count(self, channel: str) -> int:
        """How many items wait for ``channel``."""
        return len(self._items.get(channel, ()))

    def take(self, channel: str) -> Item | None:
        """The next unexpired item of ``channel``, or None."""
        items = self._items.get(channel)
        while items:
            item = items.popleft()
            if item.deadline_ms > now_ms():
                self._leave(item)
                return item
            self._expire(item)
        self._items.pop(channel, None)
        return None

    def drop_expired(self) -> None:
        """Remove expired items from the head of every channel's FIFO."""
        deadline = now_ms()
        for channel, items in list(self._items.items()):
            while items and items[0].deadline_ms <= deadline:
                self._expire(items.popleft())
            if not items:
                del self._items[channel]

    def first_deadline_ms(self) -> int | None:
        """The earliest deadline among the heads of the FIFOs, or None when empty."""
        heads = [items[0].deadline_ms for items in self._items.values() if items]
        return min(heads) if heads else None

    def __len__(self) -> int:
        return sum(len(items) for items in self._items.values())

    def drain(self) -> dict[str, list[bytes]]:
        """Empty the buffers; returns the live entries by queue, oldest first."""
        by_queue: dict[str, list[bytes]] = {}
        deadline = now_ms()
        for items in self._items.values():
            for item in items:
                if item.deadline_ms > deadline:
                    by_queue.setdefault(item.queue, []).append(item.entry())
                else:
                    self._expire(item)
        self._items.clear()
        return by_queue

    def clear(self) -> None:
        """Forget everything without reporting (the keys were flushed)."""
        self._items.clear()

    def _expire(self, item: Item) -> None:
        """An item expired here: count it, then let it leave."""
        self._counters.expired += 1
        self._leave(item)

    def _leave(self, item: Item) -> None:
        """Report a process-local item that no longer waits here."""
        if item.suffix:
            self._on_leave(item)
