"""Blocking pops on connections their readers hold, instead of a pool checkout per pop.

A reader pops again as soon as a pop returns. Through the pool each pop costs a checkout and a
release (a condition, a lock, a timeout context and a look at the socket). Here a connection
taken from the blocking-pops client's pool (``connections``: at most one per reader sharing
it) is kept out of it between pops: the next pop takes it back from a short list without a
checkout, and the pop is written at once on its stream (``writer.write_now``, not redis-py's
``send_packed_command``, whose write timeout costs a task and a timer per call). The pool still
bounds how many there are and waits when all are taken.

- A connection whose last reply is older than ``writer.PEEK_AFTER_IDLE_S`` gets one look at
  its socket first (``sockets.peer_closed``); one the server closed is reconnected before
  anything is written to it (a pop in flight then fails, as through the pool).
- A pop that fails or is cancelled leaves its connection out of step: redis-py disconnects it,
  and it goes back to the pool, which replaces it. Error replies (``-UNBLOCKED``) keep it.
- ``close`` gives every held connection back to the pool before the client closes it.
- While held, a connection reads with no timeout of redis-py's per read; its
  ``watchdog.Watchdog`` closes it when a reply has been awaited for the pool's
  ``socket_timeout``, and the pop fails with a timeout. It connects, and goes back to the pool,
  with its ``socket_timeout`` as configured.
- With ``writer.ENABLED`` off (benchmarks compare both) pops go through the pool as before.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from . import writer
from .sockets import peer_closed
from .watchdog import Watchdog

__all__ = ["call", "close"]


class _Kept:
    """One held connection, when it last replied, and its watchdog."""

    def __init__(self, connection: AbstractConnection, timeout_s: float | None) -> None:
        self.connection = connection
        self.replied_s = 0.0
        self.overdue = False
        self.watchdog = Watchdog(timeout_s, self._overdue)

    def _overdue(self) -> None:
        """A reply awaited for ``socket_timeout``: close the connection, so the read fails."""
        self.overdue = True
        writer.disconnect_soon(self.connection)


class _Held:
    """The connections of one client's pool its blocking pops hold between pops."""

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._timeout_s: float | None = self._pool.connection_kwargs.get("socket_timeout")
        self._idle: list[_Kept] = []

    async def call(self, *args: Any) -> Any:
        """Send one command on a held connection and read its reply (an error reply raises)."""
        loop = asyncio.get_running_loop()
        if self._idle:
            kept = self._idle.pop()
            connection = kept.connection
            if loop.time() - kept.replied_s > writer.PEEK_AFTER_IDLE_S and peer_closed(connection):
                await connection.disconnect()
        else:
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call,unused-ignore]
            kept = _Kept(connection, self._timeout_s)
        in_step = False
        try:
            if not connection.is_connected:
                connection.socket_timeout = self._timeout_s  # the handshake keeps its timeout
                await connection.connect()  # type: ignore[no-untyped-call,unused-ignore]
            connection.socket_timeout = None  # the watchdog times the reads
            writer.write_now(connection, *args)
            kept.watchdog.expect(loop.time())
            try:
                reply = await connection.read_response()
            except ResponseError:
                in_step = True  # an error reply: the connection is still in step
                raise
            except Exception as exc:
                if kept.overdue:
                    raise kept.watchdog.error() from exc
                raise
            finally:
                kept.watchdog.stop()
            in_step = True
            return reply
        finally:
            if in_step:
                kept.replied_s = loop.time()
                self._idle.append(kept)
            else:
                await self._give_back(kept)

    async def _give_back(self, kept: _Kept) -> None:
        """Return a connection to the pool as the pool made it."""
        kept.watchdog.close()
        kept.connection.socket_timeout = self._timeout_s
        await self._pool.release(kept.connection)

    async def close(self) -> None:
        """Give every held connection back to the pool."""
        idle, self._idle = self._idle, []
        for kept in idle:
            await self._give_back(kept)


_held: weakref.WeakKeyDictionary[Redis, _Held] = weakref.WeakKeyDictionary()


async def call(client: Redis, *args: Any) -> Any:
    """Run one command on a connection ``client``'s blocking pops hold (clients that must send
    something first, ``cluster.AskingRedis``, run it as usual)."""
    if not writer.ENABLED or type(client) is not Redis:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call,unused-ignore]
    held = _held.get(client)
    if held is None:
        held = _held[client] = _Held(client)
    return await held.call(*args)


async def close(client: Redis) -> None:
    """Give ``client``'s held connections back to its pool (before closing it)."""
    held = _held.pop(client, None)
    if held is not None:
        await held.close()
