"""Calls from short-lived event loops as blocking calls of redis-py's sync client.

A loop that ``async_to_sync`` makes where no loop runs (a WSGI view, a Celery task) runs one
call and closes. Once ``offload`` has judged a layer's new loops short-lived, ``send``,
``group_send``, ``group_add`` and ``group_discard`` made on such a loop run their scripts
right there as blocking calls of a sync client: nothing else runs on that loop, so blocking
it costs nothing, and it saves the two thread hops of forwarding and the asyncio overhead of
a command (a sync EVALSHA is about a third of an asyncio one). The same scripts with the same
arguments (``commands``), the same validation, serialization and error naming run as on the
async path; only the transport differs.

Each server gets one sync client; the connections its pool makes are kept across calls and
shared by threads (a threaded WSGI server). A forked child never uses the parent's: they are
forgotten, never closed, when the process id changes. A Redis Cluster is not served here:
its calls keep going to the background loop, whose cluster client follows slot moves.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from . import failures, redis_options
from .config import Host
from .connections import pool_options, sentinel_options
from .packing import pack
from .scripts import SCRIPTS, ScriptCall, command

logger = logging.getLogger(__name__)

# For benchmarks and the forwarding tests: False leaves every such call to the background
# loop (offload.py), as before this path existed, so one run can compare both.
ENABLED = True

# Set while a layer method runs as a blocking call (offload.blockable sets it).
blocking: contextvars.ContextVar[bool] = contextvars.ContextVar("blocking", default=False)


# redis-py 6.0's sync BlockingConnectionPool.disconnect takes no argument, while its Sentinel
# connection calls ``disconnect(inuse_connections=False)`` on a failover (later releases agree).
_DISCONNECT_TAKES_FLAG = (
    "inuse_connections" in inspect.signature(BlockingConnectionPool.disconnect).parameters
)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's sync Sentinel pool taking the options of connections.py's asyncio one
    (``timeout`` is the blocking pool's): Sentinel finds the master for each connection."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the pool's connections (on redis-py 6.0 all of them, which is all it can)."""
        if _DISCONNECT_TAKES_FLAG:
            super().disconnect(inuse_connections)
        else:
            super().disconnect()  # type: ignore[call-arg,unused-ignore]


def _sync_keys_accepted(host: Host, options: dict[str, Any]) -> bool:
    """Whether the sync pool and its connections take every option (one only asyncio's
    classes know rules the sync path out)."""
    effective = redis_options.effective_options(host.url, options)
    if host.sentinel is not None:
        tls = bool(options.get("ssl"))
        connection: type = SentinelManagedSSLConnection if tls else SentinelManagedConnection
        pools: tuple[type, ...] = (SentinelConnectionPool, BlockingConnectionPool)
        own = redis_options.SENTINEL_POOL_KEYS
    else:
        connection = Connection
        if "path" in effective:
            connection = UnixDomainSocketConnection
        elif redis_options.uses_tls(effective):
            connection = SSLConnection
        pools, own = (BlockingConnectionPool,), frozenset()
    taken = redis_options.accepted(*pools, connection) | own
    return all(key in taken for key in options)


def sync_options(host: Host) -> dict[str, Any] | None:
    """The sync pool's options for ``host`` (the async pool's), or None if it cannot have one."""
    if host.cluster is not None or "connection_class" in host.options:
        return None
    options = pool_options(host)
    # The asyncio Retry does not fit a sync pool; the user's is known to re-run nothing.
    options["retry"] = Retry(NoBackoff(), 0)
    if not _sync_keys_accepted(host, options):
        return None
    return options


def make_sync_client(host: Host, options: dict[str, Any]) -> redis.Redis:
    """A sync client for ``host`` whose pool waits for a free connection."""
    if host.sentinel is not None:
        asking = {**sentinel_options(host.sentinel), "retry": Retry(NoBackoff(), 0)}
        sentinel = Sentinel(list(host.sentinel.sentinels), sentinel_kwargs=asking)
        client: redis.Redis = sentinel.master_for(
            host.sentinel.master_name,
            connection_pool_class=BlockingSentinelConnectionPool,
            **options,
        )
        return client
    if host.url is not None:
        pool = BlockingConnectionPool.from_url(host.url, **options)
    else:
        pool = BlockingConnectionPool(**options)  # type: ignore[no-untyped-call]
    return redis.Redis.from_pool(pool)


def close_sync_client(client: redis.Redis) -> None:
    """Close a sync client, and for a Sentinel master the clients that asked the sentinels."""
    pool = client.connection_pool
    client.close()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            sentinel.close()


class Wire(Protocol):
    """What this module uses of a redis-py sync connection (redis-py leaves them untyped)."""

    def can_read(self, timeout: float = 0) -> bool: ...
    def connect(self) -> None: ...
    def disconnect(self) -> None: ...
    def pack_commands(self, commands: Any) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes]) -> None: ...
    def read_response(self) -> Any: ...


