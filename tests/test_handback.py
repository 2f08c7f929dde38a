"""A named-channel entry is taken only for a receive waiting at that moment (guarantee 2).

When the receive it was popped for has given up, the entry goes to another waiter of the same
process or back to the head of its queue at once, where another process gets it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from asgi_redis import commands, keys
from tests.layer_helpers import (
    blocked_clients,
    cancel,
    make_layer,
    receive_within,
    sync_client,
    wait_until,
)
from tests.test_layer_receive import queue_length


@pytest.fixture
def wakes_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wake-ups never arrive, so a reader keeps blocking for a receive that gave up."""

    async def no_wake(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(commands, "wake", no_wake)


async def test_entry_popped_after_its_receive_gave_up_goes_to_another_process(
    redis_url: str, wakes_lost: None
) -> None:
    async with make_layer(redis_url) as quitter, make_layer(redis_url) as worker:
        gave_up = asyncio.create_task(quitter.receive("jobs"))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await cancel(gave_up)  # its blocking pop stays in Redis, first in line
        waiting = asyncio.create_task(worker.receive("jobs"))
        await wait_until(lambda: blocked_clients(redis_url) == 2)
        async with make_layer(redis_url) as sender:
            await sender.send("jobs", {"type": "job", "n": 1})
        # The quitter's pop takes it and hands it straight back; the worker receives it.
        assert await asyncio.wait_for(waiting, 5) == {"type": "job", "n": 1}
        assert queue_length(redis_url, "jobs") == 0


async def test_entry_popped_for_nobody_is_back_in_redis_at_once(
    redis_url: str, wakes_lost: None
) -> None:
    async with make_layer(redis_url) as quitter:
        gave_up = asyncio.create_task(quitter.receive("jobs"))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await cancel(gave_up)
        async with make_layer(redis_url) as sender:
            await sender.send("jobs", {"type": "job"})
        await wait_until(lambda: blocked_clients(redis_url) == 0)  # popped ...
        await wait_until(lambda: queue_length(redis_url, "jobs") == 1)  # ... and back
        async with make_layer(redis_url) as other:
            assert await receive_within(other, "jobs", 5) == {"type": "job"}


async def test_receive_after_cancel_stops_blocking_on_the_channel(redis_url: str) -> None:
    async with make_layer(redis_url) as quitter:
        gave_up = asyncio.create_task(quitter.receive("jobs"))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await cancel(gave_up)
        await wait_until(lambda: blocked_clients(redis_url) == 0)
        async with make_layer(redis_url) as sender:
            await sender.send("jobs", {"type": "job"})
        await asyncio.sleep(0.2)
        assert queue_length(redis_url, "jobs") == 1


@pytest.mark.parametrize("trial", range(5))
async def test_receive_many_takes_one_message_when_both_channels_have_one(
    redis_url: str, trial: int
) -> None:
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        waiting = asyncio.create_task(layer.receive_many(["a", "b"]))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await sender.send("a", {"type": "for.a"})
        await sender.send("b", {"type": "for.b"})
        channel, _ = await asyncio.wait_for(waiting, 5)
        other = "b" if channel == "a" else "a"
        # The other message is in Redis (within a round trip), where anyone can take it.
        await wait_until(lambda: queue_length(redis_url, other) == 1)
        async with make_layer(redis_url) as second:
            assert await receive_within(second, other, 5) == {"type": f"for.{other}"}


async def test_entry_claimed_by_a_cancelled_receive_goes_to_the_next_waiter(
    redis_url: str,
) -> None:
    async with make_layer(redis_url) as layer, make_layer(redis_url) as sender:
        first = asyncio.create_task(layer.receive("jobs"))
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        second = asyncio.create_task(layer.receive("jobs"))
        await asyncio.sleep(0.05)
        await sender.send("jobs", {"type": "job"})
        # Cancel the first receive right when its entry is handed to it.
        while not first.done():
            await asyncio.sleep(0)
            if any(  # woken but not yet run
                waiter.done()
                for state in layer._loops.values()
                for receiver in state.receivers()
                for waiters in receiver._waiters.values()
                for waiter in waiters
            ):
                first.cancel()
                break
        results = await asyncio.gather(first, return_exceptions=True)
        if isinstance(results[0], dict):  # it won the race: nothing to pass on
            assert results[0] == {"type": "job"}
            await cancel(second)
            return
        assert await asyncio.wait_for(second, 5) == {"type": "job"}


async def test_close_returns_entries_when_redis_fails_first_then_works(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-back that fails keeps the messages; closing again returns them, once."""
    layer = make_layer(redis_url)
    channel, sibling = await layer.new_channel(), await layer.new_channel()
    pending = asyncio.create_task(layer.receive(sibling))
    await wait_until(lambda: blocked_clients(redis_url) == 1)
    async with make_layer(redis_url) as sender:
        await sender.send(channel, {"type": "kept"})
    await wait_until(lambda: queue_length(redis_url, channel) == 0)  # buffered here
    await cancel(pending)
    real_requeue = commands.requeue
    failures = [redis.exceptions.ConnectionError("simulated outage")]

    async def flaky_requeue(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return await real_requeue(*args, **kwargs)

    monkeypatch.setattr(commands, "requeue", flaky_requeue)
    with pytest.raises(redis.exceptions.ConnectionError):
        await layer.close()
    assert queue_length(redis_url, channel) == 0
    await layer.close()
    assert queue_length(redis_url, channel) == 1
    async with make_layer(redis_url) as second:
        assert await receive_within(second, channel, 5) == {"type": "kept"}


async def test_a_retried_hand_back_whose_reply_was_lost_pushes_nothing_twice(
    redis_url: str,
) -> None:
    async with make_layer(redis_url) as layer:
        client = layer._shards[0].client()
        queue = keys.queue_key("asgi:", "jobs")
        args: dict[str, Any] = {
            "queue": queue,
            "token_key": keys.requeue_token_key("asgi:", queue, "t1"),
            "entries": [b"x"],
            "expiry_s": 60,
        }
        assert await commands.requeue(client, **args) == 1
        assert await commands.requeue(client, **args) == 0
    with sync_client(redis_url) as plain:
        assert plain.lrange(queue, 0, -1) == [b"x"]
