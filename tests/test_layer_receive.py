"""receive: cancellation, hand-back on close, FIFO, long idle waits, independence, loops.

DESIGN.md guarantees 2 (nothing lost by cancelling), 5 (FIFO per sender), 6 (idle waits),
7 (process-local prefixes never wait on each other) and 10 (any event loop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from asgi_redis import RedisChannelLayer, keys
from tests.layer_helpers import (
    KINDS,
    blocked_clients,
    cancel,
    make_layer,
    receive_n,
    receive_within,
    sync_client,
    target,
    wait_until,
)
from tests.servers import RedisServer


def queue_length(url: str, channel: str) -> int:
    """Entries waiting in Redis in the queue that holds ``channel``."""
    with sync_client(url) as client:
        return int(client.llen(keys.queue_key("asgi:", channel)))


# -- guarantee 2: cancelling never loses a message -----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_random_cancels_lose_and_duplicate_nothing(layer_hosts: list[Any], kind: str) -> None:
    rng = random.Random(f"cancel-{kind}")
    total, wanted_cancels = 200, 200
    async with make_layer(layer_hosts) as layer, make_layer(layer_hosts) as sender:
        channel = await target(layer, kind)

        async def produce() -> None:
            for index in range(total):
                await sender.send(channel, {"type": "m", "i": index})
                await asyncio.sleep(rng.choice([0, 0, 0.001, 0.003]))

        producer = asyncio.create_task(produce())
        got: list[int] = []
        cancels = 0
        while cancels < wanted_cancels or not producer.done():
            task = asyncio.create_task(layer.receive(channel))
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)  # cancel after a random number of loop turns ...
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))  # ... or a short while
            task.cancel()
            try:
                got.append((await task)["i"])
            except asyncio.CancelledError:
                cancels += 1
        await producer
        while len(got) < total:
            got.append((await receive_within(layer, channel))["i"])
        # Nothing extra is left: the next message is the marker.
        await sender.send(channel, {"type": "marker", "i": -1})
        assert (await receive_within(layer, channel))["i"] == -1
    assert cancels >= wanted_cancels
    assert got == list(range(total))


async def buffer_one(url: str, layer: RedisChannelLayer, channel: str) -> None:
    """Leave one popped message ("m1") of the process-local ``channel`` in ``layer``'s buffer.

    A receive on a sibling channel (same client queue) blocks in Redis; "m1" arrives and is
    popped with the client queue's batch, then the sibling's receive is cancelled.
    """
    sibling = await layer.new_channel()
    pending = asyncio.create_task(layer.receive(sibling))
    await wait_until(lambda: blocked_clients(url) == 1)
    async with make_layer(url) as sender:
        await sender.send(channel, {"type": "m1"})
        await wait_until(lambda: queue_length(url, channel) == 0)  # the reader took it
        await cancel(pending)
        await wait_until(lambda: blocked_clients(url) == 0)  # nobody waits: no more pops
        await sender.send(channel, {"type": "m2"})
        await sender.send(channel, {"type": "m3"})


# Only process-local messages wait in a process; see test_handback.py for named channels.
async def test_buffered_message_goes_to_next_receive(redis_url: str) -> None:
    async with make_layer(redis_url) as layer:
        channel = await layer.new_channel()
        await buffer_one(redis_url, layer, channel)
        got = await receive_n(layer, channel, 3)
    assert [message["type"] for message in got] == ["m1", "m2", "m3"]


async def test_close_puts_buffered_message_back_at_the_head(redis_url: str) -> None:
    first = make_layer(redis_url)
    try:
        channel = await first.new_channel()
        await buffer_one(redis_url, first, channel)
        assert queue_length(redis_url, channel) == 2
    finally:
        await first.close()
    assert queue_length(redis_url, channel) == 3
    async with make_layer(redis_url) as second:
        got = await receive_n(second, channel, 3)
    assert [message["type"] for message in got] == ["m1", "m2", "m3"]


# -- guarantee 5: FIFO per sender -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_fifo_for_one_thousand_messages(layer_hosts: list[Any], kind: str) -> None:
    total = 1000
    async with (
        make_layer(layer_hosts, capacity=total) as layer,
        make_layer(layer_hosts, capacity=total) as sender,
    ):
        channel = await target(layer, kind, "fifo")
        consumer = asyncio.create_task(receive_n(layer, channel, total))
        for index in range(total):
            await sender.send(channel, {"type": "m", "i": index})
        got = await asyncio.wait_for(consumer, 60)
    assert [message["i"] for message in got] == list(range(total))


async def test_fifo_per_sender_with_two_interleaved_senders(layer_hosts: list[Any]) -> None:
    options = {"capacity": 300}
    async with (
        make_layer(layer_hosts, **options) as layer,
        make_layer(layer_hosts, **options) as one,
        make_layer(layer_hosts, **options) as two,
    ):

        async def produce(sender: RedisChannelLayer, name: str) -> None:
            for index in range(150):
                await sender.send("shared", {"type": "m", "from": name, "i": index})

        consumer = asyncio.create_task(receive_n(layer, "shared", 300))
        await asyncio.gather(produce(one, "one"), produce(two, "two"))
        got = await asyncio.wait_for(consumer, 60)
    for name in ("one", "two"):
        assert [m["i"] for m in got if m["from"] == name] == list(range(150))


# -- guarantee 6: an idle receive outlives socket timeouts ----------------------------------


async def test_idle_receive_of_twelve_seconds_then_message(
    layer_hosts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_redis")
    async with make_layer(layer_hosts) as layer, make_layer(layer_hosts) as sender:
        local = await layer.new_channel()
        named = asyncio.create_task(layer.receive("idle"))
        private = asyncio.create_task(layer.receive(local))
        await asyncio.sleep(12)  # redis-py 8's default socket timeout is 5 s
        assert not named.done()
        assert not private.done()
        await sender.send("idle", {"type": "late"})
        await sender.send(local, {"type": "late.local"})
        assert await asyncio.wait_for(named, 10) == {"type": "late"}
        assert await asyncio.wait_for(private, 10) == {"type": "late.local"}
    # The wait was quiet: no socket timeout, no reconnect.
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asgi_redis")] == []


# -- guarantee 7: process-local channels with different prefixes ---------------------------


async def test_local_prefixes_do_not_wait_on_each_other(redis_url: str) -> None:
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        idle = await layer.new_channel("a.")
        busy = await layer.new_channel("c.")
        active = await layer.new_channel("b.")
        # "a." has a receive waiting that nothing will satisfy.
        stuck = asyncio.create_task(layer.receive(idle))
        # "c." has a backlog and a consumer that took one message and stopped receiving.
        for index in range(50):
            await sender.send(busy, {"type": "backlog", "i": index})
        assert (await receive_within(layer, busy))["i"] == 0
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        # The reader blocks in Redis for the "a." receive; "b." must not wait behind it
        # (4 s is below the 5 s blocking timeout, so a missed wake-up shows).
        for index in range(20):
            await sender.send(active, {"type": "b", "i": index})
            assert await receive_within(layer, active, timeout_s=4) == {"type": "b", "i": index}
        assert not stuck.done()
        await cancel(stuck)
        rest = await receive_n(layer, busy, 49)
    assert [message["i"] for message in rest] == list(range(1, 50))


async def test_named_channel_does_not_wait_behind_a_blocked_receive(redis_url: str) -> None:
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        stuck = asyncio.create_task(layer.receive("nobody.sends.here"))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        for index in range(10):
            await sender.send("lively", {"type": "x", "i": index})
            got = await receive_within(layer, "lively", timeout_s=4)
            assert got == {"type": "x", "i": index}
        assert not stuck.done()
        await cancel(stuck)


# -- several receives on one channel --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_receives_each_get_a_different_message(
    layer_hosts: list[Any], kind: str
) -> None:
    count = 10
    async with make_layer(layer_hosts) as layer, make_layer(layer_hosts) as sender:
        channel = await target(layer, kind, "shared.work")
        receives = [asyncio.create_task(layer.receive(channel)) for _ in range(count)]
        await asyncio.sleep(0.1)
        for index in range(count):
            await sender.send(channel, {"type": "job", "i": index})
        got = await asyncio.wait_for(asyncio.gather(*receives), 20)
        await sender.send(channel, {"type": "marker", "i": -1})
        assert (await receive_within(layer, channel))["i"] == -1
    assert sorted(message["i"] for message in got) == list(range(count))


# -- guarantee 10: any event loop -----------------------------------------------------------


def test_asyncio_run_twice_with_one_layer(layer_hosts: list[Any]) -> None:
    layer = make_layer(layer_hosts)

    async def round_trip(label: str) -> dict[str, Any]:
        local = await layer.new_channel()
        await layer.send("loops", {"type": label})
        await layer.send(local, {"type": label})
        await layer.group_add("loops.group", local)
        await layer.group_send("loops.group", {"type": f"{label}.group"})
        assert await receive_within(layer, local) == {"type": label}
        assert await receive_within(layer, local) == {"type": f"{label}.group"}
        return await receive_within(layer, "loops")

    try:
        assert asyncio.run(round_trip("first")) == {"type": "first"}
        assert asyncio.run(round_trip("second")) == {"type": "second"}
    finally:
        asyncio.run(layer.close())


async def test_async_to_sync_from_a_thread(layer_hosts: list[Any]) -> None:
    rounds = 15
    async with make_layer(layer_hosts) as layer:
        local = await layer.new_channel()
        await layer.group_add("sync.group", local)
        errors: list[BaseException] = []

        def sync_code() -> None:
            try:
                for index in range(rounds):
                    async_to_sync(layer.send)("from.sync", {"type": "send", "i": index})
                    async_to_sync(layer.group_send)("sync.group", {"type": "group", "i": index})
                    message = async_to_sync(layer.receive)("to.sync")
                    assert message == {"type": "reply", "i": index}
            except BaseException as exc:
                errors.append(exc)

        for index in range(rounds):
            await layer.send("to.sync", {"type": "reply", "i": index})
        thread = threading.Thread(target=sync_code)
        thread.start()
        await asyncio.to_thread(thread.join, 60)
        assert not thread.is_alive()
        assert errors == []
        sent = await receive_n(layer, "from.sync", rounds)
        grouped = await receive_n(layer, local, rounds)
    assert [message["i"] for message in sent] == list(range(rounds))
    assert [message["i"] for message in grouped] == list(range(rounds))


def test_connections_of_finished_loops_do_not_pile_up(private_redis: RedisServer) -> None:
    # async_to_sync runs each call on a new event loop that is closed afterwards; the
    # connections of a closed loop must be closed with it, not left open.
    layer = make_layer(private_redis.url)
    gc.disable()  # only explicit closing counts, not the collector finding the garbage
    try:
        for index in range(20):
            async_to_sync(layer.send)("piles", {"type": "x", "i": index})
        with sync_client(private_redis.url) as client:
            open_connections = len(client.client_list()) - 1
        assert open_connections <= 2
    finally:
        gc.enable()
        asyncio.run(layer.close())
