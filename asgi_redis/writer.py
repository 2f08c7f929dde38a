"""A lone caller's script call on a connection of its own, replies handed back in order.

``pipelining`` sends a call with nothing else in flight on its client at once. Through the
pool that costs a checkout (a lock, a timeout context, a look at the socket), a task to wait
for the write and a release per call. Here each client (one per event loop and server) keeps
one redis-py connection outside its pool: the caller writes its packed command to it, puts a
future at the end of a FIFO and waits; one task per connection reads each reply with
redis-py's own parser (hiredis when installed) and hands it to the future at the head.

- Replies stay in step: a cancelled caller's future is dropped, its reply is still read.
- A connection the server closed is replaced before anything is written to it: the event
  loop marks it at EOF for free, and ``connections.peer_closed`` looks at the socket (one
  non-blocking ``MSG_PEEK``, as the pool's checkout does), which sees a ``CLIENT KILL`` the
  loop has not processed yet (``tests/test_stale_connections.py``). A connection lost with
  replies pending fails those callers with redis-py's error, never retried, as a lost reply
  on the pool does.
- Writes wait for the socket to drain above ``HIGH_WATER_B`` bytes of unsent data.
- Clients that must send something before each command (``cluster.AskingRedis``) or pools
  without ``make_connection`` use the pool as before.

The attributes of redis-py's connection used here (``_writer``, ``_reader``, ``pack_command``,
``read_response``, ``connect``, ``disconnect``) are reached only in this module;
``tests/test_writer.py`` fails if redis-py changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from .connections import peer_closed
from .scripts import SCRIPTS, Arg

logger = logging.getLogger(__name__)

# False: every lone call goes through the pool (benchmarks compare both).
ENABLED = True
# Above this many unsent bytes a writer waits for the socket to drain.
HIGH_WATER_B = 1 << 20

_writers: weakref.WeakKeyDictionary[Redis, Writer] = weakref.WeakKeyDictionary()


class Writer:
    """One dedicated connection of ``client``'s pool and the FIFO of its pending replies."""

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._connection: AbstractConnection | None = None
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._has_pending = asyncio.Event()
        self._connecting = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def call(self, *args: Any) -> Any:
        """Send one command and wait for its reply (an error reply raises)."""
        connection = await self._ready()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        stream = connection._writer  # redis-py internals: only here
        if stream is None:
            raise RedisConnectionError("connection closed before the command was written")
        stream.writelines(connection.pack_command(*args))
        self._pending.append(future)
        self._has_pending.set()
        if stream.transport.get_write_buffer_size() > HIGH_WATER_B:
            await stream.drain()
        return await future

    async def _ready(self) -> AbstractConnection:
        """The open connection, replaced first if the server closed it."""
        if self._closed:
            raise RedisConnectionError("the connection was closed")
        connection = self._connection
        if connection is not None and not self._pending and self._stale(connection):
            logger.debug("Replacing a dedicated connection the server closed")
            self._drop(connection)
            connection = None
        if connection is not None:
            return connection
        async with self._connecting:
            if self._connection is None:
                fresh = self._pool.make_connection()  # type: ignore[no-untyped-call]
                try:
                    await fresh.connect()
                except BaseException:
                    await fresh.disconnect(nowait=True)
                    raise
                self._connection = fresh
                if self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self._read_replies())
            return self._connection

    def _stale(self, connection: AbstractConnection) -> bool:
        """Whether the server closed ``connection`` (the loop's view, then the socket's)."""
        stream = connection._writer
        reader = connection._reader
        if stream is None or reader is None or reader.at_eof() or stream.transport.is_closing():
            return True
        return peer_closed(connection)

    def _drop(self, connection: AbstractConnection) -> None:
        """Forget ``connection`` and close it in the background."""
        if self._connection is connection:
            self._connection = None
        task = asyncio.get_running_loop().create_task(connection.disconnect(nowait=True))
        _closing.add(task)
        task.add_done_callback(_closing.discard)

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
                self._drop(connection)
                self._fail_pending(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            future = self._pending.popleft()
            if future.done():
                continue  # its caller was cancelled
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def _fail_pending(self, exc: BaseException) -> None:
        """Every pending caller gets ``exc`` (their replies are lost with the connection)."""
        pending, self._pending = list(self._pending), deque()
        for future in pending:
            if not future.done():
                if isinstance(exc, Exception):
                    future.set_exception(_own(exc))
                else:
                    future.cancel()

    async def close(self) -> None:
        """Stop reading, fail what is pending and close the connection."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._fail_pending(RedisConnectionError("the connection was closed"))
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)


_closing: set[asyncio.Task[Any]] = set()


def _own(exc: Exception) -> Exception:
    """A copy of ``exc`` per caller (one instance raised in many tasks shares a traceback)."""
    try:
        own = type(exc)(*exc.args)
    except Exception:
        return exc
    own.__cause__ = exc
    return own


def _writer_for(client: Redis) -> Writer | None:
    """``client``'s writer, made on first use; None for clients that keep the pool."""
    if not ENABLED or type(client) is not Redis:
        return None  # e.g. cluster.AskingRedis sends ASKING before each command
    writer = _writers.get(client)
    if writer is None:
        if not hasattr(client.connection_pool, "make_connection"):
            return None
        writer = _writers[client] = Writer(client)
    return writer


async def run_script(client: Redis, name: str, keys: list[str], args: list[Arg]) -> Any:
    """``scripts.run`` on ``client``'s dedicated connection (EVAL on NOSCRIPT, via the pool)."""
    script = SCRIPTS[name]
    writer = _writer_for(client)
    if writer is None:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(script.source, len(keys), *keys, *args)
    try:
        return await writer.call("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)


async def close_writer(client: Redis) -> None:
    """Close ``client``'s dedicated connection, if it has one."""
    writer = _writers.pop(client, None)
    if writer is not None:
        with contextlib.suppress(Exception):
            await writer.close()
