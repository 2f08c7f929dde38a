"""Reading this layer's part of the keyspace: its own keys, and statistics about them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from . import keys
from .scripts import run

SCAN_BATCH = 500


async def own_keys(client: Redis, prefix: str, kinds: str = keys.KINDS) -> AsyncIterator[bytes]:
    """Every key of ``prefix`` of the given kinds, found with SCAN (never KEYS)."""
    for pattern in keys.scan_patterns(prefix, kinds):
        async for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            if keys.is_own_key(prefix, key):
                yield key


async def channel_statistics(
    client: Redis, *, prefix: str, channel: str, now_ms: int, expiry_s: int
) -> dict[str, Any]:
    """Run lua/channel_statistics.lua: depth and oldest age of one channel."""
    suffix = keys.split_channel(channel)[1]
    live, oldest_deadline_ms, counted = await run(
        client,
        "channel_statistics",
        [keys.queue_key(prefix, channel), keys.counts_key(prefix, channel)],
        [now_ms, suffix],
    )
    oldest_age_s = None
    if int(oldest_deadline_ms) >= 0:
        oldest_age_s = max(0.0, expiry_s - (int(oldest_deadline_ms) - now_ms) / 1000)
    return {"depth": int(live), "counted": int(counted), "oldest_age_s": oldest_age_s}


async def group_statistics(
    client: Redis, *, prefix: str, group: str, now_ms: int, group_ttl_s: int
) -> dict[str, int]:
    """Run lua/group_statistics.lua: one group's members on one server; reads only.

    Returns:
        ``members`` (all live memberships), ``named`` and ``local`` (process-local) members,
        ``local_dead`` (process-local members whose client's liveness key is gone),
        ``clients`` (distinct clients of the local members) and ``dead_clients``. Members
        older than ``group_ttl_s`` are not counted.
    """
    named, local, local_dead, clients, dead_clients = await run(
        client, "group_statistics", [keys.group_key(prefix, group)], [now_ms, prefix, group_ttl_s]
    )
    return {
        "members": int(named) + int(local),
        "named": int(named),
        "local": int(local),
        "local_dead": int(local_dead),
        "clients": int(clients),
        "dead_clients": int(dead_clients),
    }


async def server_statistics(client: Redis, prefix: str) -> dict[str, int]:
    """Queues, queued entries, groups and memberships of ``prefix`` on one server."""
    totals = {"queues": 0, "messages": 0, "groups": 0, "memberships": 0}
    for kind, size_command, count_field, size_field in (
        ("q", "LLEN", "queues", "messages"),
        ("g", "ZCARD", "groups", "memberships"),
    ):
        batch: list[bytes] = []
        async for key in own_keys(client, prefix, kind):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                await _add_sizes(client, size_command, batch, totals, count_field, size_field)
                batch = []
        await _add_sizes(client, size_command, batch, totals, count_field, size_field)
    return totals


async def _add_sizes(
    client: Redis,
    size_command: str,
    batch: list[bytes],
    totals: dict[str, int],
    count_field: str,
    size_field: str,
) -> None:
    """Add the sizes of a batch of keys (one pipelined round trip) to ``totals``."""
    if not batch:
        return
    async with client.pipeline(transaction=False) as pipe:
        for key in batch:
            pipe.execute_command(size_command, key)
        sizes = await pipe.execute()
    live = [int(size) for size in sizes if int(size) > 0]  # keys may expire mid-scan
    totals[count_field] += len(live)
    totals[size_field] += sum(live)
