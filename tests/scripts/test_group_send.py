"""Contract tests for group_send_named.lua and group_send_local.lua (run together, as the
layer does): fan-out, named members' capacity, group entries of clients, stale members,
dead clients, the client queue bound, expiry and TTLs."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from asgi_redis import keys
from asgi_redis.groupkinds import BOTH, Kinds
from tests.scripts.helpers import (
    GARBAGE,
    GROUP_TTL_S,
    LIVE_MS,
    NOW_MS,
    POSITIONS,
    PREFIX,
    channel_tag,
    ckey,
    clients,
    copies,
    counts,
    directory,
    entry,
    gkey,
    group_add,
    group_discard,
    group_send,
    hkey,
    layout,
    members,
    mkey,
    names_with_tag,
    nkey,
    overrides,
    payloads,
    plant_members,
    plant_overrides,
    push,
    qkey,
    queued,
    send,
    silence,
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
    # One group entry for both process-local members of the client: 'G', the 6-digit length
    # of the suffix list, the list. Nothing is counted: the receiving process checks capacity.
    assert queued(script_client, LOCAL) == [HEADER + b"G000006s1,s22" + b"\x00payload\xff"]
    assert not script_client.exists(nkey(LOCAL))
    assert not script_client.exists(nkey(NAMED))
    assert script_client.exists(f"{PREFIX}{{{channel_tag(NAMED)}}}q:{NAMED}")


@pytest.mark.parametrize(
    ("present", "found"),
    [
        ((NAMED,), Kinds(named=True, local=False)),
        ((LOCAL_1, LOCAL_22), Kinds(named=False, local=True)),
        ((NAMED, LOCAL_1), BOTH),
        ((), Kinds(named=False, local=False)),
    ],
)
def test_without_a_payload_the_scripts_write_nothing_and_count_their_kind(
    script_client: Any, present: tuple[str, ...], found: Kinds
) -> None:
    add_all(script_client, *present)
    before = {key: script_client.dump(key) for key in script_client.keys("*")}
    kinds: list[Kinds] = []
    nobody = Kinds(named=False, local=False)
    assert group_send(script_client, GROUP, b"m", payload_to=nobody, kinds_found=kinds) == [0] * 3
    assert kinds == [found]
    assert {key: script_client.dump(key) for key in script_client.keys("*")} == before
    # With the payload they deliver, and report the same kinds.
    assert group_send(script_client, GROUP, b"m", kinds_found=kinds)[0] == len(present)
    assert kinds == [found, found]


def test_empty_or_missing_group_returns_zeros(script_client: Any) -> None:
    assert group_send(script_client, GROUP, b"m") == [0, 0, 0]
    assert group_send(script_client, GROUP, b"m", tag=channel_tag(NAMED)) == [0, 0, 0]
    assert script_client.dbsize() == 0


def test_skips_full_named_members_at_default_capacity(script_client: Any) -> None:
    add_all(script_client, NAMED, OTHER, LOCAL_1, LOCAL_22)
    assert send(script_client, NAMED, b"old") == 1
    assert send(script_client, LOCAL_1, b"old") == 1
    assert group_send(script_client, GROUP, b"new", capacity=1) == [3, 1, 0]
    assert payloads(queued(script_client, NAMED)) == [b"old"]
    assert payloads(queued(script_client, OTHER)) == [b"new"]
    # A full process-local channel is still listed: its receiving process drops the copy.
    assert payloads(queued(script_client, LOCAL)) == [b"old", b"new"]
    assert keys.parse_entry(queued(script_client, LOCAL)[1])[1] == ["s1", "s22"]
    assert counts(script_client, LOCAL) == {"s1": 1}


def test_capacity_overrides_replace_the_default(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=3) == 1
    assert group_add(script_client, GROUP, OTHER, capacity=1) == 1
    for channel in (NAMED, NAMED, OTHER):
        assert send(script_client, channel, b"old") == 1
    assert group_send(script_client, GROUP, b"new", capacity=2) == [1, 1, 0]
    assert payloads(queued(script_client, NAMED)) == [b"old", b"old", b"new"]
    assert payloads(queued(script_client, OTHER)) == [b"old"]


def test_skips_stale_members_and_leaves_their_removal_to_group_add(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    assert group_add(script_client, GROUP, NAMED, now_ms=stale_ms, capacity=5) == 1
    assert group_add(script_client, GROUP, LOCAL_1, now_ms=stale_ms) == 1
    assert group_add(script_client, GROUP, OTHER, now_ms=NOW_MS - 1000, capacity=4) == 1
    before = set(script_client.keys())
    assert group_send(script_client, GROUP, b"m") == [1, 0, 0]
    # Nothing is queued for the stale members and nothing of theirs is touched: removing
    # them is group_add's job (one command fewer per copy here).
    assert set(script_client.keys()) == before | {qkey(OTHER).encode()}
    assert set(members(script_client, GROUP)) == {NAMED, LOCAL_1, OTHER}
    assert payloads(queued(script_client, OTHER)) == [b"m"]
    # The next add to NAMED's copy removes it with its override.
    newcomer = names_with_tag("chat.n{}", channel_tag(NAMED), 1)[0]
    assert group_add(script_client, GROUP, newcomer) == 1
    assert set(members(script_client, GROUP)) == {newcomer, LOCAL_1, OTHER}
    assert overrides(script_client, GROUP) == {OTHER: 4}


def test_a_group_of_only_stale_members_gets_nothing(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    assert group_add(script_client, GROUP, NAMED, now_ms=stale_ms, capacity=5) == 1
    before = by_key(script_client)
    assert group_send(script_client, GROUP, b"m") == [0, 0, 0]
    assert by_key(script_client) == before


def test_expired_queue_heads_do_not_count(script_client: Any) -> None:
    add_all(script_client, NAMED)
    push(script_client, NAMED, b"dead", deadline_ms=NOW_MS - 1)
    later = NOW_MS + 10
    assert group_send(script_client, GROUP, b"new", capacity=1, now_ms=later) == [1, 0, 0]
    assert payloads(queued(script_client, NAMED)) == [b"new"]


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
    assert_ttl_ms(script_client, nkey(LOCAL), 5)  # group copies are not counted here


def test_sets_ttls_on_new_queues(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1)
    assert group_send(script_client, GROUP, b"new", ttl_s=40) == [2, 0, 0]
    assert_ttl_ms(script_client, qkey(NAMED), 40)
    assert_ttl_ms(script_client, qkey(LOCAL), 40)
    assert not script_client.exists(nkey(LOCAL))


def test_does_not_touch_the_group_membership_scores(script_client: Any) -> None:
    add_all(script_client, NAMED)
    assert group_send(script_client, GROUP, b"m", now_ms=NOW_MS + 50) == [1, 0, 0]
    assert script_client.zscore(gkey(GROUP, NAMED), NAMED) == float(NOW_MS)


def test_large_group_is_processed_in_batches(script_client: Any) -> None:
    size = 2500
    # Every member in one tag's copy, so the copy holds 5,000 members and HMGET works through
    # it in several batches of 1,000.
    tag = channel_tag(NAMED)
    live = names_with_tag("chat.m{:06d}", tag, size)
    stale = names_with_tag("chat.old{:06d}", tag, size)
    stale_ms = NOW_MS - GROUP_TTL_S * 1000 - 1
    plant_members(script_client, GROUP, dict.fromkeys(live, NOW_MS))
    plant_members(script_client, GROUP, dict.fromkeys(stale, stale_ms))
    assert script_client.zcard(gkey(GROUP, NAMED)) == 2 * size
    # The default capacity is 0, so a member gets the message only when its own override
    # is found: a batch offset error in HMGET would shift this pattern.
    capacities = {channel: 0 if n % 10 == 7 else 5 for n, channel in enumerate(live)}
    for channel in live[3::10]:
        del capacities[channel]
    capacities.update(dict.fromkeys(stale, 5))
    plant_overrides(script_client, GROUP, capacities)
    assert group_send(script_client, GROUP, b"m", capacity=0) == [2000, 500, 0]
    assert copies(script_client, GROUP) == sorted([gkey(GROUP, NAMED), ckey(GROUP, NAMED)])
    pipe = script_client.pipeline()
    for channel in live:
        pipe.llen(qkey(channel))
    lengths = pipe.execute()
    assert lengths == [0 if n % 10 in (3, 7) else 1 for n in range(size)]
    assert not any(script_client.exists(qkey(channel)) for channel in stale)


def test_a_single_local_member_gets_a_group_entry(script_client: Any) -> None:
    add_all(script_client, LOCAL_22)
    assert group_send(script_client, GROUP, b"p") == [1, 0, 0]
    assert queued(script_client, LOCAL) == [HEADER + b"G000003s22p"]


def test_local_members_of_one_client_share_entries_in_chunks(script_client: Any) -> None:
    suffixes = [f"c{n:05d}" for n in range(5003)]
    plant_members(script_client, GROUP, {f"{LOCAL}{suffix}": NOW_MS for suffix in suffixes})
    script_client.set(hkey(LOCAL), 1)
    assert group_send(script_client, GROUP, b"p", capacity=5) == [5003, 0, 0]
    entries = queued(script_client, LOCAL)
    assert len(entries) == 2  # at most 5,000 channels per entry
    parsed = [keys.parse_entry(item) for item in entries]
    assert [name for _, names, _ in parsed for name in names] == suffixes
    assert {payload for _, _, payload in parsed} == {b"p"}
    assert all(keys.is_group_entry(item) for item in entries)
    assert not script_client.exists(nkey(LOCAL))


# -- the client queue bound ----------------------------------------------------------------


def test_a_client_queue_at_its_bound_gets_no_entry(script_client: Any) -> None:
    add_all(script_client, NAMED, LOCAL_1, LOCAL_22)
    script_client.rpush(qkey(LOCAL), *[entry(LOCAL_1, b"old")] * 3)
    # Below the bound the entry is written; at it the client's members count as refused.
    assert group_send(script_client, GROUP, b"a", queue_max=4) == [3, 0, 0]
    assert group_send(script_client, GROUP, b"b", queue_max=4) == [1, 2, 0]
    assert payloads(queued(script_client, LOCAL)) == [b"old"] * 3 + [b"a"]
    assert payloads(queued(script_client, NAMED)) == [b"a", b"b"]


def test_the_bound_looks_at_each_client_queue_on_its_own(script_client: Any) -> None:
    other_client = "specific.other!"
    add_all(script_client, LOCAL_1, f"{other_client}m")
    script_client.rpush(qkey(LOCAL), entry(LOCAL_1, b"old"))
    assert group_send(script_client, GROUP, b"a", queue_max=1) == [1, 1, 0]
    assert payloads(queued(script_client, other_client)) == [b"a"]


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
    # The named member is full; its purge drops the expired entry and garbage met at the head.
    # A client queue is not purged here: its receiving process drops what it meets.
    assert group_send(script_client, GROUP, b"new", capacity=1) == [2, 0, 0]
    kept = [garbage] if position == "tail" else []
    assert queued(script_client, NAMED) == [named_live, *kept, HEADER + b"00new"]
    assert queued(script_client, LOCAL) == [*local, HEADER + b"G000002s1new"]
    assert counts(script_client, LOCAL) == {"s1": 1, "s22": 1}


# -- dead clients -----------------------------------------------------------------------------

DEAD = "specific.dead!"
LIVE = "specific.live!"


def test_members_of_a_dead_client_are_dropped_with_its_keys(script_client: Any) -> None:
    dead_members = [f"{DEAD}d{n:02d}" for n in range(50)]
    live_members = [f"{LIVE}m{n}" for n in range(3)]
    add_all(script_client, NAMED, *dead_members, *live_members)
    assert send(script_client, dead_members[1], b"unread") == 1
    silence(script_client, DEAD)  # its last beat was 3+ heartbeats of uptime ago
    assert group_send(script_client, GROUP, b"m") == [4, 0, 50]
    assert set(members(script_client, GROUP)) == {NAMED, *live_members}
    assert set(clients(script_client, GROUP)) == {LIVE}
    assert not script_client.exists(mkey(GROUP, DEAD))
    assert not script_client.exists(qkey(DEAD), nkey(DEAD))
    assert script_client.get(hkey(DEAD)) == b"dead"  # its process, if it comes back, rejoins
    assert payloads(queued(script_client, NAMED)) == [b"m"]
    assert keys.parse_entry(queued(script_client, LIVE)[0])[1:] == (["m0", "m1", "m2"], b"m")
    assert script_client.exists(hkey(LIVE))
    # Nothing is left to drop the next time.
    assert group_send(script_client, GROUP, b"m2") == [4, 0, 0]


def test_liveness_and_counts_are_read_once_per_client(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        heads = [f"specific.c{n}!" for n in range(3)]
        add_all(client, *(f"{head}m{n}" for head in heads for n in range(20)))
        silence(client, heads[0])
        client.config_resetstat()
        assert group_send(client, GROUP, b"m") == [40, 0, 20]
        # Server-side call counts (a real server only): one GET of the liveness mark per
        # client, one EXISTS for the capacity-override hashes of every copy walked, one tick
        # (HMGET + HSET) of the uptime clock per tag of a client, on one read of the server's
        # clock; per live client one read of its members and one RPUSH (whose reply is the
        # bound check), whatever its number of members; nothing counted.
        tags = {channel_tag(head) for head in heads}
        assert len(tags) > 1
        stats = client.info("commandstats")
        # The marks, then the live clients' cached member lists (missing: built and SET).
        assert stats["cmdstat_get"]["calls"] == len(heads) + 2
        assert stats["cmdstat_set"]["calls"] == 2 + 1  # the caches, the dead client's mark
        assert stats["cmdstat_exists"]["calls"] == 1
        assert stats["cmdstat_hmget"]["calls"] == stats["cmdstat_hset"]["calls"] == len(tags)
        # Each script reads every listed tag's copy (g: or l:), then each live client's set
        # (its members, then its oldest one), which it caches joined.
        assert stats["cmdstat_zrangebyscore"]["calls"] == 2 * len(tags) + 2 * 2
        assert stats["cmdstat_rpush"]["calls"] == 2 and "cmdstat_llen" not in stats
        assert stats["cmdstat_time"]["calls"] == 1
        assert "cmdstat_hincrby" not in stats
        assert stats["cmdstat_zcard"]["calls"] == 1  # the dead client's members, counted
        # The next call copies each client's cached list: no read of its members.
        client.config_resetstat()
        assert group_send(client, GROUP, b"m") == [40, 0, 0]
        stats = client.info("commandstats")
        assert stats["cmdstat_zrangebyscore"]["calls"] == 2 * len(tags)
        # Two live clients: their marks and their cached lists.
        assert stats["cmdstat_get"]["calls"] == 2 + 2 and "cmdstat_set" not in stats
        assert "cmdstat_zremrangebyscore" not in stats
    finally:
        client.close()


def test_named_members_keep_group_expiry_only(script_client: Any) -> None:
    add_all(script_client, NAMED, OTHER)
    silence(script_client, NAMED, OTHER)
    assert group_send(script_client, GROUP, b"m") == [2, 0, 0]
    assert len(members(script_client, GROUP)) == 2


# -- one tag's copy, or every tag the directory lists -------------------------------------

TAG = channel_tag(NAMED)
IN_TAG_FULL, IN_TAG_STALE = names_with_tag("chat.t{}", TAG, 2)
IN_TAG_LIVE, IN_TAG_DEAD = names_with_tag("specific.t{}!", TAG, 2)
STALE_MS = NOW_MS - GROUP_TTL_S * 1000 - 1


def build_tagged_group(client: Any) -> None:
    """GROUP with members in TAG and in other tags, each tag with a live and a dead client,
    a stale member and a full member (capacity 1, one message queued)."""
    add_all(client, NAMED, f"{IN_TAG_LIVE}a", f"{IN_TAG_LIVE}b", f"{IN_TAG_DEAD}x")
    add_all(client, OTHER, LOCAL_1, f"{DEAD}d")
    for full in (IN_TAG_FULL, "chat.full"):
        assert group_add(client, GROUP, full, capacity=1) == 1
        assert send(client, full, b"old") == 1
    for stale in (IN_TAG_STALE, "chat.old"):
        assert group_add(client, GROUP, stale, now_ms=STALE_MS) == 1
    silence(client, IN_TAG_DEAD, DEAD)


def by_key(client: Any) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key with its DUMP and its TTL in seconds; an uptime clock holds the server's
    time, so only its presence is compared."""
    return {
        key: (None, -1) if b"}u:" in key else (client.dump(key), client.ttl(key))
        for key in client.keys("*")
    }


