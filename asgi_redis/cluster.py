"""Redis Cluster: which primary holds each tag, and running commands there safely.

The layer does not use redis-py's ``RedisCluster`` for its calls: that client sends ``ASKING``
and the asked command on different pooled connections (so a command on a key already moved
fails during a slot migration), retries blocking pops blindly, and its first concurrent uses
race. Every key of the layer carries one of ``keys.TAG_COUNT`` hash tags, so the cluster is,
for the layer, 64 routing units: this module keeps which primary owns each tag's slot (from
``CLUSTER SLOTS``) and one plain client per primary and event loop (``connections``), so
auto-pipelining, the reader and every command work per node exactly as on a single server.

Redirections are answered here, never by resending something that may have run:

- ``MOVED``: the slot has a new owner; the map learns it and the command goes there.
- ``ASK``: the slot is being migrated and the key is already on the target; the command is
  resent there with ``ASKING`` on the same connection (``AskingRedis``).
- ``TRYAGAIN``: a multi-key command found its keys split by a migration, or a script's own
  check found a derived key moving (the group_send scripts); nothing ran, so it is retried after
  a short pause, for at most ``REDIRECT_DEADLINE_S``.
- ``CLUSTERDOWN`` / ``MASTERDOWN`` and connection errors: the map is read again. A node that
  refuses the connection was sent nothing: the call waits (within ``REDIRECT_DEADLINE_S``) for
  the map to name a new owner, as during a failover. A connection lost after the command was
  written is raised to the caller (its command may have run); later calls go to the new owner.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import failures, keys
from .config import Host
from .connections import Connections, LoopHook, close_each
from .errors import PopUnblockedError

logger = logging.getLogger(__name__)

T = TypeVar("T")

TAG_SLOTS = tuple(key_slot(tag.encode()) for tag in keys.TAGS)
# How long a command keeps being redirected or told to try again before the error is raised.
REDIRECT_DEADLINE_S = 10.0
PAUSE_MIN_S = 0.01
PAUSE_MAX_S = 0.2
# Errors after which nothing ran: the command may be sent again.
REDIRECTS = (
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    PopUnblockedError,
)
# Errors after which the slot map may be wrong (a node died, a failover is under way, or the
# primary a blocking pop waited on turned into a replica).
STALE_MAP = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    MasterDownError,
    PopUnblockedError,
)


class AskingPipeline(Pipeline):
    """A pipeline to an ASK target: ``ASKING`` before each command (the flag lasts for one
    command), or once before ``MULTI`` (it then covers the whole transaction)."""

    async def _execute_transaction(  # type: ignore[no-untyped-def]
        self, connection: Connection, commands: Any, raise_on_error: bool
    ):
        await connection.send_command("ASKING")
        await connection.read_response()
        return await super()._execute_transaction(connection, commands, raise_on_error)

    async def _execute_pipeline(  # type: ignore[no-untyped-def]
        self, connection: Connection, commands: Any, raise_on_error: bool
    ):
        asked: list[Any] = []
        for command in commands:
            asked += [(("ASKING",), {}), command]
        replies = await super()._execute_pipeline(connection, asked, raise_on_error)
        return replies[1::2]


class AskingRedis(Redis):
    """A client of an ASK target whose every command (and pipeline) is preceded by
    ``ASKING`` on the same connection.

    Used once per ``ASK`` redirection, on the target node's pool (which it does not own).
    """

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        """A pipeline that sends ``ASKING`` where Redis needs it (``AskingPipeline``)."""
        return AskingPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """``ASKING`` and the command in one non-transactional pipeline: one connection."""
        async with self.pipeline(transaction=False) as pipe:
            pipe.execute_command(*args, **options)
            return (await pipe.execute())[0]


def address_of(host: str | bytes, port: int) -> str:
    """A node's ``host:port`` as the slot map names it."""
    name = host.decode() if isinstance(host, bytes) else host
    return f"{name}:{port}"


