"""A dead process leaves its groups (guarantee 12), and group_statistics counts members.

Each client that owns process-local channels refreshes a liveness mark every ``heartbeat``;
one unseen for 3 heartbeats is dead, and the next group_send drops its members and keys.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

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
            await wait_for_stats(layer, "room", "dead_clients", 1)  # within 3 heartbeats
            await layer.group_send("room", {"type": "after.kill"})
            assert await receive_within(layer, "named.member") == {"type": "after.kill"}
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
            for key in (keys.queue_key, keys.counts_key, keys.heartbeat_key):
                assert not client.exists(key("asgi:", head)), key.__name__
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
        await wait_for_stats(other, "room", "dead_clients", 1)
        await other.group_send("room", {"type": "nobody"})
        assert (await other.group_statistics("room"))["members"] == 0


async def test_group_statistics_of_an_unknown_group_is_all_zero(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        stats = await layer.group_statistics("nobody.here")
    assert stats["members"] == 0 and stats["clients"] == 0