def tag_of(key: bytes) -> str:
    """The tag of a key of the test prefix."""
    return keys.tag_of_key(PREFIX, key.decode())


def test_the_tagged_group_spans_several_tags() -> None:
    assert channel_tag(IN_TAG_LIVE) == channel_tag(IN_TAG_DEAD) == TAG
    others = {channel_tag(name) for name in (OTHER, LOCAL_1, DEAD, "chat.full", "chat.old")}
    assert TAG not in others and len(others) > 1


def test_one_tag_touches_only_that_tags_copy_and_queues(script_client: Any) -> None:
    build_tagged_group(script_client)
    for key in script_client.keys("*"):
        if tag_of(key) != TAG:
            script_client.persist(key)  # so any EXPIRE outside the tag would show
    before = by_key(script_client)
    assert group_send(script_client, GROUP, b"new", tag=TAG) == [3, 1, 1]
    after = by_key(script_client)
    written = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert written
    assert {tag_of(key) for key in written} == {TAG}
    assert payloads(queued(script_client, NAMED)) == [b"new"]
    assert payloads(queued(script_client, IN_TAG_LIVE)) == [b"new"]
    assert payloads(queued(script_client, IN_TAG_FULL)) == [b"old"]
    assert not script_client.exists(qkey(IN_TAG_DEAD))
    assert script_client.get(hkey(IN_TAG_DEAD)) == b"dead"
    left = set(members(script_client, GROUP))
    # The dead client's member left; the stale one is skipped (group_add removes it).
    assert IN_TAG_STALE in left and f"{IN_TAG_DEAD}x" not in left
    assert not script_client.exists(qkey(IN_TAG_STALE))
    # The other tags' members, stale and dead ones included, are as they were.
    assert {OTHER, LOCAL_1, f"{DEAD}d", "chat.full", "chat.old"} <= left
    assert not script_client.exists(qkey(OTHER), qkey(LOCAL_1))


