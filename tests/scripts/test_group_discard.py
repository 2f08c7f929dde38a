"""Contract tests for group_discard.lua: removal, override cleanup, no-op for non-members."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import NOW_MS, ckey, gkey, group_add, group_discard

GROUP = "room"
NAMED = "chat.a"
LOCAL = "specific.client!x"


def snapshot(client: Any) -> tuple[Any, ...]:
    """Everything group_discard may touch: members with scores, overrides, TTLs."""
    return (
        client.zrange(gkey(GROUP), 0, -1, withscores=True),
        client.hgetall(ckey(GROUP)),
        client.ttl(gkey(GROUP)),
        client.ttl(ckey(GROUP)),
    )


def test_discard_member_returns_one_and_removes_it(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, LOCAL, now_ms=NOW_MS + 1) == 1
    assert group_discard(script_client, GROUP, NAMED) == 1
    members = script_client.zrange(gkey(GROUP), 0, -1, withscores=True)
    assert members == [(LOCAL.encode(), float(NOW_MS + 1))]


def test_discard_removes_the_capacity_override(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=5) == 1
    assert group_add(script_client, GROUP, LOCAL, capacity=8) == 1
    assert group_discard(script_client, GROUP, NAMED) == 1
    assert script_client.hgetall(ckey(GROUP)) == {LOCAL.encode(): b"8"}
    assert group_discard(script_client, GROUP, LOCAL) == 1
    assert not script_client.exists(gkey(GROUP))
    assert not script_client.exists(ckey(GROUP))


def test_discard_non_member_returns_zero_and_changes_nothing(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=5) == 1
    before = snapshot(script_client)
    assert group_discard(script_client, GROUP, "chat.stranger") == 0
    assert group_discard(script_client, GROUP, "specific.client!y") == 0
    assert snapshot(script_client) == before


def test_discard_from_missing_group_creates_nothing(script_client: Any) -> None:
    assert group_discard(script_client, GROUP, NAMED) == 0
    assert script_client.dbsize() == 0


def test_discard_twice_returns_zero_the_second_time(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_discard(script_client, GROUP, NAMED) == 1
    assert group_discard(script_client, GROUP, NAMED) == 0
    assert script_client.dbsize() == 0
