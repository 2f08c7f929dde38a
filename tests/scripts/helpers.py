"""Small helpers shared by the Lua contract tests: call a script, build keys and entries.

Every test passes explicit clocks (``NOW_MS`` and offsets from it), never the wall clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from asgi_redis import commands, keys, scripts
from asgi_redis.groupkinds import BOTH, Kinds

PREFIX = "asgi:"
NOW_MS = 1_700_000_000_000
TTL_S = 60
GROUP_TTL_S = 86_400
LIVE_MS = NOW_MS + 60_000
EXPIRED_MS = NOW_MS - 1
BEAT_MS = 5_000  # the heartbeat the scripts are told (the unit of the dead-client rule)
MARK_TTL_MS = 12 * BEAT_MS  # a liveness mark's wall lifetime (MARK_BEATS heartbeats)
PURGE_MAX = 100  # expired entries a full queue's head loses per call (_helpers.lua)

Arg = str | bytes | int

_LIVE = b"%013d" % LIVE_MS
# One entry per way a header can be malformed; keys.parse_entry and the scripts reject each.
GARBAGE = {
    "short": b"garbage",
    "empty": b"",
    "deadline-not-digits": b"17000000000x0" + b"00payload",
    "deadline-signed": b"+700000000000" + b"00payload",
    "suffix-length-not-digits": _LIVE + b"x5abcdepayload",
    "suffix-shorter-than-its-length": _LIVE + b"05abc",
    "suffix-bad-characters": _LIVE + b"03a,bpayload",
    "suffix-not-ascii": _LIVE + b"02\xff\xfepayload",
    "list-length-not-digits": _LIVE + b"99 00003a,bpayload",
    "list-length-zero": _LIVE + b"99000000payload",
    "list-shorter-than-its-length": _LIVE + b"99000050a,b",
    "list-empty-suffix": _LIVE + b"99000004a,,bpayload",
    "list-trailing-comma": _LIVE + b"99000002a,payload",
}
POSITIONS = ("head", "middle", "tail")


def layout(garbage: bytes, position: str, first: bytes, second: bytes) -> list[bytes]:
    """``first`` and ``second`` with ``garbage`` placed at ``position`` (head/middle/tail)."""
    return {
        "head": [garbage, first, second],
        "middle": [first, garbage, second],
        "tail": [first, second, garbage],
    }[position]


def run(client: Any, name: str, script_keys: list[str], args: list[Arg]) -> Any:
    """EVAL script ``name`` (helpers included) with explicit KEYS and ARGV."""
    return client.eval(scripts.source(name), len(script_keys), *script_keys, *args)


def qkey(channel: str) -> str:
    """The queue key of ``channel`` under the test prefix."""
    return keys.queue_key(PREFIX, channel)


def nkey(channel: str) -> str:
    """The counts hash key of ``channel`` under the test prefix."""
    return keys.counts_key(PREFIX, channel)


def channel_tag(channel: str) -> str:
    """The tag of ``channel``'s routing unit (the channel, or its ``a.b!`` queue part)."""
    return keys.tag_of(keys.split_channel(channel)[0])


def gkey(group: str, channel: str) -> str:
    """The members sorted set of ``group`` in the copy of ``channel``'s tag."""
    return keys.group_key(PREFIX, group, channel_tag(channel))


def ckey(group: str, channel: str) -> str:
    """The capacity-override hash of ``group`` in the copy of ``channel``'s tag."""
    return keys.group_capacity_key(PREFIX, group, channel_tag(channel))


def mkey(group: str, channel: str) -> str:
    """The set of local members of ``group`` of the client owning ``channel``."""
    return keys.local_members_key(PREFIX, group, keys.split_channel(channel)[0])


def lkey(group: str, channel: str) -> str:
    """The clients of ``group`` in the tag of ``channel``."""
    return keys.clients_key(PREFIX, group, channel_tag(channel))


def dkey(group: str) -> str:
    """The directory of ``group``: the set of tags holding its members."""
    return keys.directory_key(PREFIX, group)


def hkey(channel: str) -> str:
    """The liveness key of the client owning process-local ``channel``."""
    return keys.heartbeat_key(PREFIX, channel)