def test_the_directory_walk_covers_every_tag(script_client: Any) -> None:
    build_tagged_group(script_client)
    assert len(directory(script_client, GROUP)) >= 4
    assert group_send(script_client, GROUP, b"new") == [5, 2, 2]
    for channel in (NAMED, OTHER, IN_TAG_LIVE, LOCAL_1):
        assert payloads(queued(script_client, channel)) == [b"new"]
    for full in (IN_TAG_FULL, "chat.full"):
        assert payloads(queued(script_client, full)) == [b"old"]
    assert set(members(script_client, GROUP)) == {
        NAMED,
        f"{IN_TAG_LIVE}a",
        f"{IN_TAG_LIVE}b",
        OTHER,
        LOCAL_1,
        IN_TAG_FULL,
        "chat.full",
        IN_TAG_STALE,
        "chat.old",
    }
    assert not script_client.exists(qkey(IN_TAG_DEAD), qkey(DEAD))
    assert script_client.get(hkey(DEAD)) == b"dead"
    assert not script_client.exists(qkey(IN_TAG_STALE), qkey("chat.old"))


def test_one_call_per_tag_does_what_the_directory_walk_does(script_client: Any) -> None:
    build_tagged_group(script_client)
    walked = group_send(script_client, GROUP, b"new")
    after_walk = {key: dump for key, (dump, _) in by_key(script_client).items()}
    script_client.flushall()
    build_tagged_group(script_client)
    replies = [
        group_send(script_client, GROUP, b"new", tag=tag)
        for tag in sorted(directory(script_client, GROUP))
    ]
    assert [sum(column) for column in zip(*replies, strict=True)] == walked
    assert {key: dump for key, (dump, _) in by_key(script_client).items()} == after_walk


