"""channel_statistics and global_statistics through the public API on a real server."""

from __future__ import annotations

import asyncio

import pytest

from asgi_redis import RedisChannelLayer
from asgi_redis.config import Host


async def test_extensions_list_statistics(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        assert {"groups", "flush", "receive_many", "statistics"} <= set(layer.extensions)


async def test_channel_statistics_of_a_named_channel(redis_url: str) -> None:
    async with RedisChannelLayer(
        hosts=[redis_url], capacity=7, channel_capacity={"big.*": 50}
    ) as layer:
        assert await layer.channel_statistics("big.one") == {
            "channel": "big.one",
            "capacity": 50,
            "depth": 0,
            "counted": 0,
            "oldest_age_s": None,
        }
        await layer.send("small", {"type": "a"})
        await asyncio.sleep(0.3)
        await layer.send("small", {"type": "b"})
        stats = await layer.channel_statistics("small")
        assert (stats["capacity"], stats["depth"], stats["counted"]) == (7, 2, 2)
        assert 0.25 <= stats["oldest_age_s"] < 5
        assert stats["oldest_age_s"] == round(stats["oldest_age_s"], 3)  # ms, as inspect shows
        await layer.receive("small")
        assert (await layer.channel_statistics("small"))["depth"] == 1


async def test_channel_statistics_of_process_local_channels(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.send(first, {"type": "a"})
        await layer.send(first, {"type": "b"})
        await layer.send(second, {"type": "c"})
        assert (await layer.channel_statistics(first))["depth"] == 2
        assert (await layer.channel_statistics(second))["depth"] == 1
        assert await layer.receive(first) == {"type": "a"}
        # "b" now waits in this process's buffer: not in Redis, still counted.
        await asyncio.sleep(0.1)
        stats = await layer.channel_statistics(first)
        assert stats["counted"] == 1


async def test_expired_messages_are_not_in_depth(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url], expiry=1) as layer:
        await layer.send("short", {"type": "a"})
        await asyncio.sleep(1.2)
        assert (await layer.channel_statistics("short"))["depth"] == 0


async def test_global_statistics_counts_only_this_prefix(redis_url: str) -> None:
    async with (
        RedisChannelLayer(hosts=[redis_url], prefix="st") as layer,
        RedisChannelLayer(hosts=[redis_url], prefix="st2") as other,
    ):
        local = await layer.new_channel()
        await layer.send("a", {"type": "x"})
        await layer.send("a", {"type": "x"})
        await layer.send("b", {"type": "x"})
        await layer.send(local, {"type": "x"})
        await layer.group_add("room", "a")
        await layer.group_add("room", local)
        await layer.group_add("hall", "b")
        await other.send("a", {"type": "not ours"})
        await other.group_add("room", "zzz")
        stats = await layer.global_statistics()
    assert {key: stats[key] for key in ("queues", "messages", "groups", "memberships")} == {
        "queues": 3,
        "messages": 4,
        "groups": 2,
        "memberships": 3,
    }
    assert stats["dropped_undecodable"] == 0
    assert len(stats["shards"]) == 1 and stats["shards"][0]["messages"] == 4


def test_shard_labels_hide_the_password() -> None:
    label = Host("redis://:not-a-real-secret@cache.internal:6380/2").label()
    assert label == "redis://cache.internal:6380/2"


async def test_channel_statistics_validates_the_name(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        with pytest.raises(TypeError, match="bad name"):
            await layer.channel_statistics("bad name")


def test_unix_socket_labels_keep_the_path() -> None:
    label = Host("unix:///run/redis/redis.sock?db=2").label()
    assert label == "unix:///run/redis/redis.sock?db=2"


async def test_statistics_and_flush_work_in_batches(redis_url: str) -> None:
    """More keys than one SCAN/UNLINK batch (500) are all counted, then all deleted."""
    async with RedisChannelLayer(hosts=[redis_url], prefix="many") as layer:
        await asyncio.gather(*(layer.send(f"c{n}", {"type": "x"}) for n in range(1234)))
        assert (await layer.global_statistics())["queues"] == 1234
        await layer.flush()
        assert (await layer.global_statistics())["queues"] == 0


async def test_a_group_whose_members_all_left_is_not_counted(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        await layer.group_add("room", "a")
        await layer.group_add("room", "b")
        await layer.group_add("hall", "c")
        await layer.group_discard("room", "a")
        await layer.group_discard("room", "b")
        stats = await layer.global_statistics()
        assert (await layer.group_statistics("room"))["members"] == 0
    assert (stats["groups"], stats["memberships"]) == (1, 1)
