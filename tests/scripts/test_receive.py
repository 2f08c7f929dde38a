"""Contract tests for receive.lua: multi-queue FIFO pops, expiry and count releases."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.scripts.helpers import (
    GARBAGE,
    NOW_MS,
    POSITIONS,
    counts,
    entry,
    layout,
    nkey,
    payloads,
    push,
    push_group_entry,
    qkey,
    queued,
    receive,
    receive_raw,
    send,
)

FIRST = "chat.first"
SECOND = "chat.second"
THIRD = "chat.third"
LOCAL_A = "specific.client!a"
LOCAL_B = "specific.client!b"
LOCAL = "specific.client!"


def test_pops_up_to_max_per_queue_in_fifo_order(script_client: Any) -> None:
    first = [push(script_client, FIRST, b"f%d" % n) for n in range(3)]
    second = [push(script_client, SECOND, b"s%d" % n) for n in range(2)]
    reply = receive_raw(script_client, [(FIRST, 2), (SECOND, 5), (THIRD, 3)])
    assert reply == [1, first[0], 1, first[1], 2, second[0], 2, second[1]]
    assert queued(script_client, FIRST) == [first[2]]
    assert not script_client.exists(qkey(SECOND))
    assert not script_client.exists(qkey(THIRD))


def test_index_is_the_position_of_the_queue_in_keys(script_client: Any) -> None:
    item = push(script_client, SECOND, b"only")
    assert receive(script_client, [(FIRST, 1), (SECOND, 1)]) == [(2, item)]


def test_empty_queues_return_an_empty_array(script_client: Any) -> None:
    assert receive_raw(script_client, [(FIRST, 1), (SECOND, 1)]) == []
    assert script_client.dbsize() == 0


def test_max_zero_pops_nothing(script_client: Any) -> None:
    items = [push(script_client, FIRST, b"m%d" % n) for n in range(2)]
    expired = push(script_client, FIRST, b"dead", deadline_ms=NOW_MS - 1)
    assert receive_raw(script_client, [(FIRST, 0)]) == []
    assert queued(script_client, FIRST) == [*items, expired]


def test_expired_entries_are_skipped_and_deleted(script_client: Any) -> None:
    push(script_client, FIRST, b"dead1", deadline_ms=NOW_MS - 100)
    live1 = push(script_client, FIRST, b"live1")
    push(script_client, FIRST, b"dead2", deadline_ms=NOW_MS)
    live2 = push(script_client, FIRST, b"live2", deadline_ms=NOW_MS + 1)
    push(script_client, FIRST, b"dead3", deadline_ms=NOW_MS - 1)
    assert receive(script_client, [(FIRST, 10)]) == [(1, live1), (1, live2)]
    assert not script_client.exists(qkey(FIRST))


def test_expired_entries_do_not_use_up_max(script_client: Any) -> None:
    push(script_client, FIRST, b"dead1", deadline_ms=NOW_MS - 100)
    push(script_client, FIRST, b"dead2", deadline_ms=NOW_MS - 100)
    live = push(script_client, FIRST, b"live")
    later = push(script_client, FIRST, b"later")
    assert receive(script_client, [(FIRST, 1)]) == [(1, live)]
    assert queued(script_client, FIRST) == [later]


def test_expired_local_entries_release_their_count(script_client: Any) -> None:
    soon = NOW_MS + 10
    assert send(script_client, LOCAL_A, b"a1", deadline_ms=soon) == 1
    assert send(script_client, LOCAL_A, b"a2", deadline_ms=soon) == 1
    assert send(script_client, LOCAL_B, b"b1", deadline_ms=soon + 100) == 1
    assert counts(script_client, LOCAL) == {"a": 2, "b": 1}
    popped = receive(script_client, [(LOCAL, 10)], now_ms=soon)
    assert popped == [(1, entry(LOCAL_B, b"b1", soon + 100))]
    # "a" expired: released and its field deleted; "b" was popped, so it stays counted.
    assert counts(script_client, LOCAL) == {"b": 1}
    assert not script_client.exists(qkey(LOCAL))


def test_popped_local_entries_stay_counted_until_released(script_client: Any) -> None:
    for n in range(3):
        assert send(script_client, LOCAL_A, b"a%d" % n) == 1
    popped = receive(script_client, [(LOCAL, 2)])
    assert payloads([item for _, item in popped]) == [b"a0", b"a1"]
    assert counts(script_client, LOCAL) == {"a": 3}
    assert receive(script_client, [(LOCAL, 0)], [(1, "a"), (1, "a")]) == []
    assert counts(script_client, LOCAL) == {"a": 1}
    assert payloads(queued(script_client, LOCAL)) == [b"a2"]


def test_releases_decrement_and_delete_fields_at_zero(script_client: Any) -> None:
    for suffix, number in (("a", 2), ("b", 1), ("c", 1)):
        for _ in range(number):
            assert send(script_client, f"{LOCAL}{suffix}", b"m") == 1
    releases = [(1, "a"), (1, "b")]
    assert receive(script_client, [(LOCAL, 0)], releases) == []
    assert counts(script_client, LOCAL) == {"a": 1, "c": 1}
    assert receive(script_client, [(LOCAL, 0)], [(1, "a"), (1, "c")]) == []
    assert not script_client.exists(nkey(LOCAL))
    assert len(queued(script_client, LOCAL)) == 4


def test_many_releases_of_one_queue_cost_a_few_commands(redis_url: str) -> None:
    # 2,500 channels of one client (three HMGET/HSET/HDEL batches of at most 1,000), each
    # released once or twice in one call: the counts end exact, and the server ran a few
    # hash commands per 1,000 channels, not one or two per released message.
    client = redis.Redis.from_url(redis_url)
    try:
        suffixes = [f"c{n}" for n in range(2500)]
        client.hset(nkey(LOCAL), mapping=dict.fromkeys(suffixes, 2))
        releases = [(1, suffix) for suffix in suffixes]
        releases += [(1, suffix) for suffix in suffixes[::2]]
        client.config_resetstat()
        assert receive(client, [(LOCAL, 0)], releases) == []
        assert counts(client, LOCAL) == dict.fromkeys(suffixes[1::2], 1)
        stats = client.info("commandstats")
        assert stats["cmdstat_hmget"]["calls"] == 3
        assert stats["cmdstat_hset"]["calls"] == 2
        assert stats["cmdstat_hdel"]["calls"] == 2
        assert "cmdstat_hincrby" not in stats
        # One channel's releases (a consumer keeping up): a single HINCRBY, no HMGET.
        client.config_resetstat()
        assert receive(client, [(LOCAL, 0)], [(1, "c1"), (1, "c1")]) == []
        assert "c1" not in counts(client, LOCAL)
        stats = client.info("commandstats")
        assert stats["cmdstat_hincrby"]["calls"] == 1
        assert "cmdstat_hmget" not in stats
    finally:
        client.close()


def test_release_never_goes_negative(script_client: Any) -> None:
    assert send(script_client, LOCAL_A, b"m") == 1
    releases = [(1, "a"), (1, "a"), (1, "ghost")]
    assert receive(script_client, [(LOCAL, 0)], releases) == []
    assert not script_client.exists(nkey(LOCAL))
    assert receive(script_client, [(LOCAL, 0)], [(1, "a")]) == []
    assert not script_client.exists(nkey(LOCAL))


def test_release_index_selects_the_counts_hash_of_that_queue(script_client: Any) -> None:
    other_a = "specific.other!a"
    assert send(script_client, LOCAL_A, b"m") == 1
    assert send(script_client, other_a, b"m") == 1
    assert send(script_client, other_a, b"m") == 1
    releases = [(2, "a")]
    assert receive(script_client, [(LOCAL, 0), (other_a, 0)], releases) == []
    assert counts(script_client, LOCAL) == {"a": 1}
    assert counts(script_client, other_a) == {"a": 1}


def test_releases_and_pops_in_one_call(script_client: Any) -> None:
    assert send(script_client, LOCAL_A, b"a0") == 1
    assert send(script_client, LOCAL_B, b"b0") == 1
    named = push(script_client, FIRST, b"n0")
    popped = receive(script_client, [(FIRST, 1), (LOCAL, 1)], [(2, "a")])
    assert popped == [(1, named), (2, entry(LOCAL_A, b"a0"))]
    assert counts(script_client, LOCAL) == {"b": 1}
    assert queued(script_client, LOCAL) == [entry(LOCAL_B, b"b0")]


def test_expired_group_entry_releases_every_channel_it_was_for(script_client: Any) -> None:
    push_group_entry(script_client, "specific.c!", ["a", "b"], b"old", deadline_ms=NOW_MS)
    push_group_entry(script_client, "specific.c!", ["b", "c"], b"new")
    popped = receive(script_client, [("specific.c!", 10)])
    assert payloads([item for _, item in popped]) == [b"new"]
    assert counts(script_client, "specific.c!") == {"b": 1, "c": 1}


# -- bounds and malformed entries -----------------------------------------------------------

DROP_MAX = 1000  # dead entries one call drops per queue (receive.lua)


def test_dropping_a_dead_backlog_stops_at_the_bound(script_client: Any) -> None:
    dead = entry(FIRST, b"dead", NOW_MS - 1)
    script_client.rpush(qkey(FIRST), *[dead] * (DROP_MAX + 500))
    live = push(script_client, FIRST, b"live")
    assert receive(script_client, [(FIRST, 1)]) == []
    assert script_client.llen(qkey(FIRST)) == 501
    assert receive(script_client, [(FIRST, 1)]) == [(1, live)]


def test_the_bound_is_per_queue(script_client: Any) -> None:
    script_client.rpush(qkey(FIRST), *[entry(FIRST, b"dead", NOW_MS - 1)] * DROP_MAX)
    live = push(script_client, SECOND, b"live")
    assert receive(script_client, [(FIRST, 1), (SECOND, 1)]) == [(2, live)]
    assert not script_client.exists(qkey(FIRST))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_in_a_named_queue_is_dropped_never_returned(
    script_client: Any, kind: str, position: str
) -> None:
    first, second = entry(FIRST, b"one"), entry(FIRST, b"two")
    script_client.rpush(qkey(FIRST), *layout(GARBAGE[kind], position, first, second))
    assert receive(script_client, [(FIRST, 5)]) == [(1, first), (1, second)]
    assert not script_client.exists(qkey(FIRST))


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_in_a_local_queue_leaks_no_count(
    script_client: Any, kind: str, position: str
) -> None:
    dead, live = entry(LOCAL_A, b"a-dead", NOW_MS - 1), entry(LOCAL_B, b"b-live")
    script_client.rpush(qkey(LOCAL), *layout(GARBAGE[kind], position, dead, live))
    script_client.hset(nkey(LOCAL), mapping={"a": 1, "b": 1})
    assert receive(script_client, [(LOCAL, 5)]) == [(1, live)]
    assert counts(script_client, LOCAL) == {"b": 1}
    assert not script_client.exists(qkey(LOCAL))


def test_garbage_does_not_use_up_max(script_client: Any) -> None:
    script_client.rpush(qkey(FIRST), GARBAGE["short"], GARBAGE["list-length-zero"])
    live = push(script_client, FIRST, b"live")
    later = push(script_client, FIRST, b"later")
    assert receive(script_client, [(FIRST, 1)]) == [(1, live)]
    assert queued(script_client, FIRST) == [later]
