"""Many waiting channels: the reader sweeps every wanted queue after a pop (issue 10).

The sweep must keep every guarantee of the blocking pop: an entry is taken only for a receive
waiting at that moment, each message once, FIFO per channel.
"""

from __future__ import annotations

import asyncio

import pytest

from asgi_redis import reader
from tests.layer_helpers import make_layer, receive_within, wait_until
from tests.test_layer_receive import queue_length

CHANNELS = reader.SWEEP_MIN_QUEUES + 50  # enough to make the reader sweep


async def test_a_burst_to_many_waiting_channels_arrives_once_and_in_order(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    channels = [f"many.c{number}" for number in range(CHANNELS)]
    sweeps: list[bool] = []
    real_sweep = reader.Reader._sweep

    async def counting_sweep(self: reader.Reader, wanted: dict[str, int]) -> bool:
        sweeps.append(found := await real_sweep(self, wanted))
        return found

    monkeypatch.setattr(reader.Reader, "_sweep", counting_sweep)
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:

        async def consume(channel: str) -> list[int]:
            return [(await receive_within(layer, channel))["i"] for _ in range(3)]

        consumers = [asyncio.create_task(consume(channel)) for channel in channels]
        await asyncio.sleep(0.2)
        for index in range(3):
            await asyncio.gather(
                *(sender.send(channel, {"type": "m", "i": index}) for channel in channels)
            )
        got = await asyncio.wait_for(asyncio.gather(*consumers), 60)
    assert got == [[0, 1, 2]] * len(channels)
    assert any(sweeps), "the reader never swept: this test tested the blocking pop only"


async def test_a_sweep_takes_only_what_waiting_receives_asked_for(redis_url: str) -> None:
    channels = [f"many.d{number}" for number in range(CHANNELS)]
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        waiting = [asyncio.create_task(layer.receive(channel)) for channel in channels]
        await asyncio.sleep(0.2)
        for index in range(2):
            await asyncio.gather(
                *(sender.send(channel, {"type": "m", "i": index}) for channel in channels)
            )
        got = await asyncio.wait_for(asyncio.gather(*waiting), 60)
        assert [message["i"] for message in got] == [0] * len(channels)
        # One receive each: the second message of every channel is still in Redis.
        await wait_until(lambda: all(queue_length(redis_url, ch) == 1 for ch in channels[:20]))
        assert sum(queue_length(redis_url, channel) for channel in channels) == len(channels)
