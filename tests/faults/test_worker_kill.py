"""Scenario 2: kill -9 of one of two worker processes on a named channel, mid-stream.

Bound: lost <= the receives the killed worker had waiting. Its one ``receive`` loop re-arms
``receive`` only after logging the previous message, so it has one receive waiting at any
time, and the reader pops at most one entry per waiting receive (BLMPOP COUNT is the demand):
at most 1 message can be in its process, popped but not logged, when it dies.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import Spawn
from tests.faults.helpers import Tally, record
from tests.layer_helpers import make_layer
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

CHANNEL = "faults.kill9.jobs"
MESSAGES = 600
KILL_AFTER_DELIVERED = 150
WAITING_RECEIVES = 1  # one receive loop in the killed worker
BURST = 50
PAUSE_S = 0.01
EXIT_S = 60.0  # the survivor may still have a backlog on a loaded machine


async def test_kill_9_of_one_worker(private_redis: RedisServer, spawn: Spawn) -> None:
    url = private_redis.url
    victim = spawn(url, "victim", "named", CHANNEL)
    survivor = spawn(url, "survivor", "named", CHANNEL)
    victim.wait_ready()
    survivor.wait_ready()
    acked: list[int] = []
    killed_at = -1
    async with make_layer(url, capacity=100_000) as layer:
        for first in range(0, MESSAGES, BURST):
            # Sends in bursts keep a backlog, so the victim is busy, not idle, when it dies.
            burst = range(first, min(first + BURST, MESSAGES))
            await asyncio.gather(
                *(layer.send(CHANNEL, {"type": "job", "id": number}) for number in burst)
            )
            acked += burst
            if killed_at < 0 and len(victim.ids()) >= KILL_AFTER_DELIVERED:
                victim.kill()
                killed_at = burst[-1]
            await asyncio.sleep(PAUSE_S)
        if killed_at < 0:  # the victim was slow: kill it now, with messages still to come
            victim.kill()
            killed_at = MESSAGES

        def seen() -> list[int]:
            return [number for worker in (victim, survivor) for _, number in worker.ids()]

        # The stop goes after every job (FIFO per sender): once the survivor exits, whatever
        # is missing is lost.
        await layer.send(CHANNEL, {"type": "stop"})
        await asyncio.to_thread(survivor.process.wait, EXIT_S)

    tally = Tally("kill -9 of 1 of 2 workers", f"duplicates = 0, lost <= {WAITING_RECEIVES}")
    tally.count(acked, [], seen())
    tally.extra.update(
        killed_after_send=killed_at,
        victim_got=len(victim.ids()),
        survivor_got=len(survivor.ids()),
    )
    record(tally)
    assert tally.duplicates == 0
    assert tally.lost <= WAITING_RECEIVES
    assert tally.extra["unknown"] == 0