def ukey(channel: str) -> str:
    """The uptime clock of the tag of ``channel``'s queue part."""
    return keys.clock_key(PREFIX, channel_tag(channel))


def silence(client: Any, *channels: str) -> None:
    """The clients owning ``channels`` last beat long ago in their tag's uptime: dead."""
    for channel in channels:
        client.set(hkey(channel), -10 * BEAT_MS, px=MARK_TTL_MS)


def entry(channel: str, payload: bytes, deadline_ms: int = LIVE_MS) -> bytes:
    """The queue entry of ``payload`` for ``channel`` (suffix taken from the name)."""
    return keys.make_entry(deadline_ms, keys.split_channel(channel)[1], payload)


def send(
    client: Any,
    channel: str,
    payload: bytes,
    *,
    capacity: int = 100,
    now_ms: int = NOW_MS,
    deadline_ms: int = LIVE_MS,
    ttl_s: int = TTL_S,
) -> Any:
    """Run send.lua for ``channel`` the way the layer does; returns the script's reply."""
    suffix = keys.split_channel(channel)[1]
    return run(
        client,
        "send",
        [qkey(channel), nkey(channel)],
        [now_ms, entry(channel, payload, deadline_ms), capacity, ttl_s, suffix],
    )


def push(client: Any, channel: str, payload: bytes, deadline_ms: int = LIVE_MS) -> bytes:
    """Append an entry straight to the queue (no script, no count); returns the entry."""
    item = entry(channel, payload, deadline_ms)
    client.rpush(qkey(channel), item)
    return item


def queued(client: Any, channel: str) -> list[bytes]:
    """Every entry in ``channel``'s queue, head first."""
    return list(client.lrange(qkey(channel), 0, -1))


def counts(client: Any, channel: str) -> dict[str, int]:
    """The counts hash of ``channel``'s queue as ``{suffix: count}``."""
    raw = client.hgetall(nkey(channel))
    return {field.decode(): int(value) for field, value in raw.items()}


def payloads(entries: list[bytes]) -> list[bytes]:
    """The payloads of ``entries``."""
    return [keys.parse_entry(item)[2] for item in entries]


def group_add(
    client: Any,
    group: str,
    channel: str,
    *,
    now_ms: int = NOW_MS,
    ttl_s: int = GROUP_TTL_S,
    capacity: int | str = "",
    beat_ms: int = BEAT_MS,
    directory: bool = True,
) -> Any:
    """Run group_add.lua the way the layer does; ``capacity`` '' means the default.

    With ``directory`` (the layer on one server) KEYS[5] is the group's directory, so the
    script records the tag there too; without, the directory is left to the caller.
    """
    head, suffix = keys.split_channel(channel)
    script_keys = [
        *commands.membership_keys(PREFIX, group, channel)[:2],
        hkey(channel),
        keys.joined_key(PREFIX, group, head),
    ]
    if directory:
        script_keys.append(dkey(group))
    args: list[Arg] = [
        *(suffix or channel, now_ms, ttl_s, capacity, beat_ms, channel_tag(channel)),
        head if suffix else "",
    ]
    return run(client, "group_add", script_keys, args)


def group_discard(client: Any, group: str, channel: str) -> Any:
    """Run group_discard.lua the way the layer does."""
    head, suffix = keys.split_channel(channel)
    script_keys = commands.membership_keys(PREFIX, group, channel)
    return run(client, "group_discard", script_keys, [suffix or channel, head if suffix else ""])


# Where the cluster check ('' / 'c' / 'a') sits in each group_send script's ARGV (0-based).
CHECK_ARG = {"group_send_named": 9, "group_send_local": 8}


