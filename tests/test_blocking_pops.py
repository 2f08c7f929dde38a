"""The readers' blocking pops: their own connections, and a pop Redis ends (``-UNBLOCKED``)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis
from redis.exceptions import MovedError, ResponseError

from asgi_redis import commands
from asgi_redis.cluster import did_not_run
from asgi_redis.errors import PopUnblockedError
from tests.layer_helpers import blocked_clients, make_layer, receive_within, wait_until
from tests.servers import RedisServer


def blocking_client_ids(url: str) -> list[int]:
    """Ids of the clients blocked in a BLMPOP on the server at ``url``."""
    with redis.Redis.from_url(url) as admin:
        return [int(item["id"]) for item in admin.client_list() if item["cmd"] == "blmpop"]


async def test_a_pop_redis_ends_is_popped_again_without_an_error(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = private_redis.url
    async with make_layer(url) as layer:
        pending = asyncio.ensure_future(layer.receive("unblocked"))
        await wait_until(lambda: blocked_clients(url) == 1)
        with caplog.at_level(logging.INFO, logger="asgi_redis"):
            with redis.Redis.from_url(url) as admin:
                (reader_id,) = blocking_client_ids(url)
                assert admin.client_unblock(reader_id, error=True)
            await wait_until(lambda: blocked_clients(url) == 1)  # blocking again at once
        assert not pending.done()
        await layer.send("unblocked", {"type": "after"})
        assert await asyncio.wait_for(pending, 5) == {"type": "after"}
        ended = [r for r in caplog.records if "ended a blocking pop" in r.getMessage()]
        assert ended and all(record.levelno == logging.INFO for record in ended)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        await layer.send("unblocked", {"type": "again"})
        assert await receive_within(layer, "unblocked") == {"type": "again"}


async def test_an_unblocked_reply_becomes_pop_unblocked_error_and_counts_as_not_run(
    private_redis: RedisServer,
) -> None:
    client = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        pop = asyncio.ensure_future(commands.multi_pop(client, ["q:unblock"], 1, 5))
        await wait_until(lambda: blocked_clients(private_redis.url) == 1)
        with redis.Redis.from_url(private_redis.url) as admin:
            (pop_id,) = blocking_client_ids(private_redis.url)
            admin.client_unblock(pop_id, error=True)
        with pytest.raises(PopUnblockedError, match="UNBLOCKED") as raised:
            await pop
        assert did_not_run(raised.value)
        assert not did_not_run(ResponseError("ERR something else"))
        assert did_not_run(MovedError("1 127.0.0.1:7000"))
    finally:
        await client.aclose()


async def test_blocking_pops_use_their_own_pool(redis_url: str) -> None:
    async with make_layer([{"address": redis_url, "max_connections": 1}]) as layer:
        pending = asyncio.ensure_future(layer.receive("own.pool"))
        await wait_until(lambda: bool(blocking_client_ids(redis_url)))
        # The one pooled connection is free for sends while the reader blocks.
        for number in range(5):
            await asyncio.wait_for(layer.send("elsewhere", {"n": number}), 2)
        await layer.send("own.pool", {"type": "mine"})
        assert await asyncio.wait_for(pending, 5) == {"type": "mine"}
