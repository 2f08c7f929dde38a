"""Client-side sharding over three real redis-servers (DESIGN guarantee 8)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from asgi_redis import RedisChannelLayer, keys
from tests.conftest import flush, start_server
from tests.servers import RedisServer

PREFIX = "asgi:"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[RedisServer]]:
    """Three independent redis-servers for the module."""
    started: list[RedisServer] = []
    try:
        for _ in range(3):
            started.append(start_server())
        yield started
    finally:
        for server in started:
            server.close()


@pytest.fixture
def urls(servers: list[RedisServer]) -> list[str]:
    """The servers' URLs, each server emptied first."""
    for server in servers:
        flush(server.url)
    return [server.url for server in servers]


def directory(url: str, group: str) -> set[bytes]:
    """The tags one server's directory of ``group`` lists."""
    client = redis.Redis.from_url(url)
    try:
        return set(client.smembers(keys.directory_key(PREFIX, group)))
    finally:
        client.close()


def server_keys(url: str) -> set[str]:
    """Every key on one server."""
    client = redis.Redis.from_url(url)
    try:
        return {key.decode() for key in client.keys("*")}
    finally:
        client.close()


def command_calls(url: str, command: str) -> int:
    """How often ``command`` ran on one server since the stats were reset."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    finally:
        client.close()


def blocked(url: str) -> int:
    """Clients blocked in a blocking pop on one server."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("clients")["blocked_clients"])
    finally:
        client.close()


async def test_each_channel_lives_on_exactly_one_server(urls: list[str]) -> None:
    channels = [f"chat.room{n}" for n in range(30)]
    async with RedisChannelLayer(hosts=urls) as layer:
        for channel in channels:
            await layer.send(channel, {"type": "m", "channel": channel})
        on_server = [server_keys(url) for url in urls]
        assert all(on_server), "every server holds some of the 30 channels"
        for channel in channels:
            queue = keys.queue_key(PREFIX, channel)
            assert sum(queue in held for held in on_server) == 1
        for channel in channels:
            assert await asyncio.wait_for(layer.receive(channel), 5) == {
                "type": "m",
                "channel": channel,
            }


async def test_another_process_finds_the_same_servers(urls: list[str]) -> None:
    async with (
        RedisChannelLayer(hosts=urls) as sender,
        RedisChannelLayer(hosts=list(reversed(urls))) as receiver,
    ):
        local = await receiver.new_channel()
        for channel in ("work.a", "work.b", "work.c", local):
            await sender.send(channel, {"type": "m"})
            assert await asyncio.wait_for(receiver.receive(channel), 5) == {"type": "m"}


async def test_a_receive_waits_only_on_its_own_server(urls: list[str]) -> None:
    async with RedisChannelLayer(hosts=urls) as layer:
        channel = "only.here"
        waiting = asyncio.create_task(layer.receive(channel))
        for _ in range(100):
            if sum(blocked(url) for url in urls) == 1:
                break
            await asyncio.sleep(0.02)
        holder = [url for url in urls if blocked(url) == 1]
        assert len(holder) == 1
        await layer.send(channel, {"type": "m"})
        assert await asyncio.wait_for(waiting, 5) == {"type": "m"}
        assert keys.queue_key(PREFIX, channel) not in set().union(
            *(server_keys(url) for url in urls if url != holder[0])
        )


