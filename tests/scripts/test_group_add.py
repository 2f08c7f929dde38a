"""Contract tests for group_add.lua: membership, score, TTL and capacity overrides."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import NOW_MS, ckey, gkey, group_add, hkey

GROUP = "room"
NAMED = "chat.a"
LOCAL = "specific.client!x"


def assert_ttl_ms(client: Any, key: str, ttl_s: int) -> None:
    """The key has a TTL of ``ttl_s`` seconds (less a little time spent since)."""
    assert ttl_s * 1000 - 2000 < client.pttl(key) <= ttl_s * 1000


def test_add_returns_one_and_stores_now_as_score(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, LOCAL, now_ms=NOW_MS + 5) == 1
    members = script_client.zrange(gkey(GROUP), 0, -1, withscores=True)
    assert members == [(NAMED.encode(), float(NOW_MS)), (LOCAL.encode(), float(NOW_MS + 5))]


def test_refresh_returns_zero_and_moves_the_score(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, NAMED, now_ms=NOW_MS + 1000) == 0
    assert script_client.zscore(gkey(GROUP), NAMED) == float(NOW_MS + 1000)
    assert script_client.zcard(gkey(GROUP)) == 1


def test_group_ttl_is_set_and_refreshed(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, ttl_s=100) == 1
    assert_ttl_ms(script_client, gkey(GROUP), 100)
    assert group_add(script_client, GROUP, LOCAL, ttl_s=500) == 1
    assert_ttl_ms(script_client, gkey(GROUP), 500)


def test_default_capacity_creates_no_override_hash(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert not script_client.exists(ckey(GROUP))


def test_capacity_override_is_stored_with_the_group_ttl(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=7, ttl_s=100) == 1
    assert script_client.hgetall(ckey(GROUP)) == {NAMED.encode(): b"7"}
    assert_ttl_ms(script_client, ckey(GROUP), 100)
    assert group_add(script_client, GROUP, NAMED, capacity=9, ttl_s=100) == 0
    assert script_client.hgetall(ckey(GROUP)) == {NAMED.encode(): b"9"}


def test_default_capacity_removes_an_existing_override(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=7) == 1
    assert group_add(script_client, GROUP, LOCAL, capacity=3) == 1
    assert group_add(script_client, GROUP, NAMED) == 0
    assert script_client.hgetall(ckey(GROUP)) == {LOCAL.encode(): b"3"}
    assert group_add(script_client, GROUP, LOCAL) == 0
    assert not script_client.exists(ckey(GROUP))
    assert script_client.zcard(gkey(GROUP)) == 2


def test_any_add_refreshes_the_override_hash_ttl(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=7, ttl_s=100) == 1
    assert group_add(script_client, GROUP, LOCAL, ttl_s=900) == 1
    assert_ttl_ms(script_client, ckey(GROUP), 900)
    assert_ttl_ms(script_client, gkey(GROUP), 900)


def test_a_local_member_creates_its_clients_liveness_key(script_client: Any) -> None:
    assert group_add(script_client, GROUP, LOCAL, heartbeat_ttl_ms=15_000) == 1
    assert script_client.get(hkey(LOCAL)) == b"1"
    assert 13_000 < script_client.pttl(hkey(LOCAL)) <= 15_000


def test_an_existing_liveness_key_keeps_its_value_and_ttl(script_client: Any) -> None:
    script_client.set(hkey(LOCAL), b"beat", px=100_000)
    assert group_add(script_client, GROUP, LOCAL, heartbeat_ttl_ms=15_000) == 1
    assert group_add(script_client, GROUP, "specific.client!other", heartbeat_ttl_ms=15_000) == 1
    assert script_client.get(hkey(LOCAL)) == b"beat"
    assert script_client.pttl(hkey(LOCAL)) > 90_000


def test_a_named_member_creates_no_liveness_key(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert not script_client.exists(hkey(NAMED))
    assert sorted(script_client.keys()) == [gkey(GROUP).encode()]
