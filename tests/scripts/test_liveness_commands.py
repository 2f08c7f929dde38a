"""The Python side of liveness: commands.heartbeat, group_add/group_send and group_statistics
through their typed wrappers, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from asgi_redis import commands, keys, keyspace
from asgi_redis.pipelining import run_all
from tests.scripts.helpers import NOW_MS, PREFIX

GROUP = "room"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    """An async client on the flushed session server."""
    connection = Redis.from_url(redis_url)
    try:
        yield connection
    finally:
        await connection.aclose()


async def add(client: Redis, channel: str) -> None:
    """group_add ``channel`` to GROUP (heartbeat 5 s)."""
    await commands.group_add(
        client,
        prefix=PREFIX,
        group=GROUP,
        channel=channel,
        now_ms=NOW_MS,
        ttl_s=86_400,
        capacity=None,
        beat_ms=5_000,
    )


async def test_heartbeat_sets_every_liveness_key_with_its_ttl(client: Redis) -> None:
    heads = ["specific.a!", "specific.b!x", "other.c!"]
    await client.set(keys.heartbeat_key(PREFIX, "other.c!"), 0)
    gone = await commands.heartbeat(client, prefix=PREFIX, heads=heads, beat_ms=5_000)
    assert gone == ["specific.a!", "specific.b!x"]  # no mark yet: nothing to rejoin there
    for head in heads:
        key = keys.heartbeat_key(PREFIX, head)
        assert int(await client.get(key)) >= 0  # the tag clock's uptime
        assert 58_000 < await client.pttl(key) <= 60_000  # 12 heartbeats
    tag = keys.tag_of("specific.b!")
    assert keys.heartbeat_key(PREFIX, "specific.b!x") == f"{PREFIX}{{{tag}}}h:specific.b!"


async def test_heartbeat_of_no_heads_does_nothing(client: Redis) -> None:
    assert await commands.heartbeat(client, prefix=PREFIX, heads=[], beat_ms=5_000) == []
    assert await client.dbsize() == 0


async def test_group_send_returns_dropped_dead_members(client: Redis) -> None:
    for channel in ("chat.named", "specific.dead!a", "specific.dead!b", "specific.live!c"):
        await add(client, channel)
    await client.set(keys.heartbeat_key(PREFIX, "specific.dead!"), -60_000)  # long unseen
    stats = await keyspace.group_statistics(
        client, prefix=PREFIX, group=GROUP, now_ms=NOW_MS, group_ttl_s=86_400, beat_ms=5_000
    )
    assert stats == {
        "members": 4,
        "named": 1,
        "local": 3,
        "local_dead": 2,
        "clients": 2,
        "dead_clients": 1,
    }
    calls = commands.group_send_calls(
        prefix=PREFIX,
        group=GROUP,
        now_ms=NOW_MS,
        group_ttl_s=86_400,
        deadline_ms=NOW_MS + 60_000,
        payload=b"m",
        capacity=10,
        ttl_s=60,
        queue_max=1000,
        beat_ms=5_000,
    )
    assert commands.group_send_counts(await run_all(client, calls)) == (2, 0, 2)


def test_liveness_keys_are_a_kind_flush_and_statistics_scan() -> None:
    assert "h" in keys.KINDS
    assert f"{PREFIX}{{*}}h:*" in keys.scan_patterns(PREFIX)
    assert keys.is_own_key(PREFIX, keys.heartbeat_key(PREFIX, "specific.a!b").encode())
