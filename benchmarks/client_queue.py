"""The numbers behind ``client_queue_capacity``: what a process's queue costs and how deep it gets.

Run from the repository root (starts its own redis-server unless ``--url`` is given)::

    python benchmarks/client_queue.py            # about 2 minutes on 2 cores
    python benchmarks/client_queue.py --quick    # smaller sizes, under a minute

1. Redis memory per queued entry (``MEMORY USAGE ... SAMPLES 0`` of the queue / entries): a
   group entry for a process holding M members of the group (it lists their suffixes), and a
   direct ``send`` to one process-local channel, with the benchmark's 100-byte message.
2. The scripts' server time per group_send (``INFO commandstats``). The bound check itself is
   no command: group_send_local.lua reads the queue's length from its push's reply (and pops a
   push past the bound again).
3. How deep the queue gets (``LLEN`` read while sending and for a second after) when a process
   with M members, each with a ``receive`` loop, is sent group messages: back to back (the
   receiver falls behind), at a steady rate, while its event loop stalls for some seconds, with
   one member that never receives (a slow consumer) among readers, and with no ``receive``
   waiting at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

if __package__ in (None, ""):  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from asgi_redis import RedisChannelLayer, keys
from asgi_redis.cli.bench import add_members, message
from asgi_redis.cli.server import private_redis_server
from asgi_redis.config import DEFAULT_CLIENT_QUEUE_CAPACITY

PREFIX = "cq:"
GROUP = "room"
SAMPLE_S = 0.02


def sender(url: str, bound: int = DEFAULT_CLIENT_QUEUE_CAPACITY) -> RedisChannelLayer:
    """The sending layer: capacity high enough that only the queue bound can refuse."""
    return RedisChannelLayer(
        hosts=[url], prefix=PREFIX, capacity=100_000, client_queue_capacity=bound
    )


# --------------------------------------------------------------------------- memory and cost


async def entry_costs(url: str, members: int, sends: int) -> str:
    """One table row: bytes per group entry and per direct entry, script time per group_send."""
    redis = aioredis.Redis.from_url(url)
    receiver, layer = sender(url), sender(url)
    try:
        await redis.flushdb()
        channels = [await receiver.new_channel() for _ in range(members)]
        await add_members(receiver, GROUP, channels)
        queue = keys.queue_key(receiver.prefix, channels[0])
        await redis.config_resetstat()
        for index in range(sends):
            await layer.group_send(GROUP, message("broadcast", index))
        stats = await redis.info("commandstats")
        entries = await redis.llen(queue)
        group_b = await redis.memory_usage(queue, samples=0) / entries
        await redis.delete(queue)
        for index in range(sends):
            await layer.send(channels[0], message("direct", index))
        direct_b = await redis.memory_usage(queue, samples=0) / await redis.llen(queue)
    finally:
        await receiver.flush()
        for closing in (receiver, layer):
            await closing.close()
        await redis.aclose()
    scripts = stats["cmdstat_evalsha"]
    return (
        f"| {members:,} | {entries / sends:g} | {group_b:,.0f} B | {direct_b:,.0f} B "
        f"| {scripts['usec'] / sends:,.1f} µs |"
    )


# --------------------------------------------------------------------------- queue depth


def receiving_process(url: str, members: int, readers: int, conn: Any) -> None:
    """Hold ``members`` channels (capacity 100), ``readers`` of them with a receive loop;
    block the event loop for the seconds the parent sends."""
    asyncio.run(_receiving(url, members, readers, conn))


async def _receiving(url: str, members: int, readers: int, conn: Any) -> None:
    logging.getLogger("asgi_redis").setLevel(logging.ERROR)  # full channels are expected here
    layer = RedisChannelLayer(hosts=[url], prefix=PREFIX, capacity=100)
    channels = [await layer.new_channel() for _ in range(members)]
    await add_members(layer, GROUP, channels)

    async def consume(channel: str) -> None:
        while True:
            await layer.receive(channel)

    tasks = [asyncio.create_task(consume(channel)) for channel in channels[:readers]]
    await asyncio.sleep(0.3)
    conn.send(keys.queue_key(layer.prefix, channels[0]))
    while True:
        order = await asyncio.to_thread(conn.recv)
        if order == "stop":
            break
        time.sleep(float(order))  # blocks the event loop, as a stuck process would
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await layer.close()


class Plan(NamedTuple):
    """The traffic of one depth case."""

    rate: float  # group_sends per second, 0 for back to back
    duration_s: float  # seconds of sending
    stall_at_s: float = 0.0  # when the receiving process blocks its event loop
    stall_s: float = 0.0  # for how long (0: never)


class Depth(NamedTuple):
    """What one depth case measured."""

    sent: int  # group_sends made
    deepest: int  # the longest the receiving process's queue was seen (entries)
    refused: int  # member copies the sender counted as channel_full


async def depth(
    url: str, members: int, readers: int, plan: Plan, bound: int = DEFAULT_CLIENT_QUEUE_CAPACITY
) -> Depth:
    """Send group messages to one receiving process by ``plan``; watch its queue's length.

    ``bound`` is the sender's ``client_queue_capacity``."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    worker = context.Process(target=receiving_process, args=(url, members, readers, child))
    worker.start()
    redis = aioredis.Redis.from_url(url)
    layer = sender(url, bound)
    deepest, sent, stalled = 0, 0, plan.stall_s <= 0
    try:
        queue = await asyncio.to_thread(parent.recv)
        started = time.perf_counter()
        while (now := time.perf_counter() - started) < plan.duration_s:
            if not stalled and now >= plan.stall_at_s:
                parent.send(str(plan.stall_s))
                stalled = True
            await layer.group_send(GROUP, message("broadcast", sent))
            sent += 1
            if sent % 5 == 0 or plan.rate == 0:
                deepest = max(deepest, await redis.llen(queue))
            if plan.rate:
                await asyncio.sleep(max(0.0, started + sent / plan.rate - time.perf_counter()))
        for _ in range(int(1 / SAMPLE_S)):  # it may still be growing for a moment
            deepest = max(deepest, await redis.llen(queue))
            await asyncio.sleep(SAMPLE_S)
        return Depth(sent, deepest, layer.counters.channel_full)
    finally:
        parent.send("stop")
        await asyncio.to_thread(worker.join, 30)
        await layer.flush()
        await layer.close()
        await redis.aclose()


