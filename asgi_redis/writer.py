"""Script calls on a connection of their own per client, replies handed back in order.

Through the pool each call costs a checkout (a lock, a timeout context, a look at the socket),
a task to wait for the write and a release. Here each client (one per event loop and server)
keeps one redis-py connection outside its pool, and ``pipelining`` writes every script call to
it: a lone call at once, the calls of one loop turn as one write. Each caller puts its futures at
the end of a FIFO and waits; one task per connection reads each reply with redis-py's own parser
(hiredis when installed) and hands it to the future at the head.

- Replies stay in step: a cancelled caller's future is dropped, its reply is still read.
- A connection the server closed is replaced before anything is written to it. The event loop
  marks it at EOF for free; a connection without a reply for ``PEEK_AFTER_IDLE_S`` also gets
  ``sockets.peer_closed`` (one non-blocking ``MSG_PEEK``, as the pool's checkout does),
  which sees a ``CLIENT KILL`` the loop has not processed yet, and a ``POLLRDHUP`` poll, which
  sees a close behind replies not read yet (those are handed over first). A busy connection
  gets no syscall per command: a close then fails the call in flight, as a close just after a
  write would. A connection lost with replies pending fails those callers with
  redis-py's error, never retried, as a lost reply on the pool does.
- Writes wait for the socket to drain above ``HIGH_WATER_B`` bytes of unsent data.
- Replies are read without redis-py's timeout per read; a ``watchdog.Watchdog`` fails the
  pending callers with a timeout and drops the connection when no reply came for the pool's
  ``socket_timeout`` while one was awaited.
- Clients that must send something before each command (``cluster.AskingRedis``) or pools
  without ``make_connection`` use the pool as before.

The attributes of redis-py's connection used here (``_writer``, ``_reader``, ``read_response``,
``connect``, ``disconnect``; ``pack_commands`` through ``packing``) are reached only in this
module; ``tests/test_writer.py`` fails if redis-py changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from .failures import own_copy
from .packing import pack
from .scripts import SCRIPTS, Arg, command, run
from .sockets import peer_closed
from .watchdog import Watchdog

logger = logging.getLogger(__name__)

# False: every lone call goes through the pool (benchmarks compare both).
ENABLED = True
# Above this many unsent bytes a writer waits for the socket to drain.
HIGH_WATER_B = 1 << 20
# A connection whose last reply came this recently is written to without a look at its
# socket (a syscall): the loop's own view (EOF seen) still applies. A server closing it
# within that time fails the next call, as a close just after the write would.
PEEK_AFTER_IDLE_S = 0.001

_writers: weakref.WeakKeyDictionary[Redis, Writer] = weakref.WeakKeyDictionary()
# Clients ``close_writer`` closed: a caller that took one before (a batch waiting for its
# flush) fails as callers pending at the close do, instead of opening a connection nobody closes.
_closed_clients: weakref.WeakSet[Redis] = weakref.WeakSet()


class Writer:
    """One dedicated connection of ``client``'s pool and the FIFO of its pending replies."""

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._connection: AbstractConnection | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._has_pending = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing is pending
        self._drained.set()
        self._connecting = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._used_s = 0.0  # loop time of the last reply read (or of the last look)
        timeout_s = self._pool.connection_kwargs.get("socket_timeout")
        self._watchdog = Watchdog(timeout_s, self._overdue)

    async def call(self, *args: Any) -> Any:
        """Send one command and wait for its reply (an error reply raises)."""
        (future,) = await self._write([args])
        return await future

    async def call_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order, error replies as exceptions.

        Raises:
            RedisConnectionError: the connection failed (every command's reply is lost with it).
        """
        futures = await self._write(commands)
        try:
            return [await _reply_or_error(future) for future in futures]
        finally:
            for future in futures:
                if not future.done():
                    future.cancel()  # this caller left: the reader skips its replies
                elif not future.cancelled():
                    future.exception()  # retrieved, so asyncio does not log it as lost

    async def _write(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Write ``commands`` on the open connection; one future per reply, in order."""
        loop = asyncio.get_running_loop()
        connection = self._connection
        task = self._task
        if (
            connection is None
            or task is None
            or task.done()  # cancelled with its loop's other tasks (asyncio.run's end)
            or self._closed
            or self._may_be_stale(connection, loop)
        ):
            connection = await self._ready()
        stream = connection._writer  # redis-py internals: only here
        if stream is None:
            raise RedisConnectionError("connection closed before the command was written")
        stream.writelines(pack(connection, commands))
        futures = [loop.create_future() for _ in commands]
        if not self._pending:
            self._watchdog.expect(loop.time())
        self._pending.extend(futures)
        self._drained.clear()
        self._has_pending.set()
        if stream.transport.get_write_buffer_size() > HIGH_WATER_B:
            await stream.drain()
        return futures

    def _may_be_stale(
        self, connection: AbstractConnection, loop: asyncio.AbstractEventLoop
    ) -> bool:
        """Whether to look at the connection before writing: no reply for ``PEEK_AFTER_IDLE_S``
        (pending or not: a connection killed with a reply outstanding must not get more), or
        the loop has seen it close."""
        return _seen_closed(connection) or loop.time() - self._used_s > PEEK_AFTER_IDLE_S

    async def _ready(self) -> AbstractConnection:
        """The open connection, replaced first if the server closed it."""
        if self._closed:
            raise RedisConnectionError("the connection was closed")
        connection = self._connection
        if connection is not None and self._stale(connection):
            logger.debug("Replacing a dedicated connection the server closed")
            if self._pending:
                # Replies sent before the close may be buffered: the reader hands them over,
                # then fails the rest at EOF and drops the connection.
                self._start_reader()
                await self._drained.wait()
            if self._connection is connection:
                self._drop(connection)
            connection = self._connection
        if connection is None:
            async with self._connecting:
                if self._connection is None:
                    fresh = self._pool.make_connection()  # type: ignore[no-untyped-call]
                    try:
                        await fresh.connect()
                        if self._closed:  # closed meanwhile: nothing may outlive close()
                            raise RedisConnectionError("the connection was closed")
                    except BaseException:
                        await fresh.disconnect(nowait=True)
                        raise
                    fresh.socket_timeout = None  # replies are watched instead (see _overdue)
                    self._connection = fresh
                connection = self._connection
        self._start_reader()
        self._used_s = asyncio.get_running_loop().time()
        return connection

    def _start_reader(self) -> None:
        """Start the reply task: on first use, or again after it was cancelled with its loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read_replies())

    def _stale(self, connection: AbstractConnection) -> bool:
        """Whether the server closed ``connection`` (the loop's view, then the socket's)."""
        if _seen_closed(connection):
            return True
        stream = connection._writer
        return peer_closed(connection) or (stream is not None and _hung_up(stream))

    def _drop(self, connection: AbstractConnection) -> None:
        """Forget ``connection`` and close it in the background."""
        if self._connection is connection:
            self._connection = None
        disconnect_soon(connection)

    async def _read_replies(self) -> None:
        """Hand each reply to the oldest pending caller, for as long as the writer lives."""
        while True:
            while not self._pending:
                self._has_pending.clear()
                await self._has_pending.wait()
            connection = self._connection
            if connection is None:  # dropped with replies pending: they failed already
                self._fail_pending(RedisConnectionError("connection lost"))
                continue
            try:
                reply: Any = await connection.read_response()
            except ResponseError as exc:  # an error reply: the connection is still in step
                reply = exc
            except BaseException as exc:
                if self._connection is connection:  # else dropped as overdue: callers failed
                    self._drop(connection)
                    self._fail_pending(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self._used_s = asyncio.get_running_loop().time()
            self._hand_over(reply)

    def _hand_over(self, reply: Any) -> None:
        """Resolve the oldest pending caller's future with ``reply`` (unless it was cancelled)."""
        future = self._pending.popleft()
        if self._pending:
            self._watchdog.expect(self._used_s)
        else:
            self._watchdog.stop()
            self._drained.set()
        if future.done():
            return  # its caller was cancelled
        if isinstance(reply, BaseException):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def _fail_pending(self, exc: BaseException) -> None:
        """Every pending caller gets ``exc`` (their replies are lost with the connection)."""
        pending, self._pending = list(self._pending), deque()
        self._watchdog.stop()
        self._drained.set()
        for future in pending:
            if not future.done():
                if isinstance(exc, Exception):
                    future.set_exception(own_copy(exc))
                else:
                    future.cancel()

    def _overdue(self) -> None:
        """No reply for ``socket_timeout`` while one was awaited: the pending callers fail with
        a timeout (as redis-py's read would) and the connection is dropped."""
        connection = self._connection
        if connection is None or not self._pending:
            return
        logger.debug("Dropping a dedicated connection that stopped answering")
        self._drop(connection)
        self._fail_pending(self._watchdog.error())

    async def close(self) -> None:
        """Stop reading, fail what is pending and close the connection."""
        self._closed = True
        self._watchdog.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_pending(RedisConnectionError("the connection was closed"))
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()  # waits until the socket is closed


_closing: set[asyncio.Task[Any]] = set()


def disconnect_soon(connection: AbstractConnection) -> None:
    """Close ``connection`` in the background (a read waiting on it fails)."""
    task = asyncio.get_running_loop().create_task(connection.disconnect(nowait=True))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


def _seen_closed(connection: AbstractConnection) -> bool:
    """Whether the event loop has seen ``connection`` close (EOF read, or transport closing):
    known without a syscall."""
    reader, stream = connection._reader, connection._writer
    return reader is None or stream is None or reader.at_eof() or stream.transport.is_closing()


def _hung_up(stream: asyncio.StreamWriter) -> bool:
    """Whether the peer closed the socket, seen even behind unread replies (``POLLRDHUP``,
    Linux; elsewhere only ``sockets.peer_closed``'s look, which data hides)."""
    rdhup = getattr(select, "POLLRDHUP", 0)
    transport_socket = stream.get_extra_info("socket")
    if not rdhup or transport_socket is None or transport_socket.fileno() < 0:
        return False
    poller = select.poll()
    poller.register(transport_socket.fileno(), rdhup)
    return bool(poller.poll(0))


async def _reply_or_error(future: asyncio.Future[Any]) -> Any:
    """The reply in ``future``; an error reply is returned, a connection error raised."""
    try:
        return await future
    except ResponseError as exc:
        return exc


def write_now(connection: AbstractConnection, *args: Any) -> None:
    """Write one command on ``connection`` at once, without redis-py's ``send_packed_command``
    (a task and a timer per call for its timeout): for a caller that reads the reply next."""
    stream = connection._writer
    if stream is None:
        raise RedisConnectionError("connection closed before the command was written")
    stream.writelines(pack(connection, (args,)))


def writer_for(client: Redis) -> Writer | None:
    """``client``'s writer, made on first use; None for clients that keep the pool.

    Raises:
        RedisConnectionError: ``client`` was closed (``close_writer``) before its first use.
    """
    if not ENABLED or type(client) is not Redis:
        return None  # e.g. cluster.AskingRedis sends ASKING before each command
    writer = _writers.get(client)
    if writer is None:
        if not hasattr(client.connection_pool, "make_connection"):
            return None
        if client in _closed_clients:
            raise RedisConnectionError("the connection was closed")
        writer = _writers[client] = Writer(client)
    return writer


async def run_script(client: Redis, name: str, keys: list[str], args: list[Arg]) -> Any:
    """``scripts.run`` on ``client``'s dedicated connection (EVAL on NOSCRIPT, there too)."""
    writer = writer_for(client)
    if writer is None:
        return await run(client, name, keys, args)
    script = SCRIPTS[name]
    try:
        return await writer.call(*command(script, keys, args))
    except NoScriptError:
        return await writer.call(*command(script, keys, args, by_sha=False))


async def close_writer(client: Redis) -> None:
    """Close ``client``'s dedicated connection, if it has one; it gets none after this."""
    _closed_clients.add(client)
    writer = _writers.pop(client, None)
    if writer is not None:
        with contextlib.suppress(Exception):
            await writer.close()
