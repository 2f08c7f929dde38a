"""The broadcast workload: P processes each hold M process-local members of one group, each
member with its own ``receive`` loop (as websocket consumers do); one sender does N
group_sends back to back, and the clock stops when every member has received all N.

Besides deliveries per second it reports the Redis server's CPU time per delivery
(``used_cpu_user + used_cpu_sys`` of ``INFO cpu`` over the run, divided by P x M x N): the
shared server is what limits a deployment that outgrows one app server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from typing import Any

import redis.asyncio as aioredis

from .bench import (
    BenchFailedError,
    ChannelLayer,
    LayerSpec,
    Metrics,
    Workload,
    add_members,
    close_layer,
    fresh_layers,
    message,
)

READY_TIMEOUT_S = 300.0
# A shape that has not delivered everything by then failed (channels_redis at 1 x 10,000).
DONE_TIMEOUT_S = 180.0
# Writes a receiving process still owes after its last delivery (count releases) land.
SETTLE_S = 0.2


async def redis_cpu_s(client: aioredis.Redis) -> float:
    """CPU seconds the server has used so far (user + system)."""
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def broadcast(processes: int, members: int, calls: int) -> Workload:
    """Deliveries/s and Redis CPU µs per delivery of ``calls`` group_sends to ``processes``
    processes x ``members`` receiving process-local members."""
    shape = f"{processes}x{members}"
    rate_key, cpu_key = f"broadcast_{shape}", f"broadcast_cpu_{shape}"

    async def run(spec: LayerSpec) -> Metrics:
        group = f"bench-broadcast-{shape}"
        info = aioredis.Redis.from_url(spec.url)
        try:
            async with (
                fresh_layers(spec, 1, capacity=calls + 10) as (sender,),
                receiving_processes(spec, group, processes, members, calls) as finished,
            ):
                cpu_before = await redis_cpu_s(info)
                started = time.perf_counter()
                for index in range(calls):
                    await sender.group_send(group, message("broadcast", index))
                await finished()
                elapsed = time.perf_counter() - started
                await asyncio.sleep(SETTLE_S)
                cpu_s = await redis_cpu_s(info) - cpu_before
        finally:
            await info.aclose()
        deliveries = processes * members * calls
        return {rate_key: deliveries / elapsed, cpu_key: cpu_s / deliveries * 1e6}

    return Workload(f"broadcast {shape}", run, (rate_key, cpu_key))


@contextlib.asynccontextmanager
async def receiving_processes(
    spec: LayerSpec, group: str, processes: int, members: int, calls: int
) -> Any:
    """Start the receiving processes; yields an awaitable that waits until all are done."""
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for _ in range(processes):
        parent, child = context.Pipe()
        worker = context.Process(
            target=receive_all, args=(spec, group, members, calls, child), daemon=True
        )
        worker.start()
        pipes.append(parent)
        workers.append(worker)

    async def expect(word: str, timeout_s: float) -> None:
        for parent in pipes:
            await _expect(parent, word, timeout_s)

    try:
        await expect("ready", READY_TIMEOUT_S)
        yield lambda: expect("done", DONE_TIMEOUT_S)
    finally:
        for parent in pipes:
            with contextlib.suppress(OSError):
                parent.send("stop")
        for worker in workers:
            await asyncio.to_thread(worker.join, 10)
            if worker.is_alive():
                worker.terminate()
                worker.join(5)
        for parent in pipes:
            parent.close()


async def _expect(parent: Any, word: str, timeout_s: float) -> None:
    """Wait for a receiving process to say ``word``; BenchFailedError otherwise."""
    if not await asyncio.to_thread(parent.poll, timeout_s):
        raise BenchFailedError(f"a receiving process was not {word} in {timeout_s:.0f} s")
    try:
        said = parent.recv()
    except EOFError:
        said = "it exited"
    if said != word:
        raise BenchFailedError(f"a receiving process failed: {said}")


def receive_all(spec: LayerSpec, group: str, members: int, calls: int, conn: Any) -> None:
    """Receiving process body: ``members`` channels, each receiving ``calls`` messages."""
    try:
        asyncio.run(_receive_all(spec, group, members, calls, conn))
    except Exception as exc:  # the parent must hear about it instead of waiting
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")


async def _receive_all(spec: LayerSpec, group: str, members: int, calls: int, conn: Any) -> None:
    """Join the group, receive until every member has ``calls`` messages, say so, then wait."""
    layer: ChannelLayer = spec.build(capacity=calls + 10)
    channels = [await layer.new_channel() for _ in range(members)]
    await add_members(layer, group, channels)
    remaining = len(channels)
    all_done = asyncio.Event()

    async def consume(channel: str) -> None:
        nonlocal remaining
        for _ in range(calls):
            await layer.receive(channel)
        remaining -= 1
        if not remaining:
            all_done.set()

    tasks = [asyncio.create_task(consume(channel)) for channel in channels]
    await asyncio.sleep(0.5)  # every receive is waiting before the first group_send
    conn.send("ready")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
    done = asyncio.create_task(all_done.wait())
    await asyncio.wait([done, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    if all_done.is_set():
        conn.send("done")
        await stop.wait()
    for task in [*tasks, done]:
        task.cancel()
    await asyncio.gather(*tasks, done, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close_layer(layer), 10)