def group_send(
    client: Any,
    group: str,
    payload: bytes,
    *,
    now_ms: int = NOW_MS,
    deadline_ms: int = LIVE_MS,
    capacity: int = 100,
    group_ttl_s: int = GROUP_TTL_S,
    ttl_s: int = TTL_S,
    tag: str = "",
    check: str = "",
    queue_max: int = 1000,
    beat_ms: int = BEAT_MS,
    payload_to: Kinds = BOTH,
    kinds_found: list[Kinds] | None = None,
) -> list[int]:
    """Run group_send_named.lua then group_send_local.lua, the layer's two calls.

    Returns [queued, refused, dropped_dead] summed over both (see
    ``commands.group_send_counts``); the kinds of members they found are appended to
    ``kinds_found`` when given. ``payload_to``: the scripts that get the payload. Without
    ``tag`` they walk every tag the group's directory lists (the layer on one server); with
    one they deliver to that tag only (a Redis Cluster group_send). ``check`` is the
    cluster's check of derived keys: '' none, 'c' or 'a' (after ASKING).
    """
    calls = commands.group_send_calls(
        prefix=PREFIX,
        group=group,
        now_ms=now_ms,
        group_ttl_s=group_ttl_s,
        deadline_ms=deadline_ms,
        payload=payload,
        capacity=capacity,
        ttl_s=ttl_s,
        queue_max=queue_max,
        beat_ms=beat_ms,
        tag=tag,
        asking=check == "a",
        payload_to=payload_to,
    )
    replies = []
    for name, script_keys, args in calls:
        at = CHECK_ARG[name]  # the calls carry the layer's check; use the test's
        replies.append(run(client, name, script_keys, [*args[:at], check, *args[at + 1 :]]))
    if kinds_found is not None:
        kinds_found.append(commands.group_send_kinds(replies))
    return list(commands.group_send_counts(replies))


def group_statistics(
    client: Any,
    group: str,
    *,
    now_ms: int = NOW_MS,
    group_ttl_s: int = GROUP_TTL_S,
    tag: str = "",
) -> list[int]:
    """Run group_statistics.lua: [named, local, local_dead, clients, dead_clients].

    Without ``tag`` it counts the members of every tag in the directory, with one only those
    of that tag's copy.
    """
    script_keys = [keys.group_key(PREFIX, group, tag) if tag else dkey(group)]
    args: list[Arg] = [now_ms, PREFIX, group_ttl_s, group, tag, BEAT_MS]
    reply = run(client, "group_statistics", script_keys, args)
    return [int(value) for value in reply]


def plant_members(client: Any, group: str, scores: dict[str, int]) -> None:
    """Store memberships with their scores straight where the scripts read them, no script.

    Each tag is added to the group's directory, as group_add does on one server; no TTL is
    set and no liveness key is made.
    """
    pipe = client.pipeline(transaction=False)
    for channel, score in scores.items():
        head, suffix = keys.split_channel(channel)
        tag = channel_tag(channel)
        if suffix:
            pipe.zadd(keys.local_members_key(PREFIX, group, head), {suffix: score})
            pipe.zadd(keys.clients_key(PREFIX, group, tag), {head: score}, gt=True)
        else:
            pipe.zadd(keys.group_key(PREFIX, group, tag), {channel: score})
        pipe.sadd(dkey(group), tag)
    pipe.execute()


def plant_overrides(client: Any, group: str, capacities: dict[str, int]) -> None:
    """Store capacity overrides straight in the copies of their channels' tags."""
    pipe = client.pipeline(transaction=False)
    for channel, capacity in capacities.items():
        pipe.hset(ckey(group, channel), channel, capacity)
    pipe.execute()


def members(client: Any, group: str) -> dict[str, float]:
    """Every member of ``group`` with its score: named ones from every tag's copy, local ones
    from the member sets of the clients every tag lists."""
    found: dict[str, float] = {}
    pipe = client.pipeline(transaction=False)
    for tag in keys.TAGS:
        pipe.zrange(keys.group_key(PREFIX, group, tag), 0, -1, withscores=True)
        pipe.zrange(keys.clients_key(PREFIX, group, tag), 0, -1)
    replies = pipe.execute()
    heads = [head.decode() for listed in replies[1::2] for head in listed]
    for copy in replies[::2]:
        found.update({channel.decode(): score for channel, score in copy})
    for head in heads:
        local = client.zrange(keys.local_members_key(PREFIX, group, head), 0, -1, withscores=True)
        found.update({head + suffix.decode(): score for suffix, score in local})
    return found


def clients(client: Any, group: str) -> dict[str, float]:
    """Every client listed for ``group`` (``a.b!``) with its score, from every tag."""
    found: dict[str, float] = {}
    for tag in keys.TAGS:
        listed = client.zrange(keys.clients_key(PREFIX, group, tag), 0, -1, withscores=True)
        found.update({head.decode(): score for head, score in listed})
    return found


