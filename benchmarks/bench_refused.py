"""Server time of a send to a full channel, at a small and a huge capacity.

A send to a full channel must not cost time proportional to the queue's length (issue 8,
guarantee 11). This fills one channel to each capacity on a private redis-server and reads
the server's own accounting (``INFO commandstats``, ``usec_per_call`` of EVALSHA), so client
and network time are left out:

- refused: the queue is full of live messages; the send is refused.
- expired: the queue is full of expired messages; the send drops at most 100 of them from
  the head and is accepted (the queue is restored between sends, untimed).

    python benchmarks/bench_refused.py                       # capacities 100 and 100,000
    python benchmarks/bench_refused.py --sizes 100 20000 100000 --sends 2000
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if importlib.util.find_spec("asgi_redis") is None:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from asgi_redis import keys, scripts
from asgi_redis.cli.server import private_redis_server

PREFIX = "benchrefused:"
CHANNEL = "bench.full"
CHUNK = 10_000
PURGE_MAX = 100  # entries a full queue's head loses per send (lua/_helpers.lua)


def fill(client: redis.Redis, size: int, deadline_ms: int) -> None:
    """Replace the channel's queue with ``size`` entries due at ``deadline_ms``."""
    queue = keys.queue_key(PREFIX, CHANNEL)
    client.delete(queue)
    item = keys.make_entry(deadline_ms, "", b"x" * 64)
    for first in range(0, size, CHUNK):
        client.rpush(queue, *[item] * min(CHUNK, size - first))


def send_args(now_ms: int, capacity: int) -> list[str | bytes | int]:
    """KEYS then ARGV of send.lua for one message to the benchmark channel."""
    entry = keys.make_entry(now_ms + 60_000, "", b"new")
    queue, counts = keys.queue_key(PREFIX, CHANNEL), keys.counts_key(PREFIX, CHANNEL)
    return [queue, counts, now_ms, entry, capacity, 60, ""]


def server_usec_per_call(
    client: redis.Redis, sends: int, args: list[str | bytes | int], between: Callable[[], None]
) -> tuple[float, set[int]]:
    """Run send.lua ``sends`` times; its mean server time in µs and the replies seen."""
    sha = client.script_load(scripts.source("send"))
    client.config_resetstat()
    replies: set[int] = set()
    for _ in range(sends):
        replies.add(int(client.evalsha(sha, 2, *args)))
        between()
    stats = client.info("commandstats")["cmdstat_evalsha"]
    return float(stats["usec_per_call"]), replies


def measure(client: redis.Redis, size: int, sends: int) -> dict[str, float]:
    """Both cases at capacity ``size``: server µs per send."""
    now_ms = int(time.time() * 1000)
    queue = keys.queue_key(PREFIX, CHANNEL)
    fill(client, size, now_ms + 3_600_000)
    refused, replies = server_usec_per_call(client, sends, send_args(now_ms, size), lambda: None)
    assert replies == {0}, f"expected every send refused, got {replies}"

    fill(client, size, now_ms - 1)
    expired_item = keys.make_entry(now_ms - 1, "", b"x" * 64)

    def restore() -> None:
        """Undo the send (it dropped 100 from the head and added 1 at the tail)."""
        pipe = client.pipeline(transaction=False)
        pipe.rpop(queue)
        pipe.lpush(queue, *[expired_item] * min(PURGE_MAX, size))
        pipe.execute()

    expired, replies = server_usec_per_call(client, sends, send_args(now_ms, size), restore)
    assert replies == {1}, f"expected every send accepted, got {replies}"
    assert client.llen(queue) == size
    return {"refused": refused, "expired": expired}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, run on a private redis-server (or ``--url``), print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 100_000])
    parser.add_argument("--sends", type=int, default=1000, help="sends measured per case")
    parser.add_argument("--url", help="use this server (only keys under its prefix are touched)")
    options = parser.parse_args(argv)
    if options.url:
        run(options.url, options.sizes, options.sends)
        return
    with private_redis_server() as url:
        run(url, options.sizes, options.sends)


def run(url: str, sizes: Sequence[int], sends: int) -> None:
    """Measure every size and print the server time per send side by side."""
    client = redis.Redis.from_url(url)
    try:
        results = {size: measure(client, size, sends) for size in sizes}
        client.delete(keys.queue_key(PREFIX, CHANNEL))
        version = client.info("server")["redis_version"]
    finally:
        client.close()
    print(f"send.lua server time per call, µs (INFO commandstats, redis {version}, {sends} sends)")
    print(f"{'case':<46}" + "".join(f"{f'capacity {size:,}':>20}" for size in sizes))
    labels = {
        "refused": "refused: full of live messages",
        "expired": f"expired: full of expired, drops {PURGE_MAX}, accepted",
    }
    for case, label in labels.items():
        print(f"{label:<46}" + "".join(f"{results[size][case]:>20.2f}" for size in sizes))


if __name__ == "__main__":
    main()
