"""One typed async function per Lua script: builds KEYS/ARGV and maps the return codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from . import held, keys
from .errors import SEND_QUEUED, PopUnblockedError
from .groupkinds import BOTH, Kinds
from .pipelining import run_batched, run_many
from .scripts import Arg, ScriptCall
from .writer import run_script


def send_call(
    *,
    queue: str,
    counts: str,
    now_ms: int,
    entry: bytes,
    capacity: int,
    ttl_s: int,
    suffix: str,
) -> ScriptCall:
    """The call of lua/send.lua; ``send_queued`` reads its reply."""
    args: list[Arg] = [now_ms, entry, capacity, ttl_s, suffix]
    return ("send", [queue, counts] if suffix else [queue], args)


def send_queued(reply: Any) -> bool:
    """True when lua/send.lua queued the entry, False when the channel was full."""
    return int(reply) == SEND_QUEUED


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
    flat = await run_script(client, "receive", key_args, args)
    return [(int(flat[pos]) - 1, flat[pos + 1]) for pos in range(0, len(flat), 2)]


async def reserve(
    client: Redis, *, counts: str, ttl_s: int, wanted: Sequence[tuple[str, int, int]]
) -> list[int]:
    """Run lua/reserve.lua: set the slots reserved for group copies of local channels.

    ``wanted`` holds ``(suffix, slots wanted, capacity)``; returns the slots granted, in
    order. Absolute values: running it twice sets the same slots (safe to retry).
    """
    args: list[Arg] = [ttl_s]
    for suffix, slots, capacity in wanted:
        args += [suffix, slots, capacity]
    return [int(slots) for slots in await run_script(client, "reserve", [counts], args)]


async def release(
    client: Redis,
    *,
    mark_key: str,
    batch: int,
    mark_s: int,
    counts: Sequence[str],
    releases: Sequence[tuple[int, str]],
) -> bool:
    """Run lua/release.lua: lower the counts of delivered or dropped process-local messages.

    ``releases`` are ``(index into counts, suffix)`` pairs, one per message. Safe to retry
    with the same ``batch`` number: the script records it in ``mark_key`` (for ``mark_s``)
    and a second run changes nothing. Returns False for such a repeat.
    """
    args: list[str | bytes | int] = [batch, mark_s]
    for index, suffix in releases:
        args += [index + 1, suffix]
    return bool(await run_script(client, "release", [mark_key, *counts], args))


def group_add_call(
    *,
    prefix: str,
    group: str,
    channel: str,
    now_ms: int,
    ttl_s: int,
    capacity: int | None,
    beat_ms: int,
    with_directory: bool = True,
) -> ScriptCall:
    """The call of lua/group_add.lua, whose reply is 1 when the channel was not a member.

    For a process-local channel it also creates its client's liveness key ("seen now" on the
    tag's uptime clock; ``beat_ms`` is the heartbeat) unless the key exists, so a member is
    never judged dead before its process's first heartbeat. ``capacity`` (None for the
    default) is stored for a named channel only: a process-local channel's capacity is
    checked by its receiving process. ``with_directory`` adds the channel's tag to the
    group's directory in the same script (one server); on Redis Cluster the directory is in
    another slot, so the caller runs ``add_group_tag`` first instead.
    """
    head, suffix = keys.split_channel(channel)
    tag = keys.tag_of(head)
    group_keys = [
        *membership_keys(prefix, group, channel)[:2],
        keys.heartbeat_key(prefix, channel),
        keys.joined_key(prefix, group, head),
    ]
    if with_directory:
        group_keys.append(keys.directory_key(prefix, group))
    override = "" if capacity is None or suffix else capacity
    member = suffix or channel
    local_head = head if suffix else ""
    args: list[Arg] = [member, now_ms, ttl_s, override, beat_ms, tag, local_head]
    return ("group_add", group_keys, args)


async def group_add(client: Redis, **options: Any) -> bool:
    """Run lua/group_add.lua (``options`` as ``group_add_call``'s); True when the channel
    was not a member before."""
    return bool(await run_batched(client, *group_add_call(**options)))


def membership_keys(prefix: str, group: str, channel: str) -> list[str]:
    """Where ``channel``'s membership of ``group`` lives: for a named channel its tag's
    members and capacity overrides, for a process-local one its client's members, the tag's
    list of clients and the cache of the client's joined member list."""
    head, suffix = keys.split_channel(channel)
    tag = keys.tag_of(head)
    if suffix:
        return [
            keys.local_members_key(prefix, group, head),
            keys.clients_key(prefix, group, tag),
            keys.joined_key(prefix, group, head),
        ]
    return [keys.group_key(prefix, group, tag), keys.group_capacity_key(prefix, group, tag)]


async def add_group_tag(client: Redis, *, prefix: str, group: str, tag: str, ttl_s: int) -> None:
    """Record in the group's directory that ``tag`` holds members (SADD, then its TTL)."""
    directory = keys.directory_key(prefix, group)
    async with client.pipeline(transaction=True) as pipe:
        pipe.sadd(directory, tag)
        pipe.expire(directory, ttl_s)
        await pipe.execute()


async def group_tags(client: Redis, *, prefix: str, group: str) -> list[str]:
    """The tags the group's directory lists (phase 1 of a group_send on Redis Cluster)."""
    return sorted(_text(tag) for tag in await client.smembers(keys.directory_key(prefix, group)))


def group_discard_call(*, prefix: str, group: str, channel: str) -> ScriptCall:
    """The call of lua/group_discard.lua, whose reply is 1 when the channel was a member."""
    head, suffix = keys.split_channel(channel)
    args: list[Arg] = [suffix or channel, head if suffix else ""]
    return ("group_discard", membership_keys(prefix, group, channel), args)


async def group_discard(client: Redis, *, prefix: str, group: str, channel: str) -> bool:
    """Run lua/group_discard.lua; True when the channel was a member."""
    call = group_discard_call(prefix=prefix, group=group, channel=channel)
    return bool(await run_batched(client, *call))


def group_send_calls(
    *,
    prefix: str,
    group: str,
    now_ms: int,
    group_ttl_s: int,
    deadline_ms: int,
    payload: bytes,
    capacity: int,
    ttl_s: int,
    queue_max: int,
    beat_ms: int,
    tag: str = "",
    asking: bool = False,
    payload_to: Kinds = BOTH,
) -> list[ScriptCall]:
    """The two script calls of a group_send: lua/group_send_named.lua (named members) and
    lua/group_send_local.lua (one group entry per client queue); ``group_send_counts`` and
    ``group_send_kinds`` read their replies. A script that ``payload_to`` leaves out gets an
    empty payload: it writes nothing and only counts its kind of members.

    With ``tag`` they deliver to that tag's members only (Redis Cluster: two calls per tag);
    without, to the members of every tag the group's directory lists (one server). On a
    cluster each script first checks that every key it derives is on this node (on an ASK
    target, ``asking``: that it already exists here) and otherwise answers TRYAGAIN before
    writing anything, so a slot migration never splits one delivery. ``beat_ms`` is the
    heartbeat, the unit of the dead-client rule.
    """
    directory = keys.directory_key(prefix, group)
    header = keys.deadline_text(deadline_ms)
    check = "a" if asking else "c" if tag else ""
    named_key = keys.group_key(prefix, group, tag) if tag else directory
    local_key = keys.clients_key(prefix, group, tag) if tag else directory
    to_named = payload if payload_to.named else b""
    to_local = payload if payload_to.local else b""
    named: list[Arg] = [now_ms, prefix, group_ttl_s, header, to_named, capacity, ttl_s, group]
    local: list[Arg] = [now_ms, prefix, group_ttl_s, header, to_local, ttl_s, group]
    return [
        ("group_send_named", [named_key], [*named, tag, check]),
        ("group_send_local", [local_key], [*local, tag, check, queue_max, beat_ms]),
    ]


def group_send_counts(replies: Sequence[Any]) -> tuple[int, int, int]:
    """(queued, refused, dropped dead) summed over group_send_named/_local replies (in the
    order ``group_send_calls`` gives them, repeated).

    ``queued`` counts entries of named members and copies written to client queues (each
    receiving process then checks its channels' capacity); ``refused`` named members that
    were full and members of clients whose queue was at ``queue_max``; ``dropped dead``
    process-local members dropped from the group because their client was dead
    (lua/_helpers.lua, client_is_dead): their queues and counts were deleted and their
    liveness keys say so.
    """
    queued = refused = dropped_dead = 0
    for named, local in zip(replies[::2], replies[1::2], strict=True):
        queued += int(named[0]) + int(local[0])
        refused += int(named[1]) + int(local[1])
        dropped_dead += int(local[2])
    return queued, refused, dropped_dead


def group_send_kinds(replies: Sequence[Any]) -> Kinds:
    """The kinds of members the group_send_named/_local replies (as ``group_send_counts``
    reads them) found: live named members, listed client queues."""
    return Kinds(
        named=any(int(named[2]) for named in replies[::2]),
        local=any(int(local[3]) for local in replies[1::2]),
    )


async def heartbeat(client: Redis, *, prefix: str, heads: Sequence[str], beat_ms: int) -> list[str]:
    """Mark the clients owning ``heads`` (``a.b!`` or any of their channels) alive.

    One pipelined round trip of lua/heartbeat.lua per head (each writes the mark with the
    tag's uptime and ticks that clock; a lost reply is harmless, a second beat is a beat).
    Returns the heads whose mark was gone or said dead: a group_send may have dropped their
    members, so the caller adds them again.
    """
    if not heads:
        return []
    calls: list[ScriptCall] = []
    for head in heads:
        tag = keys.tag_of(keys.split_channel(head)[0])
        mark = keys.heartbeat_key(prefix, head)
        calls.append(("heartbeat", [keys.clock_key(prefix, tag), mark], [beat_ms]))
    replies = await run_many(client, calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return [head for head, reply in zip(heads, replies, strict=True) if int(reply) == 1]


async def requeue(
    client: Redis, *, queue: str, token_key: str, entries: Sequence[bytes], expiry_s: int
) -> int:
    """Run lua/requeue.lua: ``entries`` (oldest first) back at the head of ``queue``.

    Safe to retry with the same ``token_key``: a second run pushes nothing. Returns how many
    entries were pushed.
    """
    args: list[str | bytes | int] = [expiry_s * 1000, expiry_s, *entries]
    return int(await run_script(client, "requeue", [queue, token_key], args))


async def multi_pop(
    client: Redis, queues: Sequence[str], count: int, timeout_s: float
) -> tuple[str, list[bytes]] | None:
    """BLMPOP: up to ``count`` entries from the first non-empty of ``queues``, or None.

    Raises ``ResponseError`` on servers without BLMPOP (Redis < 7), ``PopUnblockedError``
    when Redis ended the pop without popping.
    """
    try:
        result = await held.call(
            client, "BLMPOP", timeout_s, len(queues), *queues, "LEFT", "COUNT", count
        )
    except ResponseError as exc:
        if str(exc).startswith("UNBLOCKED"):
            raise PopUnblockedError(f"Redis ended a blocking pop without popping: {exc}") from exc
        raise
    if result is None:
        return None
    popped_from, entries = result
    return _text(popped_from), [_data(entry) for entry in entries]


async def single_pop(
    client: Redis, queues: Sequence[str], timeout_s: float
) -> tuple[str, list[bytes]] | None:
    """BLPOP (for Redis < 7): one entry from the first non-empty of ``queues``, or None.

    Raises ``PopUnblockedError`` when Redis ended the pop without popping.
    """
    try:
        result = await held.call(client, "BLPOP", *queues, timeout_s)
    except ResponseError as exc:
        if str(exc).startswith("UNBLOCKED"):
            raise PopUnblockedError(f"Redis ended a blocking pop without popping: {exc}") from exc
        raise
    if result is None:
        return None
    return _text(result[0]), [_data(result[1])]


async def pop(client: Redis, queue: str, count: int) -> list[bytes]:
    """LPOP of up to ``count`` entries of one queue, without blocking (one key: never split
    by a slot migration)."""
    result = await client.lpop(queue, count)
    return [_data(entry) for entry in result or []]


async def ping(client: Redis) -> None:
    """One PING: raises when the server cannot be reached."""
    await client.ping()


async def wake(client: Redis, *, wake_key: str, ttl_s: int) -> None:
    """Push one token to a reader's wake list so its blocking pop returns."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.rpush(wake_key, b"1")
        pipe.expire(wake_key, ttl_s)
        await pipe.execute()


def _text(value: Any) -> str:
    """A key name as text (redis-py hands back bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _data(value: Any) -> bytes:
    """An entry as bytes."""
    return value if isinstance(value, bytes) else value.encode()
