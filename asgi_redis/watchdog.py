"""One timer per connection (or reader) instead of one per wait.

redis-py reads every reply under the connection's ``socket_timeout`` in an ``asyncio.timeout``
block: a timer made and cancelled per read, about 5 us on Python 3.11, four times per
ping-pong round trip. The connections of ``writer`` and ``held`` read with no timeout of
their own and have a ``Watchdog``: ``expect`` when a reply is awaited from now on, ``stop``
when none is; one timer, re-armed only when it fires, calls ``on_overdue`` once a reply has
been awaited for ``timeout_s``. The timer only moves forward to the latest awaited reply's
deadline, so a stalled server still fails the call ``socket_timeout`` after its reply was first
awaited, as redis-py's own timeout would, with no timer work per read. A ``reader`` ends its
idle linger with one too (a wait for the next receive instead of a reply).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Watchdog"]


class Watchdog:
    """Calls ``on_overdue`` when a reply has been awaited for ``timeout_s`` (None: never)."""

    def __init__(self, timeout_s: float | None, on_overdue: Callable[[], None]) -> None:
        self.timeout_s = timeout_s
        self._on_overdue = on_overdue
        self._since_s: float | None = None  # loop time the awaited reply was first awaited
        self._timer: asyncio.TimerHandle | None = None

    def expect(self, now_s: float) -> None:
        """A reply is awaited from ``now_s`` (loop time) on."""
        self._since_s = now_s
        if self._timer is None and self.timeout_s is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(now_s + self.timeout_s, self._check)

    def stop(self) -> None:
        """No reply is awaited (the timer stays until it fires, and then lapses)."""
        self._since_s = None

    def close(self) -> None:
        """Stop and cancel the timer."""
        self._since_s = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def error(self) -> RedisTimeoutError:
        """The error of a call whose reply was overdue (redis-py's class for a read timeout)."""
        return RedisTimeoutError(f"Timeout reading: no reply for {self.timeout_s} s")

    def _check(self) -> None:
        """The timer: report an overdue reply, or wait until the awaited one would be."""
        self._timer = None
        since_s, timeout_s = self._since_s, self.timeout_s
        if since_s is None or timeout_s is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - since_s >= timeout_s:
            self._since_s = None
            self._on_overdue()
        else:
            self._timer = loop.call_at(since_s + timeout_s, self._check)
