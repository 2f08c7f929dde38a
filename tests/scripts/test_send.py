"""Contract tests for send.lua: capacity, expiry, process-local counts and TTLs."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.scripts.helpers import (
    EXPIRED_MS,
    GARBAGE,
    NOW_MS,
    POSITIONS,
    PURGE_MAX,
    counts,
    entry,
    layout,
    nkey,
    payloads,
    push,
    push_group_entry,
    qkey,
    queued,
    send,
)
from tests.servers import RedisServer

NAMED = "chat.room"
LOCAL_A = "specific.client!a"
LOCAL_B = "specific.client!b"


def assert_ttl_ms(client: Any, key: str, ttl_s: int) -> None:
    """The key has a TTL of ``ttl_s`` seconds (less a little time spent since)."""
    assert ttl_s * 1000 - 2000 < client.pttl(key) <= ttl_s * 1000


def test_queues_while_below_capacity(script_client: Any) -> None:
    results = [send(script_client, NAMED, b"m%d" % n, capacity=3) for n in range(3)]
    assert results == [1, 1, 1]
    assert queued(script_client, NAMED) == [entry(NAMED, b"m%d" % n) for n in range(3)]
    assert not script_client.exists(nkey(NAMED))


def test_full_returns_zero_and_leaves_queue_unchanged(script_client: Any) -> None:
    assert send(script_client, NAMED, b"one", capacity=2) == 1
    assert send(script_client, NAMED, b"two", capacity=2) == 1
    before = queued(script_client, NAMED)
    assert send(script_client, NAMED, b"three", capacity=2) == 0
    assert queued(script_client, NAMED) == before
    assert payloads(before) == [b"one", b"two"]


def test_expired_head_entries_are_dropped_and_not_counted(script_client: Any) -> None:
    push(script_client, NAMED, b"old1", deadline_ms=NOW_MS - 5000)
    push(script_client, NAMED, b"old2", deadline_ms=EXPIRED_MS)
    assert send(script_client, NAMED, b"new1", capacity=2) == 1
    assert queued(script_client, NAMED) == [entry(NAMED, b"new1")]
    assert send(script_client, NAMED, b"new2", capacity=2) == 1
    assert send(script_client, NAMED, b"new3", capacity=2) == 0
    assert payloads(queued(script_client, NAMED)) == [b"new1", b"new2"]


def test_entry_expiring_exactly_now_is_dropped(script_client: Any) -> None:
    push(script_client, NAMED, b"due", deadline_ms=NOW_MS)
    assert send(script_client, NAMED, b"new", capacity=1) == 1
    assert payloads(queued(script_client, NAMED)) == [b"new"]


def test_expired_entry_behind_a_live_head_counts_until_the_head_leaves(
    script_client: Any,
) -> None:
    # Purging looks at the head only (bounded work): entries of one queue are written with
    # one expiry, so an expired entry behind a live one is an artefact of clock skew or of
    # senders with different expiry settings, and it stops counting once the head leaves.
    push(script_client, NAMED, b"live-long", deadline_ms=NOW_MS + 90_000)
    push(script_client, NAMED, b"dead", deadline_ms=NOW_MS - 10)
    push(script_client, NAMED, b"live-short", deadline_ms=NOW_MS + 1_000)
    assert send(script_client, NAMED, b"refused", capacity=3) == 0
    assert payloads(queued(script_client, NAMED)) == [b"live-long", b"dead", b"live-short"]
    later = NOW_MS + 90_000
    assert send(script_client, NAMED, b"new", capacity=3, now_ms=later) == 1
    assert queued(script_client, NAMED) == [entry(NAMED, b"new")]


def test_local_channel_counts_per_suffix(script_client: Any) -> None:
    assert send(script_client, LOCAL_A, b"x") == 1
    assert send(script_client, LOCAL_A, b"y") == 1
    assert send(script_client, LOCAL_B, b"z") == 1
    assert counts(script_client, LOCAL_A) == {"a": 2, "b": 1}
    assert queued(script_client, LOCAL_A) == [
        entry(LOCAL_A, b"x"),
        entry(LOCAL_A, b"y"),
        entry(LOCAL_B, b"z"),
    ]
    assert qkey(LOCAL_A) == qkey(LOCAL_B)


def test_two_suffixes_on_one_queue_have_separate_capacity(script_client: Any) -> None:
    assert [send(script_client, LOCAL_A, b"a%d" % n, capacity=2) for n in range(3)] == [1, 1, 0]
    assert [send(script_client, LOCAL_B, b"b%d" % n, capacity=2) for n in range(3)] == [1, 1, 0]
    assert counts(script_client, LOCAL_A) == {"a": 2, "b": 2}
    assert payloads(queued(script_client, LOCAL_A)) == [b"a0", b"a1", b"b0", b"b1"]


def test_named_send_sets_queue_ttl_and_no_counts(script_client: Any) -> None:
    assert send(script_client, NAMED, b"m", ttl_s=30) == 1
    assert_ttl_ms(script_client, qkey(NAMED), 30)
    assert send(script_client, NAMED, b"m", ttl_s=300) == 1
    assert_ttl_ms(script_client, qkey(NAMED), 300)
    assert not script_client.exists(nkey(NAMED))


def test_local_send_sets_queue_and_counts_ttl(script_client: Any) -> None:
    assert send(script_client, LOCAL_A, b"m", ttl_s=30) == 1
    assert_ttl_ms(script_client, qkey(LOCAL_A), 30)
    assert_ttl_ms(script_client, nkey(LOCAL_A), 30)
    assert send(script_client, LOCAL_B, b"m", ttl_s=200) == 1
    assert_ttl_ms(script_client, qkey(LOCAL_A), 200)
    assert_ttl_ms(script_client, nkey(LOCAL_A), 200)


def test_expired_local_head_entries_release_their_count(script_client: Any) -> None:
    soon = NOW_MS + 10
    assert send(script_client, LOCAL_A, b"a-old", capacity=1, deadline_ms=soon) == 1
    assert send(script_client, LOCAL_B, b"b-old", capacity=1, deadline_ms=soon) == 1
    assert counts(script_client, LOCAL_A) == {"a": 1, "b": 1}
    later = soon + 1
    assert send(script_client, LOCAL_A, b"a-new", capacity=1, now_ms=later) == 1
    # "b" dropped to 0: its field is gone, not left at 0.
    assert counts(script_client, LOCAL_A) == {"a": 1}
    assert queued(script_client, LOCAL_A) == [entry(LOCAL_A, b"a-new")]


def test_full_local_channel_returns_zero_and_changes_nothing(script_client: Any) -> None:
    assert send(script_client, LOCAL_A, b"one", capacity=1) == 1
    before = queued(script_client, LOCAL_A)
    assert send(script_client, LOCAL_A, b"two", capacity=1) == 0
    assert queued(script_client, LOCAL_A) == before
    assert counts(script_client, LOCAL_A) == {"a": 1}


def test_expired_local_entry_behind_a_live_head_counts_until_the_head_expires(
    script_client: Any,
) -> None:
    # b's only message has expired but sits behind a's live one: head-only purging leaves it
    # counted until a's entry expires too (see docs/design.md, "Expiry and capacity").
    assert send(script_client, LOCAL_A, b"a-live", capacity=1, deadline_ms=NOW_MS + 90_000) == 1
    assert send(script_client, LOCAL_B, b"b-dead", capacity=1, deadline_ms=NOW_MS + 10) == 1
    assert send(script_client, LOCAL_B, b"b-new", capacity=1, now_ms=NOW_MS + 20) == 0
    later = NOW_MS + 90_000
    assert send(script_client, LOCAL_B, b"b-new", capacity=1, now_ms=later) == 1
    assert counts(script_client, LOCAL_A) == {"b": 1}
    assert payloads(queued(script_client, LOCAL_A)) == [b"b-new"]


def test_purge_at_capacity_releases_every_channel_of_an_expired_group_entry(
    script_client: Any,
) -> None:
    push_group_entry(script_client, "specific.client!", ["a", "b"], b"old", deadline_ms=NOW_MS)
    push(script_client, LOCAL_A, b"live")
    script_client.hincrby(nkey(LOCAL_A), "a", 1)
    # a holds 2 of capacity 2, one of them expired inside a group entry at the head.
    assert send(script_client, LOCAL_A, b"new", capacity=2) == 1
    assert payloads(queued(script_client, LOCAL_A)) == [b"live", b"new"]
    assert counts(script_client, LOCAL_A) == {"a": 2}


# -- bounded purging ------------------------------------------------------------------------

BIG = 100_000


def fill(client: Any, channel: str, size: int, deadline_ms: int) -> None:
    """Append ``size`` entries for ``channel``, pipelined in chunks (no script, no count)."""
    item = entry(channel, b"x", deadline_ms)
    pipe = client.pipeline(transaction=False)
    for _ in range(0, size, 10_000):
        pipe.rpush(qkey(channel), *[item] * min(10_000, size))
    pipe.execute()


def test_full_channel_of_expired_entries_accepts_a_send(script_client: Any) -> None:
    fill(script_client, NAMED, 5, deadline_ms=EXPIRED_MS)
    assert send(script_client, NAMED, b"new", capacity=5) == 1
    assert queued(script_client, NAMED) == [entry(NAMED, b"new")]


def test_purge_of_a_huge_expired_queue_drops_at_most_the_bound(script_client: Any) -> None:
    fill(script_client, NAMED, BIG, deadline_ms=EXPIRED_MS)
    assert send(script_client, NAMED, b"new", capacity=BIG) == 1
    # 100 expired entries left the head, then the push fitted: the rest waits for receives.
    assert script_client.llen(qkey(NAMED)) == BIG - PURGE_MAX + 1
    assert script_client.lindex(qkey(NAMED), -1) == entry(NAMED, b"new")


def test_refused_send_on_a_huge_live_queue_changes_nothing(script_client: Any) -> None:
    fill(script_client, NAMED, BIG, deadline_ms=NOW_MS + 1)
    assert send(script_client, NAMED, b"over", capacity=BIG) == 0
    assert script_client.llen(qkey(NAMED)) == BIG
    assert script_client.lindex(qkey(NAMED), -1) == entry(NAMED, b"x", NOW_MS + 1)


def test_purge_releases_other_channels_counts_within_the_bound(script_client: Any) -> None:
    for _ in range(PURGE_MAX + 50):
        push(script_client, LOCAL_B, b"old", deadline_ms=EXPIRED_MS)
    script_client.hset(nkey(LOCAL_A), mapping={"b": PURGE_MAX + 50, "a": 1})
    assert send(script_client, LOCAL_A, b"a-new", capacity=1) == 0  # a's own count is live
    assert counts(script_client, LOCAL_A) == {"a": 1, "b": 50}
    assert script_client.llen(qkey(LOCAL_A)) == 50


# -- malformed entries ----------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_full_named_queue_with_garbage_never_aborts(
    script_client: Any, kind: str, position: str
) -> None:
    dead, live = entry(NAMED, b"dead", EXPIRED_MS), entry(NAMED, b"live")
    script_client.rpush(qkey(NAMED), *layout(GARBAGE[kind], position, dead, live))
    assert send(script_client, NAMED, b"new", capacity=3) == 1
    # Garbage met at the head is dropped with the expired entry; behind a live one it waits.
    kept = [GARBAGE[kind]] if position == "tail" else []
    assert queued(script_client, NAMED) == [live, *kept, entry(NAMED, b"new")]


@pytest.mark.parametrize("position", POSITIONS)
def test_garbage_behind_a_live_head_leaves_a_full_queue_refused(
    script_client: Any, position: str
) -> None:
    items = layout(GARBAGE["short"], position, entry(NAMED, b"l1"), entry(NAMED, b"l2"))
    if position == "head":
        items = [entry(NAMED, b"l0"), *items]  # keep a live head in front of it
    script_client.rpush(qkey(NAMED), *items)
    assert send(script_client, NAMED, b"over", capacity=len(items)) == 0
    assert queued(script_client, NAMED) == items


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_full_local_queue_with_garbage_never_aborts_or_leaks_a_count(
    script_client: Any, kind: str, position: str
) -> None:
    dead = entry(LOCAL_A, b"a-dead", EXPIRED_MS)
    live = entry(LOCAL_B, b"b-live")
    script_client.rpush(qkey(LOCAL_A), *layout(GARBAGE[kind], position, dead, live))
    script_client.hset(nkey(LOCAL_A), mapping={"a": 1, "b": 1})
    assert send(script_client, LOCAL_A, b"a-new", capacity=1) == 1
    assert counts(script_client, LOCAL_A) == {"a": 1, "b": 1}
    kept = [GARBAGE[kind]] if position == "tail" else []
    assert queued(script_client, LOCAL_A) == [live, *kept, entry(LOCAL_A, b"a-new")]


def test_dropped_garbage_is_logged_naming_the_queue(
    redis_url: str, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_url)  # redis_url restarts the server if it was stopped
    try:
        client.rpush(qkey("chat.logged"), GARBAGE["short"])
        assert send(client, "chat.logged", b"new", capacity=1) == 1
    finally:
        client.close()
    assert f"malformed entry from queue {qkey('chat.logged')}" in redis_server.log_tail()
