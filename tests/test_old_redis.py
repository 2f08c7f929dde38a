"""Servers without BLMPOP (Redis < 7): the reader falls back to the script and BLPOP."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from asgi_redis import RedisChannelLayer


@pytest.fixture
def no_blmpop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every BLMPOP fail the way Redis 6 answers an unknown command."""
    refused: list[str] = []

    async def blmpop(self: Redis, *args: Any, **kwargs: Any) -> Any:
        refused.append("BLMPOP")
        raise ResponseError("unknown command 'BLMPOP', with args beginning with: ")

    monkeypatch.setattr(Redis, "blmpop", blmpop)
    return refused


@pytest.mark.parametrize("local", [False, True], ids=["named", "local"])
async def test_receive_works_without_blmpop(
    redis_url: str, no_blmpop: list[str], local: bool
) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        channel = await layer.new_channel() if local else "old.redis"
        waiting = asyncio.create_task(layer.receive(channel))
        await asyncio.sleep(0.2)  # the reader tries BLMPOP, is refused, blocks with BLPOP
        await layer.send(channel, {"type": "first"})
        assert await asyncio.wait_for(waiting, 10) == {"type": "first"}
        for number in range(20):
            await layer.send(channel, {"type": "m", "n": number})
        got = [await asyncio.wait_for(layer.receive(channel), 10) for _ in range(20)]
    assert [message["n"] for message in got] == list(range(20))
    assert no_blmpop == ["BLMPOP"]  # asked once, then never again
