"""Contract tests for group_statistics.lua: member counts, dead clients, reads only."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    GROUP_TTL_S,
    NOW_MS,
    channel_tag,
    directory,
    group_add,
    group_statistics,
    members,
    silence,
)

GROUP = "room"
DEAD = "specific.dead!"
LIVE = "specific.live!"


def add_all(client: Any, *channels: str, now_ms: int = NOW_MS) -> None:
    """Add every channel to GROUP at ``now_ms``."""
    for channel in channels:
        assert group_add(client, GROUP, channel, now_ms=now_ms) == 1


def build_counted_group(client: Any) -> None:
    """Two named members, three members of a live client, four of a dead one, one more client."""
    add_all(client, "chat.a", "chat.b", *(f"{LIVE}m{n}" for n in range(3)))
    add_all(client, *(f"{DEAD}d{n}" for n in range(4)), "specific.other!x")
    silence(client, DEAD)


def test_missing_group_counts_nothing(script_client: Any) -> None:
    assert group_statistics(script_client, GROUP) == [0, 0, 0, 0, 0]
    assert group_statistics(script_client, GROUP, tag=channel_tag(DEAD)) == [0, 0, 0, 0, 0]


def test_counts_named_local_and_dead_members(script_client: Any) -> None:
    build_counted_group(script_client)
    # named, local, local_dead, clients, dead_clients
    assert group_statistics(script_client, GROUP) == [2, 8, 4, 3, 1]


def test_reads_only(script_client: Any) -> None:
    add_all(script_client, "chat.a", f"{DEAD}d0")
    silence(script_client, DEAD)
    before = sorted(script_client.keys())
    assert group_statistics(script_client, GROUP) == [1, 1, 1, 1, 1]
    assert group_statistics(script_client, GROUP, tag=channel_tag(DEAD)) == [0, 1, 1, 1, 1]
    assert sorted(script_client.keys()) == before
    assert len(members(script_client, GROUP)) == 2


def test_members_past_group_expiry_are_not_counted(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000
    add_all(script_client, "chat.old", f"{LIVE}old", now_ms=stale_ms)
    add_all(script_client, "chat.new", f"{DEAD}new", now_ms=stale_ms + 1)
    silence(script_client, DEAD)
    assert group_statistics(script_client, GROUP) == [1, 1, 1, 1, 1]


# -- one tag's copy, or every tag the directory lists -------------------------------------


def test_the_counted_group_spans_several_tags() -> None:
    tags = [channel_tag(unit) for unit in ("chat.a", "chat.b", LIVE, DEAD, "specific.other!")]
    assert len(set(tags)) == len(tags)


def test_one_tag_counts_only_that_tags_members(script_client: Any) -> None:
    build_counted_group(script_client)
    assert group_statistics(script_client, GROUP, tag=channel_tag(DEAD)) == [0, 4, 4, 1, 1]
    assert group_statistics(script_client, GROUP, tag=channel_tag(LIVE)) == [0, 3, 0, 1, 0]
    assert group_statistics(script_client, GROUP, tag=channel_tag("chat.a")) == [1, 0, 0, 0, 0]


def test_the_counts_of_each_tag_add_up_to_the_directory_walk(script_client: Any) -> None:
    build_counted_group(script_client)
    tags = sorted(directory(script_client, GROUP))
    assert len(tags) == 5
    per_tag = [group_statistics(script_client, GROUP, tag=tag) for tag in tags]
    assert [sum(column) for column in zip(*per_tag, strict=True)] == [2, 8, 4, 3, 1]


def test_the_walk_counts_only_the_tags_the_directory_lists(script_client: Any) -> None:
    add_all(script_client, "chat.a")
    assert group_add(script_client, GROUP, f"{DEAD}d0", directory=False) == 1
    assert group_statistics(script_client, GROUP) == [1, 0, 0, 0, 0]
    assert group_statistics(script_client, GROUP, tag=channel_tag(DEAD)) == [0, 1, 0, 1, 0]
