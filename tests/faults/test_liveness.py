"""Liveness under faults (guarantee 12): memberships survive outages, partitions heal.

7. **Restart with AOF longer than 3 heartbeats.** A member process (3 process-local channels
   in a group, reached through a proxy) and a broadcaster. Messages are group_sent and left
   queued; redis-server stops for 13 heartbeats (longer than a liveness mark's wall-time
   lifetime of 12, so every mark has run out when it is back); the member's path stays
   stalled for one more heartbeat while the broadcaster group_sends at once. Bound: every
   acknowledged message reaches every member (0 lost, 0 duplicates), memberships kept.
8. **One process partitioned for 6 heartbeats.** Its path stalls while the broadcaster goes
   on: it is judged dead (its queue is deleted) and, when the path resumes, rejoins. Bound:
   back in its groups within 2 heartbeats after the heal; lost only what was sent to it while
   it was cut off or judged dead; 0 duplicates.

Heartbeats are 0.3 s, so each scenario takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from asgi_redis.heartbeat import MARK_BEATS
from tests.conftest import start_server
from tests.faults.helpers import Tally, record
from tests.faults.proxy import StallProxy
from tests.layer_helpers import make_layer, receive_within
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

HEARTBEAT_S = 0.3
GROUP = "faults.live.room"
MEMBERS = 3
FAILURES = (redis.exceptions.RedisError, OSError)
LATE_WAIT_S = 1.0


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A redis-server that writes every command to its append-only file before replying."""
    server = start_server("--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        server.close()


async def broadcast(
    layer: RedisChannelLayer,
    numbers: range,
    acked: list[int],
    failed: list[int],
    pause_s: float,
    stop: asyncio.Event | None = None,
) -> None:
    """group_send each number (until ``stop`` is set), recording which were acknowledged."""
    for number in numbers:
        if stop is not None and stop.is_set():
            return
        try:
            await layer.group_send(GROUP, {"type": "job", "id": number})
        except FAILURES:
            failed.append(number)
        else:
            acked.append(number)
        await asyncio.sleep(pause_s)


async def drain(layer: RedisChannelLayer, channels: list[str]) -> list[tuple[int, int]]:
    """Everything each member channel gets until it has been quiet for LATE_WAIT_S."""
    seen: list[tuple[int, int]] = []
    for index, channel in enumerate(channels):
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), LATE_WAIT_S)
            except asyncio.TimeoutError:
                break
            seen.append((index, message["id"]))
    return seen


def per_member(numbers: list[int]) -> list[tuple[int, int]]:
    """Each acknowledged number once per member channel."""
    return [(index, number) for number in numbers for index in range(MEMBERS)]


async def join(layer: RedisChannelLayer) -> list[str]:
    """``MEMBERS`` new process-local channels of ``layer``, each added to ``GROUP``."""
    channels = [await layer.new_channel() for _ in range(MEMBERS)]
    for channel in channels:
        await layer.group_add(GROUP, channel)
    return channels


async def members_of(layer: RedisChannelLayer) -> Any:
    """group_statistics of the group."""
    return await layer.group_statistics(GROUP)


async def test_restart_with_aof_longer_than_three_heartbeats_keeps_memberships(
    aof_redis: RedisServer,
) -> None:
    tally = Tally(
        "restart with AOF, down 13 heartbeats, member back 1 heartbeat later",
        "lost = 0, duplicates = 0, memberships kept",
    )
    proxy = await StallProxy(aof_redis.port).start()
    member = make_layer(proxy.url, heartbeat=HEARTBEAT_S)
    sender = make_layer(aof_redis.url, heartbeat=HEARTBEAT_S)
    acked: list[int] = []
    failed: list[int] = []
    try:
        channels = await join(member)
        await broadcast(sender, range(0, 20), acked, failed, 0.0)  # queued, not yet received
        aof_redis.stop()  # SIGTERM
        await asyncio.sleep(HEARTBEAT_S * (MARK_BEATS + 1))
        proxy.stall()
        aof_redis.start()
        during = asyncio.create_task(broadcast(sender, range(20, 60), acked, failed, 0.02))
        await asyncio.sleep(HEARTBEAT_S)
        proxy.resume()
        await during
        await broadcast(sender, range(60, 80), acked, failed, 0.02)
        stats = await members_of(sender)
        seen = await drain(member, channels)
    finally:
        await member.close()
        await sender.close()
        await proxy.close()
    tally.extra["members_after"] = stats["local"]
    tally.extra["rejoins"] = member.counters.rejoins
    tally.count(per_member(acked), per_member(failed), seen)
    record(tally)
    assert stats["local"] == MEMBERS
    assert tally.lost == 0 and tally.duplicates == 0, tally.summary()


async def test_a_partitioned_process_rejoins_within_two_heartbeats_of_the_heal(
    private_redis: RedisServer,
) -> None:
    tally = Tally(
        "one process partitioned for 6 heartbeats",
        "back in its groups <= 2 heartbeats after the heal; lost only while cut off; "
        "duplicates = 0",
    )
    proxy = await StallProxy(private_redis.port).start()
    member = make_layer(proxy.url, heartbeat=HEARTBEAT_S)
    sender = make_layer(private_redis.url, heartbeat=HEARTBEAT_S)
    acked: list[int] = []
    failed: list[int] = []
    try:
        channels = await join(member)
        before = [(index, number) for number in range(10) for index in range(MEMBERS)]
        await broadcast(sender, range(0, 10), acked, failed, 0.0)
        seen = [
            (index, (await receive_within(member, channel))["id"])
            for number in range(10)
            for index, channel in enumerate(channels)
        ]
        assert sorted(seen) == sorted(before)
        proxy.stall()
        stop = asyncio.Event()
        cut_off = asyncio.create_task(
            broadcast(sender, range(10, 10_000), acked, failed, 0.02, stop)
        )
        await asyncio.sleep(HEARTBEAT_S * 6)
        dropped_while_cut_off = (await members_of(sender))["local"] == 0
        healed_at = time.monotonic()
        proxy.resume()
        while (await members_of(sender))["local"] < MEMBERS:
            assert time.monotonic() - healed_at < 10, "never rejoined"
            await asyncio.sleep(0.02)
        back_after_s = time.monotonic() - healed_at
        first_after = max(acked) + 1
        await asyncio.sleep(HEARTBEAT_S)
        stop.set()
        await cut_off
        last = max(acked)
        seen += await drain(member, channels)
    finally:
        await member.close()
        await sender.close()
        await proxy.close()
    tally.count(per_member(acked), per_member(failed), seen)
    received_after_rejoin = {number for _, number in seen if number >= first_after}
    tally.extra.update(
        {
            "dropped_while_cut_off": dropped_while_cut_off,
            "back_after_s": round(back_after_s, 3),
            "rejoins": member.counters.rejoins,
            "sent_after_rejoin": last - first_after + 1,
            "received_after_rejoin": len(received_after_rejoin),
        }
    )
    record(tally)
    assert dropped_while_cut_off
    assert member.counters.rejoins == 1
    assert back_after_s <= 2 * HEARTBEAT_S, tally.summary()
    assert tally.duplicates == 0
    # Everything sent once it was back arrives: the loss is only what it missed meanwhile.
    assert received_after_rejoin == set(range(first_after, last + 1)), tally.summary()
