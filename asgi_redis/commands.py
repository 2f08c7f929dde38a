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
    heartbeat_ttl_ms: int,
) -> bool:
    """Run lua/group_add.lua; True when the channel was not a member before.

    For a process-local channel it also creates its client's liveness key with a TTL of
    ``heartbeat_ttl_ms`` unless the key exists, so a member is never judged dead before its
    process's first heartbeat.
    """
    group_keys = [
        keys.group_key(prefix, group),
        keys.group_capacity_key(prefix, group),
        keys.heartbeat_key(prefix, channel),
    ]
    override = "" if capacity is None else capacity
    args: list[str | bytes | int] = [channel, now_ms, ttl_s, override, heartbeat_ttl_ms]
    return bool(await run(client, "group_add", group_keys, args))


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
) -> tuple[int, int, int]:
    """Run lua/group_send.lua; returns (delivered, skipped because full, dropped dead).

    The third number counts process-local members dropped from the group because their
    client's liveness key was gone; their queues, counts and liveness keys were deleted too.
    """
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
    delivered, full, dropped_dead = await run(client, "group_send", group_keys, args)
    return int(delivered), int(full), int(dropped_dead)


async def heartbeat(client: Redis, *, prefix: str, heads: Sequence[str], ttl_ms: int) -> None:
    """Mark the clients owning ``heads`` (``a.b!`` or any of their channels) alive.

    One pipelined round trip of ``SET key 1 PX ttl_ms``; no script, since each key stands
    alone. A client whose mark expires is dropped from its groups by the next group_send.
    """
    if not heads:
        return
    async with client.pipeline(transaction=False) as pipe:
        for head in heads:
            pipe.set(keys.heartbeat_key(prefix, head), 1, px=ttl_ms)
        await pipe.execute()