class ClusterNodes:
    """One Redis Cluster: the owner of each tag's slot, and the clients of its primaries.

    Args:
        host: the ``hosts`` item: startup addresses in ``host.cluster`` and the connection
            options every node gets (TLS, password, timeouts).
        hook: closes the nodes' clients of a loop right before it closes (see ``LoopHook``).
    """

    def __init__(self, host: Host, hook: LoopHook) -> None:
        if host.cluster is None:
            raise ValueError("ClusterNodes needs a cluster host")
        self._host = host
        self._hook = hook
        self.label = host.label()
        self._startup = [address_of(name, port) for name, port in host.cluster.startup]
        self._nodes: dict[str, Connections] = {}
        self._owner: list[str] = [self._startup[0]] * keys.TAG_COUNT
        self._stale = True
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._refreshing: set[asyncio.Task[None]] = set()

    # -- the slot map ----------------------------------------------------------------

    async def ready(self) -> None:
        """Read the slot map if it is missing or known to be wrong (once per loop at a time)."""
        if not self._stale:
            return
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            for closed in [other for other in self._locks if other.is_closed()]:
                del self._locks[closed]  # async_to_sync makes a loop per call
            lock = self._locks[loop] = asyncio.Lock()
        async with lock:
            if self._stale:
                await self._refresh()

    def primaries(self) -> list[str]:
        """The addresses of the primaries that own a tag, in a stable order."""
        return sorted(set(self._owner))

    def owner(self, tag_index: int) -> str:
        """The address of the primary owning tag ``tag_index``'s slot (per the last map)."""
        return self._owner[tag_index]

    def failed(self, exc: BaseException) -> None:
        """Learn from a command's error: a new owner (MOVED), or a map to read again."""
        if isinstance(exc, MovedError):
            moved_to = address_of(exc.host, exc.port)
            for index, slot in enumerate(TAG_SLOTS):
                if slot == exc.slot_id:
                    self._owner[index] = moved_to
        elif isinstance(exc, STALE_MAP) and not self._stale:
            self._stale = True
            self._refresh_soon()

    def _refresh_soon(self) -> None:
        """Read the map in the background, for the readers and side tasks (which only retry)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._refresh_quietly())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _refresh_quietly(self) -> None:
        try:
            await self.ready()
        except Exception as exc:
            logger.warning("Could not read the slot map of %s: %r", self.label, exc)

    async def _refresh(self) -> None:
        """Ask the known nodes, then the startup ones, for CLUSTER SLOTS; first answer wins."""
        candidates = list(dict.fromkeys([*self.primaries(), *self._startup]))
        errors: list[str] = []
        for address in candidates:
            try:
                reply = await self.client_at(address).execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER SLOTS"
                )
            except RedisError as exc:
                errors.append(f"{address}: {exc}")
                continue
            self._owner = owners(reply)
            self._stale = False
            return
        raise RedisConnectionError(
            f"no node of Redis Cluster {self.label} answered CLUSTER SLOTS ({'; '.join(errors)})"
        )

    # -- clients ---------------------------------------------------------------------

    def client_at(self, address: str, *, blocking_pops: bool = False) -> Redis:
        """The running loop's client of the node at ``address`` (``host:port``); with
        ``blocking_pops``, the one for readers' blocking pops (see ``Connections``)."""
        connections = self._nodes.get(address)
        if connections is None:
            name, _, port = address.rpartition(":")
            node = Host(None, {**self._host.options, "host": name, "port": int(port)})
            connections = self._nodes[address] = Connections(node, self._hook)
        return connections.client(blocking_pops=blocking_pops)

    def client_for(self, tag_index: int, *, blocking_pops: bool = False) -> Redis:
        """The running loop's client of the primary owning tag ``tag_index``."""
        return self.client_at(self._owner[tag_index], blocking_pops=blocking_pops)

    def asking_client(self, exc: AskError, *, blocking_pops: bool = False) -> Redis:
        """A client of an ASK target that sends ``ASKING`` before each command."""
        target = self.client_at(address_of(exc.host, exc.port), blocking_pops=blocking_pops)
        return AskingRedis(connection_pool=target.connection_pool)

    async def close(self) -> None:
        """Close the running loop's clients of every node."""
        await close_each([connections.close for connections in list(self._nodes.values())])

    # -- running a call --------------------------------------------------------------

    async def run(
        self,
        tag_index: int,
        operation: str,
        call: Callable[[Redis], Awaitable[T]],
        *,
        wait_split: bool = True,
        blocking_pops: bool = False,
    ) -> T:
        """``call`` with the client of the tag's owner, following redirections.

        Only errors that prove the call did not run are retried (``REDIRECTS``), for at most
        ``REDIRECT_DEADLINE_S``; any other error is raised naming ``operation`` and the cluster.
        Without ``wait_split`` a TRYAGAIN (keys split by a slot migration) is raised at once,
        for a caller that has another way (the reader pops key by key meanwhile).
        ``blocking_pops`` picks the clients kept for readers' blocking pops.
        """
        with failures.naming(operation, self.label):
            return await self._follow(tag_index, call, wait_split, blocking_pops)

    async def _follow(
        self,
        tag_index: int,
        call: Callable[[Redis], Awaitable[T]],
        wait_split: bool,
        blocking_pops: bool = False,
    ) -> T:
        """The loop of ``run``, with redis-py's own errors."""
        deadline = time.monotonic() + REDIRECT_DEADLINE_S
        pause_s = PAUSE_MIN_S
        asked: AskError | None = None
        redirected = 0
        while True:
            await self.ready()
            client = (
                self.client_for(tag_index, blocking_pops=blocking_pops)
                if asked is None
                else self.asking_client(asked, blocking_pops=blocking_pops)
            )
            try:
                return await call(client)
            except Exception as exc:
                self.failed(exc)
                if not did_not_run(exc, wait_split) or time.monotonic() > deadline:
                    raise
                # One ASKING attempt per ASK; if the target sends us back, pause and start over.
                asked = exc if isinstance(exc, AskError) and asked is None else None
                redirected += 1
                if isinstance(exc, MovedError | AskError) and redirected <= 2:
                    continue  # the first redirections go straight on; a loop of them pauses
                await asyncio.sleep(pause_s)
                pause_s = min(pause_s * 2, PAUSE_MAX_S)


