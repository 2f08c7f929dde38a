"""Calls from short-lived event loops, run on a long-lived loop of the layer's own.

``async_to_sync`` called where no event loop runs (a WSGI view, a Celery task, a management
command) runs each call on a new event loop that ``asyncio.run`` closes right after. Redis
connections belong to one loop, so each such call would connect, send one command and hang
up: about 2 ms of a 2.5 ms call. Once a layer has seen ``CHURN_LOOPS`` of its loops close
within ``YOUNG_S`` of their first call, every loop it meets afterwards is served by a daemon
thread running one event loop with persistent connections: the call runs there and its result
or exception is handed back to the caller's loop. Loops met before that (a consumer's, a
worker's) keep running their calls themselves. A loop's choice never changes, so all its
receives use the same process-local buffers.

Methods marked ``blockable`` (send, group_send, group_add, group_discard) do better still on
such a loop while it is young: they run right there as blocking calls of a sync client
(``syncpath``), since nothing else runs on it. The youth check keeps a long-lived loop that
happens to be met after the churn from being blocked for longer than its first ``YOUNG_S``.

Cancelling the caller cancels the forwarded call. A forwarded receive takes a message only
while its caller still waits (``Call.take`` decides under one lock with the caller's
cancellation), and a message taken always reaches the caller, even one cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .backgroundloop import STOP_TIMEOUT_S, BackgroundLoop, Call
from .syncpath import blocking

logger = logging.getLogger(__name__)

# A loop that closes within this many seconds of its first call is short-lived.
YOUNG_S = 1.0
# After this many short-lived loops, loops met later are served by the background loop.
CHURN_LOOPS = 2

P = ParamSpec("P")
T = TypeVar("T")
G = TypeVar("G")
A = TypeVar("A")
Loop = asyncio.AbstractEventLoop


class Offload:
    """Which loops a layer serves itself, and the background loop that serves the others.

    Args:
        close_part: the layer's ``close`` for the running loop only; run on the background
            loop by ``stop``.
        can_block: whether ``blockable`` methods may run as blocking calls (the layer has a
            sync client for every server).
    """

    def __init__(
        self, close_part: Callable[[], Coroutine[Any, Any, None]], can_block: bool = False
    ) -> None:
        self._close_part = close_part
        self._can_block = can_block
        self._lock = threading.Lock()
        self._background: BackgroundLoop | None = None
        self._forwarded: dict[Loop, bool] = {}  # every open loop met: is it served here?
        self._met_s: dict[Loop, float] = {}  # when each forwarded loop was met (monotonic)
        self._pending: dict[Loop, set[Call[Any]]] = {}
        self.young_deaths = 0
        _LIVE.add(self)

    def forwards(self) -> bool:
        """Whether the running loop's calls go to the background loop."""
        loop = asyncio.get_running_loop()
        forwarded = self._forwarded.get(loop)
        if forwarded is None:
            forwarded = self._first_call(loop)
        return forwarded

    def blocks(self) -> bool:
        """Whether the running loop's ``blockable`` calls block it: a forwarded loop, met
        less than ``YOUNG_S`` ago, and a layer with sync clients."""
        if not self._can_block:
            return False
        met_s = self._met_s.get(asyncio.get_running_loop())
        return met_s is not None and time.monotonic() - met_s < YOUNG_S

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the background loop (started if needed); its result comes here."""
        caller = asyncio.get_running_loop()
        while True:
            background = self._started()
            call = Call(coro, caller, background.loop)
            if background.submit(call):
                break
        pending = self._pending.setdefault(caller, set())
        pending.add(call)
        try:
            return await call.result()
        finally:
            pending.discard(call)

    async def stop(self) -> None:
        """Close the layer's part on the background loop, then end its thread.

        A failed close (messages that could not go back to Redis) leaves the loop running,
        so calling ``close`` again retries.
        """
        background = self._background
        if background is None or asyncio.get_running_loop() is background.loop:
            return
        if background.refuse():
            try:
                close = asyncio.run_coroutine_threadsafe(self._close_part(), background.loop)
                await asyncio.wrap_future(close)
            except BaseException:
                with background.lock:
                    background.accepting = True
                raise
        self._end(background)
        try:
            await asyncio.wait_for(asyncio.wrap_future(background.ended), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            logger.warning("The channel layer's background loop did not stop in time")
        else:
            background.join()  # its last instructions: no wait worth a thread of its own

    def stop_at_exit(self) -> None:
        """Like ``stop``, from no event loop, each wait bounded (interpreter exit)."""
        background = self._background
        if background is None or not background.refuse():
            return
        try:
            close = asyncio.run_coroutine_threadsafe(self._close_part(), background.loop)
            close.result(STOP_TIMEOUT_S)
        except Exception as exc:
            logger.warning("Could not close the channel layer's background loop: %r", exc)
        self._end(background)
        background.join()

    def forget(self) -> None:
        """In a forked child: the parent's thread is not here and its sockets are the
        parent's; forget both (never close them), so the child starts its own."""
        self._lock = threading.Lock()
        self._background = None
        self._forwarded = {}
        self._met_s = {}
        self._pending = {}

    def _end(self, background: BackgroundLoop) -> None:
        """Stop ``background``'s thread and forget it."""
        background.stop_soon()
        with self._lock:
            if self._background is background:
                self._background = None
        self._forwarded.pop(background.loop, None)

    def _started(self) -> BackgroundLoop:
        """The background loop accepting calls, started if there is none."""
        with self._lock:
            background = self._background
            if background is None or not background.accepting:
                background = self._background = BackgroundLoop()
                self._forwarded[background.loop] = False
            return background

    def _first_call(self, loop: Loop) -> bool:
        """Choose for a loop met for the first time, and watch it close."""
        forwarded = self.young_deaths >= CHURN_LOOPS
        self._forwarded[loop] = forwarded
        born_s = time.monotonic()
        if forwarded:
            self._met_s[loop] = born_s
        original_close = loop.close

        def close() -> None:
            self._closing(loop, forwarded, time.monotonic() - born_s)
            original_close()

        with contextlib.suppress(AttributeError):  # loops that refuse new attributes
            loop.close = close  # type: ignore[method-assign]
        return forwarded

    def _closing(self, loop: Loop, forwarded: bool, age_s: float) -> None:
        """A loop met before closes: count it if it died young, give up its calls."""
        self._forwarded.pop(loop, None)
        self._met_s.pop(loop, None)
        if not forwarded and age_s < YOUNG_S:
            self.young_deaths += 1
        for call in self._pending.pop(loop, set()):
            if call.abandon():
                logger.warning("An event loop closed while a message was on its way to it")


