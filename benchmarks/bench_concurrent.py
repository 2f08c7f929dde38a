"""Concurrent producers: does auto-pipelining make 100 sending tasks share round trips?

Runs on a private redis-server (or ``--hosts``), in one process, one event loop:

- sequential: one task sending ``--messages`` messages, awaiting each send;
- concurrent: ``--tasks`` tasks on one layer, each awaiting its own sends to its own channel.

Each workload runs for asgi_redis with auto-pipelining, asgi_redis without it (the old path,
``pipelining.ENABLED = False``) and channels_redis, interleaved, ``--reps`` times; the median
rate is reported with the ratios issue 10 asks for. Only ratios from one run mean anything.

    python benchmarks/bench_concurrent.py
    python benchmarks/bench_concurrent.py --messages 20000 --tasks 100 --reps 5
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if importlib.util.find_spec("asgi_redis") is None:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_redis import RedisChannelLayer, pipelining
from asgi_redis.cli.server import private_redis_server

PIPELINED = "asgi_redis"
UNPIPELINED = "asgi_redis (no auto-pipelining)"
THEIRS = "channels_redis"
MESSAGE = {"type": "bench.message", "text": "x" * 64}


def make_layer(kind: str, url: str, capacity: int) -> Any:
    """A layer of ``kind`` on ``url`` that never refuses a send during the run."""
    if kind == THEIRS:
        from channels_redis.core import RedisChannelLayer as TheirLayer

        return TheirLayer(hosts=[url], capacity=capacity, prefix="benchtheirs")
    return RedisChannelLayer(hosts=[url], capacity=capacity, prefix="benchours")


@contextmanager
def auto_pipelining(kind: str) -> Iterator[None]:
    """Switch auto-pipelining off for the old-path run only."""
    pipelining.ENABLED = kind != UNPIPELINED
    try:
        yield
    finally:
        pipelining.ENABLED = True


async def producer(layer: Any, channel: str, count: int) -> None:
    """Send ``count`` messages to ``channel``, awaiting each."""
    for _ in range(count):
        await layer.send(channel, MESSAGE)


async def rate(kind: str, url: str, messages: int, tasks: int) -> float:
    """Messages per second of ``tasks`` producers sharing ``messages`` on one layer."""
    layer = make_layer(kind, url, capacity=messages + 1)
    try:
        await layer.send("bench.warm", MESSAGE)  # connect and load scripts, untimed
        per_task = messages // tasks
        with auto_pipelining(kind):
            started_s = time.perf_counter()
            await asyncio.gather(
                *(producer(layer, f"bench.c{index}", per_task) for index in range(tasks))
            )
            elapsed_s = time.perf_counter() - started_s
        return per_task * tasks / elapsed_s
    finally:
        await layer.flush()
        close: Callable[[], Any] = getattr(layer, "close", None) or layer.close_pools
        await close()


def measure(url: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    """Median msgs/s per (layer, tasks), the layers interleaved in every repetition."""
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.reps):
        for tasks in (1, args.tasks):
            for kind in (PIPELINED, UNPIPELINED, THEIRS):
                result = asyncio.run(rate(kind, url, args.messages, tasks))
                samples.setdefault((kind, tasks), []).append(result)
    return {key: statistics.median(values) for key, values in samples.items()}


def report(rates: dict[tuple[str, int], float], tasks: int) -> list[str]:
    """A table of rates and the ratios the targets are about."""
    lines = [f"{'layer':<34}{'1 producer':>14}{f'{tasks} producers':>16}"]
    for kind in (PIPELINED, UNPIPELINED, THEIRS):
        lines.append(f"{kind:<34}{rates[kind, 1]:>14,.0f}{rates[kind, tasks]:>16,.0f}")
    ours_many, ours_one = rates[PIPELINED, tasks], rates[PIPELINED, 1]
    lines += [
        "",
        f"{tasks} producers / 1 producer (asgi_redis):        {ours_many / ours_one:.2f}x"
        "  (target >= 5)",
        f"{tasks} producers, asgi_redis / channels_redis:    "
        f"{ours_many / rates[THEIRS, tasks]:.2f}x  (target >= 3)",
        f"{tasks} producers, with / without auto-pipelining: "
        f"{ours_many / rates[UNPIPELINED, tasks]:.2f}x",
        f"1 producer, with / without auto-pipelining:     "
        f"{ours_one / rates[UNPIPELINED, 1]:.2f}x  (no regression: about 1)",
    ]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", help="a redis:// URL instead of a private server")
    parser.add_argument("--messages", type=int, default=10_000, help="messages per run")
    parser.add_argument("--tasks", type=int, default=100, help="concurrent producer tasks")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median is kept)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the comparison and print it."""
    args = parse_args(argv)
    if args.hosts:
        rates = measure(args.hosts, args)
    else:
        with private_redis_server() as url:
            rates = measure(url, args)
    print("\n".join(report(rates, args.tasks)))


if __name__ == "__main__":
    main()