def did_not_run(exc: Exception, wait_split: bool = True) -> bool:
    """Whether ``exc`` proves the command did not run, so it may be sent again: a
    redirection (a TRYAGAIN only for a caller that waits for a split slot), or a node that
    refused the connection (dead, or a failover under way) before anything was written."""
    if isinstance(exc, TryAgainError):
        return wait_split
    if isinstance(exc, REDIRECTS):
        return True
    return isinstance(exc, RedisConnectionError) and never_sent(exc)


def never_sent(exc: RedisConnectionError) -> bool:
    """Whether the error came from opening the connection, before any command was written.

    redis-py words those "Error <errno> connecting to <host>:<port>." (or "Timeout connecting
    to ..."); a connection lost after writing reads "... while reading from ..." or
    "Connection closed by server".
    """
    return " connecting to " in str(exc)


def owners(slots_reply: Any) -> list[str]:
    """The primary owning each tag's slot, from a ``CLUSTER SLOTS`` reply.

    Raises:
        RedisConnectionError: a tag's slot is not covered (the cluster is not ready).
    """
    ranges = [
        (int(item[0]), int(item[1]), address_of(item[2][0], int(item[2][1])))
        for item in slots_reply
    ]
    found: list[str] = []
    for slot in TAG_SLOTS:
        owner = next((address for first, last, address in ranges if first <= slot <= last), None)
        if owner is None:
            raise RedisConnectionError(f"slot {slot} is not served by any node yet")
        found.append(owner)
    return found