def test_the_walk_reads_only_the_tags_the_directory_lists(script_client: Any) -> None:
    add_all(script_client, NAMED)
    assert group_add(script_client, GROUP, OTHER, directory=False) == 1
    assert directory(script_client, GROUP) == {TAG}
    assert group_send(script_client, GROUP, b"m") == [1, 0, 0]
    assert not script_client.exists(qkey(OTHER))
    assert group_send(script_client, GROUP, b"m", tag=channel_tag(OTHER)) == [1, 0, 0]
    assert payloads(queued(script_client, OTHER)) == [b"m"]


def test_after_asking_a_derived_key_missing_here_means_try_again_and_nothing_written(
    script_client: Any,
) -> None:
    """On an ASK target ('a'), a member queue not here yet may still be on the source:
    the script answers TRYAGAIN before writing anything."""
    tag = keys.TAGS[5]
    named = names_with_tag("room.m{}", tag, 2)
    head = names_with_tag("specific.c{}!", tag, 1)[0]
    add_all(script_client, *named, f"{head}x")
    push(script_client, named[0], b"earlier")  # one queue is here, the other is not
    before = {key: script_client.dump(key) for key in script_client.keys("*")}
    with pytest.raises(redis.exceptions.TryAgainError):
        group_send(script_client, GROUP, b"m", tag=tag, check="a")
    assert {key: script_client.dump(key) for key in script_client.keys("*")} == before


