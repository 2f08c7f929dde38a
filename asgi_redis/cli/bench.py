"""Benchmark workloads shared by ``asgi-redis bench`` and ``benchmarks/bench.py``.

Each workload builds fresh layers from a :class:`LayerSpec`, does a fixed amount of work and
returns ``{metric: value}``. Only the Channels layer API and redis-py are used, so the same
code measures asgi_redis and channels_redis (imported only when a spec asks for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import redis.asyncio as aioredis

OURS = "asgi_redis"
THEIRS = "channels_redis"
THEIRS_PUBSUB = "channels_redis pubsub"
LAYER_CLASSES = {
    OURS: ("asgi_redis", "RedisChannelLayer"),
    THEIRS: ("channels_redis.core", "RedisChannelLayer"),
    THEIRS_PUBSUB: ("channels_redis.pubsub", "RedisPubSubChannelLayer"),
}
RAW_PREFIX = "benchraw:"
ADD_CONCURRENCY = 100
HELPER_TIMEOUT_S = 120.0
MANY_TIMEOUT_S = 60.0
# Memory per message is reported from this many queued messages on (--scale 0.1 queued 200
# and printed -1,726 B).
MIN_MEMORY_MESSAGES = 1000
# The same payload for every workload and both layers.
PAYLOAD_TEXT = "x" * 100


class BenchFailedError(Exception):
    """A workload could not finish correctly (lost messages, timeouts): a failure, not a number."""


class ChannelLayer(Protocol):
    """The part of the Channels layer API that the workloads use."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Enqueue one message."""

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message."""

    async def new_channel(self, prefix: str = ...) -> str:
        """Return a new process-local channel name."""

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to every member of a group."""

    async def flush(self) -> None:
        """Delete everything under the layer's prefix."""


@dataclass(frozen=True)
class LayerSpec:
    """How to build one layer; picklable, so a helper process can build the same layer.

    ``kind`` is ``OURS`` or ``THEIRS``; ``host_options`` turn the host into a dict of
    redis-py pool options (e.g. ``max_connections``); ``options`` go to the constructor.
    """

    name: str
    kind: str
    url: str
    prefix: str
    options: tuple[tuple[str, Any], ...] = ()
    host_options: tuple[tuple[str, Any], ...] = ()

    def build(self, **override: Any) -> ChannelLayer:
        """A new layer instance with this spec's options, then ``override`` on top."""
        module_name, attribute = LAYER_CLASSES[self.kind]
        layer_class = getattr(importlib.import_module(module_name), attribute)
        host: Any = self.url
        if self.host_options:
            host = {"address": self.url, **dict(self.host_options)}
        options = {"prefix": self.prefix, **dict(self.options), **override}
        layer: ChannelLayer = layer_class(hosts=[host], **options)
        return layer


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does. ``group_calls`` maps group size -> calls."""

    messages: int = 4000
    round_trips: int = 1000
    group_calls: tuple[tuple[int, int], ...] = (
        (1, 2000),
        (10, 1000),
        (100, 400),
        (1000, 100),
        (10000, 15),
    )
    local_group_calls: tuple[tuple[int, int], ...] = (
        (1, 1000),
        (10, 500),
        (100, 200),
        (1000, 60),
        (10000, 10),
    )
    # (processes, members per process, group_sends) of the broadcast workload.
    broadcast_shapes: tuple[tuple[int, int, int], ...] = (
        (4, 250, 100),
        (8, 25, 100),
        (2, 2500, 100),
        (1, 10000, 100),
    )
    many_channels: int = 1000
    many_messages: int = 10
    waiting_channels: tuple[int, ...] = (100, 1000, 4000, 10000)
    trickle_channels: tuple[int, ...] = (100, 4000)
    waiting_receives: int = 10000
    memory_messages: int = 10000
    script_keys: tuple[int, ...] = (1000, 10000)
    script_calls: int = 20
    sync_calls: int = 300  # async_to_sync calls per thread (bench_sync.py)

    def scaled(self, factor: float) -> Sizes:
        """The same shape with every count multiplied by ``factor`` (at least 1 each)."""

        def scale(value: int) -> int:
            return max(1, math.ceil(value * factor))

        def pairs(items: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
            return tuple((members, scale(calls)) for members, calls in items)

        return replace(
            self,
            messages=scale(self.messages),
            round_trips=scale(self.round_trips),
            group_calls=pairs(self.group_calls),
            local_group_calls=pairs(self.local_group_calls),
            broadcast_shapes=tuple((p, m, scale(n)) for p, m, n in self.broadcast_shapes),
            many_messages=scale(self.many_messages),
            waiting_channels=tuple(sorted({scale(count) for count in self.waiting_channels})),
            trickle_channels=tuple(sorted({scale(count) for count in self.trickle_channels})),
            waiting_receives=scale(self.waiting_receives),
            memory_messages=scale(self.memory_messages),
            script_calls=scale(self.script_calls),
            sync_calls=scale(self.sync_calls),
        )


Metrics = dict[str, float]
WorkloadFn = Callable[[LayerSpec], Awaitable[Metrics]]


@dataclass(frozen=True)
class Workload:
    """A named workload and the metric keys it reports (NaN-filled when it fails)."""

    name: str
    run: WorkloadFn
    keys: tuple[str, ...]
    layers: tuple[str, ...] = field(default=(OURS, THEIRS))
    host_options: tuple[tuple[str, Any], ...] = ()


def message(kind: str, index: int) -> dict[str, Any]:
    """The benchmark's message: a type, a counter and the shared payload."""
    return {"type": f"bench.{kind}", "n": index, "text": PAYLOAD_TEXT}


