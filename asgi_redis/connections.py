"""Redis clients per event loop (``async_to_sync`` runs calls on fresh loops)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from . import held, writer
from .config import Host, SentinelService
from .keys import TAG_COUNT
from .redis_options import BLOCK_TIMEOUT_S, SOCKET_TIMEOUT_S
from .sockets import peer_closed

__all__ = ["BLOCK_TIMEOUT_S", "SOCKET_TIMEOUT_S", "Connections", "LoopHook", "make_client"]

logger = logging.getLogger(__name__)

# The most readers that share one server's blocking-pops pool: one per loop on a server, one
# per tag on a cluster node.
BLOCKING_POOL_SIZE = TAG_COUNT
# Sentinels answer short queries; an unreachable one should not hold up asking the next.
SENTINEL_TIMEOUT_S = 2
# How many times a loop's close runs the layer's close for it while clients are still being
# made for the loop (by a close step, or a task the loop still runs).
CLOSE_ROUNDS = 3


def pool_options(host: Host) -> dict[str, Any]:
    """Connection options for one host: ours first, then the user's on top."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5,
        "max_connections": 100,
        "timeout": None,  # wait for a free connection instead of failing under load
        # A retried script could run twice (a lost reply is not a failed command): never retry.
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(host.options)
    options["decode_responses"] = False
    return options


class FreshConnectionsMixin:
    """Replace a pooled connection the server closed before any command is written to it.

    redis-py 8 hands out such connections: ``ensure_connection`` sees EOF through
    ``can_read()``, but ignores it when maintenance notifications are enabled (the default,
    ``"auto"``), taking it for a pending push. The next command is then written to a dead
    socket and fails with "Connection closed by server" although Redis is back (after a
    restart, a failover, a ``CLIENT KILL`` or a proxy's idle timeout). Reconnecting here is
    safe: nothing was sent on the dead connection, so no script can run twice. A connection
    that dies after the command is written still fails the call, never retried.
    """

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        """Reconnect ``connection`` if its server closed it, then let redis-py check it."""
        if peer_closed(connection):
            logger.debug("Reconnecting a pooled connection the server closed")
            await connection.disconnect()
        await super().ensure_connection(connection)  # type: ignore[misc]


class FreshBlockingConnectionPool(FreshConnectionsMixin, BlockingConnectionPool):
    """redis-py's blocking pool that never hands out a connection the server closed."""


class BlockingSentinelConnectionPool(
    FreshConnectionsMixin, SentinelConnectionPool, BlockingConnectionPool
):
    """redis-py's Sentinel pool, waiting for a free connection like our other pools.

    ``SentinelConnectionPool`` extends the plain ``ConnectionPool``, which raises "Too many
    connections" once ``max_connections`` are in use; a burst of sends must wait instead. The
    Sentinel part asks the sentinels for the master's address whenever a connection connects
    (and drops idle connections when the address changes); the blocking part only changes how
    connections are taken and given back (``get_connection``/``release``). They override
    different methods, so the method order combines them: Sentinel's ``__init__`` passes
    ``max_connections`` and ``timeout`` on to ``BlockingConnectionPool.__init__``.
    """


def sentinel_options(service: SentinelService) -> dict[str, Any]:
    """Options of the clients that talk to the sentinels: ours first, the user's on top."""
    return {
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        # On an error redis-py moves on to the next sentinel; retrying this one only waits.
        "retry": Retry(NoBackoff(), 0),
        **service.sentinel_options,
    }


def make_client(host: Host, *, blocking_pops: bool = False) -> Redis:
    """A client whose pool waits for a free connection instead of failing under load.

    With ``blocking_pops`` the client is for readers' blocking pops only: its own pool, of at
    most one connection per reader that can share it (``BLOCKING_POOL_SIZE``), so blocking
    pops never take the connections sends and scripts use.
    """
    options = pool_options(host)
    if blocking_pops:
        options["max_connections"] = BLOCKING_POOL_SIZE
    if host.sentinel is not None:
        # redis-py < 8.2 leaves Sentinel.__init__ untyped; 8.2 types it (so "unused" too).
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(host.sentinel.sentinels), sentinel_kwargs=sentinel_options(host.sentinel)
        )
        client: Redis = sentinel.master_for(
            host.sentinel.master_name,
            connection_pool_class=BlockingSentinelConnectionPool,
            **options,
        )
        return client
    if host.url is not None:
        pool = FreshBlockingConnectionPool.from_url(host.url, **options)
    else:
        pool = FreshBlockingConnectionPool(**options)
    return Redis.from_pool(pool)


