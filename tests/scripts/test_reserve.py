"""Contract tests for reserve.lua: slots for group copies a receiving process holds."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    NOW_MS,
    channel_tag,
    counts,
    nkey,
    push_copies,
    receive,
    reserve,
    send,
)

LOCAL = "specific.client!"
A, B = f"{LOCAL}a", f"{LOCAL}b"


def test_reserves_what_is_wanted_while_there_is_room(script_client: Any) -> None:
    assert reserve(script_client, LOCAL, [("a", 3, 5), ("b", 1, 5)]) == [3, 1]
    assert counts(script_client, LOCAL) == {"+a": 3, "+b": 1}


def test_the_grant_stops_at_what_direct_messages_leave(script_client: Any) -> None:
    for _ in range(3):
        assert send(script_client, A, b"direct", capacity=5) == 1
    assert reserve(script_client, LOCAL, [("a", 4, 5)]) == [2]
    assert counts(script_client, LOCAL) == {"a": 3, "+a": 2}
    # Full: nothing more, and the slots held are kept.
    assert send(script_client, A, b"direct", capacity=5) == 0
    assert reserve(script_client, LOCAL, [("a", 9, 5)]) == [2]


def test_giving_back_always_works_and_zero_deletes_the_field(script_client: Any) -> None:
    assert reserve(script_client, LOCAL, [("a", 4, 5), ("b", 2, 5)]) == [4, 2]
    assert reserve(script_client, LOCAL, [("a", 1, 5), ("b", 0, 5)]) == [1, 0]
    assert counts(script_client, LOCAL) == {"+a": 1}
    assert reserve(script_client, LOCAL, [("a", 0, 5)]) == [0]
    assert not script_client.exists(nkey(LOCAL))


def test_running_it_twice_sets_the_same_slots(script_client: Any) -> None:
    for _ in range(2):
        assert reserve(script_client, LOCAL, [("a", 3, 5)]) == [3]
        assert counts(script_client, LOCAL) == {"+a": 3}


def test_sets_the_counts_ttl(script_client: Any) -> None:
    assert reserve(script_client, LOCAL, [("a", 1, 5)], ttl_s=40) == [1]
    assert 38_000 < script_client.pttl(nkey(LOCAL)) <= 40_000


def test_many_channels_in_one_call(script_client: Any) -> None:
    # More than one HMGET batch (500 triples) and one HSET batch (1,000 fields).
    wanted = [(f"c{n}", 1 + n % 3, 2) for n in range(1200)]
    granted = reserve(script_client, LOCAL, wanted)
    assert granted == [min(slots, 2) for _, slots, _ in wanted]
    assert len(counts(script_client, LOCAL)) == 1200


def test_a_send_counts_the_reserved_slots(script_client: Any) -> None:
    assert reserve(script_client, LOCAL, [("a", 2, 3)]) == [2]
    assert send(script_client, A, b"direct", capacity=3) == 1
    assert send(script_client, A, b"direct", capacity=3) == 0
    assert send(script_client, B, b"direct", capacity=3) == 1  # its own slots only
    assert counts(script_client, LOCAL) == {"a": 1, "+a": 2, "b": 1}


def test_expired_group_copies_release_nothing(script_client: Any) -> None:
    assert send(script_client, A, b"direct", capacity=3, deadline_ms=NOW_MS + 5) == 1
    push_copies(script_client, LOCAL, ["a", "b"], b"copy", deadline_ms=NOW_MS + 5)
    assert receive(script_client, [(LOCAL, 10)], now_ms=NOW_MS + 10) == []
    # The direct message was counted and released; the copies never were.
    assert counts(script_client, LOCAL) == {}


def test_a_full_channel_drops_expired_copies_at_its_queue_head(script_client: Any) -> None:
    push_copies(script_client, LOCAL, ["a"], b"copy", deadline_ms=NOW_MS - 1)
    assert reserve(script_client, LOCAL, [("a", 1, 1)]) == [1]
    assert send(script_client, A, b"direct", capacity=1) == 0
    assert script_client.llen(f"asgi:{{{channel_tag(LOCAL)}}}q:{LOCAL}") == 0
    assert counts(script_client, LOCAL) == {"+a": 1}
