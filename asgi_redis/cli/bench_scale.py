"""Benchmark workloads about scale: many channels at once, many waiting receives.

``many_channels`` is the incumbent's own benchmark (every sender and receiver a task);
``many_waiting`` delivers one message to each of N channels that already have a receive
waiting, the cost a server with N idle websocket consumers pays, in bursts of concurrent
sends; ``trickle`` does the same one awaited send at a time (what a quiet server with N
idle consumers sees); ``client_memory`` is what those waiting receives cost the client
process.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from .bench import (
    ADD_CONCURRENCY,
    MANY_TIMEOUT_S,
    OURS,
    THEIRS,
    THEIRS_PUBSUB,
    BenchFailedError,
    ChannelLayer,
    LayerSpec,
    Metrics,
    Sizes,
    Workload,
    fresh_layers,
    message,
)

# N=100 delivers in a few ms: repeat it until about this many messages are timed, in at
# most MAX_WAITING_ROUNDS rounds (each pays an untimed settle pause).
WAITING_MESSAGES_PER_RUN = 1000
MAX_WAITING_ROUNDS = 10
# Untimed pause after arming the receives, so that they are waiting when the first send goes.
SETTLE_S_PER_1000 = 0.1
SETTLE_MIN_S = 0.2
NUMSUB_BATCH = 500


def _text(name: bytes | str) -> str:
    """A channel name from a reply (bytes unless the client decodes)."""
    return name.decode() if isinstance(name, bytes) else name


async def subscribed(spec: LayerSpec, names: Sequence[str]) -> None:
    """Wait until the receives on ``names`` are armed (bounded by ``MANY_TIMEOUT_S``).

    The PubSub layer drops what is published before its SUBSCRIBE, so for it this polls
    ``PUBSUB NUMSUB`` until every channel has a subscriber. Queue-based layers keep what
    arrives early; for them this is a short pause proportional to the number of receives.
    """
    if spec.kind != THEIRS_PUBSUB:
        await asyncio.sleep(max(SETTLE_MIN_S, SETTLE_S_PER_1000 * len(names) / 1000))
        return
    client = aioredis.Redis.from_url(spec.url)
    deadline = time.perf_counter() + MANY_TIMEOUT_S
    try:
        pending = list(names)
        while pending:
            if time.perf_counter() > deadline:
                raise BenchFailedError(f"{len(pending):,} channels never subscribed")
            batch = pending[:NUMSUB_BATCH]
            counts = await client.pubsub_numsub(*batch)
            ready = {_text(name) for name, count in counts if count}
            pending = [name for name in pending if name not in ready]
            if pending:
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def _gathered(tasks: Sequence[asyncio.Future[Any]], started: float, what: str) -> None:
    """Await every task within ``MANY_TIMEOUT_S``; a failure or stall is a BenchFailedError."""
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), MANY_TIMEOUT_S)
    except Exception as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        done = sum(task.done() and not task.cancelled() and not task.exception() for task in tasks)
        detail = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise BenchFailedError(
            f"{detail} after {time.perf_counter() - started:.1f} s with {done:,}/{len(tasks):,} "
            f"{what}: {exc}"
        ) from exc


def many_channels(
    sizes: Sizes,
    key: str = "many_channels",
    layers: tuple[str, ...] = (OURS, THEIRS),
    host_options: tuple[tuple[str, Any], ...] = (),
) -> Workload:
    """Channels x messages on named channels, every sender and receiver a concurrent task.

    Layers keep their default settings (capacity too). A lost message or a stall is a
    :class:`BenchFailedError`; the metric is delivered msgs/s. The clock starts with the
    senders, once the receivers are armed (see :func:`subscribed`).
    """

    async def run(spec: LayerSpec) -> Metrics:
        count, per_channel = sizes.many_channels, sizes.many_messages
        names = [f"bench.many.{index}" for index in range(count)]

        async def receiver(layer: ChannelLayer, channel: str) -> None:
            for _ in range(per_channel):
                await layer.receive(channel)

        async def sender(layer: ChannelLayer, channel: str) -> None:
            for index in range(per_channel):
                await layer.send(channel, message("many", index))

        async with fresh_layers(spec, 2) as (sending, receiving):
            receivers = [asyncio.ensure_future(receiver(receiving, name)) for name in names]
            await subscribed(spec, names)
            started = time.perf_counter()
            senders = [asyncio.ensure_future(sender(sending, name)) for name in names]
            await _gathered([*receivers, *senders], started, "tasks done")
            elapsed = time.perf_counter() - started
        return {key: count * per_channel / elapsed}

    return Workload(key.replace("_", " "), run, (key,), layers, host_options)


async def _deliver_to_waiting(
    spec: LayerSpec, sending: ChannelLayer, receiving: ChannelLayer, names: Sequence[str]
) -> float:
    """Arm one receive per channel, then send one message to each; seconds until all arrived."""
    receives = [asyncio.ensure_future(receiving.receive(name)) for name in names]
    await subscribed(spec, names)
    started = time.perf_counter()
    for start in range(0, len(names), ADD_CONCURRENCY):
        batch = names[start : start + ADD_CONCURRENCY]
        await asyncio.gather(*(sending.send(name, message("wait", 0)) for name in batch))
    await _gathered(receives, started, "messages received")
    return time.perf_counter() - started


def many_waiting(count: int) -> Workload:
    """One message to each of ``count`` named channels with a receive waiting: msgs/s.

    One process (layer) receives, another layer sends, 100 sends at a time. Small ``count``s
    repeat the round until ``WAITING_MESSAGES_PER_RUN`` messages are timed.
    """
    return _to_waiting(count, "many_waiting", "many waiting", "bench.wait", _deliver_to_waiting)


def _to_waiting(
    count: int,
    key_stem: str,
    label: str,
    channel_stem: str,
    deliver: Callable[[LayerSpec, ChannelLayer, ChannelLayer, Sequence[str]], Awaitable[float]],
) -> Workload:
    """A workload that times ``deliver`` to ``count`` waiting channels (another layer receives),
    enough rounds for ``WAITING_MESSAGES_PER_RUN`` messages; msgs/s under ``key_stem_count``."""
    key = f"{key_stem}_{count}"
    rounds = min(MAX_WAITING_ROUNDS, max(1, WAITING_MESSAGES_PER_RUN // count))

    async def run(spec: LayerSpec) -> Metrics:
        names = [f"{channel_stem}.{index}" for index in range(count)]
        elapsed_s = 0.0
        async with fresh_layers(spec, 2) as (sending, receiving):
            for _ in range(rounds):
                elapsed_s += await deliver(spec, sending, receiving, names)
        return {key: rounds * count / elapsed_s}

    return Workload(f"{label} {count}", run, (key,))


async def _trickle_to_waiting(
    spec: LayerSpec, sending: ChannelLayer, receiving: ChannelLayer, names: Sequence[str]
) -> float:
    """Arm one receive per channel, then await one send to each in turn; seconds to deliver."""
    receives = [asyncio.ensure_future(receiving.receive(name)) for name in names]
    await subscribed(spec, names)
    started = time.perf_counter()
    for name in names:
        await sending.send(name, message("trickle", 0))
    await _gathered(receives, started, "messages received")
    return time.perf_counter() - started


def trickle(count: int) -> Workload:
    """One message at a time, each send awaited, to each of ``count`` waiting named channels.

    Like :func:`many_waiting` (a receive waits on every channel, in another layer), but the
    sender never has more than one send under way, so every message reaches a reader that
    waits on all ``count`` channels. Small ``count``s repeat the round.
    """
    return _to_waiting(count, "trickle", "trickle", "bench.trickle", _trickle_to_waiting)


def client_memory(count: int) -> Workload:
    """Python memory (tracemalloc) allocated by arming ``count`` waiting receives: B each.

    Connections are opened before tracing starts (one message sent and received), so the
    number is what each further waiting receive costs. A receive that fails while armed
    (e.g. the incumbent's pool running out) makes the run a failure.
    """
    key = f"client_memory_{count}"

    async def run(spec: LayerSpec) -> Metrics:
        names = [f"bench.idle.{index}" for index in range(count)]
        async with fresh_layers(spec, 1) as (layer,):
            await layer.send("bench.idle.warmup", message("warmup", 0))
            await layer.receive("bench.idle.warmup")
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                receives = [asyncio.ensure_future(layer.receive(name)) for name in names]
                await subscribed(spec, names)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            failed = [task for task in receives if task.done() and task.exception()]
            for task in receives:
                task.cancel()
            await asyncio.gather(*receives, return_exceptions=True)
            if failed:
                raise BenchFailedError(
                    f"{len(failed):,}/{count:,} receives failed: {failed[0].exception()!r}"
                )
        return {key: grown / count}

    return Workload(f"client memory {count}", run, (key,))
