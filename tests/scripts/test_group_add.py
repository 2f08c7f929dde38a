"""Contract tests for group_add.lua: membership, score, TTL, capacity overrides, directory."""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    GROUP_TTL_S,
    NOW_MS,
    PREFIX,
    channel_tag,
    ckey,
    directory,
    dkey,
    gkey,
    group_add,
    hkey,
    lkey,
    members,
    mkey,
    names_with_tag,
    overrides,
    plant_members,
    plant_overrides,
    ukey,
)

GROUP = "room"
NAMED = "chat.a"
LOCAL = "specific.client!x"
LOCAL_OTHER = "specific.client!other"  # same client, so the same tag as LOCAL


def assert_ttl_ms(client: Any, key: str, ttl_s: int) -> None:
    """The key has a TTL of ``ttl_s`` seconds (less a little time spent since)."""
    assert ttl_s * 1000 - 2000 < client.pttl(key) <= ttl_s * 1000


def test_the_test_channels_have_two_tags() -> None:
    assert channel_tag(LOCAL) == channel_tag(LOCAL_OTHER) != channel_tag(NAMED)


def test_add_returns_one_and_stores_now_as_score(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, LOCAL, now_ms=NOW_MS + 5) == 1
    # Each member sits in the copy of its own tag.
    named = script_client.zrange(gkey(GROUP, NAMED), 0, -1, withscores=True)
    assert named == [(NAMED.encode(), float(NOW_MS))]
    # A process-local member: its suffix in its client's set, the client in the tag's list.
    local = script_client.zrange(mkey(GROUP, LOCAL), 0, -1, withscores=True)
    assert local == [(b"x", float(NOW_MS + 5))]
    listed = script_client.zrange(lkey(GROUP, LOCAL), 0, -1, withscores=True)
    assert listed == [(b"specific.client!", float(NOW_MS + 5))]
    assert members(script_client, GROUP) == {NAMED: NOW_MS, LOCAL: NOW_MS + 5}