class HasOffload(Protocol):
    """A layer whose public calls can be forwarded."""

    _offload: Offload


S = TypeVar("S", bound=HasOffload)


def forwardable(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Run a layer method on the background loop when called from a short-lived loop."""
    return _dispatching(method, may_block=False)


def blockable(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Like ``forwardable``; on a loop where ``Offload.blocks``, run the method here with
    ``syncpath.blocking`` set, so its Redis calls are blocking calls of a sync client."""
    return _dispatching(method, may_block=True)


def _dispatching(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]], *, may_block: bool
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """``method`` run here, forwarded, or (``may_block``) here as a blocking call."""

    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        offload = self._offload
        if not offload.forwards():
            return await method(self, *args, **kwargs)
        if not (may_block and offload.blocks()):
            return await offload.run(method(self, *args, **kwargs))
        token = blocking.set(True)
        try:
            return await method(self, *args, **kwargs)
        finally:
            blocking.reset(token)

    functools.update_wrapper(call, method)
    return call


_LIVE: weakref.WeakSet[Offload] = weakref.WeakSet()


def _forget_in_child() -> None:
    """After ``fork()``, in the child (see ``Offload.forget``)."""
    for offload in list(_LIVE):
        offload.forget()


def _stop_at_exit() -> None:
    """At interpreter exit, hand buffered messages back and end every background thread."""
    for offload in list(_LIVE):
        offload.stop_at_exit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
# threading's exit hooks run before the interpreter joins the thread pools that async_to_sync
# runs loops in: a forwarded receive still waiting there would otherwise keep the process alive.
getattr(threading, "_register_atexit", atexit.register)(_stop_at_exit)
