"""Raw redis-py baselines for the benchmarks: what Redis itself allows, without any layer.

The floors (``raw_pair``, ``raw_ping_pong``) do the same job as the layer workloads they sit
beside, with plain RPUSH/BLPOP and the same msgpack payload: the layers are reported as a
fraction of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgpack
import redis.asyncio as aioredis

from .bench import (
    RAW_PREFIX,
    BenchFailedError,
    LayerSpec,
    Metrics,
    Sizes,
    Workload,
    fresh_layers,
    layer_round_trips,
    message,
    percentile,
)

RAW = "raw redis-py"
PAYLOAD = b"x" * 120
PIPELINE_BATCH = 100
# One script, K keys in KEYS: the limit for any fan-out that names every member's key.
PUSH_EACH_LUA = """
for i = 1, #KEYS do
  redis.call('RPUSH', KEYS[i], ARGV[1])
end
return #KEYS
"""


# A blocking pop that waits this long means the other side is gone: fail instead of hanging.
POP_TIMEOUT_S = 30
# Above POP_TIMEOUT_S, so redis-py (5 s by default) never cuts a blocking pop short.
SOCKET_TIMEOUT_S = 60.0


async def _with_client(url: str, keys: list[str]) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
    if keys:
        await client.delete(*keys)
    return client


def rpush_loop(sizes: Sizes) -> Workload:
    """One awaited RPUSH per message (one round trip each): msgs/s."""

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}queue"
        client = await _with_client(spec.url, [key])
        try:
            for _ in range(50):
                await client.rpush(key, b"warmup")
            started = time.perf_counter()
            for _ in range(sizes.messages):
                await client.rpush(key, PAYLOAD)
            rate = sizes.messages / (time.perf_counter() - started)
            await client.delete(key)
        finally:
            await client.aclose()
        return {"raw_rpush": rate}

    return Workload("raw rpush", run, ("raw_rpush",), (RAW,))


def pipelined_writes(sizes: Sizes) -> Workload:
    """RPUSH in pipelines of ``PIPELINE_BATCH`` (no MULTI): msgs/s."""

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}pipelined"
        client = await _with_client(spec.url, [key])
        try:
            started = time.perf_counter()
            for start in range(0, sizes.messages, PIPELINE_BATCH):
                pipe = client.pipeline(transaction=False)
                for _ in range(min(PIPELINE_BATCH, sizes.messages - start)):
                    pipe.rpush(key, PAYLOAD)
                await pipe.execute()
            rate = sizes.messages / (time.perf_counter() - started)
            await client.delete(key)
        finally:
            await client.aclose()
        return {"raw_pipelined": rate}

    return Workload("raw pipelined", run, ("raw_pipelined",), (RAW,))


def script_keys(sizes: Sizes, count: int) -> Workload:
    """EVALSHA of one script that RPUSHes to ``count`` keys passed in KEYS: calls/s."""
    metric = f"raw_script_{count}"

    async def run(spec: LayerSpec) -> Metrics:
        keys = [f"{RAW_PREFIX}k{index}" for index in range(count)]
        client = await _with_client(spec.url, keys)
        try:
            script = client.register_script(PUSH_EACH_LUA)
            await script(keys=keys, args=[PAYLOAD])
            started = time.perf_counter()
            for _ in range(sizes.script_calls):
                await script(keys=keys, args=[PAYLOAD])
            rate = sizes.script_calls / (time.perf_counter() - started)
            for start in range(0, count, 1000):
                await client.delete(*keys[start : start + 1000])
        finally:
            await client.aclose()
        return {metric: rate}

    return Workload(f"raw script {count} keys", run, (metric,), (RAW,))


async def _pop(client: aioredis.Redis, key: str) -> bytes:
    """BLPOP one entry of ``key``; BenchFailedError if nothing comes in ``POP_TIMEOUT_S``."""
    popped = await client.blpop([key], timeout=POP_TIMEOUT_S)
    if popped is None:
        raise BenchFailedError(f"nothing to pop from {key} in {POP_TIMEOUT_S} s")
    payload = popped[1]
    return payload if isinstance(payload, bytes) else payload.encode()


def raw_pair(sizes: Sizes) -> Workload:
    """The floor of send_receive: awaited RPUSHes of msgpack payloads + a BLPOP task: msgs/s.

    Producer and consumer hold their own connection, as a layer's sender and reader do.
    """

    async def pump(
        producer: aioredis.Redis, consumer: aioredis.Redis, key: str, count: int
    ) -> float:
        async def produce() -> None:
            for index in range(count):
                await producer.rpush(key, msgpack.packb(message("message", index)))

        async def consume() -> None:
            for _ in range(count):
                msgpack.unpackb(await _pop(consumer, key))

        started = time.perf_counter()
        await asyncio.gather(consume(), produce())
        return count / (time.perf_counter() - started)

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}pair"
        producer = await _with_client(spec.url, [key])
        consumer = await _with_client(spec.url, [])
        try:
            await pump(producer, consumer, key, 50)
            rate = await pump(producer, consumer, key, sizes.messages)
        finally:
            await producer.aclose()
            await consumer.aclose()
        return {"raw_pair": rate}

    return Workload("raw pair", run, ("raw_pair",), (RAW,))


async def raw_round_trips(
    client: aioredis.Redis, server: aioredis.Redis, count: int, latencies_ms: list[float]
) -> None:
    """``count`` RPUSH/BLPOP ping-pong round trips between two connections (the floor of
    ``bench.layer_round_trips``); each round trip's time (ms) is appended to ``latencies_ms``."""
    ping, pong = f"{RAW_PREFIX}ping", f"{RAW_PREFIX}pong"

    async def echo() -> None:
        for _ in range(count):
            # Decoded and encoded again, as a layer's echo does.
            payload = msgpack.packb(msgpack.unpackb(await _pop(server, ping)))
            await server.rpush(pong, payload)

    echo_task = asyncio.create_task(echo())
    for index in range(count):
        started = time.perf_counter()
        await client.rpush(ping, msgpack.packb(message("ping", index)))
        msgpack.unpackb(await _pop(client, pong))
        latencies_ms.append((time.perf_counter() - started) * 1000)
    await echo_task


