"""Contract tests for group_statistics.lua: member counts, dead clients, reads only."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    GROUP_TTL_S,
    NOW_MS,
    gkey,
    group_add,
    group_statistics,
    hkey,
)

GROUP = "room"
DEAD = "specific.dead!"
LIVE = "specific.live!"


def add_all(client: Any, *channels: str, now_ms: int = NOW_MS) -> None:
    """Add every channel to GROUP at ``now_ms``."""
    for channel in channels:
        assert group_add(client, GROUP, channel, now_ms=now_ms) == 1


def test_missing_group_counts_nothing(script_client: Any) -> None:
    assert group_statistics(script_client, GROUP) == [0, 0, 0, 0, 0]


def test_counts_named_local_and_dead_members(script_client: Any) -> None:
    add_all(script_client, "chat.a", "chat.b", *(f"{LIVE}m{n}" for n in range(3)))
    add_all(script_client, *(f"{DEAD}d{n}" for n in range(4)), "specific.other!x")
    script_client.delete(hkey(DEAD))
    # named, local, local_dead, clients, dead_clients
    assert group_statistics(script_client, GROUP) == [2, 8, 4, 3, 1]


def test_reads_only(script_client: Any) -> None:
    add_all(script_client, "chat.a", f"{DEAD}d0")
    script_client.delete(hkey(DEAD))
    before = sorted(script_client.keys())
    assert group_statistics(script_client, GROUP) == [1, 1, 1, 1, 1]
    assert sorted(script_client.keys()) == before
    assert script_client.zcard(gkey(GROUP)) == 2


def test_members_past_group_expiry_are_not_counted(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000
    add_all(script_client, "chat.old", f"{LIVE}old", now_ms=stale_ms)
    add_all(script_client, "chat.new", f"{DEAD}new", now_ms=stale_ms + 1)
    script_client.delete(hkey(DEAD))
    assert group_statistics(script_client, GROUP) == [1, 1, 1, 1, 1]
