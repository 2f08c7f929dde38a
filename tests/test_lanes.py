"""Lanes (issue 19): a reader's wanted queues split into blocking pops of bounded size.

One message to one of N waiting channels must not cost O(N): each blocking pop carries at most
``LANE_QUEUES`` queues, and a message wakes only the pop that holds its queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from asgi_redis import commands, keys, lanes
from tests.layer_helpers import blocked_clients, make_layer, receive_within, wait_until
from tests.test_layer_receive import queue_length

CHANNELS = 2 * lanes.LANE_QUEUES + 44  # three lanes


@pytest.fixture
def pops(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The keys of every blocking pop the readers start (queues and the wake list)."""
    seen: list[list[str]] = []
    real = commands.multi_pop

    async def recording(client: Redis, queues: Sequence[str], count: int, timeout_s: float) -> Any:
        seen.append(list(queues))
        return await real(client, queues, count, timeout_s)

    monkeypatch.setattr(commands, "multi_pop", recording)
    return seen


async def test_a_trickle_to_many_waiting_channels_pops_bounded_key_sets(
    redis_url: str, pops: list[list[str]]
) -> None:
    channels = [f"lanes.t{number}" for number in range(CHANNELS)]
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in channels]
        await wait_until(lambda: blocked_clients(redis_url) == 3)  # one pop per lane
        for number, channel in enumerate(channels):
            await sender.send(channel, {"type": "m", "n": number})
        got = await asyncio.wait_for(asyncio.gather(*waiting), 60)
    assert [message["n"] for message in got] == list(range(CHANNELS))
    assert max(len(keys_) for keys_ in pops) <= lanes.LANE_QUEUES + 1  # + the wake list
    assert sum(len(keys_) for keys_ in pops) < CHANNELS * lanes.LANE_QUEUES


async def test_each_lane_wakes_on_its_own_wake_list(redis_url: str, pops: list[list[str]]) -> None:
    channels = [f"lanes.w{number}" for number in range(CHANNELS)]
    async with make_layer(redis_url) as layer:
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in channels]
        await wait_until(lambda: blocked_clients(redis_url) == 3)
        wake_lists = {keys_[-1] for keys_ in pops}
        assert len(wake_lists) == 3
        assert len({keys.tag_of_key("asgi:", key) for key in wake_lists}) == 1  # one slot
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        # Every lane re-blocks without the queues nobody wants, then stops.
        await wait_until(lambda: blocked_clients(redis_url) == 0)


async def test_a_receive_many_waits_in_one_lane_and_takes_one_message(
    redis_url: str, pops: list[list[str]]
) -> None:
    filler = [f"lanes.f{number}" for number in range(lanes.LANE_QUEUES - 1)]
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in filler]
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        both = asyncio.create_task(layer.receive_many(["lanes.a", "lanes.b"]))
        await wait_until(lambda: blocked_clients(redis_url) == 2)  # no room beside the filler
        queues = [keys.queue_key("asgi:", name) for name in ("lanes.a", "lanes.b")]
        assert any(all(queue in keys_ for queue in queues) for keys_ in pops)
        await sender.send("lanes.a", {"type": "for.a"})
        await sender.send("lanes.b", {"type": "for.b"})
        channel, _ = await asyncio.wait_for(both, 10)
        other = "lanes.b" if channel == "lanes.a" else "lanes.a"
        await wait_until(lambda: queue_length(redis_url, other) == 1)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    async with make_layer(redis_url) as second:
        assert await receive_within(second, other) == {"type": f"for.{other[-1]}"}


async def test_lanes_learn_once_that_a_server_has_no_blmpop(
    redis_url: str, no_blmpop: list[str]
) -> None:
    refused = no_blmpop
    channels = [f"lanes.o{number}" for number in range(CHANNELS)]
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in channels]
        await wait_until(lambda: blocked_clients(redis_url) == 3)  # BLPOP, one per lane
        for number, channel in enumerate(channels):
            await sender.send(channel, {"type": "m", "n": number})
        got = await asyncio.wait_for(asyncio.gather(*waiting), 60)
    assert [message["n"] for message in got] == list(range(CHANNELS))
    assert refused == ["BLMPOP"]  # the first lane's refusal told every lane
