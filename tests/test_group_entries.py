"""group_send to many process-local channels of one client: one Redis entry, each gets it."""

from __future__ import annotations

import asyncio

import redis

from asgi_redis import RedisChannelLayer, keys


async def test_every_local_member_gets_the_message_from_one_entry(redis_url: str) -> None:
    async with (
        RedisChannelLayer(hosts=[redis_url]) as sender,
        RedisChannelLayer(hosts=[redis_url]) as members_layer,
    ):
        members = [await members_layer.new_channel() for _ in range(50)]
        for channel in members:
            await sender.group_add("room", channel)
        await sender.group_send("room", {"type": "hello"})
        admin = redis.Redis.from_url(redis_url)
        assert admin.llen(keys.queue_key("asgi:", members[0])) == 1  # one entry for all 50
        admin.close()
        got = await asyncio.gather(*(members_layer.receive(channel) for channel in members))
        assert got == [{"type": "hello"}] * 50
        await asyncio.sleep(0.2)  # the releases of the 50 deliveries reach Redis
        counted = [
            (await members_layer.channel_statistics(channel))["counted"] for channel in members
        ]
        assert counted == [0] * 50


async def test_capacity_is_still_per_channel(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url], capacity=2) as layer:
        busy, idle = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("room", busy)
        await layer.group_add("room", idle)
        await layer.send(busy, {"type": "direct", "n": 1})
        await layer.send(busy, {"type": "direct", "n": 2})
        await layer.group_send("room", {"type": "broadcast"})
        assert await layer.receive(idle) == {"type": "broadcast"}
        # The process popped busy's copy with its two direct messages: busy is full, so its
        # copy is dropped once the reservation comes back (before busy's receives free room).
        await asyncio.sleep(0.2)
        assert [(await layer.receive(busy))["n"] for _ in range(2)] == [1, 2]
        waiting = asyncio.create_task(layer.receive(busy))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # the broadcast was never queued for busy
        waiting.cancel()


async def test_close_puts_unreceived_group_messages_back_per_channel(redis_url: str) -> None:
    layer = RedisChannelLayer(hosts=[redis_url])
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", first)
    await layer.group_add("room", second)
    await layer.group_send("room", {"type": "one"})
    await layer.group_send("room", {"type": "two"})
    assert await layer.receive(first) == {"type": "one"}  # pops both group entries
    await layer.close()
    # Reading the queue directly: what close() pushed back, one entry per channel, in order.
    admin = redis.Redis.from_url(redis_url)
    entries = admin.lrange(keys.queue_key("asgi:", first), 0, -1)
    admin.close()
    left = [(names, payload) for _, names, payload in map(keys.parse_entry, entries)]
    suffix = lambda channel: keys.split_channel(channel)[1]  # noqa: E731
    assert sorted(names[0] for names, _ in left) == sorted(
        [suffix(first), suffix(second), suffix(second)]
    )
    assert all(len(names) == 1 for names, _ in left)
