"""Contract tests for group_send.lua: fan-out, capacity, stale members, expiry and TTLs."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from asgi_redis import keys
from tests.scripts.helpers import (
    GARBAGE,
    GROUP_TTL_S,
    LIVE_MS,
    NOW_MS,
    POSITIONS,
    PREFIX,
    PURGE_MAX,
    ckey,
    counts,
    entry,
    gkey,
    group_add,
    group_send,
    hkey,
    layout,
    nkey,
    payloads,
    push,
    qkey,
    queued,
    send,
)

GROUP = "room"
NAMED = "chat.a"
OTHER = "chat.b"
LOCAL_1 = "specific.client!s1"
LOCAL_22 = "specific.client!s22"
LOCAL = "specific.client!"
HEADER = b"%013d" % LIVE_MS


def assert_ttl_ms(client: Any, key: str, ttl_s: int) -> None:
    """The key has a TTL of ``ttl_s`` seconds (less a little time spent since)."""
    assert ttl_s * 1000 - 2000 < client.pttl(key) <= ttl_s * 1000


def add_all(client: Any, *channels: str, now_ms: int = NOW_MS) -> None:
    """Add every channel to GROUP at ``now_ms`` with the default capacity."""
    for channel in channels:
        assert group_add(client, GROUP, channel, now_ms=now_ms) == 1


def test_delivers_exact_entries_to_named_and_local_members(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1, LOCAL_22)
    assert group_send(script_client, GROUP, b"\x00payload\xff") == [3, 0, 0]
    assert queued(script_client, NAMED) == [HEADER + b"00" + b"\x00payload\xff"]
    # One entry for both process-local members of the client: suffix length 99, then the
    # 6-digit length of the suffix list.
    assert queued(script_client, LOCAL) == [HEADER + b"99000006s1,s22" + b"\x00payload\xff"]
    assert counts(script_client, LOCAL) == {"s1": 1, "s22": 1}
    assert not script_client.exists(nkey(NAMED))
    assert script_client.exists(f"{PREFIX}q:{NAMED}")


def test_empty_or_missing_group_returns_zeros(script_client: Any) -> None:
    assert group_send(script_client, GROUP, b"m") == [0, 0, 0]
    assert script_client.dbsize() == 0


def test_skips_full_members_at_default_capacity(script_client: Any) -> None:
    add_all(script_client, NAMED, OTHER, LOCAL_1, LOCAL_22)
    assert send(script_client, NAMED, b"old") == 1
    assert send(script_client, LOCAL_1, b"old") == 1
    assert group_send(script_client, GROUP, b"new", capacity=1) == [2, 2, 0]
    assert payloads(queued(script_client, NAMED)) == [b"old"]
    assert payloads(queued(script_client, OTHER)) == [b"new"]
    assert payloads(queued(script_client, LOCAL)) == [b"old", b"new"]
    assert counts(script_client, LOCAL) == {"s1": 1, "s22": 1}


def test_capacity_overrides_replace_the_default(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=3) == 1
    assert group_add(script_client, GROUP, OTHER, capacity=1) == 1
    assert group_add(script_client, GROUP, LOCAL_1, capacity=2) == 1
    for channel in (NAMED, NAMED, OTHER, LOCAL_1):
        assert send(script_client, channel, b"old") == 1
    assert group_send(script_client, GROUP, b"new", capacity=2) == [2, 1, 0]
    assert payloads(queued(script_client, NAMED)) == [b"old", b"old", b"new"]
    assert payloads(queued(script_client, OTHER)) == [b"old"]
    assert counts(script_client, LOCAL) == {"s1": 2}


def test_removes_stale_members_and_their_overrides(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    assert group_add(script_client, GROUP, NAMED, now_ms=stale_ms, capacity=5) == 1
    assert group_add(script_client, GROUP, LOCAL_1, now_ms=stale_ms) == 1
    assert group_add(script_client, GROUP, OTHER, now_ms=NOW_MS - 1000, capacity=4) == 1
    assert group_send(script_client, GROUP, b"m") == [1, 0, 0]
    assert script_client.zrange(gkey(GROUP), 0, -1) == [OTHER.encode()]
    assert script_client.hgetall(ckey(GROUP)) == {OTHER.encode(): b"4"}
    assert not script_client.exists(qkey(NAMED))
    assert not script_client.exists(qkey(LOCAL_1))
    assert not script_client.exists(nkey(LOCAL_1))
    assert payloads(queued(script_client, OTHER)) == [b"m"]


def test_group_of_only_stale_members_is_emptied(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    assert group_add(script_client, GROUP, NAMED, now_ms=stale_ms, capacity=5) == 1
    assert group_send(script_client, GROUP, b"m") == [0, 0, 0]
    assert script_client.dbsize() == 0


def test_expired_queue_heads_do_not_count(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1)
    push(script_client, NAMED, b"dead", deadline_ms=NOW_MS - 1)
    assert send(script_client, LOCAL_1, b"dead", deadline_ms=NOW_MS + 5) == 1
    assert send(script_client, LOCAL_22, b"dead", deadline_ms=NOW_MS + 5) == 1
    later = NOW_MS + 10
    assert group_send(script_client, GROUP, b"new", capacity=1, now_ms=later) == [2, 0, 0]
    assert payloads(queued(script_client, NAMED)) == [b"new"]
    assert payloads(queued(script_client, LOCAL)) == [b"new"]
    # The expired entry of s22 (not a member) was dropped too and released its count.
    assert counts(script_client, LOCAL) == {"s1": 1}


def test_expired_named_entry_behind_a_live_head_counts_until_the_head_leaves(
    script_client: Any,
) -> None:
    add_all(script_client, NAMED)
    push(script_client, NAMED, b"live", deadline_ms=NOW_MS + 1000)
    push(script_client, NAMED, b"dead", deadline_ms=NOW_MS - 1)
    assert group_send(script_client, GROUP, b"new", capacity=2) == [0, 1, 0]
    later = NOW_MS + 1000
    assert group_send(script_client, GROUP, b"new", capacity=2, now_ms=later) == [1, 0, 0]
    assert payloads(queued(script_client, NAMED)) == [b"new"]


def test_refreshes_queue_and_counts_ttls(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1)
    assert send(script_client, NAMED, b"old", ttl_s=5) == 1
    assert send(script_client, LOCAL_1, b"old", ttl_s=5) == 1
    assert group_send(script_client, GROUP, b"new", ttl_s=300) == [2, 0, 0]
    assert_ttl_ms(script_client, qkey(NAMED), 300)
    assert_ttl_ms(script_client, qkey(LOCAL), 300)
    assert_ttl_ms(script_client, nkey(LOCAL), 300)


def test_sets_ttls_on_new_queues(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1)
    assert group_send(script_client, GROUP, b"new", ttl_s=40) == [2, 0, 0]
    assert_ttl_ms(script_client, qkey(NAMED), 40)
    assert_ttl_ms(script_client, qkey(LOCAL), 40)
    assert_ttl_ms(script_client, nkey(LOCAL), 40)


def test_does_not_touch_the_group_membership_scores(script_client: Any) -> None:
    add_all(script_client, NAMED)
    assert group_send(script_client, GROUP, b"m", now_ms=NOW_MS + 50) == [1, 0, 0]
    assert script_client.zscore(gkey(GROUP), NAMED) == float(NOW_MS)


def test_large_group_is_processed_in_batches(script_client: Any) -> None:
    size = 2500
    live = [f"chat.m{n:04d}" for n in range(size)]
    stale = [f"chat.old{n:04d}" for n in range(size)]
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    script_client.zadd(gkey(GROUP), dict.fromkeys(live, NOW_MS))
    script_client.zadd(gkey(GROUP), dict.fromkeys(stale, stale_ms))
    # The default capacity is 0, so a member gets the message only when its own override
    # is found: a batch offset error in HMGET would shift this pattern. Stale members all
    # have overrides, so every HDEL batch has work.
    overrides = {channel: 0 if n % 10 == 7 else 5 for n, channel in enumerate(live)}
    for channel in live[3::10]:
        del overrides[channel]
    overrides.update(dict.fromkeys(stale, 5))
    script_client.hset(ckey(GROUP), mapping=overrides)
    assert group_send(script_client, GROUP, b"m", capacity=0) == [2000, 500, 0]
    assert script_client.zrange(gkey(GROUP), 0, -1) == [channel.encode() for channel in live]
    assert script_client.hlen(ckey(GROUP)) == size - size // 10
    pipe = script_client.pipeline()
    for channel in live:
        pipe.llen(qkey(channel))
    lengths = pipe.execute()
    assert lengths == [0 if n % 10 in (3, 7) else 1 for n in range(size)]
    assert not any(script_client.exists(qkey(channel)) for channel in stale)


def test_a_single_local_member_gets_a_plain_entry(script_client: Any) -> None:
    add_all(script_client, LOCAL_22)
    assert group_send(script_client, GROUP, b"p") == [1, 0, 0]
    assert queued(script_client, LOCAL) == [HEADER + b"03s22p"]


def test_local_members_of_one_client_share_entries_in_chunks(script_client: Any) -> None:
    suffixes = [f"c{n:05d}" for n in range(5003)]
    script_client.zadd(gkey(GROUP), {f"specific.client!{suffix}": NOW_MS for suffix in suffixes})
    script_client.set(hkey(LOCAL), 1)
    assert group_send(script_client, GROUP, b"p", capacity=5) == [5003, 0, 0]
    entries = queued(script_client, LOCAL)
    assert len(entries) == 2  # at most 5,000 channels per entry
    parsed = [keys.parse_entry(item) for item in entries]
    assert [name for _, names, _ in parsed for name in names] == suffixes
    assert {payload for _, _, payload in parsed} == {b"p"}
    assert counts(script_client, LOCAL) == dict.fromkeys(suffixes, 1)


def test_full_local_members_are_left_out_of_the_shared_entry(script_client: Any) -> None:
    add_all(script_client, LOCAL_1, LOCAL_22)
    assert send(script_client, LOCAL_1, b"old") == 1
    assert group_send(script_client, GROUP, b"new", capacity=1) == [1, 1, 0]
    assert queued(script_client, LOCAL)[1] == HEADER + b"03s22new"
    assert counts(script_client, LOCAL) == {"s1": 1, "s22": 1}


# -- bounded purging and malformed entries --------------------------------------------------


def test_a_shared_full_queue_is_purged_once_per_call_within_the_bound(
    script_client: Any,
) -> None:
    add_all(script_client, LOCAL_1, LOCAL_22)
    dead = entry("specific.client!gone", b"old", NOW_MS - 1)
    script_client.rpush(qkey(LOCAL), *[dead] * (PURGE_MAX + 50))
    script_client.hset(nkey(LOCAL), mapping={"gone": PURGE_MAX + 50, "s1": 1, "s22": 1})
    assert group_send(script_client, GROUP, b"new", capacity=1) == [0, 2, 0]
    # One purge of at most PURGE_MAX entries, for the first full member only.
    assert script_client.llen(qkey(LOCAL)) == 50
    assert counts(script_client, LOCAL) == {"gone": 50, "s1": 1, "s22": 1}


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_in_member_queues_never_aborts(
    script_client: Any, kind: str, position: str
) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=3) == 1
    add_all(script_client, LOCAL_1)
    garbage = GARBAGE[kind]
    named_live = entry(NAMED, b"live")
    named = layout(garbage, position, entry(NAMED, b"dead", NOW_MS - 1), named_live)
    script_client.rpush(qkey(NAMED), *named)
    local_live = entry(LOCAL_22, b"live")
    local = layout(garbage, position, entry(LOCAL_1, b"dead", NOW_MS - 1), local_live)
    script_client.rpush(qkey(LOCAL), *local)
    script_client.hset(nkey(LOCAL), mapping={"s1": 1, "s22": 1})
    # Both members are full; each purge drops the expired entry and garbage met at the head.
    assert group_send(script_client, GROUP, b"new", capacity=1) == [2, 0, 0]
    kept = [garbage] if position == "tail" else []
    assert queued(script_client, NAMED) == [named_live, *kept, HEADER + b"00new"]
    assert queued(script_client, LOCAL) == [local_live, *kept, HEADER + b"02s1new"]
    assert counts(script_client, LOCAL) == {"s1": 1, "s22": 1}


# -- dead clients -----------------------------------------------------------------------------

DEAD = "specific.dead!"
LIVE = "specific.live!"


def test_members_of_a_dead_client_are_dropped_with_its_keys(script_client: Any) -> None:
    dead_members = [f"{DEAD}d{n:02d}" for n in range(50)]
    live_members = [f"{LIVE}m{n}" for n in range(3)]
    add_all(script_client, NAMED, *dead_members, *live_members)
    assert group_add(script_client, GROUP, dead_members[0], capacity=7) == 0
    assert send(script_client, dead_members[1], b"unread") == 1
    script_client.delete(hkey(DEAD))  # its heartbeats stopped: the mark expired
    assert group_send(script_client, GROUP, b"m") == [4, 0, 50]
    members = {member.decode() for member in script_client.zrange(gkey(GROUP), 0, -1)}
    assert members == {NAMED, *live_members}
    assert not script_client.exists(ckey(GROUP))
    assert not script_client.exists(qkey(DEAD), nkey(DEAD), hkey(DEAD))
    assert payloads(queued(script_client, NAMED)) == [b"m"]
    assert keys.parse_entry(queued(script_client, LIVE)[0])[1:] == (["m0", "m1", "m2"], b"m")
    assert script_client.exists(hkey(LIVE))
    # Nothing is left to drop the next time.
    assert group_send(script_client, GROUP, b"m2") == [4, 0, 0]


def test_liveness_is_read_once_per_client(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        heads = [f"specific.c{n}!" for n in range(3)]
        add_all(client, *(f"{head}m{n}" for head in heads for n in range(20)))
        client.delete(hkey(heads[0]))
        client.config_resetstat()
        assert group_send(client, GROUP, b"m") == [40, 0, 20]
        # Server-side call counts (a real server only): one EXISTS per client, plus one for
        # the capacity-override hash.
        assert client.info("commandstats")["cmdstat_exists"]["calls"] == len(heads) + 1
    finally:
        client.close()


def test_named_members_keep_group_expiry_only(script_client: Any) -> None:
    add_all(script_client, NAMED, OTHER)
    script_client.delete(hkey(NAMED), hkey(OTHER))
    assert group_send(script_client, GROUP, b"m") == [2, 0, 0]
    assert script_client.zcard(gkey(GROUP)) == 2
