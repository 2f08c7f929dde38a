"""Contract tests for group_discard.lua: removal, override cleanup, no-op for non-members."""

from __future__ import annotations

from typing import Any

from asgi_redis import keys
from tests.scripts.helpers import (
    NOW_MS,
    PREFIX,
    channel_tag,
    ckey,
    clients,
    copies,
    dkey,
    gkey,
    group_add,
    group_discard,
    hkey,
    members,
    overrides,
)

GROUP = "room"
NAMED = "chat.a"
LOCAL = "specific.client!x"


def snapshot(client: Any) -> tuple[Any, ...]:
    """Everything group_discard may touch: members with scores, overrides, TTLs, and which
    keys exist."""
    return (
        members(client, GROUP),
        overrides(client, GROUP),
        client.ttl(gkey(GROUP, NAMED)),
        client.ttl(ckey(GROUP, NAMED)),
        sorted(client.keys()),
    )


def test_discard_member_returns_one_and_removes_it(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, LOCAL, now_ms=NOW_MS + 1) == 1
    assert group_discard(script_client, GROUP, NAMED) == 1
    assert members(script_client, GROUP) == {LOCAL: NOW_MS + 1}


def test_discard_removes_the_capacity_override(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=5) == 1
    assert group_discard(script_client, GROUP, NAMED) == 1
    assert overrides(script_client, GROUP) == {}
    assert copies(script_client, GROUP) == []


def test_the_last_local_member_takes_its_client_off_the_list(script_client: Any) -> None:
    assert group_add(script_client, GROUP, LOCAL) == 1
    assert group_add(script_client, GROUP, "specific.client!y") == 1
    assert group_discard(script_client, GROUP, LOCAL) == 1
    assert clients(script_client, GROUP) == {"specific.client!": NOW_MS}
    assert group_discard(script_client, GROUP, "specific.client!y") == 1
    assert clients(script_client, GROUP) == {}
    # Left: the directory, the client's liveness mark and its tag's uptime clock.
    left = {dkey(GROUP), hkey(LOCAL), keys.clock_key(PREFIX, channel_tag(LOCAL))}
    assert set(script_client.keys()) <= {key.encode() for key in left}


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
    # Nothing but (at most) the directory group_add wrote is left: group_discard gets only
    # the member's tag's keys (on Redis Cluster the directory lives in another slot).
    assert set(script_client.keys()) <= {dkey(GROUP).encode()}