async def close_layer(layer: ChannelLayer) -> None:
    """Release a layer's connections (channels_redis has ``close_pools``, not ``close``)."""
    close = getattr(layer, "close", None) or getattr(layer, "close_pools", None)
    if close is not None:
        await close()


@contextlib.asynccontextmanager
async def fresh_layers(
    spec: LayerSpec, count: int, **options: Any
) -> AsyncIterator[list[ChannelLayer]]:
    """``count`` layers on one prefix; flushed before and after; closed at the end."""
    layers = [spec.build(**options) for _ in range(count)]
    try:
        await layers[0].flush()
        yield layers
    finally:
        try:
            await layers[0].flush()
        finally:
            for layer in layers:
                await close_layer(layer)


async def add_members(layer: ChannelLayer, group: str, channels: Sequence[str]) -> None:
    """group_add every channel, ``ADD_CONCURRENCY`` at a time (untimed set-up)."""
    for start in range(0, len(channels), ADD_CONCURRENCY):
        batch = channels[start : start + ADD_CONCURRENCY]
        await asyncio.gather(*(layer.group_add(group, channel) for channel in batch))


# --------------------------------------------------------------------------- one channel


async def pump(layer: ChannelLayer, channel: str, count: int) -> float:
    """Send ``count`` messages while one task receives them; return msgs/s."""

    async def produce() -> None:
        for index in range(count):
            await layer.send(channel, message("message", index))

    async def consume() -> None:
        for _ in range(count):
            await layer.receive(channel)

    started = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return count / (time.perf_counter() - started)


def send_receive(sizes: Sizes) -> Workload:
    """One producer, one consumer: one named, then one process-local channel (msgs/s)."""

    async def run(spec: LayerSpec) -> Metrics:
        async with fresh_layers(spec, 1, capacity=sizes.messages + 100) as (layer,):
            await pump(layer, "bench.warmup", 50)
            named = await pump(layer, "bench.queue", sizes.messages)
            local_channel = await layer.new_channel()
            await pump(layer, local_channel, 50)
            local = await pump(layer, local_channel, sizes.messages)
        return {"send_receive_named": named, "send_receive_local": local}

    return Workload("send_receive", run, ("send_receive_named", "send_receive_local"))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def layer_round_trips(
    client: ChannelLayer, server: ChannelLayer, count: int, latencies_ms: list[float]
) -> None:
    """``count`` ping-pong round trips: ``client`` sends on bench.ping and waits on bench.pong,
    a task of ``server`` echoes; each round trip's time (ms) is appended to ``latencies_ms``."""

    async def echo() -> None:
        for _ in range(count):
            await server.send("bench.pong", await server.receive("bench.ping"))

    echo_task = asyncio.create_task(echo())
    for index in range(count):
        started = time.perf_counter()
        await client.send("bench.ping", message("ping", index))
        await client.receive("bench.pong")
        latencies_ms.append((time.perf_counter() - started) * 1000)
    await echo_task


def ping_pong(sizes: Sizes) -> Workload:
    """Two layer instances bounce one message over two named channels: p50/p99 in ms."""

    async def run(spec: LayerSpec) -> Metrics:
        latencies_ms: list[float] = []
        async with fresh_layers(spec, 2, capacity=100) as (client, server):
            await layer_round_trips(client, server, 20, [])  # warm-up, not timed
            await layer_round_trips(client, server, sizes.round_trips, latencies_ms)
        timed = sorted(latencies_ms)
        return {"ping_pong_p50": percentile(timed, 0.5), "ping_pong_p99": percentile(timed, 0.99)}

    return Workload("ping_pong", run, ("ping_pong_p50", "ping_pong_p99"))


# --------------------------------------------------------------------------- memory


async def keys_memory(client: aioredis.Redis, prefix: str) -> int:
    """Bytes taken by the keys under ``prefix``: ``MEMORY USAGE`` with every element counted.

    Only the measured layer's keys count. ``used_memory`` also moved with client buffers and
    with keys that earlier runs left to expire: in ``asgi-redis bench`` it shrank while 2,000
    messages were queued.
    """
    total = 0
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        total += int(await client.memory_usage(key, samples=0) or 0)
    return total


def memory_per_message(sizes: Sizes) -> Workload:
    """Bytes of Redis memory per queued message: one named channel, nobody receiving.

    NaN (shown as n/a) below ``MIN_MEMORY_MESSAGES`` messages, where a small list's compact
    encoding is not what a real queue costs, or when the keys did not grow.
    """

    async def run(spec: LayerSpec) -> Metrics:
        count = sizes.memory_messages
        info = aioredis.Redis.from_url(spec.url)
        try:
            async with fresh_layers(spec, 1, capacity=count + 10) as (layer,):
                await layer.send("bench.warmup", message("warmup", 0))
                before = await keys_memory(info, spec.prefix)
                for index in range(count):
                    await layer.send("bench.memory", message("memory", index))
                grown = await keys_memory(info, spec.prefix) - before
        finally:
            await info.aclose()
        if count < MIN_MEMORY_MESSAGES or grown <= 0:
            return {"memory_per_message": math.nan}
        return {"memory_per_message": grown / count}

    return Workload("memory", run, ("memory_per_message",))
