"""A dead process leaves its groups (guarantee 12), and group_statistics counts members.

Each client that owns process-local channels refreshes a liveness mark every ``heartbeat``;
one unseen for 3 heartbeats of its server's uptime is dead, and the next group_send drops its
members and keys. The uptime clock of a tag advances with the heartbeats and group_sends that
reach it, so these tests keep group_sending while they wait.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from asgi_redis import keys
from tests.layer_helpers import make_layer, receive_within, sync_client

HEARTBEAT_S = 0.5  # dead after 1.5 s: room for a loaded machine
MEMBERS = 50
HOLDER = textwrap.dedent(
    f"""
    import asyncio, sys
    from asgi_redis import RedisChannelLayer

    async def main(url):
        layer = RedisChannelLayer(hosts=[url], heartbeat={HEARTBEAT_S!r})
        channels = [await layer.new_channel() for _ in range({MEMBERS})]
        for channel in channels:
            await layer.group_add("room", channel)
        print(channels[0], flush=True)
        await layer.receive(channels[0])  # waits until killed

    asyncio.run(main(sys.argv[1]))
    """
)


async def wait_for_stats(layer: object, group: str, key: str, value: int) -> dict[str, int]:
    """Poll group_statistics until ``key`` reaches ``value`` (bounded)."""
    stats: dict[str, int] = {}
    for _ in range(100):
        stats = await layer.group_statistics(group)  # type: ignore[attr-defined]
        if stats[key] == value:
            return stats
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never reached {value}: {stats}")


async def group_send_until_dropped(layer: Any, group: str, timeout_s: float) -> int:
    """group_send ``group`` every 0.1 s until it has no process-local member left; returns
    how many group_sends that took (raises after ``timeout_s``)."""
    for sent in range(1, int(timeout_s / 0.1) + 1):
        await layer.group_send(group, {"type": "tick"})
        if (await layer.group_statistics(group))["local"] == 0:
            return sent
        await asyncio.sleep(0.1)
    raise AssertionError(f"{group} still has process-local members after {timeout_s} s")


async def test_members_of_a_killed_process_leave_the_group(redis_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout is not None
        first_channel = await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, holder.stdout.readline), 30
        )
        head = keys.split_channel(first_channel.strip())[0]
        async with make_layer(redis_url, heartbeat=HEARTBEAT_S) as layer:
            await layer.group_add("room", "named.member")
            stats = await layer.group_statistics("room")
            assert stats["local"] == MEMBERS and stats["named"] == 1
            assert stats["clients"] == 1 and stats["dead_clients"] == 0
            await asyncio.sleep(HEARTBEAT_S * 4)  # still alive after several heartbeats
            assert (await layer.group_statistics("room"))["dead_clients"] == 0
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            killed_at = asyncio.get_running_loop().time()
            await group_send_until_dropped(layer, "room", HEARTBEAT_S * 3 + 5)
            # 3 heartbeats of uptime after its last beat (which came before the kill).
            assert asyncio.get_running_loop().time() - killed_at <= HEARTBEAT_S * 3 + 2
            await layer.group_send("room", {"type": "after.kill"})
            got = {}
            while got != {"type": "after.kill"}:  # the ticks come first
                got = await receive_within(layer, "named.member")
            stats = await layer.group_statistics("room")
            assert stats == {
                "group": "room",
                "members": 1,
                "named": 1,
                "local": 0,
                "local_dead": 0,
                "clients": 0,
                "dead_clients": 0,
            }
        with sync_client(redis_url) as client:
            for key in (keys.queue_key, keys.counts_key):
                assert not client.exists(key("asgi:", head)), key.__name__
            assert client.get(keys.heartbeat_key("asgi:", head)) == b"dead"
    finally:
        holder.kill()
        holder.wait(10)


async def test_a_live_process_keeps_its_members_long_after_the_first_mark(
    layer_hosts: list[Any],
) -> None:
    async with make_layer(layer_hosts, heartbeat=0.5) as layer:
        local = await layer.new_channel()
        await layer.group_add("room", local)
        await asyncio.sleep(2.5)  # 5 heartbeats: only the refreshed mark keeps it alive
        await layer.group_send("room", {"type": "still.here"})
        assert await receive_within(layer, local) == {"type": "still.here"}


async def test_closing_stops_the_heartbeat_and_the_members_die(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts, heartbeat=0.2) as layer:
        local = await layer.new_channel()
        await layer.group_add("room", local)
    async with make_layer(layer_hosts, heartbeat=0.2) as other:
        await group_send_until_dropped(other, "room", 5.0)
        assert (await other.group_statistics("room"))["members"] == 0


async def test_group_statistics_of_an_unknown_group_is_all_zero(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        stats = await layer.group_statistics("nobody.here")
    assert stats["members"] == 0 and stats["clients"] == 0


async def test_a_process_judged_dead_rejoins_its_groups_by_itself(
    layer_hosts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Its mark made to look 3 heartbeats old (as after a partition): a group_send drops it,
    its next heartbeat finds the mark saying dead and adds every membership again, with the
    time of its own group_add, once; a discarded membership stays discarded."""
    async with make_layer(layer_hosts, heartbeat=0.2) as layer:
        local, left = await layer.new_channel(), await layer.new_channel()
        await layer.group_add("room", local)
        await layer.group_add("lobby", local)
        await layer.group_add("room", left)
        await layer.group_discard("room", left)
        async with make_layer(layer_hosts, heartbeat=0.2) as other:
            score_before = await member_score(other, "room", local)
            await bury_until_rejoined(other, layer, local)
            for group in ("room", "lobby"):
                await wait_for_stats(other, group, "local", 1)
            assert (await other.group_statistics("room"))["members"] == 1
            assert await member_score(other, "room", local) == score_before
            await other.group_send("room", {"type": "back"})
            got: dict[str, Any] = {}
            while got != {"type": "back"}:  # after the drops' leftovers, if any
                got = await receive_within(layer, local)
        assert layer.counters.rejoins == 1
    warnings = [record.message for record in caplog.records if "mark gone" in record.message]
    assert len(warnings) == 1 and "2 group memberships" in warnings[0]


