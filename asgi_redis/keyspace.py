"""Reading this layer's part of the keyspace: its own keys, and statistics about them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis

from . import keys
from .scripts import SCRIPTS, ScriptCall, run

SCAN_BATCH = 500
# The counts group_statistics_counts gives, in order.
GROUP_FIELDS = ("members", "named", "local", "local_dead", "clients", "dead_clients")


async def own_keys(client: Redis, prefix: str, kinds: str = keys.KINDS) -> AsyncIterator[bytes]:
    """Every key of ``prefix`` of the given kinds, found with SCAN (never KEYS)."""
    for pattern in keys.scan_patterns(prefix, kinds):
        async for key in client.scan_iter(match=pattern, count=SCAN_BATCH):
            if keys.is_own_key(prefix, key):
                yield key


async def own_key_batches(
    client: Redis, prefix: str, kinds: str = keys.KINDS
) -> AsyncIterator[list[bytes]]:
    """``own_keys`` in lists of at most ``SCAN_BATCH`` keys (never an empty one)."""
    batch: list[bytes] = []
    async for key in own_keys(client, prefix, kinds):
        batch.append(key)
        if len(batch) >= SCAN_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def delete_own_keys(client: Redis, prefix: str) -> int:
    """UNLINK every key of ``prefix`` on one server, in SCAN-sized batches; returns how many.

    Each UNLINK holds keys of one tag only (one slot), as Redis Cluster requires; a batch's
    UNLINKs share one pipelined round trip.
    """
    deleted = 0
    async for batch in own_key_batches(client, prefix):
        deleted += await _unlink_by_tag(client, prefix, batch)
    return deleted


async def _unlink_by_tag(client: Redis, prefix: str, batch: list[bytes]) -> int:
    """UNLINK ``batch``, one command per tag, in one pipeline; returns how many went."""
    by_tag: dict[str, list[bytes]] = {}
    for key in batch:
        by_tag.setdefault(keys.tag_of_key(prefix, key.decode()), []).append(key)
    async with client.pipeline(transaction=False) as pipe:
        for tag_keys in by_tag.values():
            pipe.unlink(*tag_keys)
        return sum(int(count) for count in await pipe.execute())


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
        # Milliseconds, as `asgi-redis inspect` shows it: the clocks are ms, finer is noise.
        oldest_age_s = round(max(0.0, expiry_s - (int(oldest_deadline_ms) - now_ms) / 1000), 3)
    return {"depth": int(live), "counted": int(counted), "oldest_age_s": oldest_age_s}


async def group_statistics(
    client: Redis,
    *,
    prefix: str,
    group: str,
    now_ms: int,
    group_ttl_s: int,
    beat_ms: int,
    tag: str = "",
) -> dict[str, int]:
    """Run lua/group_statistics.lua: one group's members on one server; reads only.

    Returns ``group_statistics_counts`` of the reply; with ``tag`` only that tag's members
    (Redis Cluster), else those of every tag the group's directory lists.
    """
    call = group_statistics_call(
        prefix=prefix,
        group=group,
        now_ms=now_ms,
        group_ttl_s=group_ttl_s,
        beat_ms=beat_ms,
        tag=tag,
    )
    return group_statistics_counts(await run(client, *call))


def group_statistics_call(
    *, prefix: str, group: str, now_ms: int, group_ttl_s: int, beat_ms: int, tag: str = ""
) -> ScriptCall:
    """The lua/group_statistics.lua call (name, KEYS, ARGV); ``beat_ms`` is the heartbeat,
    the unit of the dead-client rule."""
    return (
        "group_statistics",
        [_group_statistics_key(prefix, group, tag)],
        [now_ms, prefix, group_ttl_s, group, tag, beat_ms],
    )


def group_statistics_counts(reply: Any) -> dict[str, int]:
    """A group_statistics.lua reply as a dict.

    ``members`` (all live memberships), ``named`` and ``local`` (process-local) members,
    ``local_dead`` (process-local members of clients judged dead), ``clients``
    (distinct clients of the local members) and ``dead_clients``. Members older than
    ``group_ttl_s`` are not counted.
    """
    named, local, local_dead, clients, dead_clients = (int(value) for value in reply)
    return dict(
        zip(
            GROUP_FIELDS,
            (named + local, named, local, local_dead, clients, dead_clients),
            strict=True,
        )
    )


def _group_statistics_key(prefix: str, group: str, tag: str) -> str:
    """KEYS[1] of group_statistics.lua: the tag's group key, or the group's directory."""
    return keys.group_key(prefix, group, tag) if tag else keys.directory_key(prefix, group)


async def server_statistics(client: Redis, prefix: str) -> dict[str, int]:
    """Queues, queued entries, groups and memberships of ``prefix`` on one server.

    A group counts once per server holding members of it (in any of its per-tag copies).
    Keys that expire between SCAN and the size query (size 0) are not counted.
    """
    totals = {"queues": 0, "messages": 0, "groups": 0, "memberships": 0}
    async for batch in own_key_batches(client, prefix, "q"):
        lengths = [size for size in await _sizes(client, "LLEN", batch) if size > 0]
        totals["queues"] += len(lengths)
        totals["messages"] += sum(lengths)
    groups: set[str] = set()
    # Named members in g:<group>, process-local ones in m:<client>!<group> (one per client).
    async for copies in own_key_batches(client, prefix, "gm"):
        for key, size in zip(copies, await _sizes(client, "ZCARD", copies), strict=True):
            if size > 0:
                totals["memberships"] += size
                groups.add(keys.split_key(prefix, key)[1].split("!", 1)[-1])
    totals["groups"] = len(groups)
    return totals


async def _sizes(client: Redis, size_command: str, batch: list[bytes]) -> list[int]:
    """``size_command`` (LLEN, ZCARD) of each key of ``batch``, in one pipelined round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for key in batch:
            pipe.execute_command(size_command, key)
        return [int(size) for size in await pipe.execute()]


