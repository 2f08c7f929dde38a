"""A malformed entry in a queue is skipped with a warning naming the channel (guarantee 11).

It never aborts the reader's batch, and the counts of the entries around it are released.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from asgi_redis import keys
from tests.layer_helpers import make_layer, receive_within, sync_client


@pytest.mark.parametrize("kind", ["named", "local"])
async def test_garbage_between_two_messages_is_skipped(
    redis_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asgi_redis")
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        channel = "jobs" if kind == "named" else await layer.new_channel()
        await sender.send(channel, {"type": "before"})
        with sync_client(redis_url) as client:
            client.rpush(keys.queue_key("asgi:", channel), b"garbage that is no entry")
        await sender.send(channel, {"type": "after"})
        # The reader pops all three in one batch for a local queue; one by one for a named one.
        assert await receive_within(layer, channel) == {"type": "before"}
        assert await receive_within(layer, channel) == {"type": "after"}
        head = keys.split_channel(channel)[0]
        assert any(
            "malformed" in record.getMessage() and head in record.getMessage()
            for record in caplog.records
        )
        if kind == "local":

            async def released() -> bool:
                return (await layer.channel_statistics(channel))["counted"] == 0

            for _ in range(100):
                if await released():
                    break
                await asyncio.sleep(0.02)
            assert await released()
