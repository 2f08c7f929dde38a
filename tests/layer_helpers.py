"""Helpers for the layer tests: build layers, receive with a bound, look at the keyspace.

Timeouts here only stop a broken test from hanging; no test asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import queue
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from asgi_redis import RedisChannelLayer, keys

# Long enough for a loaded two-core machine; a message that takes longer is lost, not late.
RECEIVE_TIMEOUT_S = 10.0


def make_layer(url: str | list[Any], **options: Any) -> RedisChannelLayer:
    """A layer on the test server at ``url`` (or on ``hosts``, a list) with the given options."""
    return RedisChannelLayer(hosts=[url] if isinstance(url, str) else url, **options)


# The two kinds of channel a behaviour test runs on (see ``target``).
KINDS = ["named", "local"]


async def target(layer: RedisChannelLayer, kind: str, name: str = "target") -> str:
    """A named channel ``name``, or a process-local channel of ``layer``."""
    return name if kind == "named" else await layer.new_channel()


async def receive_within(
    layer: RedisChannelLayer, channel: str, timeout_s: float = RECEIVE_TIMEOUT_S
) -> dict[str, Any]:
    """``layer.receive(channel)``, failing the test instead of hanging forever."""
    return await asyncio.wait_for(layer.receive(channel), timeout_s)


async def receive_n(layer: RedisChannelLayer, channel: str, count: int) -> list[dict[str, Any]]:
    """Receive ``count`` messages from ``channel`` in order."""
    return [await receive_within(layer, channel) for _ in range(count)]


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@contextmanager
def sync_client(url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client (bytes responses) for looking at the server directly."""
    client = redis.Redis.from_url(url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


def keyspace(url: str) -> dict[bytes, bytes | None]:
    """Every key on the server with its DUMP, to compare before and after an operation."""
    with sync_client(url) as client:
        return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}


def keys_with_prefix(url: str, prefix: str) -> set[bytes]:
    """The keys on the server that start with ``prefix`` (checked in Python, not by glob)."""
    with sync_client(url) as client:
        return {key for key in client.scan_iter(count=1000) if key.startswith(prefix.encode())}


def group_members(client: redis.Redis, prefix: str, group: str) -> list[bytes]:
    """Every member of ``group`` on one server, read from its copies in all tags, sorted."""
    with client.pipeline(transaction=False) as pipe:
        for tag in keys.TAGS:
            pipe.zrange(keys.group_key(prefix, group, tag), 0, -1)
        copies: list[list[bytes]] = pipe.execute()
    return sorted(member for copy in copies for member in copy)


async def wait_until(predicate: Any, timeout_s: float = RECEIVE_TIMEOUT_S) -> None:
    """Poll ``predicate()`` until it is true; fail the test if it never becomes true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition {predicate!r} not met within {timeout_s} s")
        await asyncio.sleep(0.02)


def blocked_clients(url: str) -> int:
    """How many clients are blocked in a BLPOP-like command on the server."""
    with sync_client(url) as client:
        return int(client.info("clients")["blocked_clients"])


# -- worker processes (module level so the ``spawn`` start method can import them) ----------


def worker_main(url: str, channel: str, worker_id: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Receive on ``channel`` until a ``stop`` message; report every message id received."""
    asyncio.run(_worker(url, channel, worker_id, results))


async def _worker(
    url: str,
    channel: str,
    worker_id: int,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """The async body of one worker process."""
    got: list[int] = []
    layer = make_layer(url)
    try:
        results.put(("ready", worker_id, None))
        while True:
            message = await layer.receive(channel)
            if message["type"] == "stop":
                break
            got.append(message["id"])
    finally:
        await layer.close()
        results.put(("done", worker_id, got))


def collect(
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    kind: str,
    count: int,
    timeout_s: float,
) -> dict[int, Any]:
    """Read ``count`` results of ``kind`` from worker processes, keyed by worker id."""
    found: dict[int, Any] = {}
    while len(found) < count:
        try:
            got_kind, worker_id, value = results.get(timeout=timeout_s)
        except queue.Empty as exc:
            raise AssertionError(f"only {len(found)} of {count} workers reported {kind!r}") from exc
        assert got_kind == kind, (got_kind, worker_id)
        assert worker_id not in found, f"worker {worker_id} reported {kind!r} twice"
        found[worker_id] = value
    return found


def names_in_tag(stem: str, tag: int, count: int) -> list[str]:
    """``count`` channel (or group) names ``stem.N`` whose keys carry tag number ``tag``."""
    found: list[str] = []
    for number in itertools.count():
        name = f"{stem}.{number}"
        if keys.tag_index(name) == tag:
            found.append(name)
            if len(found) == count:
                return found
    raise AssertionError("unreachable")  # pragma: no cover


def name_outside(stem: str, tags: Iterable[int]) -> str:
    """A channel name ``stem.N`` whose tag is none of ``tags``."""
    avoid = set(tags)
    return next(
        f"{stem}.{n}" for n in itertools.count() if keys.tag_index(f"{stem}.{n}") not in avoid
    )


def in_forked_child(child: Callable[[], bool], meanwhile: Callable[[], None]) -> bool:
    """Fork: the child runs ``child`` and exits; the parent runs ``meanwhile`` at the same time,
    then reaps the child and returns what ``child`` returned (False if it raised)."""
    reading, writing = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: on purpose
        pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            code = 0 if child() else 2
        finally:
            os.write(writing, bytes([code]))
            os._exit(code)
    os.close(writing)
    try:
        meanwhile()
        return os.read(reading, 1) == bytes([0])
    finally:
        os.close(reading)
        os.waitpid(pid, 0)