def overrides(client: Any, group: str) -> dict[str, int]:
    """Every capacity override of ``group``, read from the copies of all tags."""
    found: dict[str, int] = {}
    pipe = client.pipeline(transaction=False)
    for tag in keys.TAGS:
        pipe.hgetall(keys.group_capacity_key(PREFIX, group, tag))
    for copy in pipe.execute():
        found.update({channel.decode(): int(value) for channel, value in copy.items()})
    return found


def copies(client: Any, group: str) -> list[str]:
    """The sorted set and capacity hash keys of ``group`` that exist, in every tag."""
    names = [
        name
        for tag in keys.TAGS
        for name in (
            keys.group_key(PREFIX, group, tag),
            keys.group_capacity_key(PREFIX, group, tag),
        )
    ]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(name)
    return sorted(name for name, found in zip(names, pipe.execute(), strict=True) if found)


def directory(client: Any, group: str) -> set[str]:
    """The tags the directory of ``group`` lists."""
    return {tag.decode() for tag in client.smembers(dkey(group))}


def names_with_tag(pattern: str, tag: str, count: int) -> list[str]:
    """The first ``count`` names ``pattern.format(n)`` for n = 0, 1, ... whose tag is ``tag``
    (``"chat.m{}"`` for named channels, ``"specific.c{}!"`` for clients' queue parts)."""
    found: list[str] = []
    for number in itertools.count():
        name = pattern.format(number)
        if channel_tag(name) == tag:
            found.append(name)
            if len(found) == count:
                return found
    raise AssertionError("unreachable")  # pragma: no cover


def receive(
    client: Any,
    wanted: list[tuple[str, int]],
    releases: Sequence[tuple[int, str]] = (),
    *,
    now_ms: int = NOW_MS,
) -> list[tuple[int, bytes]]:
    """Run receive.lua over (channel, max) pairs; returns the reply as (i, entry) pairs."""
    reply = receive_raw(client, wanted, releases, now_ms=now_ms)
    return [(reply[pos], reply[pos + 1]) for pos in range(0, len(reply), 2)]


def receive_raw(
    client: Any,
    wanted: list[tuple[str, int]],
    releases: Sequence[tuple[int, str]] = (),
    *,
    now_ms: int = NOW_MS,
) -> list[Any]:
    """Run receive.lua over (channel, max) pairs and release pairs; the flat reply."""
    script_keys: list[str] = []
    args: list[Arg] = [now_ms]
    for channel, most in wanted:
        script_keys += [qkey(channel), nkey(channel)]
        args.append(most)
    for index, suffix in releases:
        args += [index, suffix]
    return list(run(client, "receive", script_keys, args))


def push_group_entry(
    client: Any, queue_part: str, suffixes: list[str], payload: bytes, deadline_ms: int = LIVE_MS
) -> bytes:
    """Append a group entry for several local channels of one client in the counted form of
    earlier versions (suffix length 99), counting each one."""
    listed = ",".join(suffixes).encode()
    item = b"%013d99%06d" % (deadline_ms, len(listed)) + listed + payload
    client.rpush(qkey(queue_part), item)
    for suffix in suffixes:
        client.hincrby(nkey(queue_part), suffix, 1)
    return item


def push_copies(
    client: Any, queue_part: str, suffixes: list[str], payload: bytes, deadline_ms: int = LIVE_MS
) -> bytes:
    """Append a group entry (copies not counted in Redis) for local channels of one client."""
    item = keys.make_group_entry(deadline_ms, suffixes, payload)
    client.rpush(qkey(queue_part), item)
    return item


def reserve(
    client: Any, queue_part: str, wanted: list[tuple[str, int, int]], *, ttl_s: int = TTL_S
) -> list[int]:
    """Run reserve.lua on ``queue_part``'s counts: (suffix, slots wanted, capacity) triples."""
    args: list[Arg] = [ttl_s]
    for suffix, slots, capacity in wanted:
        args += [suffix, slots, capacity]
    return [int(slots) for slots in run(client, "reserve", [nkey(queue_part)], args)]
