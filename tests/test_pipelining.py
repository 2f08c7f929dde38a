"""Auto-pipelining: concurrent calls share round trips, and each caller keeps its own outcome.

Round trips are counted as writes to the socket (``send_packed_command`` on a pooled
connection, ``Writer._write`` on a client's dedicated one), never timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from asgi_redis import (
    ChannelFull,
    RedisChannelLayer,
    commands,
    keys,
    pipelining,
    scripts,
    writer,
)
from tests.layer_helpers import group_members, make_layer, sync_client
from tests.servers import RedisServer

PREFIX = "asgi:"  # the layer's default prefix
TASKS = 100
# Only stops a broken test from hanging.
BOUND_S = 10.0


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every write to a Redis socket (one per lone command or pipeline)."""
    counted = [0]
    original = AbstractConnection.send_packed_command
    original_write = writer.Writer._write

    async def counting(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        counted[0] += 1
        await original(self, *args, **kwargs)

    async def counting_write(self: writer.Writer, commands: Any) -> Any:
        counted[0] += 1
        return await original_write(self, commands)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    monkeypatch.setattr(writer.Writer, "_write", counting_write)
    yield counted


def queued(url: str, channel: str) -> int:
    """How many entries the queue of a named ``channel`` holds."""
    with sync_client(url) as client:
        return int(client.llen(keys.queue_key(PREFIX, channel)))


async def send_outcome(layer: RedisChannelLayer, channel: str) -> str:
    """``layer.send`` to ``channel``: "sent", "full", or the error's class name."""
    try:
        await layer.send(channel, {"type": "test.message"})
    except ChannelFull:
        return "full"
    except redis.RedisError as exc:
        return type(exc).__name__
    return "sent"


async def race_sends(layer: RedisChannelLayer, channels: list[str]) -> list[str]:
    """One task per channel, all sending in the same loop turn."""
    return await asyncio.wait_for(
        asyncio.gather(*(send_outcome(layer, channel) for channel in channels)), BOUND_S
    )


async def test_each_racing_sender_gets_its_own_result(redis_url: str, writes: list[int]) -> None:
    layer = make_layer(redis_url, capacity=2)
    full = [f"full.{index}" for index in range(10)]
    for channel in full:
        for _ in range(2):
            await layer.send(channel, {"type": "fill"})
    channels = [full[index % 10] if index % 3 == 0 else f"free.{index}" for index in range(TASKS)]
    writes[0] = 0
    outcomes = await race_sends(layer, channels)
    assert outcomes == ["full" if name.startswith("full.") else "sent" for name in channels]
    assert writes[0] < TASKS  # the batch formed: far fewer round trips than callers
    assert all(queued(redis_url, name) == (2 if name in full else 1) for name in channels)
    await layer.close()


async def test_one_callers_script_error_does_not_fail_the_others(redis_url: str) -> None:
    layer = make_layer(redis_url)
    with sync_client(redis_url) as client:
        client.set(keys.queue_key(PREFIX, "broken"), b"not a list")  # WRONGTYPE for its send
    channels = [f"ok.{index}" for index in range(TASKS)]
    channels[TASKS // 2] = "broken"
    outcomes = await race_sends(layer, channels)
    assert outcomes == ["ResponseError" if name == "broken" else "sent" for name in channels]
    assert all(queued(redis_url, name) == 1 for name in channels if name != "broken")
    await layer.close()


async def test_bad_arguments_fail_only_their_caller(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    good = [send_call(client, f"q{index}") for index in range(10)]
    # One key where send.lua needs two, and no ARGV: the script errors for this call only.
    bad = pipelining.run_batched(client, "send", ["q-bad"], [])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert results[:-1] == [True] * 10
    assert isinstance(results[-1], redis.ResponseError)
    await client.aclose()


async def send_call(client: Redis, queue: str) -> Any:
    """lua/send.lua of one small entry to the named-channel queue ``queue``, batched."""
    call = commands.send_call(
        queue=queue,
        counts=f"{queue}.counts",
        now_ms=1,
        entry=keys.make_entry(10_000_000_000_000, "", b"payload"),
        capacity=100,
        ttl_s=60,
        suffix="",
    )
    return commands.send_queued(await pipelining.run_batched(client, *call))


async def test_noscript_in_a_batch_reruns_only_those_calls_once(
    redis_url: str, writes: list[int]
) -> None:
    layer = make_layer(redis_url)
    with sync_client(redis_url) as client:
        client.script_flush()
        client.script_load(scripts.source("send"))  # sends run; group_adds meet NOSCRIPT
    channels = [f"chan.{index}" for index in range(TASKS)]
    calls = [
        layer.group_add("room", name) if index % 10 == 0 else send_outcome(layer, name)
        for index, name in enumerate(channels)
    ]
    writes[0] = 0
    outcomes = await asyncio.wait_for(asyncio.gather(*calls), BOUND_S)
    assert outcomes == [None if index % 10 == 0 else "sent" for index in range(TASKS)]
    assert writes[0] < TASKS
    with sync_client(redis_url) as client:
        members = group_members(client, PREFIX, "room")
    assert members == sorted(name.encode() for name in channels[::10])
    counts = [queued(redis_url, name) for name in channels]
    assert counts == [0 if index % 10 == 0 else 1 for index in range(TASKS)]
    await layer.close()


def refuse_the_eval_retry(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pipeline that re-sends NOSCRIPT calls with EVAL cannot connect (a node died or
    failed over between the two pipelines): nothing of it ran. Counts those refusals."""
    real = pipelining._pipeline
    refused = [0]

    async def pipeline(client: Redis, sends: list[Any]) -> list[Any]:
        if all(sha is None for sha, _ in sends):
            refused[0] += 1
            raise redis.exceptions.ConnectionError(
                "Error 111 connecting to 127.0.0.1:1. Connection refused."
            )
        return await real(client, sends)

    monkeypatch.setattr(pipelining, "_pipeline", pipeline)
    return refused


async def test_a_failed_noscript_retry_fails_only_the_calls_that_did_not_run(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sends ran in the first pipeline: they get their replies, not the retry's error
    (on a cluster that error, a refused connection, would have them sent a second time).
    A server of its own: a layer another test left open must not load the scripts again."""
    redis_url = private_redis.url
    layer = make_layer(redis_url)
    with sync_client(redis_url) as client:
        client.script_flush()
        client.script_load(scripts.source("send"))  # sends run; group_adds meet NOSCRIPT
    refused = refuse_the_eval_retry(monkeypatch)

    async def add_outcome(channel: str) -> str:
        try:
            await layer.group_add("room", channel)
        except redis.RedisError as exc:
            return type(exc).__name__
        return "added"

    channels = [f"chan.{index}" for index in range(TASKS)]
    calls = [
        add_outcome(name) if index % 10 == 0 else send_outcome(layer, name)
        for index, name in enumerate(channels)
    ]
    outcomes = await asyncio.wait_for(asyncio.gather(*calls), BOUND_S)
    assert refused[0] >= 1
    assert [outcome for index, outcome in enumerate(outcomes) if index % 10] == ["sent"] * 90
    assert set(outcomes[::10]) <= {"ConnectionError", "added"}  # a lone add re-sent alone
    assert [queued(redis_url, name) for name in channels] == [
        0 if index % 10 == 0 else 1 for index in range(TASKS)
    ]
    await layer.close()


async def test_noscript_for_every_call_of_a_batch(redis_url: str) -> None:
    layer = make_layer(redis_url)
    with sync_client(redis_url) as client:
        client.script_flush()
    channels = [f"chan.{index}" for index in range(TASKS)]
    assert await race_sends(layer, channels) == ["sent"] * TASKS
    assert all(queued(redis_url, name) == 1 for name in channels)
    await layer.close()


async def test_a_connection_killed_during_a_batch_fails_every_caller(
    private_redis: RedisServer, writes: list[int]
) -> None:
    layer = make_layer(private_redis.url)
    await layer.send("warm", {"type": "warm"})  # loads the script, opens a connection
    with sync_client(private_redis.url) as client:
        client.client_pause(60_000, all=False)  # EVALSHA waits: the batch is in flight
    writes[0] = 0
    batch = asyncio.ensure_future(race_sends(layer, [f"chan.{index}" for index in range(20)]))
    while writes[0] == 0:
        await asyncio.sleep(0.01)
    private_redis.kill()
    outcomes = await batch
    assert outcomes == ["ConnectionError"] * 20


async def test_a_caller_cancelled_before_the_flush_is_left_out(redis_url: str) -> None:
    layer = make_layer(redis_url)
    await layer.send("warm", {"type": "warm"})
    channels = [f"chan.{index}" for index in range(10)]
    tasks = [asyncio.ensure_future(send_outcome(layer, channel)) for channel in channels]
    await asyncio.sleep(0)  # every task has joined the batch; its flush has not run yet
    tasks[3].cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert [outcome for index, outcome in enumerate(outcomes) if index != 3] == ["sent"] * 9
    assert [queued(redis_url, name) for name in channels] == [1, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    await layer.close()


async def test_a_caller_cancelled_in_flight_does_not_break_its_batch(
    redis_url: str, writes: list[int]
) -> None:
    layer = make_layer(redis_url)
    await layer.send("warm", {"type": "warm"})
    channels = [f"chan.{index}" for index in range(10)]
    with sync_client(redis_url) as client:
        client.client_pause(60_000, all=False)
        writes[0] = 0
        tasks = [asyncio.ensure_future(send_outcome(layer, channel)) for channel in channels]
        while writes[0] == 0:
            await asyncio.sleep(0.01)
        tasks[3].cancel()
        await asyncio.sleep(0.05)
        client.client_unpause()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), BOUND_S)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert [outcome for index, outcome in enumerate(outcomes) if index != 3] == ["sent"] * 9
    await layer.close()


async def test_a_lone_call_is_a_plain_evalsha(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelines: list[int] = []
    original = pipelining._pipeline

    async def counting(client: Redis, sends: list[Any]) -> list[Any]:
        pipelines.append(len(sends))
        return await original(client, sends)

    monkeypatch.setattr(pipelining, "_pipeline", counting)
    layer = make_layer(redis_url)
    for index in range(5):
        await layer.send(f"chan.{index}", {"type": "test"})
    assert pipelines == []
    await asyncio.gather(*(layer.send(f"chan.{index}", {"type": "test"}) for index in range(5)))
    assert pipelines == [4]  # the first call of the turn went alone, at once
    await layer.close()


async def test_batches_on_fakeredis_too() -> None:
    fakeredis = pytest.importorskip("fakeredis")
    pytest.importorskip("lupa")
    client = fakeredis.FakeAsyncRedis(decode_responses=False)
    await client.script_flush()  # every call of the batch meets NOSCRIPT first
    good = [send_call(client, f"q{index}") for index in range(10)]
    bad = pipelining.run_batched(client, "send", ["q-bad"], [])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert results[:-1] == [True] * 10
    assert isinstance(results[-1], redis.ResponseError)
    assert [await client.llen(f"q{index}") for index in range(10)] == [1] * 10
    await client.aclose()
