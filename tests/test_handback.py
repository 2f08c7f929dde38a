"""A named-channel entry is taken only for a receive waiting at that moment (guarantee 2).

When the receive it was popped for has given up, the entry goes to another waiter of the same
process or back to the head of its queue at once, where another process gets it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from asgi_redis import RedisChannelLayer, commands, handback, keys, reader, sidetask
from tests.layer_helpers import (
    blocked_clients,
    cancel,
    make_layer,
    receive_within,
    sync_client,
    wait_until,
)
from tests.test_layer_receive import queue_length

REAL_REQUEUE = commands.requeue


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


async def buffered_local_message(redis_url: str) -> tuple[RedisChannelLayer, str]:
    """A layer holding one popped message of a process-local channel in its buffer."""
    layer = make_layer(redis_url)
    channel, sibling = await layer.new_channel(), await layer.new_channel()
    pending = asyncio.create_task(layer.receive(sibling))
    await wait_until(lambda: blocked_clients(redis_url) == 1)
    async with make_layer(redis_url) as sender:
        await sender.send(channel, {"type": "kept"})
    await wait_until(lambda: queue_length(redis_url, channel) == 0)  # buffered here
    await cancel(pending)
    return layer, channel


def failing_requeue(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """``commands.requeue`` fails ``times`` times (an outage), then works; counts the calls."""
    calls = [0]

    async def flaky_requeue(*args: Any, **kwargs: Any) -> int:
        calls[0] += 1
        if calls[0] <= times:
            raise redis.exceptions.ConnectionError("simulated outage")
        return await REAL_REQUEUE(*args, **kwargs)

    monkeypatch.setattr(commands, "requeue", flaky_requeue)
    return calls


async def test_close_retries_a_failed_hand_back_with_backoff(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-back that fails at close is tried again inside close(), and returned once."""
    layer, channel = await buffered_local_message(redis_url)
    calls = failing_requeue(monkeypatch, times=3)
    await layer.close()
    assert calls[0] == 4
    assert queue_length(redis_url, channel) == 1
    async with make_layer(redis_url) as second:
        assert await receive_within(second, channel, 5) == {"type": "kept"}


async def test_close_gives_up_after_its_retries_and_keeps_the_messages(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Still refused after CLOSE_RETRY_S: close() raises, the message stays in the process,
    and closing again returns it, once."""
    monkeypatch.setattr(handback, "CLOSE_RETRY_S", 0.5)
    layer, channel = await buffered_local_message(redis_url)
    failing_requeue(monkeypatch, times=1_000_000)
    with pytest.raises(redis.exceptions.ConnectionError):
        await layer.close()
    assert queue_length(redis_url, channel) == 0
    failing_requeue(monkeypatch, times=0)
    await layer.close()
    assert queue_length(redis_url, channel) == 1
    assert layer.counters.lost_at_close == 0


def test_a_loop_closing_while_redis_refuses_counts_and_logs_what_it_lost(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The loop-close path cannot retry later: the held messages are counted as lost."""
    monkeypatch.setattr(handback, "CLOSE_RETRY_S", 0.3)

    loops: list[asyncio.AbstractEventLoop] = []

    async def hold_one() -> RedisChannelLayer:
        loops.append(asyncio.get_running_loop())
        layer, _ = await buffered_local_message(redis_url)
        failing_requeue(monkeypatch, times=1_000_000)
        return layer

    layer = asyncio.run(hold_one())  # the loop closes with the message still held
    assert layer.counters.lost_at_close == 1
    assert "Lost 1 popped messages" in caplog.text
    # The close that failed is run again, which closes the loop's clients (and their writers).
    assert not layer._servers.shards[0].holds(loops[0])
    assert not any(
        getattr(task.get_coro(), "__qualname__", "") == "Writer._read_replies"
        for task in asyncio.all_tasks(loops[0])
    )


async def test_a_retried_hand_back_whose_reply_was_lost_pushes_nothing_twice(
    redis_url: str,
) -> None:
    async with make_layer(redis_url) as layer:
        client = layer._servers.shards[0].client()
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


class HeldRoute:
    """A route whose first call waits for ``go``; records the entries of every hand-back."""

    label = "held"
    wake_tag = None

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sent: list[list[bytes]] = []

    async def run(self, operation: str, call: Any, *, wait_split: bool = True) -> int:
        self.sent.append(list(call.keywords["entries"]))
        if len(self.sent) == 1:
            await self.go.wait()
        return 1


async def test_a_flush_during_a_hand_back_loses_no_batch_queued_after_it() -> None:
    """flush() clears pending returns while one is on the wire; a batch queued after the
    flush is still sent (it used to be dropped as if it were the batch just written)."""
    route = HeldRoute()
    returns = handback.Returns(route, "asgi:", 60, dict, lambda queue: None)  # type: ignore[arg-type]
    returns.add({keys.queue_key("asgi:", "a"): [b"before"]})
    returns.request()
    await wait_until(lambda: len(route.sent) == 1)
    returns.clear()  # the flush
    returns.add({keys.queue_key("asgi:", "b"): [b"after"]})
    route.go.set()
    await wait_until(lambda: len(returns) == 0, 5)
    assert route.sent == [[b"before"], [b"after"]]


class SilentRoute:
    """A route whose calls never answer and never fail."""

    label = "silent"
    wake_tag = None

    async def run(self, operation: str, call: Any, *, wait_split: bool = True) -> int:
        await asyncio.Event().wait()
        return 0


@pytest.fixture
def short_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() gives a write 0.2 s and its retries 0.5 s."""
    monkeypatch.setattr(sidetask, "STOP_TIMEOUT_S", 0.2)
    monkeypatch.setattr(handback, "CLOSE_RETRY_S", 0.5)


@pytest.mark.usefixtures("short_bounds")
async def test_close_gives_up_on_a_hand_back_that_never_answers() -> None:
    returns = handback.Returns(SilentRoute(), "asgi:", 60, dict, lambda queue: None)  # type: ignore[arg-type]
    queue = keys.queue_key("asgi:", "a")
    with pytest.raises(TimeoutError, match="return undelivered messages on close: no answer"):
        await asyncio.wait_for(returns.close({queue: [b"kept"]}), 5)
    assert len(returns) == 1  # kept for a later close()


@pytest.mark.usefixtures("short_bounds")
async def test_close_gives_up_on_a_count_release_that_never_answers() -> None:
    releases = handback.Releases(SilentRoute(), "asgi:", 60)  # type: ignore[arg-type]
    releases.add(keys.queue_key("asgi:", "specific.ab12!"), "x1")
    await asyncio.sleep(0.05)  # its side task is now waiting for an answer
    with pytest.raises(TimeoutError, match="update channel counts on close: no answer"):
        await asyncio.wait_for(releases.close(), 5)


async def test_close_does_not_wait_forever_for_a_wake_up_that_never_answers(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader blocks for a receive; close() pushes a wake-up that gets no answer."""
    monkeypatch.setattr(reader, "STOP_TIMEOUT_S", 0.3)
    layer = make_layer(redis_url)
    waiting = asyncio.create_task(layer.receive("jobs"))
    await wait_until(lambda: blocked_clients(redis_url) == 1)

    async def silent_wake(*args: Any, **kwargs: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(commands, "wake", silent_wake)
    await asyncio.wait_for(layer.close(), 5)
    with pytest.raises(RuntimeError, match="closed while receiving"):
        await waiting
