"""Contract tests for heartbeat.lua and the dead-client rule of _helpers.lua (guarantee 12).

A tag's uptime clock advances by the server time between two ticks, but at most one heartbeat
per tick, so an outage of any length counts as one heartbeat at most. Tests freeze the clock by
putting its last tick in the future, then set it as needed.
"""

from __future__ import annotations

from typing import Any

from tests.scripts.helpers import (
    BEAT_MS,
    MARK_TTL_MS,
    channel_tag,
    group_add,
    group_send,
    group_statistics,
    hkey,
    members,
    names_with_tag,
    run,
    ukey,
)

GROUP = "room"
LOCAL = "specific.proc!a"
FUTURE_MS = 9_999_999_999_999  # a last tick in the future: the clock does not move


def beat(client: Any, channel: str = LOCAL) -> Any:
    """Run heartbeat.lua for ``channel``'s client."""
    return run(client, "heartbeat", [ukey(channel), hkey(channel)], [BEAT_MS])


def set_clock(client: Any, up_ms: int, last_tick_ms: int = FUTURE_MS) -> None:
    """The tag's clock at uptime ``up_ms``, last ticked at ``last_tick_ms`` (server time)."""
    client.hset(ukey(LOCAL), mapping={"up": up_ms, "at": last_tick_ms})


def up(client: Any) -> int:
    """The tag clock's uptime, ms."""
    return int(client.hget(ukey(LOCAL), "up"))


def test_a_beat_writes_the_clocks_uptime_and_says_whether_the_mark_was_there(
    script_client: Any,
) -> None:
    set_clock(script_client, 42_000)
    assert beat(script_client) == 1  # no mark: gone, or a new client
    assert script_client.get(hkey(LOCAL)) == b"42000"
    assert MARK_TTL_MS - 2_000 < script_client.pttl(hkey(LOCAL)) <= MARK_TTL_MS
    assert beat(script_client) == 0
    script_client.set(hkey(LOCAL), "dead")  # a group_send dropped it
    set_clock(script_client, 42_000)
    assert beat(script_client) == 1
    assert script_client.get(hkey(LOCAL)) == b"42000"


def test_a_tick_after_a_long_gap_adds_one_heartbeat_only(script_client: Any) -> None:
    set_clock(script_client, 10_000, last_tick_ms=1)  # last tick in 1970: a very long outage
    beat(script_client)
    assert up(script_client) == 10_000 + BEAT_MS


def test_a_client_is_dead_three_heartbeats_of_uptime_after_its_last_beat(
    script_client: Any,
) -> None:
    assert group_add(script_client, GROUP, LOCAL) == 1
    set_clock(script_client, 100_000)
    script_client.set(hkey(LOCAL), 100_000 - 3 * BEAT_MS + 1)
    assert group_statistics(script_client, GROUP)[2] == 0
    assert group_send(script_client, GROUP, b"alive") == [1, 0, 0]
    script_client.set(hkey(LOCAL), 100_000 - 3 * BEAT_MS)
    assert group_statistics(script_client, GROUP)[2] == 1
    assert group_send(script_client, GROUP, b"dead") == [0, 0, 1]
    assert members(script_client, GROUP) == {}
    assert script_client.get(hkey(LOCAL)) == b"dead"


def test_a_restart_longer_than_three_heartbeats_kills_nobody(script_client: Any) -> None:
    """The issue's case: the server was down for longer than the marks' lifetime. Marks that
    ran out are taken as seen now; marks that survived count the outage as one heartbeat."""
    survivor = f"{names_with_tag('specific.s{}!', channel_tag(LOCAL), 1)[0]}b"
    assert group_add(script_client, GROUP, LOCAL) == 1
    assert group_add(script_client, GROUP, survivor) == 1
    set_clock(script_client, 100_000)
    script_client.set(hkey(survivor), 100_000 - BEAT_MS)  # beat a heartbeat before the outage
    script_client.delete(hkey(LOCAL))  # its mark's wall-time lifetime ran out meanwhile
    set_clock(script_client, 100_000, last_tick_ms=1)  # the outage: a huge gap since the tick
    assert group_send(script_client, GROUP, b"after") == [2, 0, 0]
    assert up(script_client) == 100_000 + BEAT_MS
    assert script_client.get(hkey(LOCAL)) == b"105000"  # absent from now on, not dead
    assert set(members(script_client, GROUP)) == {LOCAL, survivor}


def test_a_missing_mark_counts_from_the_first_group_send_that_sees_it(
    script_client: Any,
) -> None:
    assert group_add(script_client, GROUP, LOCAL) == 1
    script_client.delete(hkey(LOCAL))
    set_clock(script_client, 50_000)
    assert group_send(script_client, GROUP, b"1") == [1, 0, 0]
    set_clock(script_client, 50_000 + 3 * BEAT_MS - 1)
    assert group_send(script_client, GROUP, b"2") == [1, 0, 0]
    set_clock(script_client, 50_000 + 3 * BEAT_MS)
    assert group_send(script_client, GROUP, b"3") == [0, 0, 1]
