"""Scenario 9: replies lost after the server ran the command.

One layer sends, group_sends and receives on a process-local channel of capacity 5 through a
proxy that, at random (5 % of the server's reply chunks, fixed seed), drops a reply and resets
the connection: the script ran, its caller gets a ``ConnectionError``. Everything the layer
retries by itself (count releases, hand-backs, heartbeats) must not apply twice. A plain
client watches the channel's count straight in Redis all along.

Bounds: 0 duplicates; the count never above the capacity; once traffic stops, nothing of the
capacity stays taken beyond ``expiry`` (the channel takes 5 sends again). Lost: messages a cut
blocking pop had taken (the pop ran, its reply never came), and sends or group_sends whose
reply was cut may have run or not (``late`` counts those delivered anyway); group copies the
receiving process dropped for a full channel are counted apart (``channel_full``).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.exceptions

from asgi_redis import ChannelFull, RedisChannelLayer, keys
from tests.faults.helpers import Tally, record
from tests.faults.proxy import StallProxy
from tests.layer_helpers import make_layer, sync_client
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

CAPACITY = 5
EXPIRY_S = 2
RUN_S = 5.0
CUT_PROBABILITY = 0.05
GROUP = "faults.lost.room"
FAILURES = (redis.exceptions.RedisError, OSError)


async def produce(
    layer: RedisChannelLayer, channel: str, acked: list[int], failed: list[int], stop: float
) -> int:
    """Send and group_send numbered messages until ``stop``; returns how many were refused
    as full (a send raising ChannelFull, a group_send skipping its full member: not sent)."""
    refused, number = 0, 0
    while time.monotonic() < stop:
        number += 1
        queued_before = layer.counters.sent
        try:
            if number % 2:
                await layer.send(channel, {"type": "job", "id": number})
            else:
                await layer.group_send(GROUP, {"type": "job", "id": number})
        except ChannelFull:
            refused += 1
            await asyncio.sleep(0.005)
            continue
        except FAILURES:
            failed.append(number)
            await asyncio.sleep(0.01)
            continue
        if layer.counters.sent == queued_before:  # the group_send found its member full
            refused += 1
            await asyncio.sleep(0.005)
            continue
        acked.append(number)
    return refused


async def consume(layer: RedisChannelLayer, channel: str, seen: list[int], stop: float) -> None:
    """Receive until quiet for a second after ``stop``, pausing after every 10 messages so
    the channel fills up to its capacity again and again."""
    while True:
        if seen and len(seen) % 10 == 0 and time.monotonic() < stop:
            await asyncio.sleep(0.2)
        wait_s = max(0.5, stop - time.monotonic() + 1.0)
        try:
            message = await asyncio.wait_for(layer.receive(channel), wait_s)
        except asyncio.TimeoutError:
            if time.monotonic() > stop:
                return
            continue
        except FAILURES:
            continue
        seen.append(message["id"])


async def watch(url: str, channel: str, highest: list[int], stop: float) -> None:
    """Poll the channel's count (direct messages plus the slots reserved for group copies
    its process holds) and the direct entries in its queue in Redis; keep the highest of
    each (a count lowered twice would let them grow past the capacity while the consumer
    pauses). Group entries waiting in the queue are not the channel's yet: its process
    checks each copy against the capacity when it holds it."""
    counts_key = keys.counts_key("asgi:", channel)
    queue_key = keys.queue_key("asgi:", channel)
    suffix = keys.split_channel(channel)[1]
    with sync_client(url) as client:
        while time.monotonic() < stop + 1.0:
            direct, reserved = client.hmget(counts_key, [suffix, keys.reserved_field(suffix)])
            highest[0] = max(highest[0], int(direct or 0) + int(reserved or 0))
            entries = client.lrange(queue_key, 0, -1)
            counted = sum(not keys.is_group_entry(entry) for entry in entries)
            highest[1] = max(highest[1], counted)
            await asyncio.sleep(0.005)


async def test_lost_replies_duplicate_nothing_and_never_exceed_capacity(
    private_redis: RedisServer,
) -> None:
    tally = Tally(
        "replies lost at random (5 % of reply chunks)",
        "duplicates = 0, count <= capacity, no capacity taken beyond expiry",
    )
    proxy = await StallProxy(private_redis.port).start()
    layer = make_layer(proxy.url, capacity=CAPACITY, expiry=EXPIRY_S, heartbeat=0.3)
    acked: list[int] = []
    failed: list[int] = []
    seen: list[int] = []
    highest = [0, 0]
    try:
        channel = await layer.new_channel()
        await layer.group_add(GROUP, channel)
        proxy.cut_replies(CUT_PROBABILITY, seed=18)
        stop = time.monotonic() + RUN_S
        refused, *_ = await asyncio.gather(
            produce(layer, channel, acked, failed, stop),
            consume(layer, channel, seen, stop),
            watch(private_redis.url, channel, highest, stop),
        )
        proxy.cut_replies(0.0)
        cuts = proxy.cuts
        # Whatever a cut pop took counts until the client's counts expire, EXPIRY_S after
        # the last send; then the channel takes CAPACITY messages again.
        await asyncio.sleep(EXPIRY_S + 0.5)
        refill = 0
        for number in range(CAPACITY):
            await layer.send(channel, {"type": "refill", "id": -1 - number})
            refill += 1
    finally:
        await layer.close()
        await proxy.close()
    tally.count(acked, failed, seen)
    tally.extra.update(
        {
            "cuts": cuts,
            "refused_full": refused,
            "highest_count": highest[0],
            "highest_queue": highest[1],
            "refill": refill,
            **{f"layer_{name}": value for name, value in layer.counters.snapshot().items()},
        }
    )
    record(tally)
    assert cuts > 0
    assert tally.duplicates == 0, tally.summary()
    assert highest[0] <= CAPACITY and highest[1] <= CAPACITY, tally.summary()
    # A cut reply loses at most what it carried: one pop, at most CAPACITY entries here.
    # Group copies the receiving process dropped because the channel was full are not lost
    # to a cut: the layer counted them as channel_full, beside the sends it refused.
    dropped_full = layer.counters.channel_full - refused
    assert tally.lost <= cuts * CAPACITY + dropped_full, tally.summary()
    assert refill == CAPACITY