# -- read-only views for `asgi-redis inspect` ------------------------------------------


async def keys_by_kind(
    client: Redis, prefix: str, on_progress: Callable[[int], None] | None = None
) -> dict[str, list[bytes]]:
    """Every key of ``prefix`` grouped by kind letter, found with SCAN.

    ``on_progress`` gets the number of keys found so far, once per SCAN batch or so.
    """
    found: dict[str, list[bytes]] = {kind: [] for kind in keys.KINDS}
    total = 0
    for kind in keys.KINDS:
        async for key in own_keys(client, prefix, kind):
            found[kind].append(key)
            total += 1
            if on_progress is not None and total % SCAN_BATCH == 0:
                on_progress(total)
    if on_progress is not None:
        on_progress(total)
    return found


async def queue_summaries(
    client: Redis, prefix: str, queue_keys: list[bytes]
) -> list[dict[str, Any]]:
    """Depth, counted messages and head deadline of each queue; pipelined, reads only.

    Returns one dict per queue that still exists: ``queue`` (its channel part, ``a.b!`` for
    a client's process-local queue), ``local``, ``depth`` (entries in the list, expired ones
    included until something removes them), ``counted`` (what counts against capacity: the
    list length, or for a process-local queue the sum of its per-channel counts) and
    ``head_deadline_ms`` (None when empty or malformed). The head entry is read to parse its
    header; its payload is dropped here and never returned.
    """
    summaries: list[dict[str, Any]] = []
    for start in range(0, len(queue_keys), SCAN_BATCH):
        batch = queue_keys[start : start + SCAN_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for key in batch:
                name = keys.split_key(prefix, key)[1]
                pipe.llen(key)
                pipe.lindex(key, 0)
                pipe.hvals(keys.counts_key(prefix, name))
            replies = await pipe.execute()
        for index, key in enumerate(batch):
            depth, head, counts = replies[3 * index : 3 * index + 3]
            if not depth:
                continue  # removed between SCAN and now
            name = keys.split_key(prefix, key)[1]
            local = name.endswith("!")
            summaries.append(
                {
                    "queue": name,
                    "local": local,
                    "depth": int(depth),
                    "counted": sum(int(count) for count in counts) if local else int(depth),
                    "head_deadline_ms": _head_deadline_ms(head),
                }
            )
    return summaries


def _head_deadline_ms(entry: bytes | None) -> int | None:
    """The deadline in an entry's header, or None (no entry, or a malformed one)."""
    if entry is None:
        return None
    try:
        return keys.parse_entry(entry)[0]
    except ValueError:
        return None


async def group_summaries(
    client: Redis,
    prefix: str,
    group_keys: list[bytes],
    now_ms: int,
    group_ttl_s: int,
    beat_ms: int,
) -> list[dict[str, Any]]:
    """``group_statistics`` of each group with members on this server (``g:`` keys of named
    members, ``l:`` keys of clients with process-local members).

    Each tag's copy is counted on its own (one tag, one slot: this works on a cluster node
    too), pipelined in batches of EVALSHA, and the copies of one group are summed.
    """
    if not group_keys:
        return []
    copies = list(
        dict.fromkeys(
            (keys.split_key(prefix, key)[1], keys.tag_of_key(prefix, key.decode()))
            for key in group_keys
        )
    )
    # The first call goes through run(), which loads the script on NOSCRIPT.
    name, tag = copies[0]
    first = await group_statistics(
        client,
        prefix=prefix,
        group=name,
        now_ms=now_ms,
        group_ttl_s=group_ttl_s,
        beat_ms=beat_ms,
        tag=tag,
    )
    totals: dict[str, dict[str, int]] = {name: first}
    sha = SCRIPTS["group_statistics"].sha
    for start in range(1, len(copies), SCAN_BATCH):
        batch = copies[start : start + SCAN_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for name, tag in batch:
                key = keys.group_key(prefix, name, tag)
                pipe.evalsha(sha, 1, key, now_ms, prefix, group_ttl_s, name, tag, beat_ms)
            replies = await pipe.execute()
        for (name, _), reply in zip(batch, replies, strict=True):
            counts = group_statistics_counts(reply)
            previous = totals.setdefault(name, dict.fromkeys(counts, 0))
            for field, value in counts.items():
                previous[field] += value
    return [{"group": name, **counts} for name, counts in totals.items() if counts["members"]]


async def liveness_ttls_ms(
    client: Redis, prefix: str, heartbeat_keys: list[bytes]
) -> list[tuple[str, int]]:
    """(client queue part ``a.b!``, remaining lifetime in ms) of each liveness mark."""
    marks: list[tuple[str, int]] = []
    for start in range(0, len(heartbeat_keys), SCAN_BATCH):
        batch = heartbeat_keys[start : start + SCAN_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.pttl(key)
            replies = await pipe.execute()
        for key, ttl_ms in zip(batch, replies, strict=True):
            if int(ttl_ms) != -2:  # -2: expired between SCAN and now
                marks.append((keys.split_key(prefix, key)[1], int(ttl_ms)))
    return marks