def route_of(layer: Any, channel: str) -> Any:
    """The route (server or cluster tag) holding ``channel``'s keys."""
    return layer._servers.route_of(channel)


async def member_score(layer: Any, group: str, channel: str) -> Any:
    """The stored time of ``channel``'s membership of ``group``."""
    head, suffix = keys.split_channel(channel)  # a process-local channel
    key = keys.local_members_key("asgi:", group, head)
    return await route_of(layer, channel).run("test", lambda client: client.zscore(key, suffix))


async def bury_until_rejoined(other: Any, layer: Any, channel: str) -> None:
    """Make ``channel``'s client look long unseen and group_send (``other``) until it was
    dropped and ``layer`` has rejoined (a beat between the two writes undoes one try)."""
    mark = keys.heartbeat_key("asgi:", channel)
    for _ in range(20):
        await route_of(other, channel).run("test", lambda client: client.set(mark, -(10**9)))
        await other.group_send("room", {"type": "drop"})
        await other.group_send("lobby", {"type": "drop"})
        await asyncio.sleep(0.5)  # more than 2 heartbeats: a beat sees what happened
        if layer.counters.rejoins:
            return
    raise AssertionError("the client never rejoined")


def test_closing_a_loop_forgets_its_clients_memberships(redis_url: str) -> None:
    """async_to_sync makes a loop per call: what a closed loop's channels joined is not kept."""
    layer = make_layer(redis_url, heartbeat=0.2)

    async def join() -> str:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        assert layer._liveness.memberships.of(keys.split_channel(channel)[0], 0, 86_400)
        await layer.close()
        return channel

    channel = asyncio.run(join())
    assert not layer._liveness.memberships.of(keys.split_channel(channel)[0], 0, 86_400)
    assert not layer._liveness.own_heads and not layer._liveness.beaten
