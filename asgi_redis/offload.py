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
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

from .syncpath import blocking

logger = logging.getLogger(__name__)

# A loop that closes within this many seconds of its first call is short-lived.
YOUNG_S = 1.0
# After this many short-lived loops, loops met later are served by the background loop.
CHURN_LOOPS = 2
# How long close() and interpreter exit wait for the background thread to finish.
STOP_TIMEOUT_S = 5.0

P = ParamSpec("P")
T = TypeVar("T")
G = TypeVar("G")
A = TypeVar("A")
Loop = asyncio.AbstractEventLoop


class ClosedError(RuntimeError):
    """The layer's background loop was stopped (``close()``) while the call ran there."""


class Call(Generic[T]):
    """One forwarded call: a task on the background loop, a waiter on the caller's loop."""

    def __init__(self, coro: Coroutine[Any, Any, T], caller: Loop, background: Loop) -> None:
        self._coro = coro
        self._caller = caller
        self._background = background
        self._lock = threading.Lock()
        self._abandoned = False  # the caller gave up: take nothing more for it
        self._committed = False  # a message was taken for the caller: it must get it
        self._task: asyncio.Task[T] | None = None
        self._outcome: asyncio.Task[T] | None = None  # the finished task, on the caller side
        self._waiter: asyncio.Future[None] = caller.create_future()

    # -- on the background loop --------------------------------------------------------

    def start(self) -> None:
        """Run the call (scheduled on the background loop by ``Offload.run``)."""
        if self._abandoned:
            self._coro.close()
            return
        self._task = self._background.create_task(self._run())
        self._task.add_done_callback(self._finished)

    async def _run(self) -> T:
        """The call, with this object as the gate of the receives it makes."""
        gate.set(self)
        return await self._coro

    def take(self, taker: Callable[[A], G | None], argument: A) -> G | None:
        """``taker(argument)`` unless the caller gave up (then CancelledError); a result
        commits the call: the caller will get it."""
        with self._lock:
            if self._abandoned:
                raise asyncio.CancelledError
            got = taker(argument)
            if got is not None:
                self._committed = True
            return got

    def _cancel(self) -> None:
        """Cancel the task (the caller gave up before it was committed)."""
        if self._task is not None:
            self._task.cancel()

    def _finished(self, task: asyncio.Task[T]) -> None:
        """Hand the finished task to the caller's loop."""
        if task.cancelled():
            self._coro.close()  # cancelled before it started: no "never awaited" warning
        try:
            self._caller.call_soon_threadsafe(self._settle, task)
        except RuntimeError:  # the caller's loop is closed: nobody will look
            if not task.cancelled() and task.exception() is None and self._committed:
                logger.warning("A message received for an event loop that closed was lost")

    # -- on the caller's loop ------------------------------------------------------------

    def _settle(self, task: asyncio.Task[T]) -> None:
        """The task finished: wake the caller."""
        self._outcome = task
        if not task.cancelled():
            task.exception()  # retrieved here even if the caller gave up (no asyncio warning)
        if not self._waiter.done():
            self._waiter.set_result(None)

    async def result(self) -> T:
        """Wait for the call; cancelling this cancels it, unless a message is committed."""
        try:
            await self._waiter
        except asyncio.CancelledError:
            if not self.abandon():
                raise
            while self._outcome is None:  # the message is on its way: wait for it
                self._waiter = self._caller.create_future()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._waiter
        return self._unwrap()

    def abandon(self) -> bool:
        """The caller gives up. Returns True if it must wait for a committed message."""
        with self._lock:
            if self._committed:
                return True
            self._abandoned = True
        with contextlib.suppress(RuntimeError):  # a closed background loop ran nothing more
            self._background.call_soon_threadsafe(self._cancel)
        return False

    def _unwrap(self) -> T:
        """The task's result, or its exception raised here."""
        task = self._outcome
        if task is None or task.cancelled():
            raise ClosedError("the channel layer was closed while this call ran")
        error = task.exception()
        if error is not None:
            raise error
        return task.result()


# Set inside a forwarded call: receiver.receive_from takes messages through it.
gate: contextvars.ContextVar[Call[Any] | None] = contextvars.ContextVar("gate", default=None)


class BackgroundLoop:
    """A daemon thread running one event loop, until ``stop_soon``."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.lock = threading.Lock()
        self.accepting = True
        self.ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, name="asgi_redis background loop", daemon=True
        )
        self._thread.start()

    def submit(self, call: Call[Any]) -> bool:
        """Schedule ``call`` here; False once stopping (nothing scheduled)."""
        with self.lock:
            if self.accepting:
                self.loop.call_soon_threadsafe(call.start)
            return self.accepting

    def refuse(self) -> bool:
        """Accept no more calls; False if that was so already."""
        with self.lock:
            was_accepting, self.accepting = self.accepting, False
        return was_accepting

    def stop_soon(self) -> None:
        """End the thread: calls still running end with ``ClosedError``, then the loop closes."""
        self.refuse()
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)

    def join(self) -> None:
        """Wait for the thread to end (bounded)."""
        self._thread.join(STOP_TIMEOUT_S)

    def _run(self) -> None:
        """The thread: run until stopped, cancel what is left, close the loop."""
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()  # the layer's hook (connections.py) closes this loop's part
        except Exception:
            logger.exception("The channel layer's background loop failed")
        finally:
            self.ended.set_result(None)


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
