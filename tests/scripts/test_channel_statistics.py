"""Contract tests for channel_statistics.lua: live count, oldest deadline, counted value."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scripts.helpers import (
    EXPIRED_MS,
    GARBAGE,
    LIVE_MS,
    NOW_MS,
    POSITIONS,
    entry,
    layout,
    nkey,
    push,
    push_copies,
    push_group_entry,
    qkey,
    reserve,
    run,
    send,
)

NAMED = "chat.room"
LOCAL_A = "specific.client!a"
LOCAL_B = "specific.client!b"


def stats(client: Any, channel: str) -> list[int]:
    """Run the script for ``channel`` at NOW_MS."""
    suffix = channel.partition("!")[2]
    return [
        int(value)
        for value in run(
            client, "channel_statistics", [qkey(channel), nkey(channel)], [NOW_MS, suffix]
        )
    ]


def test_empty_channel(script_client: Any) -> None:
    assert stats(script_client, NAMED) == [0, -1, 0]
    assert stats(script_client, LOCAL_A) == [0, -1, 0]


def test_named_channel_counts_live_entries_and_finds_the_oldest(script_client: Any) -> None:
    send(script_client, NAMED, b"old", deadline_ms=LIVE_MS)
    send(script_client, NAMED, b"new", deadline_ms=LIVE_MS + 5)
    assert stats(script_client, NAMED) == [2, LIVE_MS, 2]


def test_expired_entries_are_not_live_but_still_in_the_list(script_client: Any) -> None:
    send(script_client, NAMED, b"live", deadline_ms=LIVE_MS + 7)
    push(script_client, NAMED, b"gone", deadline_ms=EXPIRED_MS)
    assert stats(script_client, NAMED) == [1, LIVE_MS + 7, 2]
    assert script_client.llen(qkey(NAMED)) == 2  # reads only


def test_local_channels_are_told_apart_on_their_shared_queue(script_client: Any) -> None:
    send(script_client, LOCAL_B, b"b1", deadline_ms=LIVE_MS)
    send(script_client, LOCAL_A, b"a1", deadline_ms=LIVE_MS + 1)
    send(script_client, LOCAL_A, b"a2", deadline_ms=LIVE_MS + 2)
    assert stats(script_client, LOCAL_A) == [2, LIVE_MS + 1, 2]
    assert stats(script_client, LOCAL_B) == [1, LIVE_MS, 1]


def test_local_counted_includes_messages_popped_but_not_delivered(script_client: Any) -> None:
    send(script_client, LOCAL_A, b"a1")
    script_client.lpop(qkey(LOCAL_A))  # a reader took it; the count stays until released
    assert stats(script_client, LOCAL_A) == [0, -1, 1]


def test_a_group_entry_counts_for_each_of_its_channels(script_client: Any) -> None:
    push_group_entry(script_client, "specific.client!", ["a", "b"], b"g", deadline_ms=LIVE_MS + 3)
    send(script_client, LOCAL_B, b"b2", deadline_ms=LIVE_MS + 4)
    assert stats(script_client, LOCAL_A) == [1, LIVE_MS + 3, 1]
    assert stats(script_client, LOCAL_B) == [2, LIVE_MS + 3, 2]


def test_copies_are_live_for_their_channels_and_counted_once_reserved(
    script_client: Any,
) -> None:
    push_copies(script_client, "specific.client!", ["a", "b"], b"g", deadline_ms=LIVE_MS + 3)
    # Waiting in the client queue, a copy is not counted yet: its receiving process decides.
    assert stats(script_client, LOCAL_A) == [1, LIVE_MS + 3, 0]
    assert reserve(script_client, "specific.client!", [("a", 1, 5)]) == [1]
    assert stats(script_client, LOCAL_A) == [1, LIVE_MS + 3, 1]


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_is_skipped_and_kept(script_client: Any, kind: str, position: str) -> None:
    first, second = entry(LOCAL_A, b"a1", LIVE_MS + 1), entry(LOCAL_B, b"b1", LIVE_MS + 2)
    script_client.rpush(qkey(LOCAL_A), *layout(GARBAGE[kind], position, first, second))
    script_client.hset(nkey(LOCAL_A), mapping={"a": 1, "b": 1})
    assert stats(script_client, LOCAL_A) == [1, LIVE_MS + 1, 1]
    assert stats(script_client, LOCAL_B) == [1, LIVE_MS + 2, 1]
    named = layout(GARBAGE[kind], position, entry(NAMED, b"n1"), entry(NAMED, b"n2"))
    script_client.rpush(qkey(NAMED), *named)
    # A named channel's count is its list length, garbage included, until a pop drops it.
    assert stats(script_client, NAMED) == [2, LIVE_MS, 3]
    assert script_client.llen(qkey(LOCAL_A)) == 3  # reads only
