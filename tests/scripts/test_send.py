"""Contract tests for send.lua: capacity, expiry, process-local counts and TTLs."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    EXPIRED_MS,
    NOW_MS,
    counts,
    entry,
    nkey,
    payloads,
    push,
    push_group_entry,
    qkey,
    queued,
    send,
)

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


def test_expired_entry_in_the_middle_does_not_count_at_capacity(script_client: Any) -> None:
    first = push(script_client, NAMED, b"live-long", deadline_ms=NOW_MS + 90_000)
    push(script_client, NAMED, b"dead", deadline_ms=NOW_MS - 10)
    last = push(script_client, NAMED, b"live-short", deadline_ms=NOW_MS + 1_000)
    assert send(script_client, NAMED, b"new", capacity=3) == 1
    assert queued(script_client, NAMED) == [first, last, entry(NAMED, b"new")]
    assert send(script_client, NAMED, b"over", capacity=3) == 0
    assert queued(script_client, NAMED) == [first, last, entry(NAMED, b"new")]


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


def test_expired_local_entry_behind_a_live_head_does_not_count(script_client: Any) -> None:
    # DESIGN guarantee 4: expired messages never count against capacity, process-local
    # channels included. Here b's only message has expired but sits behind a's live one.
    assert send(script_client, LOCAL_A, b"a-live", capacity=1, deadline_ms=NOW_MS + 90_000) == 1
    assert send(script_client, LOCAL_B, b"b-dead", capacity=1, deadline_ms=NOW_MS + 10) == 1
    later = NOW_MS + 20
    assert send(script_client, LOCAL_B, b"b-new", capacity=1, now_ms=later) == 1
    assert counts(script_client, LOCAL_A) == {"a": 1, "b": 1}
    assert payloads(queued(script_client, LOCAL_A)) == [b"a-live", b"b-new"]


def test_purge_at_capacity_releases_every_channel_of_an_expired_group_entry(
    script_client: Any,
) -> None:
    push(script_client, LOCAL_A, b"live")
    script_client.hincrby(nkey(LOCAL_A), "a", 1)
    push_group_entry(script_client, "specific.client!", ["a", "b"], b"old", deadline_ms=NOW_MS)
    # a holds 2 of capacity 2, one of them expired inside a group entry behind a live head.
    assert send(script_client, LOCAL_A, b"new", capacity=2) == 1
    assert payloads(queued(script_client, LOCAL_A)) == [b"live", b"new"]
    assert counts(script_client, LOCAL_A) == {"a": 2}
