"""The one task of an event loop that pops from one Redis server for the waiting receives.

Callers never pop and can never cancel this task: a blocking pop that is cut off after the
server answered would lose what it popped. It pops only what the demand asks for, hands every
entry to ``dispatch``, and ends when nobody has waited for ``IDLE_LINGER_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import commands, keys
from .buffers import now_ms
from .connections import BLOCK_TIMEOUT_S
from .errors import PopUnblockedError
from .routes import Route
from .sidetask import BACKOFF_MAX_S, BACKOFF_MIN_S
from .watchdog import Watchdog

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# How long close() waits for a pop under way (the wake token makes it return at once).
STOP_TIMEOUT_S = BLOCK_TIMEOUT_S + 2
# Queues per receive-script call when sweeping, so no call holds Redis for long.
SWEEP_CHUNK = 500
# From this many wanted queues on, a sweep always pays after a pop.
SWEEP_MIN_QUEUES = 200
# Below it a blocking pop is cheap and a sweep that finds nothing only adds a round trip: a
# sweep pays after a pop when the last sweep found something, and is tried again (a probe)
# every this many pops.
SWEEP_PROBE_EVERY = 8
# When nobody waits, the task waits this long for a new receive before it ends: a consumer
# that takes one message at a time re-arms its receive soon, and a task per pop cost more
# than the pop's own bookkeeping.
IDLE_LINGER_S = 1.0
# While a slot migration refuses multi-key pops, how long to wait after one-key pops found
# nothing (they cannot block).
SPLIT_PAUSE_S = 0.05


@dataclass
class ServerState:
    """What one reader learns about its server for every lane (``lanes.py``) of it."""

    multi_pop: bool = True  # BLMPOP until the server says it has none
    reached: bool = False  # answered once: a later error is an outage, not a typo


class Reader:
    """Blocking pops on one server for the queues ``wanted`` names.

    Args:
        route: where the queues live (a server, or a tag of a cluster).
        prefix: the layer's key prefix.
        wake_key: this process's wake list on that server (pushing to it ends a blocking pop).
        label: the server's address for messages (no password).
        wanted: queue key -> how many entries the waiting receives want now ({} = stop).
        dispatch: called with (queue key, entry) for every popped entry.
        on_unreachable: called when the server could not be reached and never was by this
            reader, or refuses it a command (ACL): waiting receives should fail instead of
            waiting through a typo or a missing permission (the reader keeps retrying for
            later receives).
        server: shared with the other lanes on the same server (a new one by default).
    """

    def __init__(
        self,
        route: Route,
        prefix: str,
        wake_key: str,
        label: str,
        wanted: Callable[[], dict[str, int]],
        dispatch: Callable[[str, bytes], None],
        on_unreachable: Callable[[Exception], None],
        server: ServerState | None = None,
    ) -> None:
        self._route = route
        self._prefix = prefix
        self._wake_key = wake_key
        self._label = label
        self._wanted = wanted
        self._dispatch = dispatch
        self._on_unreachable = on_unreachable
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Future[bool] | None = None  # set while lingering without demand
        # Ends a linger after IDLE_LINGER_S: one timer for every linger (see _linger).
        self._linger_watch = Watchdog(IDLE_LINGER_S, self._linger_over)
        self._wakes: set[asyncio.Task[None]] = set()
        self._blocking_on: frozenset[str] | None = None
        self._woken = False
        self._stopping = False
        self._server = server or ServerState()
        # The state of the rule (see ``_read_once``): what the last pop or sweep decided, and
        # how many more popping pops before a sweep is tried again (0: after the next one).
        self._sweep_next = False
        self._pops_to_probe = 0

    @property
    def running(self) -> bool:
        """Whether the reader task is alive."""
        return self._task is not None

    def ensure(self, queues: list[str]) -> None:
        """Start the reader, or wake it when it blocks on a set lacking one of ``queues``."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._read())
        elif self._idle is not None:
            _resolve(self._idle, True)
        elif self._blocking_on is not None and any(q not in self._blocking_on for q in queues):
            self.wake()

    def reconsider(self, unwanted: list[str]) -> None:
        """Wake the reader if it blocks on one of these queues that nobody wants any more."""
        blocking_on = self._blocking_on
        if blocking_on is not None and any(queue in blocking_on for queue in unwanted):
            self.wake()

    def wake(self) -> None:
        """Make the blocking pop return, so the reader looks at the demand again."""
        if self._woken:
            return
        self._woken = True
        task = asyncio.get_running_loop().create_task(self._push_wake())
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)

    async def stop(self) -> None:
        """End the reader; a pop under way completes and is dispatched first.

        Only when the server does not answer within ``STOP_TIMEOUT_S`` is the task cancelled;
        what that pop took is then lost (logged).
        """
        self._stopping = True
        if self._idle is not None:
            _resolve(self._idle, False)
        task = self._task
        if task is not None:
            if self._blocking_on is not None:
                self._woken = False
                # Bounded: a push that never answers only leaves the pop to end by itself.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._push_wake(), STOP_TIMEOUT_S)
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                logger.warning("Redis at %s did not answer; stopped reading anyway", self._label)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for wake in list(self._wakes):
            wake.cancel()
        await asyncio.gather(*self._wakes, return_exceptions=True)

    async def _push_wake(self) -> None:
        """Push one token to the wake list; a failure only delays the reader."""
        try:
            await self._route.run(
                "wake-up of the reader",
                lambda client: commands.wake(
                    client, wake_key=self._wake_key, ttl_s=BLOCK_TIMEOUT_S * 2
                ),
            )
        except Exception as exc:
            logger.warning("Could not wake the reader on %s: %r", self._label, exc)

    async def _read(self) -> None:
        """Pop for waiting receives until nobody has waited for ``IDLE_LINGER_S``."""
        backoff_s = BACKOFF_MIN_S
        try:
            while not self._stopping:
                try:
                    if not self._server.reached:
                        # tells a typo from an outage
                        await self._route.run("ping", commands.ping)
                        self._server.reached = True
                    if not await self._read_once() and not await self._linger():
                        return
                    backoff_s = BACKOFF_MIN_S
                except PopUnblockedError as exc:  # nothing was popped: pop again at once
                    logger.info("Redis at %s ended a blocking pop: %s", self._label, exc)
                except TRANSIENT_ERRORS as exc:
                    # The pool mends what broke (a failover's new master, a closed socket).
                    if not self._server.reached:  # a typo or a server that is not up: say so now
                        self._on_unreachable(exc)
                    else:
                        logger.warning(
                            "Redis at %s unavailable (%s); retrying in %.1f s",
                            *(self._label, exc, backoff_s),
                        )
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                except Exception as exc:
                    if isinstance(exc, NoPermissionError):  # an ACL refusal will not heal soon
                        self._on_unreachable(exc)
                    label = self._label
                    logger.exception("Reader on %s failed; retrying in %.1f s", label, backoff_s)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
        finally:
            self._task = None
            self._blocking_on = None
            self._linger_watch.close()

    async def _linger(self) -> bool:
        """Wait up to ``IDLE_LINGER_S`` for a receive; False when none came (the task ends).

        The demand is asked once more at the end, which also lets the receiver re-arm its
        timer for the expiry of buffered messages (it does so while no reader runs).

        A consumer that takes one message at a time lingers once per message: the reader's
        ``watchdog.Watchdog`` serves every linger with one timer, re-armed only when it fires,
        instead of one made and cancelled each time.
        """
        loop = asyncio.get_running_loop()
        idle = self._idle = loop.create_future()
        self._linger_watch.expect(loop.time())
        try:
            woken = await idle
        finally:
            self._idle = None
            self._linger_watch.stop()
        return not self._stopping and (woken or bool(self._wanted()))

    def _linger_over(self) -> None:
        """No receive came for ``IDLE_LINGER_S``: the linger ends (and with it the task)."""
        if self._idle is not None:
            _resolve(self._idle, False)

    async def _read_once(self) -> bool:
        """One round of popping; False when nobody waits any more.

        The rule: **the reader blocks, unless its last pop or sweep brought something and a
        sweep pays now, in which case it sweeps** (takes what every wanted queue holds, in
        one receive-script call per ``SWEEP_CHUNK`` queues). A sweep pays after a sweep that
        found something, and after a pop when ``SWEEP_MIN_QUEUES`` or more queues are wanted
        or when the last sweep found something, or as a probe every ``SWEEP_PROBE_EVERY``
        pops. Two exceptions: a server without BLMPOP (Redis < 7) always sweeps before it
        blocks with BLPOP, and a slot migration that refuses multi-key pops makes it pop each
        queue on its own. So a burst to N channels costs a few sweeps instead of N blocking
        pops (each of which carries every wanted queue), and a trickle to a few channels
        costs no extra round trip.
        """
        wanted = self._wanted()
        if not wanted:
            return False
        try:
            if self._sweep_next or not self._server.multi_pop:
                await self._sweep_then(wanted)
            else:
                await self._block_then(wanted)
        except TryAgainError:
            # A Redis Cluster slot migration splits these keys: multi-key pops are refused
            # until it ends, one-key pops are not.
            if not await self._pop_each(wanted):
                await asyncio.sleep(SPLIT_PAUSE_S)
        return True

    async def _sweep_then(self, wanted: dict[str, int]) -> None:
        """Sweep; when that found nothing, block in the same round."""
        found = await self._sweep(wanted)
        self._sweep_next = found
        self._pops_to_probe = 0 if found else SWEEP_PROBE_EVERY
        if found:
            return
        wanted = self._wanted()
        if wanted and not self._stopping:
            await self._block_then(wanted)

    async def _block_then(self, wanted: dict[str, int]) -> None:
        """Block; after a pop that brought something, decide whether a sweep pays next."""
        popped = await self._block(wanted)
        if not popped:
            self._sweep_next = False
            return
        self._pops_to_probe -= 1
        self._sweep_next = len(wanted) >= SWEEP_MIN_QUEUES or (
            len(wanted) > 1 and self._pops_to_probe <= 0
        )

    async def _pop_each(self, wanted: dict[str, int]) -> bool:
        """One non-blocking one-key pop per wanted queue; True if any entry came."""
        got = False
        for queue, count in wanted.items():
            entries = await self._route.run(
                "receive", partial(commands.pop, queue=queue, count=count)
            )
            for entry in entries:
                self._dispatch(queue, entry)
            got = got or bool(entries)
        return got

    async def _sweep(self, wanted: dict[str, int]) -> bool:
        """Non-blocking pop from every wanted queue with the receive script; True if it popped."""
        items = list(wanted.items())
        got = False
        for first in range(0, len(items), SWEEP_CHUNK):
            queues = [
                (queue, keys.counts_key(self._prefix, keys.queue_part(self._prefix, queue)), count)
                for queue, count in items[first : first + SWEEP_CHUNK]
            ]
            popped = await self._route.run(
                "receive",
                partial(commands.receive, now_ms=now_ms(), queues=queues),
                wait_split=False,
            )
            for pos, entry in popped:
                self._dispatch(queues[pos][0], entry)
            got = got or bool(popped)
        return got

    async def _block(self, wanted: dict[str, int]) -> bool:
        """Blocking pop on the wanted queues and the wake list; True if it popped an entry.

        BLMPOP takes a batch from the first non-empty queue in one round trip; its single COUNT
        is the smallest demand, so a named channel never gets more than its waiters asked for.
        """
        queues = list(wanted)
        self._blocking_on = frozenset(queues)
        self._woken = False
        shift = int(time.monotonic() * 1000) % len(queues)  # no queue always comes first
        order = [*queues[shift:], *queues[:shift], self._wake_key]
        try:
            if self._server.multi_pop:
                result = await self._multi_pop_or_fall_back(order, min(wanted.values()))
            else:
                result = await self._route.run(
                    "receive",
                    lambda client: self._pop_with(client, order, 0),
                    wait_split=False,
                    blocking_pops=True,
                )
        finally:
            self._blocking_on = None
        if result is None or result[0] == self._wake_key:
            return False
        for entry in result[1]:
            self._dispatch(result[0], entry)
        return True

    async def _pop_with(
        self, client: Redis, order: list[str], count: int
    ) -> tuple[str, list[bytes]] | None:
        """BLMPOP of ``count`` (BLPOP for 0); ``held.py`` keeps the connection between pops."""
        if count:
            return await commands.multi_pop(client, order, count, BLOCK_TIMEOUT_S)
        return await commands.single_pop(client, order, BLOCK_TIMEOUT_S)

    async def _multi_pop_or_fall_back(self, order: list[str], count: int) -> Any:
        """BLMPOP (Redis >= 7); on servers without it, switch to the script and BLPOP."""
        try:
            return await self._route.run(
                "receive",
                lambda client: self._pop_with(client, order, count),
                wait_split=False,
                blocking_pops=True,
            )
        except ResponseError as exc:
            if "unknown command" not in str(exc).lower():
                raise
            logger.info("Redis has no BLMPOP; popping with the script and BLPOP instead")
            self._server.multi_pop = False
            return None


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    """Set ``future`` to ``value`` unless it is done already."""
    if not future.done():
        future.set_result(value)
