"""Blocking pops on held connections (``held``): no checkout per pop, cancelled and killed
connections replaced, every connection back in the pool at close."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from asgi_redis import commands, held, writer
from asgi_redis.config import Host
from asgi_redis.connections import FreshBlockingConnectionPool, close_client, make_client
from tests.layer_helpers import sync_client


async def test_pops_reuse_one_connection_without_a_checkout_each(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts = [0]
    original = FreshBlockingConnectionPool.get_connection

    async def counted(self: FreshBlockingConnectionPool, *args: Any, **kwargs: Any) -> Any:
        checkouts[0] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(FreshBlockingConnectionPool, "get_connection", counted)
    client = make_client(Host(redis_url), blocking_pops=True)
    try:
        with sync_client(redis_url) as admin:
            admin.rpush("held:q", *[f"e{index}" for index in range(5)])
        popped = [await commands.multi_pop(client, ["held:q"], 1, 1) for _ in range(5)]
        assert popped == [("held:q", [f"e{index}".encode()]) for index in range(5)]
        assert checkouts[0] == 1
    finally:
        await close_client(client)


async def test_a_cancelled_pop_does_not_leave_its_reply_to_the_next(redis_url: str) -> None:
    client = make_client(Host(redis_url), blocking_pops=True)
    try:
        waiting = asyncio.ensure_future(commands.multi_pop(client, ["held:never"], 1, 2))
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        with sync_client(redis_url) as admin:
            admin.rpush("held:next", "next")
        assert await commands.multi_pop(client, ["held:next"], 1, 1) == ("held:next", [b"next"])
    finally:
        await close_client(client)


async def test_a_held_connection_killed_while_idle_is_replaced_before_the_pop(
    redis_url: str,
) -> None:
    client = make_client(Host(redis_url), blocking_pops=True)
    try:
        assert await commands.multi_pop(client, ["held:empty"], 1, 0.01) is None
        with sync_client(redis_url) as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
            admin.rpush("held:after", "after")
        time.sleep(2 * writer.PEEK_AFTER_IDLE_S)  # idle, and the loop has not seen the close
        assert await commands.multi_pop(client, ["held:after"], 1, 1) == ("held:after", [b"after"])
    finally:
        await close_client(client)


async def test_close_gives_the_held_connections_back(redis_url: str) -> None:
    client = make_client(Host(redis_url), blocking_pops=True)
    assert await commands.single_pop(client, ["held:empty"], 0.01) is None
    pool = client.connection_pool
    assert len(pool._in_use_connections) == 1
    await held.close(client)
    assert len(pool._in_use_connections) == 0
    await close_client(client)
