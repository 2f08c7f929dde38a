"""The watchdog of dedicated connections: one timer, overdue replies reported, none per read;
and what the writer and held pops do when a reply is overdue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from asgi_redis import held, writer
from asgi_redis.config import Host
from asgi_redis.connections import close_client, make_client
from asgi_redis.watchdog import Watchdog

TIMEOUT_S = 0.2
Call = Callable[..., Awaitable[Any]]


async def test_an_awaited_reply_is_overdue_after_the_timeout() -> None:
    fired: list[float] = []
    watchdog = Watchdog(TIMEOUT_S, lambda: fired.append(time.monotonic()))
    started = time.monotonic()
    watchdog.expect(asyncio.get_running_loop().time())
    await asyncio.sleep(TIMEOUT_S * 3)
    assert len(fired) == 1
    assert TIMEOUT_S * 0.9 <= fired[0] - started < TIMEOUT_S * 2.5


async def test_replies_that_keep_coming_are_never_overdue() -> None:
    fired: list[bool] = []
    watchdog = Watchdog(TIMEOUT_S, lambda: fired.append(True))
    loop = asyncio.get_running_loop()
    for _ in range(12):  # each reply comes well within the timeout; together they last longer
        watchdog.expect(loop.time())
        await asyncio.sleep(TIMEOUT_S / 4)
    watchdog.stop()
    await asyncio.sleep(TIMEOUT_S * 2)
    assert fired == []
    watchdog.close()


async def test_one_timer_serves_every_read(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed = [0]
    original = loop.call_at

    def counted(*args: object) -> asyncio.TimerHandle:
        armed[0] += 1
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_at", counted)
    watchdog = Watchdog(60.0, lambda: None)
    for _ in range(1000):
        watchdog.expect(loop.time())
        watchdog.stop()
    assert armed[0] == 1
    watchdog.close()


async def test_without_a_timeout_nothing_is_armed() -> None:
    fired: list[bool] = []
    watchdog = Watchdog(None, lambda: fired.append(True))
    watchdog.expect(asyncio.get_running_loop().time())
    await asyncio.sleep(0.05)
    assert fired == []


def writer_call(client: aioredis.Redis) -> Call:
    """A call on ``client``'s writer."""
    own = writer.writer_for(client)
    assert own is not None

    async def call(*args: Any) -> Any:
        return await own.call(*args)

    return call


def held_call(client: aioredis.Redis) -> Call:
    """A call on a connection ``client``'s blocking pops hold."""

    async def call(*args: Any) -> Any:
        return await held.call(client, *args)

    return call


def read_connections(client: aioredis.Redis) -> list[Any]:
    """The dedicated connections of ``client``: its writer's and the held ones."""
    own = writer.writer_for(client)
    found = [] if own is None or own._connection is None else [own._connection]
    kept = held._held.get(client)
    return found + ([] if kept is None else [each.connection for each in kept._idle])


@pytest.mark.parametrize(
    ("calls", "blocking_pops"), [(writer_call, False), (held_call, True)], ids=["writer", "held"]
)
async def test_a_call_without_a_reply_fails_with_a_timeout(
    redis_url: str, calls: Callable[[aioredis.Redis], Call], blocking_pops: bool
) -> None:
    client = make_client(Host(redis_url, {"socket_timeout": 1.0}), blocking_pops=blocking_pops)
    try:
        call = calls(client)
        assert await call("PING") in (b"PONG", True)
        connections = read_connections(client)
        assert connections
        assert all(each.socket_timeout is None for each in connections)  # no timeout per read
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            # Never answered within the timeout: the watchdog, not a guard, ends it.
            await asyncio.wait_for(call("BLPOP", "watchdog:never", 0), 5)
        assert 0.9 <= time.monotonic() - started < 3
        assert await call("PING") in (b"PONG", True)  # a new connection serves the next
    finally:
        await close_client(client)


async def test_held_connections_go_back_to_the_pool_with_their_timeout(redis_url: str) -> None:
    client = make_client(Host(redis_url, {"socket_timeout": 9.0}), blocking_pops=True)
    try:
        assert await held.call(client, "PING") in (b"PONG", True)
        await held.close(client)
        pool = client.connection_pool
        connections = [*pool._available_connections, *pool._in_use_connections]  # type: ignore[attr-defined]
        assert connections
        assert all(connection.socket_timeout == 9.0 for connection in connections)
    finally:
        await close_client(client)
