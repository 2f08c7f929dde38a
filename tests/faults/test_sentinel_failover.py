"""Scenario 10: a Sentinel failover under traffic, counted.

A master with one replica and one sentinel. A sender sends numbered messages to a named
channel and group_sends to a group of 3 process-local channels of a member process
(heartbeat 0.3 s); the master gets SIGKILL, the sentinel promotes the replica (a few seconds,
far longer than 3 heartbeats), and traffic goes on until the new master has taken messages
for 2 s. Bounds: 0 duplicates; lost only what the old master acknowledged in its last second
(replication is asynchronous); the member process stays in its group (the failover counts
one heartbeat at most on the uptime clock).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.faults.helpers import Tally, record
from tests.layer_helpers import wait_until
from tests.servers import HOST
from tests.test_sentinel import SentinelSet, start_set

pytestmark = pytest.mark.faults

HEARTBEAT_S = 0.3
GROUP = "faults.sentinel.room"
NAMED = "faults.sentinel.jobs"
MEMBERS = 3
AT_RISK_S = 1.0
FAILOVER_S = 30.0
FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError)


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    """A master and one replica watched by one sentinel that may promote the replica."""
    servers = start_set(with_replica=True)
    try:
        yield servers
    finally:
        servers.close()


class Traffic:
    """Numbered sends (even ids, named channel) and group_sends (odd ids), with ack times."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        self.layer = layer
        self.acked: dict[int, float] = {}
        self.failed: list[int] = []
        self.errors: dict[str, int] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Until stopped: one call every 10 ms, a pause after a failure."""
        number = 0
        while not self.stop.is_set():
            try:
                if number % 2 == 0:
                    await asyncio.wait_for(self.layer.send(NAMED, {"id": number}), 10)
                else:
                    await asyncio.wait_for(self.layer.group_send(GROUP, {"id": number}), 10)
            except FAILURES as exc:
                self.failed.append(number)
                name = type(exc).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                await asyncio.sleep(0.1)
            else:
                self.acked[number] = time.monotonic()
                await asyncio.sleep(0.01)
            number += 1


async def drain(layer: RedisChannelLayer, channel: str) -> list[int]:
    """Every id ``channel`` gets until it has been quiet for 2 s."""
    seen: list[int] = []
    while True:
        try:
            seen.append((await asyncio.wait_for(layer.receive(channel), 2.0))["id"])
        except asyncio.TimeoutError:
            return seen


def expected(numbers: list[int]) -> list[tuple[str, int]]:
    """What each id should reach: the named channel, or every member."""
    wanted: list[tuple[str, int]] = []
    for number in numbers:
        if number % 2 == 0:
            wanted.append((NAMED, number))
        else:
            wanted += [(f"m{index}", number) for index in range(MEMBERS)]
    return wanted


async def test_sentinel_failover_under_traffic(sentinel_set: SentinelSet) -> None:
    servers = sentinel_set
    assert servers.replica is not None
    tally = Tally(
        "Sentinel failover under traffic (kill -9 of the master)",
        "duplicates = 0; lost only what the old master acked in its last second; members kept",
    )
    old_master = (HOST, servers.master.port)
    await wait_until(servers.replica_ready, 10.0)
    # Nobody receives until the end: room for every message.
    member = RedisChannelLayer(hosts=[servers.host()], heartbeat=HEARTBEAT_S, capacity=10_000)
    sender = RedisChannelLayer(hosts=[servers.host()], heartbeat=HEARTBEAT_S, capacity=10_000)
    traffic = Traffic(sender)
    try:
        channels = [await member.new_channel() for _ in range(MEMBERS)]
        for channel in channels:
            await member.group_add(GROUP, channel)
        running = asyncio.create_task(traffic.run())
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        servers.master.kill()
        while await asyncio.to_thread(servers.master_address) == old_master:
            assert time.monotonic() - killed_at < FAILOVER_S, servers.sentinel.log_tail(40)
            await asyncio.sleep(0.1)
        promoted_at = time.monotonic()
        while not any(at > promoted_at + 2.0 for at in traffic.acked.values()):
            assert time.monotonic() - promoted_at < FAILOVER_S, traffic.errors
            await asyncio.sleep(0.1)
        traffic.stop.set()
        await running
        stats = await sender.group_statistics(GROUP)
        seen = [(NAMED, number) for number in await drain(member, NAMED)]
        for index, channel in enumerate(channels):
            seen += [(f"m{index}", number) for number in await drain(member, channel)]
    finally:
        await member.close()
        await sender.close()
    acked = sorted(traffic.acked)
    tally.count(expected(acked), expected(traffic.failed), seen)
    at_risk = [n for n in acked if killed_at - AT_RISK_S <= traffic.acked[n] <= killed_at]
    lost = set(expected(acked)) - set(seen)
    tally.extra.update(
        {
            "failover_s": round(promoted_at - killed_at, 1),
            "errors": traffic.errors,
            "at_risk": len(expected(at_risk)),
            "members_after": stats["local"],
            "rejoins": member.counters.rejoins,
        }
    )
    record(tally)
    assert tally.duplicates == 0, tally.summary()
    assert lost <= set(expected(at_risk)), tally.summary()
    assert stats["local"] == MEMBERS, tally.summary()
