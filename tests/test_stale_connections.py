"""A pooled connection the server closed is replaced before a command is written to it.

Issue 8 point 7: after a restart or a ``CLIENT KILL`` the first call on each stale pooled
connection failed although Redis was back. Nothing may be retried after it was written, so
these tests also count every message: each one is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from typing import Any

from asgi_redis import writer
from asgi_redis.config import Host
from asgi_redis.connections import (
    BlockingSentinelConnectionPool,
    FreshConnectionsMixin,
    make_client,
)
from asgi_redis.sockets import peer_closed
from tests.layer_helpers import make_layer, receive_within, sync_client, wait_until
from tests.servers import RedisServer
from tests.test_sentinel import start_set

KILLS = 50


def kill_normal_clients(url: str) -> int:
    """``CLIENT KILL TYPE normal`` from another client; returns how many were killed.

    Then idle a little longer than ``writer.PEEK_AFTER_IDLE_S`` without letting the loop run
    (so it has not seen the close): a connection whose last reply is more recent is written
    to without a look at its socket, and a kill within that time fails the next call.
    """
    with sync_client(url) as admin:
        killed = int(admin.client_kill_filter(_type="normal", skipme=True))
    time.sleep(2 * writer.PEEK_AFTER_IDLE_S)
    return killed


async def test_send_after_a_server_restart_succeeds(private_redis: RedisServer) -> None:
    async with make_layer(private_redis.url) as layer:
        await layer.send("restart", {"type": "before"})
        private_redis.stop()
        private_redis.start()
        await asyncio.sleep(0.5)  # the pooled connection now holds the old server's EOF
        await layer.send("restart", {"type": "after"})
        assert await receive_within(layer, "restart") == {"type": "after"}


async def test_every_send_succeeds_under_client_kill(redis_url: str) -> None:
    """A kill between sends: every send works, every message arrives exactly once."""
    received: list[int] = []

    async def drain(layer: Any) -> None:
        while True:
            received.append((await layer.receive("killed"))["n"])

    async with make_layer(redis_url) as sender, make_layer(redis_url) as receiver:
        await sender.send("killed", {"type": "warm", "n": -1})
        reader = asyncio.create_task(drain(receiver))
        await wait_until(lambda: received == [-1])
        killed = 0
        for number in range(KILLS):
            killed += kill_normal_clients(redis_url)
            await sender.send("killed", {"type": "n", "n": number})
        await wait_until(lambda: len(received) >= KILLS + 1)
        await asyncio.sleep(0.2)  # room for a duplicate to show up
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert killed >= KILLS  # the sender's connection at least, every time
    counts = Counter(received)
    assert sorted(counts) == list(range(-1, KILLS))
    assert set(counts.values()) == {1}


async def test_peer_closed_sees_a_kill_the_loop_has_not_processed(redis_url: str) -> None:
    client = make_client(Host(redis_url))
    try:
        await client.ping()
        connection = client.connection_pool._available_connections[-1]  # type: ignore[attr-defined]
        assert not peer_closed(connection)
        kill_normal_clients(redis_url)  # synchronous: the loop does not run in between
        assert peer_closed(connection)
        assert await client.ping()
    finally:
        await client.aclose()


async def test_peer_closed_never_waits_on_an_idle_connection(redis_url: str) -> None:
    # With a default timeout, a borrowed socket would wait for data, then time out (an
    # OSError) and the idle connection would be taken for closed.
    socket.setdefaulttimeout(0.2)
    try:
        client = make_client(Host(redis_url))
        await client.ping()
        connection = client.connection_pool._available_connections[-1]  # type: ignore[attr-defined]
        assert not peer_closed(connection)
        await client.aclose()
    finally:
        socket.setdefaulttimeout(None)


class BareTransportSocket:
    """Like asyncio's socket wrapper, without the private socket peer_closed prefers."""

    def __init__(self, sock: socket.socket) -> None:
        self.family, self.type, self.proto = sock.family, sock.type, sock.proto
        self._fileno = sock.fileno()

    def fileno(self) -> int:
        return self._fileno


async def test_peer_closed_borrows_the_descriptor_without_waiting(redis_url: str) -> None:
    client = make_client(Host(redis_url))
    socket.setdefaulttimeout(0.2)
    try:
        await client.ping()
        connection = client.connection_pool._available_connections[-1]  # type: ignore[attr-defined]
        writer = connection._writer
        bare = BareTransportSocket(writer.get_extra_info("socket"))
        writer.get_extra_info = lambda name, default=None: bare if name == "socket" else default
        assert not peer_closed(connection)
        kill_normal_clients(redis_url)
        assert peer_closed(connection)
        assert await client.ping()  # the pool replaced it, descriptor untouched until then
    finally:
        socket.setdefaulttimeout(None)
        await client.aclose()


def test_the_sentinel_pool_replaces_closed_connections_too() -> None:
    assert issubclass(BlockingSentinelConnectionPool, FreshConnectionsMixin)
    assert (
        BlockingSentinelConnectionPool.ensure_connection is FreshConnectionsMixin.ensure_connection
    )


async def test_sentinel_master_send_survives_client_kill() -> None:
    servers = start_set(with_replica=False)
    try:
        async with servers.layer() as layer:
            for number in range(5):
                kill_normal_clients(servers.master.url)
                await layer.send("sentinel.killed", {"type": "n", "n": number})
            got = [(await receive_within(layer, "sentinel.killed"))["n"] for _ in range(5)]
    finally:
        servers.close()
    assert got == list(range(5))
