"""One typed async function per Lua script: builds KEYS/ARGV and maps the return codes."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from . import keys
from .errors import SEND_QUEUED
from .scripts import run


async def send(
    client: Redis,
    *,
    queue: str,
    counts: str,
    now_ms: int,
    entry: bytes,
    capacity: int,
    ttl_s: int,
    suffix: str,
) -> bool:
    """Run lua/send.lua; True when queued, False when the channel is full."""
    result = await run(client, "send", [queue, counts], [now_ms, entry, capacity, ttl_s, suffix])
    return int(result) == SEND_QUEUED


async def receive(
    client: Redis,
    *,
    now_ms: int,
    queues: Sequence[tuple[str, str, int]],
    releases: Sequence[tuple[int, str]] = (),
) -> list[tuple[int, bytes]]:
    """Run lua/receive.lua over ``(queue, counts, max_pop)`` triples.

    ``releases`` are ``(index into queues, suffix)`` pairs of process-local messages delivered
    or dropped since the last call. Returns ``(index into queues, entry)`` in pop order.
    """
    key_args: list[str] = []
    for queue, counts, _ in queues:
        key_args += [queue, counts]
    args: list[str | bytes | int] = [now_ms, *(max_pop for _, _, max_pop in queues)]
    for index, suffix in releases:
        args += [index + 1, suffix]
    flat = await run(client, "receive", key_args, args)
    return [(int(flat[pos]) - 1, flat[pos + 1]) for pos in range(0, len(flat), 2)]


async def group_add(
    client: Redis,
    *,
    prefix: str,
    group: str,
    channel: str,
    now_ms: int,
    ttl_s: int,
    capacity: int | None,
) -> bool:
    """Run lua/group_add.lua; True when the channel was not a member before."""
    group_keys = [keys.group_key(prefix, group), keys.group_capacity_key(prefix, group)]
    override = "" if capacity is None else capacity
    return bool(await run(client, "group_add", group_keys, [channel, now_ms, ttl_s, override]))


async def group_discard(client: Redis, *, prefix: str, group: str, channel: str) -> bool:
    """Run lua/group_discard.lua; True when the channel was a member."""
    group_keys = [keys.group_key(prefix, group), keys.group_capacity_key(prefix, group)]
    return bool(await run(client, "group_discard", group_keys, [channel]))


async def group_send(
    client: Redis,
    *,
    prefix: str,
    group: str,
    now_ms: int,
    group_ttl_s: int,
    deadline_ms: int,
    payload: bytes,
    capacity: int,
    ttl_s: int,
) -> tuple[int, int]:
    """Run lua/group_send.lua; returns (delivered, skipped because full)."""
    group_keys = [keys.group_key(prefix, group), keys.group_capacity_key(prefix, group)]
    header = f"{deadline_ms:0{keys.DEADLINE_DIGITS}d}"
    args: list[str | bytes | int] = [
        now_ms,
        prefix,
        group_ttl_s,
        header,
        payload,
        capacity,
        ttl_s,
    ]
    delivered, full = await run(client, "group_send", group_keys, args)
    return int(delivered), int(full)