class _Server:
    """One server's sync client and the connections held between calls.

    A call takes a connection redis-py made and gives it back after its reply: a list pop and
    append instead of the pool's checkout (a third of a sync EVALSHA's time on this path). At
    most ``max_connections`` exist; beyond that a call waits for one to come back.
    """

    def __init__(self, host: Host, options: dict[str, Any]) -> None:
        self.client = make_sync_client(host, options)
        self._pool = self.client.connection_pool
        self._max = int(options["max_connections"])
        self._made = 0
        self._idle: list[Wire] = []  # connected after a call that succeeded
        self._closed: list[Wire] = []  # disconnected after a call that failed: connect first
        self._returned = threading.Condition()

    def take(self) -> Wire:
        """A connected connection: an idle one, a closed or new one, or (at
        ``max_connections``) the next one given back. If connecting fails, it is given back
        and the error raised."""
        connection = None
        while connection is None:
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = self._closed_or_new()
            else:
                try:
                    # Something to read before writing (a reply to nothing, or EOF): closed.
                    stale = connection.can_read()
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    stale = True
                if stale:
                    connection.disconnect()  # nothing was sent on it: reconnecting is safe
        try:
            # Connect here, as redis-py's pool does: writing to an unconnected connection skips
            # the Sentinel connection's lookup of the master.
            connection.connect()
        except BaseException:
            self.give_back(connection, failed=True)
            raise
        return connection

    def give_back(self, connection: Wire, failed: bool) -> None:
        """Hold ``connection`` for the next call; a failed one is disconnected first."""
        if failed:
            connection.disconnect()
            self._closed.append(connection)
        else:
            self._idle.append(connection)
        if self._made >= self._max:
            with self._returned:
                self._returned.notify()

    def _closed_or_new(self) -> Wire | None:
        """A closed connection (``take`` connects it) or a new one; once
        ``max_connections`` exist, wait for one given back. None: an idle one came back."""
        with self._returned:
            while not self._closed and self._made >= self._max:
                if self._idle:
                    return None
                self._returned.wait()
            if self._closed:
                return self._closed.pop()
            self._made += 1
        connection: Wire = self._pool.make_connection()
        return connection

    def close(self) -> None:
        """Close every connection (the pool made them all) and the Sentinel clients."""
        self._pool.disconnect()
        close_sync_client(self.client)


class SyncServers:
    """One sync client per server of a layer, made on first use, shared by threads.

    Args:
        hosts: the layer's hosts; the path is ``usable`` only if every one can have a sync
            client (not a cluster, no asyncio-only option).
        labels: the servers' labels, which errors name.
    """

    def __init__(self, hosts: Sequence[Host], labels: Sequence[str]) -> None:
        self._hosts = tuple(hosts)
        self._labels = tuple(labels)
        self._options = [sync_options(host) for host in hosts]
        self.usable = ENABLED and all(options is not None for options in self._options)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._servers: dict[int, _Server] = {}

    def server(self, index: int) -> _Server:
        """Server ``index`` (made on first use); a forked child makes its own."""
        if self._pid != os.getpid():
            # The parent's sockets and lock are the parent's: forget them, never close them.
            self._lock = threading.Lock()
            self._servers = {}
            self._pid = os.getpid()
        server = self._servers.get(index)
        if server is None:
            options = self._options[index]
            if options is None:
                raise RuntimeError(f"server {self._labels[index]} has no sync client")
            with self._lock:
                server = self._servers.get(index)
                if server is None:
                    server = self._servers[index] = _Server(self._hosts[index], options)
        return server

    def run(self, index: int, operation: str, call: ScriptCall) -> Any:
        """Run one script on server ``index``; an error names ``operation`` and the server."""
        return self.run_many(index, operation, [call])[0]

    def run_everywhere(self, operation: str, calls: list[ScriptCall]) -> list[Any]:
        """``calls`` pipelined on every server in turn; the replies, server after server."""
        replies: list[Any] = []
        for index in range(len(self._labels)):
            replies += self.run_many(index, operation, calls)
        return replies

    def run_many(self, index: int, operation: str, calls: list[ScriptCall]) -> list[Any]:
        """``calls`` pipelined on server ``index``; their replies. The first error reply
        raises, naming ``operation`` and the server."""
        server = self.server(index)
        with failures.naming(operation, self._labels[index]):
            connection = server.take()
            failed = True
            try:
                replies = run_scripts(connection, calls)
                failed = False
            finally:
                server.give_back(connection, failed)
        for reply in replies:
            if isinstance(reply, Exception):
                with failures.naming(operation, self._labels[index]):
                    raise reply
        return replies

    def close(self) -> None:
        """Close every client of this process (the next call makes new ones)."""
        if self._pid != os.getpid():
            return
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            try:
                server.close()
            except Exception as exc:  # closing is best effort: the sockets go anyway
                logger.warning("Could not close a sync Redis client: %r", exc)


def run_scripts(connection: Wire, calls: list[ScriptCall]) -> list[Any]:
    """``calls`` as EVALSHA in one round trip; those answered NOSCRIPT did not run and go once
    more with their text. Returns each reply, an error reply as its exception; a connection
    error raises."""
    replies = _round_trip(connection, calls, by_sha=True)
    missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        again = _round_trip(connection, [calls[index] for index in missing], by_sha=False)
        for index, reply in zip(missing, again, strict=True):
            replies[index] = reply
    return replies


def _round_trip(connection: Wire, calls: list[ScriptCall], *, by_sha: bool) -> list[Any]:
    """Write every call at once (EVALSHA, or EVAL of the text), then read every reply."""
    commands = [command(SCRIPTS[name], keys, args, by_sha=by_sha) for name, keys, args in calls]
    connection.send_packed_command(pack(connection, commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:  # that call's error reply: the others' replies follow
            replies.append(exc)
    return replies
