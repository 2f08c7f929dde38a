"""The event loop a layer runs forwarded calls on, in a daemon thread of its own, and one
forwarded call: started there, its result or exception handed back to the caller's loop,
cancelled with its caller (see ``offload``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
G = TypeVar("G")
A = TypeVar("A")
Loop = asyncio.AbstractEventLoop
# How long close() and interpreter exit wait for the background thread to finish.
STOP_TIMEOUT_S = 5.0


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
