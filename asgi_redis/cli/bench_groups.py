"""group_send workloads of the benchmarks: named members, and process-local members held
by another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from typing import Any

import redis.asyncio as aioredis

from .bench import (
    HELPER_TIMEOUT_S,
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


async def net_input_bytes(client: aioredis.Redis) -> int:
    """The server's ``total_net_input_bytes`` (every byte clients have sent it)."""
    return int((await client.info("stats"))["total_net_input_bytes"])


async def timed_group_sends(layer: ChannelLayer, group: str, calls: int) -> float:
    """``calls`` group_send calls in a row after one warm-up call; return the seconds taken."""
    await layer.group_send(group, message("warmup", -1))
    started = time.perf_counter()
    for index in range(calls):
        await layer.group_send(group, message("group", index))
    return time.perf_counter() - started


def group_send_named(members: int, calls: int) -> Workload:
    """group_send calls/s to ``members`` named channels nobody reads, and bytes per call.

    The capacity exceeds the calls, so every call really enqueues to every member.
    """
    rate_key, bytes_key = f"group_send_named_{members}", f"group_bytes_{members}"

    async def run(spec: LayerSpec) -> Metrics:
        group = f"bench-group-{members}"
        info = aioredis.Redis.from_url(spec.url)
        try:
            async with fresh_layers(spec, 1, capacity=calls + 10) as (layer,):
                await add_members(layer, group, [f"bench.member.{i}" for i in range(members)])
                before = await net_input_bytes(info)
                elapsed = await timed_group_sends(layer, group, calls)
                sent = await net_input_bytes(info) - before
        finally:
            await info.aclose()
        # The INFO command itself (about 30 bytes) is included; it is the same for every size.
        return {rate_key: calls / elapsed, bytes_key: sent / calls}

    return Workload(f"group_send named {members}", run, (rate_key, bytes_key))


def group_send_local(members: int, calls: int) -> Workload:
    """group_send calls/s to ``members`` process-local channels held by a helper process.

    The helper creates the channels with ``new_channel()``, adds them to the group and keeps
    receiving on all of them; this process only sends, so its numbers exclude receiving.
    """
    key = f"group_send_local_{members}"

    async def run(spec: LayerSpec) -> Metrics:
        group = f"bench-local-{members}"
        capacity = calls + 10
        async with fresh_layers(spec, 1, capacity=capacity) as (layer,):
            with member_process(spec, group, members, capacity):
                elapsed = await timed_group_sends(layer, group, calls)
        return {key: calls / elapsed}

    return Workload(f"group_send local {members}", run, (key,))


@contextlib.contextmanager
def member_process(spec: LayerSpec, group: str, members: int, capacity: int) -> Any:
    """Run :func:`hold_members` in a spawned process until the block ends."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=hold_members, args=(spec, group, members, capacity, child), daemon=True
    )
    process.start()
    try:
        if not parent.poll(HELPER_TIMEOUT_S):
            raise BenchFailedError(f"member process not ready after {HELPER_TIMEOUT_S:.0f} s")
        ready = parent.recv()
        if ready != "ready":
            raise BenchFailedError(f"member process failed: {ready}")
        yield
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)
        parent.close()


def hold_members(spec: LayerSpec, group: str, members: int, capacity: int, conn: Any) -> None:
    """Helper process body: hold ``members`` process-local channels and drain them."""
    try:
        asyncio.run(_hold_members(spec, group, members, capacity, conn))
    except Exception as exc:  # the parent must hear about it instead of waiting
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")


async def _hold_members(
    spec: LayerSpec, group: str, members: int, capacity: int, conn: Any
) -> None:
    """Create, group_add and receive on the channels until the parent says stop."""
    layer = spec.build(capacity=capacity)
    channels = [await layer.new_channel() for _ in range(members)]
    await add_members(layer, group, channels)

    async def drain(channel: str) -> None:
        while True:
            await layer.receive(channel)

    tasks = [asyncio.create_task(drain(channel)) for channel in channels]
    conn.send("ready")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(close_layer(layer), 10)
