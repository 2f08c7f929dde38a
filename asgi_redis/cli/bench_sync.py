"""Sync callers: ``async_to_sync(layer.group_send)`` and ``async_to_sync(layer.send)`` from
plain threads with no event loop (a WSGI view, a Celery task), one thread and 8 at once.

asgiref runs each such call on a new event loop. The floor does what a sync caller cannot
avoid: ``async_to_sync`` of a coroutine that does nothing, plus one command of a sync
redis-py client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from .bench import (
    RAW_PREFIX,
    BenchFailedError,
    ChannelLayer,
    LayerSpec,
    Metrics,
    Sizes,
    Workload,
    add_members,
    fresh_layers,
    message,
)
from .bench_baselines import PAYLOAD, RAW

THREADS = 8
MEMBERS = 10
WARMUP_CALLS = 5
GROUP = "bench-sync-group"
CHANNEL = "bench.sync"
KEYS = ("sync_group_send_10", "sync_send", "sync_group_send_10_x8", "sync_send_x8")
FLOOR_KEYS = ("raw_sync_floor", "raw_sync_floor_x8")

Call = Callable[[int], None]


def async_to_sync(function: Callable[..., Any]) -> Callable[..., Any]:
    """asgiref's ``async_to_sync`` (asgiref comes with Django Channels, not with us)."""
    try:
        from asgiref.sync import async_to_sync as wrap
    except ImportError as exc:
        raise BenchFailedError("the sync rows need asgiref: pip install channels") from exc
    return wrap(function)


def calls_per_s(threads: int, calls: int, make_call: Callable[[], Call]) -> float:
    """Total calls/s of ``threads`` plain threads making ``calls`` calls each, started
    together after ``WARMUP_CALLS`` untimed calls each."""
    errors: list[BaseException] = []
    ready = threading.Barrier(threads + 1)

    def caller() -> None:
        try:
            call = make_call()
            for index in range(WARMUP_CALLS):
                call(-index - 1)
        except BaseException as exc:
            errors.append(exc)
        ready.wait()
        if errors:
            return
        try:
            for index in range(calls):
                call(index)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=caller) for _ in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise BenchFailedError(f"a sync caller failed: {errors[0]!r}")
    return threads * calls / elapsed


def group_sender(layer: ChannelLayer) -> Call:
    """One thread's ``async_to_sync(layer.group_send)``."""
    group_send = async_to_sync(layer.group_send)
    return lambda index: group_send(GROUP, message("sync", index))


def sender(layer: ChannelLayer) -> Call:
    """One thread's ``async_to_sync(layer.send)``."""
    send = async_to_sync(layer.send)
    return lambda index: send(CHANNEL, message("sync", index))


def sync_calls(sizes: Sizes) -> Workload:
    """group_send to ``MEMBERS`` named members and send, through ``async_to_sync`` from
    plain threads: calls/s of one thread, and the total of ``THREADS`` threads."""

    async def run(spec: LayerSpec) -> Metrics:
        capacity = (THREADS + 1) * (sizes.sync_calls + WARMUP_CALLS) + 10
        metrics: Metrics = {}
        async with fresh_layers(spec, 1, capacity=capacity) as (layer,):
            await add_members(layer, GROUP, [f"bench.sync.{index}" for index in range(MEMBERS)])
            makers: dict[str, Callable[[], Call]] = {
                "sync_group_send_10": lambda: group_sender(layer),
                "sync_send": lambda: sender(layer),
            }
            for threads, suffix in ((1, ""), (THREADS, f"_x{THREADS}")):
                for key, make_call in makers.items():
                    metrics[key + suffix] = await asyncio.to_thread(
                        calls_per_s, threads, sizes.sync_calls, make_call
                    )
        return metrics

    return Workload("sync callers", run, KEYS)


async def _nothing() -> None:
    """The coroutine of the floor."""


def sync_floor(sizes: Sizes) -> Workload:
    """``async_to_sync`` of a no-op plus one sync redis-py RPUSH per call: calls/s of one
    thread and of ``THREADS`` threads sharing one client."""

    async def run(spec: LayerSpec) -> Metrics:
        key = f"{RAW_PREFIX}sync"
        client = redis.Redis.from_url(spec.url)

        def floor_call() -> Call:
            nothing = async_to_sync(_nothing)

            def call(index: int) -> None:
                nothing()
                client.rpush(key, PAYLOAD)

            return call

        try:
            one = await asyncio.to_thread(calls_per_s, 1, sizes.sync_calls, floor_call)
            many = await asyncio.to_thread(calls_per_s, THREADS, sizes.sync_calls, floor_call)
            client.delete(key)
        finally:
            client.close()
        return {"raw_sync_floor": one, "raw_sync_floor_x8": many}

    return Workload("raw sync floor", run, FLOOR_KEYS, (RAW,))
