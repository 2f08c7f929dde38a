"""Capacity and expiry through the public API (DESIGN.md guarantees 3 and 4)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import channels.exceptions
import pytest

from asgi_redis import ChannelFull, RedisChannelLayer, keys
from tests.layer_helpers import (
    KINDS,
    RECEIVE_TIMEOUT_S,
    blocked_clients,
    cancel,
    make_layer,
    receive_n,
    receive_within,
    sync_client,
    target,
    wait_until,
)

CAPACITY = 10
# Sleeping this long lets a message sent with expiry=1 expire (its deadline is 1 s away).
PAST_ONE_SECOND_S = 1.2


async def try_send(layer: RedisChannelLayer, channel: str, message: dict[str, Any]) -> bool:
    """Send; True when queued, False on ChannelFull."""
    try:
        await layer.send(channel, message)
    except ChannelFull:
        return False
    return True


async def fill(layer: RedisChannelLayer, channel: str, limit: int = 60) -> int:
    """Send until the channel is full; how many were queued."""
    for index in range(limit):
        if not await try_send(layer, channel, {"type": "fill", "i": index}):
            return index
    raise AssertionError(f"{channel} took {limit} messages without becoming full")


async def drain_then_marker(
    receiver: RedisChannelLayer, sender: RedisChannelLayer, channel: str, count: int
) -> list[dict[str, Any]]:
    """Receive ``count`` messages, then prove nothing else was queued with a marker."""
    got = await receive_n(receiver, channel, count)
    # A process-local channel's count drops one round trip after delivery.
    for _ in range(100):
        try:
            await sender.send(channel, {"type": "marker"})
            break
        except ChannelFull:
            await asyncio.sleep(0.02)
    assert await receive_within(receiver, channel) == {"type": "marker"}
    return got


def persist(url: str, channel: str) -> None:
    """Remove the TTLs of a channel's keys, so only the entries' deadlines can expire them."""
    with sync_client(url) as client:
        client.persist(keys.queue_key("asgi:", channel))
        client.persist(keys.counts_key("asgi:", channel))


def test_channel_full_is_the_channels_exception() -> None:
    assert issubclass(ChannelFull, channels.exceptions.ChannelFull)


# -- guarantee 3: exact under concurrent senders ---------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_capacity_exact_with_five_concurrent_senders(
    layer_hosts: list[Any], kind: str
) -> None:
    senders = [make_layer(layer_hosts, capacity=CAPACITY) for _ in range(5)]
    receiver = make_layer(layer_hosts, capacity=CAPACITY)
    try:
        channel = await target(receiver, kind)
        attempts = [
            try_send(senders[index % 5], channel, {"type": "m", "i": index}) for index in range(40)
        ]
        results = await asyncio.gather(*attempts)
        assert results.count(True) == CAPACITY
        assert results.count(False) == 40 - CAPACITY
        queued = {index for index, ok in enumerate(results) if ok}
        got = await receive_n(receiver, channel, CAPACITY)
        assert {message["i"] for message in got} == queued
        # Receiving made room again (a process-local channel's count drops when the
        # receiving process reports its deliveries, a round trip later), and nothing beyond
        # the ten was queued.
        await wait_until_uncounted(receiver, channel)
        assert await try_send(senders[0], channel, {"type": "marker"})
        assert await receive_within(receiver, channel) == {"type": "marker"}
    finally:
        for layer in [*senders, receiver]:
            await layer.close()


async def test_local_channels_of_one_client_each_hold_capacity(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts, capacity=CAPACITY) as layer:
        first = await layer.new_channel()
        second = await layer.new_channel()
        other_prefix = await layer.new_channel("other.")
        assert await fill(layer, first) == CAPACITY
        assert await fill(layer, second) == CAPACITY
        assert await fill(layer, other_prefix) == CAPACITY
        for channel in (first, second, other_prefix):
            got = await receive_n(layer, channel, CAPACITY)
            assert [message["i"] for message in got] == list(range(CAPACITY))


@pytest.mark.parametrize("kind", KINDS)
async def test_receiving_frees_capacity(layer_hosts: list[Any], kind: str) -> None:
    async with (
        make_layer(layer_hosts, capacity=3) as layer,
        make_layer(layer_hosts, capacity=3) as sender,
    ):
        channel = await target(layer, kind)
        for round_number in range(5):
            assert await fill(sender, channel) == 3, round_number
            await receive_n(layer, channel, 3)
            # Counts of process-local messages are released shortly after delivery.
            await wait_until_uncounted(layer, channel)


async def wait_until_uncounted(layer: RedisChannelLayer, channel: str) -> None:
    """Wait until nothing counts against ``channel``'s capacity (through the layer, so on any
    deployment); fail the test after ``RECEIVE_TIMEOUT_S``."""
    deadline = asyncio.get_running_loop().time() + RECEIVE_TIMEOUT_S
    while (await layer.channel_statistics(channel))["counted"]:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{channel!r} still counted after {RECEIVE_TIMEOUT_S} s")
        await asyncio.sleep(0.02)


# -- channel_capacity rules ------------------------------------------------------------------


RULES_NARROW_FIRST: dict[Any, int] = {
    "over.lap*": 2,
    "over.*": 5,
    re.compile(r"rx\.\d+$"): 3,
    "*.huge": 20,
    "tiny.*": 2,
}
RULES_WIDE_FIRST: dict[Any, int] = {"over.*": 5, "over.lap*": 2, "tiny.*": 2}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            RULES_NARROW_FIRST,
            {"over.lap.x": 2, "over.other": 5, "rx.12": 3, "rx.a": 4, "a.huge": 20, "plain": 4},
        ),
        (RULES_WIDE_FIRST, {"over.lap.x": 5, "over.other": 5, "plain": 4}),
    ],
    ids=["narrow-first", "wide-first"],
)
async def test_channel_capacity_rules_for_send(
    layer_hosts: list[Any], rules: dict[Any, int], expected: dict[str, int]
) -> None:
    async with make_layer(layer_hosts, capacity=4, channel_capacity=rules) as layer:
        tiny = await layer.new_channel("tiny.")
        default_local = await layer.new_channel()
        measured = {channel: await fill(layer, channel) for channel in expected}
        assert measured == expected
        assert await fill(layer, tiny) == 2
        assert await fill(layer, default_local) == 4


async def test_channel_capacity_rules_for_group_send(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts, capacity=4, channel_capacity=RULES_NARROW_FIRST) as layer:
        tiny = await layer.new_channel("tiny.")
        default_local = await layer.new_channel()
        triggers = [await layer.new_channel("tiny."), await layer.new_channel()]
        expected = {"over.lap.x": 2, "rx.7": 3, "plain": 4, "a.huge": 6, tiny: 2, default_local: 4}
        for channel in expected:
            await layer.group_add("ruled", channel)
        for index in range(6):
            await layer.group_send("ruled", {"type": "g", "i": index})
        # The receiving process checks its channels' capacity as it pops their copies: a
        # receive on another channel of the same client queue pops them while nobody reads
        # these (a receive on the channel itself would take a copy at once, making room).
        for trigger in triggers:
            await layer.send(trigger, {"type": "trigger"})
            assert await layer.receive(trigger) == {"type": "trigger"}
        for channel, count in expected.items():
            got = await drain_then_marker(layer, layer, channel, count)
            assert [message["i"] for message in got] == list(range(count)), channel


# -- group_send skips full members -----------------------------------------------------------


async def test_group_send_skips_full_members_silently(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts, capacity=3) as layer:
        full_local = await layer.new_channel()
        free_local = await layer.new_channel()
        members = ["full.named", full_local, "free.named", free_local]
        for channel in members:
            await layer.group_add("mixed", channel)
        for channel in ("full.named", full_local):
            assert await fill(layer, channel) == 3
        await layer.group_send("mixed", {"type": "g"})  # no ChannelFull
        for channel in ("free.named", free_local):
            assert await drain_then_marker(layer, layer, channel, 1) == [{"type": "g"}]
        for channel in ("full.named", full_local):
            got = await drain_then_marker(layer, layer, channel, 3)
            assert [message["type"] for message in got] == ["fill"] * 3


async def test_group_send_when_every_member_is_full(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts, capacity=1) as layer:
        await layer.group_add("all.full", "only")
        await layer.send("only", {"type": "first"})
        await layer.group_send("all.full", {"type": "dropped"})
        assert await drain_then_marker(layer, layer, "only", 1) == [{"type": "first"}]


# -- guarantee 4: expired messages ------------------------------------------------------------


@pytest.mark.parametrize("keep_keys", [False, True], ids=["key-ttl", "deadline-only"])
@pytest.mark.parametrize("kind", KINDS)
async def test_expired_messages_are_not_delivered_and_do_not_count(
    redis_url: str, kind: str, keep_keys: bool
) -> None:
    async with make_layer(redis_url, capacity=3, expiry=1) as layer:
        channel = await target(layer, kind)
        assert await fill(layer, channel) == 3
        if keep_keys:
            persist(redis_url, channel)
        await asyncio.sleep(PAST_ONE_SECOND_S)
        for index in range(3):
            assert await try_send(layer, channel, {"type": "fresh", "i": index})
        if keep_keys:
            persist(redis_url, channel)
        got = await receive_n(layer, channel, 3)
    assert got == [{"type": "fresh", "i": index} for index in range(3)]


@pytest.mark.parametrize("kind", KINDS)
async def test_expired_group_messages_do_not_count(redis_url: str, kind: str) -> None:
    async with make_layer(redis_url, capacity=2, expiry=1) as layer:
        channel = await target(layer, kind)
        await layer.group_add("short", channel)
        for _ in range(3):
            await layer.group_send("short", {"type": "old"})
        persist(redis_url, channel)
        await asyncio.sleep(PAST_ONE_SECOND_S)
        await layer.group_send("short", {"type": "new", "i": 0})
        await layer.group_send("short", {"type": "new", "i": 1})
        got = await receive_n(layer, channel, 2)
    assert got == [{"type": "new", "i": 0}, {"type": "new", "i": 1}]


@pytest.mark.parametrize("kind", KINDS)
async def test_expired_message_in_process_buffer_is_not_delivered(
    redis_url: str, kind: str
) -> None:
    async with make_layer(redis_url, expiry=1) as layer, make_layer(redis_url) as sender:
        channel = await target(layer, kind)
        pending = asyncio.create_task(layer.receive(channel))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await cancel(pending)
        await layer.send(channel, {"type": "stale"})  # popped into the buffer, not delivered
        await wait_until(lambda: channel_queue_length(redis_url, channel) == 0)
        await asyncio.sleep(PAST_ONE_SECOND_S)
        await sender.send(channel, {"type": "fresh"})
        assert await receive_within(layer, channel) == {"type": "fresh"}


@pytest.mark.parametrize("kind", KINDS)
async def test_expired_message_in_process_buffer_does_not_count(redis_url: str, kind: str) -> None:
    # expiry=2: "stale" (t=0) is popped into the receiving process's buffer and never
    # received; "live" (t=1) keeps the keys alive. At t=2.2 only "live" is unexpired, so
    # with capacity 2 there is room for one more.
    async with make_layer(redis_url, capacity=2, expiry=2) as layer:
        channel = await target(layer, kind)
        pending = asyncio.create_task(layer.receive(channel))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await cancel(pending)
        await layer.send(channel, {"type": "stale"})
        await wait_until(lambda: channel_queue_length(redis_url, channel) == 0)
        await asyncio.sleep(1.0)
        await layer.send(channel, {"type": "live"})
        await asyncio.sleep(PAST_ONE_SECOND_S)
        assert await try_send(layer, channel, {"type": "newest"})
        got = await receive_n(layer, channel, 2)
    assert [message["type"] for message in got] == ["live", "newest"]


def channel_queue_length(url: str, channel: str) -> int:
    """Entries in Redis in the queue that holds ``channel``."""
    with sync_client(url) as client:
        return int(client.llen(keys.queue_key("asgi:", channel)))
