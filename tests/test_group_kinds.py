"""A group_send sends the message only to the script of the kinds of member its group holds
(groupkinds.py), and a kind that joins since still gets it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asgi_redis.groupkinds import KINDS_MAX, GroupKinds, Kinds
from tests.layer_helpers import make_layer, receive_n, receive_within, sync_client

BIG = "x" * 20_000


async def test_a_payload_travels_once_to_a_group_of_one_kind(redis_url: str) -> None:
    async with make_layer(redis_url) as sender, make_layer(redis_url) as members:
        for index in range(3):
            await sender.group_add("named", f"named.member.{index}")
            await sender.group_add("local", await members.new_channel())
        for group in ("named", "local"):
            await sender.group_send(group, {"type": "t", "text": BIG})  # learns its kinds
            sent = []
            with sync_client(redis_url) as client:
                for _ in range(3):  # the least of three: the members' heartbeats also count
                    before = int(client.info("stats")["total_net_input_bytes"])
                    await sender.group_send(group, {"type": "t", "text": BIG})
                    sent.append(int(client.info("stats")["total_net_input_bytes"]) - before)
            assert len(BIG) < min(sent) < 1.5 * len(BIG), group  # was twice: both scripts had it


@pytest.mark.parametrize("first", ["named", "local"])
async def test_a_kind_that_joins_after_a_group_send_still_gets_the_next(
    layer_hosts: list[Any], first: str
) -> None:
    async with make_layer(layer_hosts) as sender, make_layer(layer_hosts) as members:
        local = await members.new_channel()
        earlier, later = ("named.one", local) if first == "named" else (local, "named.one")
        await sender.group_add("room", earlier)
        await sender.group_send("room", {"i": 0})  # the layer now expects one kind only
        await sender.group_add("room", later)
        await sender.group_send("room", {"i": 1})
        assert [m["i"] for m in await receive_n(members, earlier, 2)] == [0, 1]
        assert (await receive_within(members, later))["i"] == 1
        assert sender.counters.sent == 3
        # Exactly once: nothing more comes to either member.
        for channel in (earlier, later):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(members.receive(channel), 0.3)


def test_the_memory_of_kinds_is_bounded() -> None:
    kinds = GroupKinds()
    only_named = Kinds(named=True, local=False)
    for index in range(KINDS_MAX):
        kinds.seen(f"g{index}", only_named)
    assert kinds.payload_to("g0") == only_named
    kinds.seen("one more", only_named)  # starts again: an unknown group gets both
    assert kinds.payload_to("g0") == Kinds(named=True, local=True)
    assert kinds.payload_to("one more") == only_named