@contextlib.asynccontextmanager
async def raw_ping_pong_clients(url: str) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    """The two connections of ``raw_round_trips`` (its keys emptied first), closed at the end."""
    client = await _with_client(url, [f"{RAW_PREFIX}ping", f"{RAW_PREFIX}pong"])
    try:
        server = await _with_client(url, [])
        try:
            yield client, server
        finally:
            await server.aclose()
    finally:
        await client.aclose()


def raw_ping_pong(sizes: Sizes) -> Workload:
    """The floor of ping_pong: RPUSH/BLPOP bounced between two connections; p50/p99 in ms."""

    async def run(spec: LayerSpec) -> Metrics:
        latencies_ms: list[float] = []
        async with raw_ping_pong_clients(spec.url) as (client, server):
            await raw_round_trips(client, server, 20, [])  # warm-up, not timed
            await raw_round_trips(client, server, sizes.round_trips, latencies_ms)
        timed = sorted(latencies_ms)
        return {
            "raw_ping_pong_p50": percentile(timed, 0.5),
            "raw_ping_pong_p99": percentile(timed, 0.99),
        }

    return Workload("raw ping_pong", run, ("raw_ping_pong_p50", "raw_ping_pong_p99"), (RAW,))


# Round trips per chunk of the interleaved ping-pong: short enough that the machine's drift
# (other processes, CPU frequency) reaches both sides alike.
INTERLEAVED_CHUNK = 50


def ping_pong_interleaved(sizes: Sizes) -> Workload:
    """ping_pong p50 as a multiple of the raw floor's, both measured in one event loop in
    alternating chunks of ``INTERLEAVED_CHUNK`` round trips (``sizes.round_trips`` of each).

    Run one after the other (``ping_pong``, ``raw_ping_pong``) the two p50s come from moments
    a second or more apart, and on a shared machine their ratio moved by 0.1-0.2 from run to run.
    """

    async def run(spec: LayerSpec) -> Metrics:
        layer_ms: list[float] = []
        raw_ms: list[float] = []
        async with (
            raw_ping_pong_clients(spec.url) as (client, server),
            fresh_layers(spec, 2, capacity=100) as (ours, theirs),
        ):
            await layer_round_trips(ours, theirs, 20, [])  # warm-up, not timed
            await raw_round_trips(client, server, 20, [])
            for number, first in enumerate(range(0, sizes.round_trips, INTERLEAVED_CHUNK)):
                chunk = min(INTERLEAVED_CHUNK, sizes.round_trips - first)
                sides = [
                    layer_round_trips(ours, theirs, chunk, layer_ms),
                    raw_round_trips(client, server, chunk, raw_ms),
                ]
                for side in sides if number % 2 == 0 else reversed(sides):
                    await side
        ratio = percentile(sorted(layer_ms), 0.5) / percentile(sorted(raw_ms), 0.5)
        return {"ping_pong_floor_x": ratio}

    return Workload("ping_pong interleaved", run, ("ping_pong_floor_x",))