class LoopHook:
    """Runs ``on_loop_close`` inside each event loop a client was made for, right before that
    loop closes (``async_to_sync`` and ``asyncio.run`` close theirs), so sockets and buffered
    messages are dealt with while the loop can still run them.

    One hook per loop serves every ``Connections`` sharing this object (a layer's servers or
    cluster nodes). It runs again while any of them still holds a client for the loop: a close
    step, or a task the loop still runs, may make one after its server's clients were closed.
    """

    def __init__(self, on_loop_close: Callable[[], Awaitable[None]]) -> None:
        self._on_loop_close = on_loop_close
        self._members: list[Connections] = []
        self._hooked: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def add(self, connections: Connections) -> None:
        """Close ``connections``' clients with their loops too."""
        self._members.append(connections)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``on_loop_close`` in ``loop`` right before ``loop.close()`` (hooked once)."""
        if loop in self._hooked:
            return
        self._hooked.add(loop)
        original_close = loop.close

        def close() -> None:
            self._close_clients(loop)
            original_close()

        with contextlib.suppress(AttributeError):  # loops that refuse new attributes
            loop.close = close  # type: ignore[method-assign]

    def _close_clients(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``on_loop_close`` in ``loop`` until no member holds a client for it (bounded)."""
        for _ in range(CLOSE_ROUNDS):
            if not self._holds(loop) or loop.is_running() or loop.is_closed():
                return
            try:
                loop.run_until_complete(self._on_loop_close())
            except Exception as exc:
                logger.warning("Could not close Redis connections with their loop: %s", exc)
        if self._holds(loop):
            logger.warning(
                "Redis clients were still being made while their event loop closed; "
                "the last of them stay open"
            )

    def _holds(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a member holds a client for ``loop``."""
        return any(connections.holds(loop) for connections in self._members)


class Connections:
    """Two clients per running event loop, created on first use, closed with its loop.

    ``client()`` serves sends, scripts and everything else; ``client(blocking_pops=True)``
    serves only the readers' blocking pops, from a pool of its own, so a reader waiting in
    every tag of a cluster cannot leave sends without a connection.

    ``hook`` closes the clients of a loop right before that loop closes (see ``LoopHook``).
    """

    def __init__(self, host: Host, hook: LoopHook) -> None:
        self._host = host
        self._hook = hook
        hook.add(self)
        self._clients: dict[asyncio.AbstractEventLoop, Redis] = {}
        self._blocking: dict[asyncio.AbstractEventLoop, Redis] = {}

    def client(self, *, blocking_pops: bool = False) -> Redis:
        """The client of the running loop (clients of closed loops are dropped)."""
        loop = asyncio.get_running_loop()
        clients = self._blocking if blocking_pops else self._clients
        client = clients.get(loop)
        if client is None:
            self._drop_closed_loops()
            client = clients[loop] = make_client(self._host, blocking_pops=blocking_pops)
            self._hook.watch(loop)
        return client

    def holds(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a client of ``loop`` is open here."""
        return loop in self._clients or loop in self._blocking

    def _drop_closed_loops(self) -> None:
        """Forget clients whose loop is closed: their sockets died with it."""
        for clients in (self._clients, self._blocking):
            for loop in [loop for loop in clients if loop.is_closed()]:
                del clients[loop]

    async def close(self) -> None:
        """Close the running loop's clients and forget the others."""
        loop = asyncio.get_running_loop()
        found = [self._clients.pop(loop, None), self._blocking.pop(loop, None)]
        self._drop_closed_loops()
        await close_each([partial(close_client, client) for client in found if client is not None])


async def close_each(closers: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Await every closer even when one fails; then raise the first failure."""
    errors: list[Exception] = []
    for close in closers:
        try:
            await close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


async def close_client(client: Redis) -> None:
    """Close a client (its dedicated connection, see ``writer``, and the connections its
    blocking pops hold, see ``held``), and for a Sentinel master also the clients that asked
    the sentinels."""
    await writer.close_writer(client)
    await held.close(client)
    await client.aclose()
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        # The master's client owns its pool but not the Sentinel object that pool asks.
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()