def test_refresh_returns_zero_and_moves_the_score(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert group_add(script_client, GROUP, NAMED, now_ms=NOW_MS + 1000) == 0
    assert script_client.zscore(gkey(GROUP, NAMED), NAMED) == float(NOW_MS + 1000)
    assert members(script_client, GROUP) == {NAMED: NOW_MS + 1000}


def test_group_ttl_is_set_and_refreshed(script_client: Any) -> None:
    assert group_add(script_client, GROUP, LOCAL, ttl_s=100) == 1
    assert_ttl_ms(script_client, mkey(GROUP, LOCAL), 100)
    assert_ttl_ms(script_client, lkey(GROUP, LOCAL), 100)
    assert group_add(script_client, GROUP, LOCAL_OTHER, ttl_s=500) == 1
    assert_ttl_ms(script_client, mkey(GROUP, LOCAL), 500)
    assert_ttl_ms(script_client, lkey(GROUP, LOCAL), 500)


def test_a_clients_score_is_its_latest_add(script_client: Any) -> None:
    assert group_add(script_client, GROUP, LOCAL, now_ms=NOW_MS + 9) == 1
    assert group_add(script_client, GROUP, LOCAL_OTHER, now_ms=NOW_MS + 20) == 1
    assert script_client.zscore(lkey(GROUP, LOCAL), "specific.client!") == NOW_MS + 20
    assert members(script_client, GROUP) == {LOCAL: NOW_MS + 9, LOCAL_OTHER: NOW_MS + 20}


def test_an_add_removes_stale_clients_and_members(script_client: Any) -> None:
    stale_ms = NOW_MS - GROUP_TTL_S * 1000
    stale_client = names_with_tag("specific.old{}!", channel_tag(LOCAL), 1)[0]
    assert group_add(script_client, GROUP, f"{stale_client}s", now_ms=stale_ms) == 1
    assert group_add(script_client, GROUP, LOCAL_OTHER, now_ms=stale_ms) == 1
    assert group_add(script_client, GROUP, LOCAL) == 1
    assert set(script_client.zrange(lkey(GROUP, LOCAL), 0, -1)) == {b"specific.client!"}
    assert set(script_client.zrange(mkey(GROUP, LOCAL), 0, -1)) == {b"x"}


def test_an_add_sets_the_ttl_of_its_own_tags_copy_only(script_client: Any) -> None:
    assert group_add(script_client, GROUP, LOCAL, ttl_s=100) == 1
    assert group_add(script_client, GROUP, NAMED, ttl_s=500) == 1
    assert_ttl_ms(script_client, gkey(GROUP, NAMED), 500)
    assert_ttl_ms(script_client, lkey(GROUP, LOCAL), 100)


def test_default_capacity_creates_no_override_hash(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert not script_client.exists(ckey(GROUP, NAMED))
    assert overrides(script_client, GROUP) == {}


def test_capacity_override_is_stored_with_the_group_ttl(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=7, ttl_s=100) == 1
    assert script_client.hgetall(ckey(GROUP, NAMED)) == {NAMED.encode(): b"7"}
    assert_ttl_ms(script_client, ckey(GROUP, NAMED), 100)
    assert group_add(script_client, GROUP, NAMED, capacity=9, ttl_s=100) == 0
    assert script_client.hgetall(ckey(GROUP, NAMED)) == {NAMED.encode(): b"9"}
    assert overrides(script_client, GROUP) == {NAMED: 9}


def test_default_capacity_removes_an_existing_override(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, capacity=7) == 1
    assert group_add(script_client, GROUP, NAMED) == 0
    assert not script_client.exists(ckey(GROUP, NAMED))
    assert len(members(script_client, GROUP)) == 1


def test_a_local_members_capacity_is_not_stored(script_client: Any) -> None:
    # Its receiving process checks a process-local channel's capacity with its own settings.
    assert group_add(script_client, GROUP, LOCAL, capacity=3) == 1
    assert overrides(script_client, GROUP) == {}


def test_any_add_refreshes_the_override_hash_ttl(script_client: Any) -> None:
    other = names_with_tag("chat.o{}", channel_tag(NAMED), 1)[0]
    assert group_add(script_client, GROUP, NAMED, capacity=7, ttl_s=100) == 1
    assert group_add(script_client, GROUP, other, ttl_s=900) == 1
    assert_ttl_ms(script_client, ckey(GROUP, NAMED), 900)
    assert_ttl_ms(script_client, gkey(GROUP, NAMED), 900)


def test_a_local_member_creates_its_clients_liveness_key(script_client: Any) -> None:
    script_client.hset(ukey(LOCAL), mapping={"up": 70_000, "at": 0})
    assert group_add(script_client, GROUP, LOCAL, beat_ms=5_000) == 1
    # Seen now on the tag's uptime clock (ticked: one heartbeat at most since its last tick).
    assert script_client.get(hkey(LOCAL)) == b"75000"
    assert 58_000 < script_client.pttl(hkey(LOCAL)) <= 60_000


def test_an_existing_liveness_key_keeps_its_value_and_ttl(script_client: Any) -> None:
    script_client.set(hkey(LOCAL), b"beat", px=100_000)
    assert group_add(script_client, GROUP, LOCAL) == 1
    assert group_add(script_client, GROUP, LOCAL_OTHER) == 1
    assert script_client.get(hkey(LOCAL)) == b"beat"
    assert script_client.pttl(hkey(LOCAL)) > 90_000


def test_a_named_member_creates_no_liveness_key(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED) == 1
    assert not script_client.exists(hkey(NAMED))
    assert sorted(script_client.keys()) == sorted(
        [gkey(GROUP, NAMED).encode(), dkey(GROUP).encode()]
    )


# -- the group's directory ------------------------------------------------------------------


def test_the_directory_lists_each_members_tag_with_the_group_ttl(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, ttl_s=100) == 1
    assert directory(script_client, GROUP) == {channel_tag(NAMED)}
    assert_ttl_ms(script_client, dkey(GROUP), 100)
    assert group_add(script_client, GROUP, LOCAL, ttl_s=500) == 1
    assert group_add(script_client, GROUP, LOCAL_OTHER, ttl_s=500) == 1
    assert directory(script_client, GROUP) == {channel_tag(NAMED), channel_tag(LOCAL)}
    assert_ttl_ms(script_client, dkey(GROUP), 500)
    # A refresh refreshes the directory's TTL too.
    assert group_add(script_client, GROUP, NAMED, ttl_s=900) == 0
    assert directory(script_client, GROUP) == {channel_tag(NAMED), channel_tag(LOCAL)}
    assert_ttl_ms(script_client, dkey(GROUP), 900)


def test_without_a_directory_key_no_directory_is_made(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, directory=False) == 1
    assert sorted(script_client.keys()) == [gkey(GROUP, NAMED).encode()]


def test_without_a_directory_key_the_directory_is_left_alone(script_client: Any) -> None:
    assert group_add(script_client, GROUP, NAMED, ttl_s=100) == 1
    assert group_add(script_client, GROUP, LOCAL, ttl_s=900, directory=False) == 1
    assert group_add(script_client, GROUP, NAMED, ttl_s=900, directory=False) == 0
    assert directory(script_client, GROUP) == {channel_tag(NAMED)}
    assert_ttl_ms(script_client, dkey(GROUP), 100)
    assert members(script_client, GROUP) == {NAMED: NOW_MS, LOCAL: NOW_MS}


def test_without_a_directory_every_key_written_carries_the_members_tag(
    script_client: Any,
) -> None:
    # On Redis Cluster the script runs in the slot of the member's tag.
    assert group_add(script_client, GROUP, LOCAL, capacity=4, directory=False) == 1
    written = sorted(key.decode() for key in script_client.keys("*"))
    assert written == sorted([mkey(GROUP, LOCAL), lkey(GROUP, LOCAL), hkey(LOCAL), ukey(LOCAL)])
    assert all(key.startswith(f"{PREFIX}{{{channel_tag(LOCAL)}}}") for key in written)


def test_an_add_removes_its_copys_stale_members_with_their_overrides(script_client: Any) -> None:
    # group_send only skips members not refreshed within group_expiry; an add removes them
    # from the copy it writes to, 2,500 of them here (HDEL works in batches of 1,000).
    stale_ms = NOW_MS - GROUP_TTL_S * 1000
    live, *stale = names_with_tag("chat.m{}", channel_tag(NAMED), 2501)
    plant_members(script_client, GROUP, dict.fromkeys(stale, stale_ms))
    plant_members(script_client, GROUP, {live: stale_ms + 1, LOCAL: stale_ms})
    plant_overrides(script_client, GROUP, {**dict.fromkeys(stale, 5), live: 7})
    assert group_add(script_client, GROUP, NAMED) == 1
    # The copy of NAMED's tag keeps only its live members; the other tags' copies (a stale
    # LOCAL) wait for an add of their own.
    assert set(script_client.zrange(gkey(GROUP, NAMED), 0, -1)) == {NAMED.encode(), live.encode()}
    assert set(members(script_client, GROUP)) == {NAMED, live, LOCAL}
    assert overrides(script_client, GROUP) == {live: 7}