def depth_row(case: str, members: int, readers: int, plan: Plan, result: Depth) -> str:
    """One markdown table row of a depth case."""
    shown = "back to back" if plan.rate == 0 else f"{plan.rate:g}/s"
    stall = f"{plan.stall_s:g} s" if plan.stall_s > 0 else "-"
    return (
        f"| {case} | {members:,} ({readers:,} reading) | {shown}, {result.sent:,} sent | {stall} "
        f"| {result.deepest:,} | {result.refused:,} |"
    )


# --------------------------------------------------------------------------- running


async def run(url: str, quick: bool) -> None:
    """Print both tables."""
    sizes = (1, 100, 1000) if quick else (1, 10, 100, 1000, 5000, 10000)
    print(
        "| members in the process | entries per group_send | Redis memory per group entry "
        "| per direct entry | scripts per group_send |"
    )
    print("| --- | --- | --- | --- | --- |")
    for members in sizes:
        print(await entry_costs(url, members, 50 if quick else 200), flush=True)
    print()
    print("| case | members | group_sends | stall | deepest queue (entries) | refused |")
    print("| --- | --- | --- | --- | --- | --- |")
    scale = 0.3 if quick else 1.0
    cases = [
        ("burst", 1000, 1000, Plan(0, 2 * scale)),
        ("burst", 10000, 10000, Plan(0, 3 * scale)),
        ("steady", 1000, 1000, Plan(100, 3 * scale)),
        ("slow consumer", 1000, 999, Plan(100, 5 * scale)),
        ("stalled process", 1000, 1000, Plan(100, 8 * scale, 1, 5 * scale)),
        ("stalled process", 100, 100, Plan(200, 8 * scale, 1, 5 * scale)),
        ("no receive waiting", 100, 0, Plan(100, 12 * scale)),
    ]
    for case, members, readers, plan in cases:
        result = await depth(url, members, readers, plan)
        print(depth_row(case, members, readers, plan, result), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: ``python benchmarks/client_queue.py [--quick] [--url redis://...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--url", help="a redis-server to use (its database is flushed)")
    args = parser.parse_args(argv)
    if args.url:
        asyncio.run(run(args.url, args.quick))
        return
    with private_redis_server() as url, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(url, args.quick))


if __name__ == "__main__":
    main()
