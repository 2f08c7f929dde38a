"""The reader's task outlives a pause between receives (issue 19): no new task per pop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool

from asgi_redis import connections, reader
from tests.layer_helpers import blocked_clients, make_layer, receive_within, wait_until


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[reader.Reader]:
    """Every reader task started (the reader it ran for)."""
    started: list[reader.Reader] = []
    real = reader.Reader._read

    async def counting(self: reader.Reader) -> None:
        started.append(self)
        await real(self)

    monkeypatch.setattr(reader.Reader, "_read", counting)
    return started


@pytest.mark.parametrize("local", [False, True], ids=["named", "local"])
async def test_one_message_at_a_time_keeps_one_reader_task(
    redis_url: str, reads: list[reader.Reader], local: bool
) -> None:
    async with make_layer(redis_url) as layer:
        channel = await layer.new_channel() if local else "task.one"
        for number in range(20):
            await layer.send(channel, {"type": "m", "n": number})
            assert await receive_within(layer, channel) == {"type": "m", "n": number}
    assert len(reads) == 1


async def test_lingering_once_per_message_arms_one_timer(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    armed: list[str] = []
    loop = asyncio.get_running_loop()
    real_at, real_later = loop.call_at, loop.call_later

    def name(callback: Any) -> str:
        # A watchdog's timer is named after what it calls when due (Reader._linger_over).
        overdue = getattr(getattr(callback, "__self__", None), "_on_overdue", None)
        return str(getattr(overdue or callback, "__qualname__", ""))

    def at(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(name(callback))
        return real_at(when, callback, *args, **kwargs)

    def later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(name(callback))
        return real_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", at)
    monkeypatch.setattr(loop, "call_later", later)
    async with make_layer(redis_url) as layer:
        for number in range(30):  # the reader lingers after each pop, until the next receive
            await layer.send("task.timers", {"type": "m", "n": number})
            assert await receive_within(layer, "task.timers") == {"type": "m", "n": number}
    lingers = [name for name in armed if name.startswith(("Reader.", "_resolve"))]
    assert len(lingers) <= 2, lingers


async def test_an_idle_reader_task_ends_after_lingering(
    redis_url: str, reads: list[reader.Reader], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "IDLE_LINGER_S", 0.05)
    async with make_layer(redis_url) as layer:
        await layer.send("task.idle", {"type": "m"})
        assert await receive_within(layer, "task.idle") == {"type": "m"}
        await wait_until(lambda: not reads[0].running)
        assert blocked_clients(redis_url) == 0
        waiting = asyncio.create_task(layer.receive("task.idle"))  # starts a new task
        await wait_until(lambda: blocked_clients(redis_url) == 1)
        await layer.send("task.idle", {"type": "again"})
        assert await asyncio.wait_for(waiting, 10) == {"type": "again"}
    assert len(reads) == 2


async def test_buffered_messages_still_expire_after_the_task_lingered(redis_url: str) -> None:
    async with make_layer(redis_url, expiry=1) as layer:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "a"})
        await layer.send(channel, {"type": "b"})  # expires while the reader lingers
        await asyncio.sleep(0.7)
        await layer.send(channel, {"type": "c"})  # expires after the lingering ended
        assert await receive_within(layer, channel) == {"type": "a"}  # b and c buffered
        await wait_until(lambda: layer.counters.expired == 2, 5)


async def test_a_reader_task_checks_out_one_connection_for_all_its_pops(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkouts: list[object] = []
    real = BlockingConnectionPool.get_connection

    async def counting(self: BlockingConnectionPool, *args: Any, **kwargs: Any) -> Any:
        if self.max_connections == connections.BLOCKING_POOL_SIZE:  # the readers' pool
            checkouts.append(self)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(BlockingConnectionPool, "get_connection", counting)
    async with make_layer(redis_url) as layer:
        for number in range(20):
            waiting = asyncio.create_task(layer.receive("task.held"))
            await wait_until(lambda: blocked_clients(redis_url) == 1)
            await layer.send("task.held", {"type": "m", "n": number})
            assert await asyncio.wait_for(waiting, 10) == {"type": "m", "n": number}
    assert len(checkouts) == 1
