"""One pass over everything the layer asks of Redis, through the public API only.

TLS and ACL tests run it to show a connection setup is enough for the whole layer: named and
process-local channels (BLMPOP, the wake list, the heartbeat), receive_many, groups, every
statistics call, flush (SCAN + UNLINK), and close handing buffered messages back to Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync

from asgi_redis import RedisChannelLayer
from asgi_redis.offload import CHURN_LOOPS
from tests.layer_helpers import receive_within

# Short, so the heartbeat writes its mark at least once during the pass.
HEARTBEAT_S = 0.2


async def exercise(hosts: list[Any], **options: Any) -> None:
    """Run every kind of layer call against ``hosts``; raises on the first failure."""
    await _exercise(RedisChannelLayer(hosts=hosts, heartbeat=HEARTBEAT_S, **options))


def exercise_from_sync_code(hosts: list[Any], **options: Any) -> None:
    """``exercise`` as sync code runs it (through ``async_to_sync`` where no loop runs), after
    the layer has seen short-lived loops: every call runs on the layer's background loop."""
    layer = RedisChannelLayer(hosts=hosts, heartbeat=HEARTBEAT_S, **options)
    for _ in range(CHURN_LOOPS + 1):
        async_to_sync(layer.group_send)("nobody", {"type": "churn"})
    async_to_sync(_exercise)(layer)


async def _exercise(layer: RedisChannelLayer) -> None:
    """Every kind of layer call on ``layer``, then close it."""
    try:
        await layer.send("named", {"type": "hello"})
        assert await receive_within(layer, "named") == {"type": "hello"}
        local = await layer.new_channel()
        await layer.group_add("room", local)
        await layer.group_add("room", "named")
        await layer.group_send("room", {"type": "everyone"})
        assert await receive_within(layer, local) == {"type": "everyone"}
        channel, message = await asyncio.wait_for(layer.receive_many(["other", "named"]), 10)
        assert (channel, message) == ("named", {"type": "everyone"})
        await _leave_waiting(layer)
        await layer.group_discard("room", "named")
        assert (await layer.channel_statistics("named"))["depth"] == 0
        assert (await layer.group_statistics("room"))["members"] >= 1
        assert (await layer.global_statistics())["shards"]
        await layer.flush()
        await _hand_back(layer)
    finally:
        await layer.close()


async def _leave_waiting(layer: RedisChannelLayer) -> None:
    """Wait on one channel, then on a second (the reader is woken through its wake list to
    block on both), for a few heartbeats; then give up."""
    first = asyncio.ensure_future(layer.receive(await layer.new_channel()))
    await asyncio.sleep(HEARTBEAT_S)
    second = asyncio.ensure_future(layer.receive(await layer.new_channel()))
    await asyncio.sleep(3 * HEARTBEAT_S)
    for waiting in (first, second):
        waiting.cancel()
    await asyncio.gather(first, second, return_exceptions=True)


async def _hand_back(layer: RedisChannelLayer) -> None:
    """One receive_many popping from two channels at once returns the other entry to Redis
    (when both arrive within one pop; either way both are delivered exactly once)."""
    await layer.group_add("pair", "left")
    await layer.group_add("pair", "right")
    waiting = asyncio.ensure_future(layer.receive_many(["left", "right"]))
    await asyncio.sleep(HEARTBEAT_S)
    await layer.group_send("pair", {"type": "both"})
    channel, _ = await asyncio.wait_for(waiting, 10)
    other = "right" if channel == "left" else "left"
    assert await receive_within(layer, other) == {"type": "both"}