async def test_group_send_reaches_members_on_every_server_one_call_each(
    urls: list[str],
) -> None:
    async with RedisChannelLayer(hosts=urls) as layer:
        named = [f"member.{n}" for n in range(30)]
        local = [await layer.new_channel(f"p{n}.") for n in range(6)]
        for channel in named + local:
            await layer.group_add("room", channel)
        # Memberships sit on the server of each member's channel, in the copy of its tag,
        # and every server lists the tags it holds in its own directory of the group.
        tags_held: list[set[bytes]] = [set() for _ in urls]
        for channel in named + local:
            tag = keys.tag_of(keys.split_channel(channel)[0])
            index = layer.consistent_hash(channel)
            suffix = keys.split_channel(channel)[1]
            stored = keys.clients_key(PREFIX, "room", tag) if suffix else None
            assert (stored or keys.group_key(PREFIX, "room", tag)) in server_keys(urls[index])
            tags_held[index].add(tag.encode())
        assert all(tags_held)
        for url, tags in zip(urls, tags_held, strict=True):
            assert directory(url, "room") == tags
        for url in urls:
            redis.Redis.from_url(url).config_resetstat()
        await layer.group_send("room", {"type": "hello"})
        # One pipeline per server: its named members' script and its clients' script.
        assert [command_calls(url, "evalsha") for url in urls] == [2, 2, 2]
        got = await asyncio.gather(
            *(asyncio.wait_for(layer.receive(channel), 5) for channel in named + local)
        )
        assert got == [{"type": "hello"}] * len(named + local)
        await layer.group_discard("room", named[0])
        await layer.group_send("room", {"type": "again"})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(named[0]), 0.3)


async def test_receive_many_across_servers(urls: list[str]) -> None:
    channels = [f"many.{n}" for n in range(9)]
    async with RedisChannelLayer(hosts=urls) as layer:
        waiting = asyncio.create_task(layer.receive_many(channels))
        await asyncio.sleep(0.1)
        await layer.send(channels[4], {"type": "m"})
        assert await asyncio.wait_for(waiting, 5) == (channels[4], {"type": "m"})
        # A cancelled multi-server wait loses nothing.
        waiting = asyncio.create_task(layer.receive_many(channels))
        await asyncio.sleep(0.1)
        waiting.cancel()
        await layer.send(channels[7], {"type": "kept"})
        assert await asyncio.wait_for(layer.receive(channels[7]), 5) == {"type": "kept"}


async def test_flush_and_statistics_cover_every_server(urls: list[str]) -> None:
    async with RedisChannelLayer(hosts=urls) as layer:
        for n in range(30):
            await layer.send(f"stat.{n}", {"type": "m"})
        stats = await layer.global_statistics()
        assert stats["queues"] == 30 and stats["messages"] == 30
        assert len(stats["shards"]) == 3
        assert sum(shard["queues"] for shard in stats["shards"]) == 30
        assert all(shard["queues"] > 0 for shard in stats["shards"])
        await layer.flush()
        assert all(not server_keys(url) for url in urls)


def test_the_same_server_twice_is_refused(urls: list[str]) -> None:
    with pytest.raises(ValueError, match="same server"):
        RedisChannelLayer(hosts=[urls[0], urls[1], urls[0]])


async def test_close_goes_on_past_a_server_that_fails_and_can_be_retried(
    urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One server failing its close leaves neither the other readers nor the failed one behind."""
    from asgi_redis.receiver import Receiver

    layer = RedisChannelLayer(hosts=urls)
    by_server: dict[int, str] = {}
    for number in range(100):
        by_server.setdefault(layer._servers.shard_of(f"close.c{number}"), f"close.c{number}")
    assert len(by_server) == len(urls)
    waiting = [asyncio.create_task(layer.receive(channel)) for channel in by_server.values()]
    for _ in range(200):
        if sum(blocked(url) for url in urls) == len(urls):
            break
        await asyncio.sleep(0.02)
    real_close = Receiver.close
    calls: list[Receiver] = []

    async def flaky_close(self: Receiver) -> None:
        calls.append(self)
        if len(calls) == 1:
            raise redis.exceptions.ConnectionError("simulated failure on close")
        await real_close(self)

    monkeypatch.setattr(Receiver, "close", flaky_close)
    with pytest.raises(redis.exceptions.ConnectionError):
        await layer.close()
    assert len(calls) == len(urls)  # every server was tried
    assert sum(blocked(url) for url in urls) == 1  # only the failed one still reads
    await layer.close()  # tries the failed one again
    assert sum(blocked(url) for url in urls) == 0
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