def test_with_every_derived_key_here_the_checks_deliver(script_client: Any) -> None:
    tag = keys.TAGS[5]
    named = names_with_tag("room.m{}", tag, 1)[0]
    add_all(script_client, named)
    push(script_client, named, b"earlier")
    assert group_send(script_client, GROUP, b"m", tag=tag, check="a") == [1, 0, 0]
    assert group_send(script_client, GROUP, b"m2", tag=tag, check="c") == [1, 0, 0]
    assert payloads(queued(script_client, named)) == [b"earlier", b"m", b"m2"]


def test_the_cluster_check_reads_each_client_once(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        tag = keys.TAGS[7]
        heads = names_with_tag("specific.c{}!", tag, 3)
        add_all(client, *(f"{head}m{n}" for head in heads for n in range(20)))
        for head in heads:  # a live client has a queue; make it exist
            push(client, f"{head}m0", b"earlier")
        client.config_resetstat()
        assert group_send(client, GROUP, b"m", tag=tag, check="c") == [60, 0, 0]
        # Named script: the capacities hash (checked), then one EXISTS for the overrides.
        # Local script: members, cache, queue and liveness key once per client (not per
        # member), then one liveness EXISTS per client.
        exists = client.info("commandstats")["cmdstat_exists"]["calls"]
        assert exists == 2 + 4 * len(heads) + len(heads)
    finally:
        client.close()


# -- the cached member list of a client ------------------------------------------------------


def test_the_joined_list_is_cached_until_membership_changes(script_client: Any) -> None:
    add_all(script_client, LOCAL_1)
    assert group_send(script_client, GROUP, b"a") == [1, 0, 0]
    cache = keys.joined_key(PREFIX, GROUP, LOCAL)
    assert script_client.get(cache) == b"1|s1"
    # It lives until its oldest member would go stale (the test clock is NOW_MS).
    assert script_client.pttl(cache) > (GROUP_TTL_S - 60) * 1000
    add_all(script_client, LOCAL_22)  # a new member: the cache goes
    assert not script_client.exists(cache)
    assert group_send(script_client, GROUP, b"b") == [2, 0, 0]
    assert script_client.get(cache) == b"2|s1,s22"
    assert group_add(script_client, GROUP, LOCAL_1) == 0  # a refresh keeps it
    assert script_client.exists(cache)
    assert group_discard(script_client, GROUP, LOCAL_1) == 1
    assert not script_client.exists(cache)
    assert group_send(script_client, GROUP, b"c") == [1, 0, 0]
    assert [keys.parse_entry(item)[1] for item in queued(script_client, LOCAL)] == [
        ["s1"],
        ["s1", "s22"],
        ["s22"],
    ]


def test_the_cache_expires_when_its_oldest_member_goes_stale(script_client: Any) -> None:
    add_all(script_client, LOCAL_1, now_ms=NOW_MS - GROUP_TTL_S * 1000 + 5000)
    add_all(script_client, LOCAL_22)
    assert group_send(script_client, GROUP, b"a") == [2, 0, 0]
    assert 0 < script_client.pttl(keys.joined_key(PREFIX, GROUP, LOCAL)) <= 5000


def test_chunks_survive_the_cache(script_client: Any) -> None:
    suffixes = [f"c{n:05d}" for n in range(5003)]
    plant_members(script_client, GROUP, {f"{LOCAL}{suffix}": NOW_MS for suffix in suffixes})
    script_client.set(hkey(LOCAL), 1)
    for _ in range(2):  # built, then read from the cache
        assert group_send(script_client, GROUP, b"p") == [5003, 0, 0]
    entries = queued(script_client, LOCAL)
    assert [len(keys.parse_entry(item)[1]) for item in entries] == [5000, 3, 5000, 3]


def test_after_asking_the_cache_is_not_written(script_client: Any) -> None:
    tag = keys.TAGS[5]
    head = names_with_tag("specific.c{}!", tag, 1)[0]
    add_all(script_client, f"{head}x")
    push(script_client, f"{head}x", b"earlier")  # its queue exists here
    assert group_send(script_client, GROUP, b"m", tag=tag, check="a") == [1, 0, 0]
    assert not script_client.exists(keys.joined_key(PREFIX, GROUP, head))
