"""Group messages to process-local members: one entry per process, capacity checked where the
copies are held (guarantee 3), and direct sends that see those copies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from asgi_redis import ChannelFull, RedisChannelLayer, keys
from asgi_redis.buffers import Item
from asgi_redis.copies import HeldCopies
from asgi_redis.metrics import Counters
from asgi_redis.receiver import Receiver
from tests.layer_helpers import make_layer, receive_n, receive_within, sync_client

CAPACITY = 5


async def join_room(sender: RedisChannelLayer, members: RedisChannelLayer) -> tuple[str, str]:
    """A process-local channel of ``members`` that ``sender`` adds to group "room" (the
    target), and another of the same client in no group (the trigger ``settle`` uses)."""
    target, trigger = await members.new_channel(), await members.new_channel()
    await sender.group_add("room", target)
    return target, trigger


async def settle(layer: RedisChannelLayer, trigger: str) -> None:
    """Make ``layer`` pop its client queue now (a receive on ``trigger``, another channel of
    the same client), and give its reservations one round trip to land."""
    await layer.send(trigger, {"type": "trigger"})
    assert await receive_within(layer, trigger) == {"type": "trigger"}
    await asyncio.sleep(0.05)


async def wait_until_counted(layer: RedisChannelLayer, channel: str, count: int) -> None:
    """Poll ``channel_statistics`` until ``counted`` is ``count`` (reservations land one round
    trip after the copies arrive; bounded, so a wrong count fails)."""
    for _ in range(100):
        if (await layer.channel_statistics(channel))["counted"] == count:
            return
        await asyncio.sleep(0.05)
    assert (await layer.channel_statistics(channel))["counted"] == count


async def drain(layer: RedisChannelLayer, channel: str) -> list[dict[str, Any]]:
    """Every message ``channel`` holds (until one receive waits 0.3 s for nothing)."""
    got: list[dict[str, Any]] = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except asyncio.TimeoutError:
            return got


async def test_a_slow_consumer_among_fast_ones(layer_hosts: list[Any]) -> None:
    async with (
        make_layer(layer_hosts, capacity=CAPACITY) as sender,
        make_layer(layer_hosts, capacity=CAPACITY) as members,
    ):
        slow, *fast = [await members.new_channel() for _ in range(6)]
        for channel in (slow, *fast):
            await sender.group_add("room", channel)
        for burst in range(3):  # three times the capacity, in bursts the fast ones keep up with
            for index in range(CAPACITY):
                await sender.group_send("room", {"i": burst * CAPACITY + index})
            got = await asyncio.gather(*(receive_n(members, ch, CAPACITY) for ch in fast))
            assert [[m["i"] for m in messages] for messages in got] == [
                list(range(burst * CAPACITY, (burst + 1) * CAPACITY))
            ] * len(fast)
        # The slow channel held its capacity (the oldest copies); the newer ones were dropped.
        await wait_until_counted(members, slow, CAPACITY)
        with pytest.raises(ChannelFull):
            await sender.send(slow, {"i": "direct"})
        assert [m["i"] for m in await drain(members, slow)] == list(range(CAPACITY))
        assert members.counters.channel_full == 2 * CAPACITY
        assert sender.counters.channel_full == 1  # the direct send


async def test_mixed_direct_and_group_traffic_never_above_capacity(
    layer_hosts: list[Any],
) -> None:
    async with (
        make_layer(layer_hosts, capacity=CAPACITY) as sender,
        make_layer(layer_hosts, capacity=CAPACITY) as members,
    ):
        target, trigger = await join_room(sender, members)
        accepted = []
        for index in range(4 * CAPACITY):
            if index % 2:
                await sender.group_send("room", {"i": index})
            else:
                try:
                    await sender.send(target, {"i": index})
                    accepted.append(index)
                except ChannelFull:
                    pass
            if index % 3 == 2:
                await settle(members, trigger)  # the copies reach the process in between
        await settle(members, trigger)
        stats = await members.channel_statistics(target)
        assert stats["counted"] <= CAPACITY
        got = [m["i"] for m in await drain(members, target)]
        # Never more than the capacity held (nothing was read until now), every accepted direct
        # message among them, in the order sent.
        assert len(got) <= CAPACITY
        assert set(accepted) <= set(got)
        assert got == sorted(got)


async def test_concurrent_direct_and_group_senders_never_above_capacity(
    layer_hosts: list[Any],
) -> None:
    async with (
        make_layer(layer_hosts, capacity=CAPACITY) as sender,
        make_layer(layer_hosts, capacity=CAPACITY) as members,
    ):
        target, trigger = await join_room(sender, members)

        async def direct(index: int) -> None:
            with contextlib.suppress(ChannelFull):
                await sender.send(target, {"i": index})

        async def popping() -> None:
            for _ in range(10):
                await settle(members, trigger)

        await asyncio.gather(
            popping(),
            *(direct(index) for index in range(0, 40, 2)),
            *(sender.group_send("room", {"i": index}) for index in range(1, 40, 2)),
        )
        await settle(members, trigger)
        assert (await members.channel_statistics(target))["counted"] <= CAPACITY
        assert len(await drain(members, target)) <= CAPACITY


async def test_the_client_queue_is_bounded(redis_url: str) -> None:
    async with (
        RedisChannelLayer(hosts=[redis_url], client_queue_capacity=3) as sender,
        RedisChannelLayer(hosts=[redis_url]) as members,
    ):
        local = [await members.new_channel() for _ in range(4)]
        for channel in [*local, "named.one"]:
            await sender.group_add("room", channel)
        for index in range(5):
            await sender.group_send("room", {"i": index})
        with sync_client(redis_url) as client:
            assert client.llen(keys.queue_key("asgi:", local[0])) == 3
        # 2 group_sends found the queue full: its 4 members were refused each time.
        assert sender.counters.channel_full == 2 * 4
        assert sender.counters.sent == 3 * 4 + 5
        assert [m["i"] for m in await receive_n(members, local[0], 3)] == [0, 1, 2]


async def test_direct_sends_are_bounded_by_channel_capacity_not_by_the_client_queue(
    redis_url: str,
) -> None:
    # The client queue bound stops group entries only: a direct send to a channel with room is
    # accepted however long its process's queue is, and refused at the channel's capacity.
    async with (
        RedisChannelLayer(hosts=[redis_url], client_queue_capacity=2, capacity=3) as sender,
        RedisChannelLayer(hosts=[redis_url]) as members,
    ):
        grouped, direct = await members.new_channel(), await members.new_channel()
        await sender.group_add("room", grouped)
        for index in range(3):
            await sender.group_send("room", {"i": index})
        assert sender.counters.channel_full == 1  # the third found the queue at its bound
        for index in range(3):
            await sender.send(direct, {"i": index})
        with pytest.raises(ChannelFull):
            await sender.send(direct, {"i": 3})
        with sync_client(redis_url) as client:
            assert client.llen(keys.queue_key("asgi:", direct)) == 2 + 3
        assert [m["i"] for m in await receive_n(members, direct, 3)] == [0, 1, 2]
        assert [m["i"] for m in await receive_n(members, grouped, 2)] == [0, 1]


async def test_every_receive_gets_its_own_message_dict(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        first, second = await layer.new_channel(), await layer.new_channel()
        for channel in (first, second):
            await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "t", "items": [1], "inner": {"k": "v"}})
        one = await receive_within(layer, first)
        one["items"].append(2)
        one["inner"]["k"] = "changed"
        one["type"] = "changed"
        other = await receive_within(layer, second)
        assert other == {"type": "t", "items": [1], "inner": {"k": "v"}}


async def test_close_returns_held_copies_and_their_slots(redis_url: str) -> None:
    async with RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY) as sender:
        members = RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY)
        target, trigger = await join_room(sender, members)
        for index in range(3):
            await sender.group_send("room", {"i": index})
        await settle(members, trigger)
        await wait_until_counted(members, target, 3)
        await members.close()
        # Back in Redis as group entries; no slot is held for them any more.
        assert (await sender.channel_statistics(target))["counted"] == 0
        with sync_client(redis_url) as client:
            entries = client.lrange(keys.queue_key("asgi:", target), 0, -1)
        assert len(entries) == 3 and all(keys.is_group_entry(entry) for entry in entries)


def test_a_full_channel_is_warned_about_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    counters = Counters()
    copies = HeldCopies(
        route=None,  # type: ignore[arg-type]  # _drop never writes to Redis
        prefix="asgi:",
        expiry_s=60,
        capacity_for=lambda channel: CAPACITY,
        idle=lambda channel: False,
        deliver=lambda channel, item: None,
        counters=counters,
    )
    with caplog.at_level(logging.WARNING, logger="asgi_redis.copies"):
        for _ in range(3):
            copies._drop("specific.a!x")
        copies._drop("specific.a!y")
    assert counters.channel_full == 4
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2
    assert "specific.a!x" in warned[0] and "specific.a!y" in warned[1]


def test_an_item_knows_its_entry_form() -> None:
    copy = Item(1_700_000_000_000, "x", b"p", "asgi:{0}q:specific.a!", counted=False)
    direct = Item(1_700_000_000_000, "x", b"p", "asgi:{0}q:specific.a!")
    assert keys.is_group_entry(copy.entry())
    assert not keys.is_group_entry(direct.entry())
    assert keys.parse_entry(copy.entry()) == keys.parse_entry(direct.entry())


async def test_slots_are_given_back_once_the_channel_stops_using_them(redis_url: str) -> None:
    async with (
        RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY) as sender,
        RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY) as members,
    ):
        target, trigger = await join_room(sender, members)
        for index in range(CAPACITY):
            await sender.group_send("room", {"i": index})
        await settle(members, trigger)
        await wait_until_counted(members, target, CAPACITY)
        with pytest.raises(ChannelFull):  # every slot is held by a copy
            await sender.send(target, {"i": "direct"})
        assert len(await receive_n(members, target, CAPACITY)) == CAPACITY

        # Kept while in use, given back within two looks (GIVE_BACK_S) once unused.
        await wait_until_counted(members, target, 0)
        for index in range(CAPACITY):
            await sender.send(target, {"i": f"direct {index}"})


async def test_a_copy_handed_to_a_receive_that_gives_up_needs_a_slot(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy handed to a waiting receive holds no slot; if that receive is cancelled before it
    # takes the copy, the copy must not stay buffered beside a full set of direct messages.
    async with (
        RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY) as sender,
        RedisChannelLayer(hosts=[redis_url], capacity=CAPACITY) as members,
    ):
        target = await members.new_channel()
        await sender.group_add("room", target)
        waiting = asyncio.create_task(members.receive(target))
        deliver = Receiver._deliver

        def deliver_then_cancel(self: Receiver, channel: str, item: Item) -> None:
            deliver(self, channel, item)
            if channel == target:
                waiting.cancel()  # woken, but cancelled before it runs to take the copy

        monkeypatch.setattr(Receiver, "_deliver", deliver_then_cancel)
        await asyncio.sleep(0.05)
        await sender.group_send("room", {"i": "group"})
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled()
        monkeypatch.setattr(Receiver, "_deliver", deliver)
        for index in range(CAPACITY):
            with contextlib.suppress(ChannelFull):
                await sender.send(target, {"i": index})
        got = [m["i"] for m in await drain(members, target)]
        # Kept when its slot came first, else dropped as full: never lost to the cancel alone.
        if got[:1] == ["group"]:
            assert got == ["group", *range(CAPACITY - 1)]
        else:
            assert got == list(range(CAPACITY))
            assert members.counters.channel_full == 1
