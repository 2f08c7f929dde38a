"""The channel layer API end to end against a real redis-server: the everyday behaviour."""

from __future__ import annotations

import asyncio
import gc
import random
import re
from typing import Any

import pytest

from asgi_redis import RedisChannelLayer, keys
from tests.layer_helpers import (
    keys_with_prefix,
    make_layer,
    receive_n,
    receive_within,
    sync_client,
    wait_until,
)
from tests.servers import RedisServer

BIG_BYTES = 5 * 1024 * 1024
NEW_CHANNEL = re.compile(r"specific\.([A-Za-z0-9_.\-]+)!([A-Za-z0-9_.\-]+)")


async def test_send_then_receive_round_trip(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        message = {"type": "test.message", "text": "hello", "n": 7, "nested": {"a": [1, 2.5]}}
        await layer.send("round.trip", message)
        assert await receive_within(layer, "round.trip") == message


async def test_messages_cross_layer_instances(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as sender, make_layer(layer_hosts) as receiver:
        await sender.send("cross", {"type": "a"})
        await sender.send("cross", {"type": "b"})
        assert await receive_n(receiver, "cross", 2) == [{"type": "a"}, {"type": "b"}]


async def test_bytes_stay_bytes_and_text_stays_text(layer_hosts: list[Any]) -> None:
    message = {
        "type": "websocket.send",
        "bytes": b"\x00\xff\xfe binary",
        "text": "caf\u00e9 \u2603",
        "empty": b"",
        "list": [b"x", "x", None, True, 1.5],
    }
    async with make_layer(layer_hosts) as layer:
        await layer.send("bytes.check", message)
        got = await receive_within(layer, "bytes.check")
    assert got == message
    assert type(got["bytes"]) is bytes
    assert type(got["empty"]) is bytes
    assert type(got["text"]) is str
    assert [type(item) for item in got["list"]] == [bytes, str, type(None), bool, float]


async def test_new_channel_format(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        name = await layer.new_channel()
        custom = await layer.new_channel("custom.prefix.")
        await layer.send(name, {"type": "mine"})
        assert await receive_within(layer, name) == {"type": "mine"}
    match = NEW_CHANNEL.fullmatch(name)
    assert match is not None, name
    assert name.count("!") == 1
    assert custom.startswith("custom.prefix.")
    assert custom.count("!") == 1
    # The client part (before '!') is the same for one layer on one loop.
    assert custom[len("custom.prefix.") :].split("!")[0] == match.group(1)


async def test_new_channel_unique_across_instances_despite_seeded_random(
    layer_hosts: list[Any],
) -> None:
    names: list[str] = []
    for _ in range(2):
        random.seed(0)
        async with make_layer(layer_hosts) as layer:
            for _ in range(50):
                random.seed(0)
                names.append(await layer.new_channel())
    assert len(set(names)) == len(names)
    clients = {NEW_CHANNEL.fullmatch(name).group(1) for name in names}  # type: ignore[union-attr]
    assert len(clients) == 2


async def test_receive_many_returns_channel_and_message(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        local = await layer.new_channel()
        await layer.send("many.two", {"type": "second"})
        got = await asyncio.wait_for(layer.receive_many(["many.one", "many.two", local]), 10)
        assert got == ("many.two", {"type": "second"})
        await layer.send(local, {"type": "local"})
        got = await asyncio.wait_for(layer.receive_many(["many.one", local]), 10)
        assert got == (local, {"type": "local"})


def test_extensions() -> None:
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1"])
    assert "groups" in layer.extensions
    assert "flush" in layer.extensions


# -- groups ---------------------------------------------------------------------------------


async def test_group_send_reaches_members_and_not_discarded_ones(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        stays = await layer.new_channel()
        leaves = await layer.new_channel()
        await layer.group_add("room", stays)
        await layer.group_add("room", leaves)
        await layer.group_add("room", "named.member")
        await layer.group_send("room", {"type": "first"})
        for channel in (stays, leaves, "named.member"):
            assert await receive_within(layer, channel) == {"type": "first"}

        await layer.group_discard("room", leaves)
        await layer.group_send("room", {"type": "second"})
        await layer.send(leaves, {"type": "marker"})
        assert await receive_within(layer, stays) == {"type": "second"}
        assert await receive_within(layer, "named.member") == {"type": "second"}
        # The discarded member's next message is the marker: the group message never came.
        assert await receive_within(layer, leaves) == {"type": "marker"}


async def test_group_add_is_idempotent(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        channel = await layer.new_channel()
        for _ in range(3):
            await layer.group_add("once", channel)
            await layer.group_add("once", "named.once")
        await layer.group_send("once", {"type": "only"})
        await layer.send(channel, {"type": "marker"})
        await layer.send("named.once", {"type": "marker"})
        for target in (channel, "named.once"):
            assert await receive_n(layer, target, 2) == [{"type": "only"}, {"type": "marker"}]


async def test_group_discard_of_non_member_is_a_no_op(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        await layer.group_discard("nobody.here", "some.channel")
        await layer.group_add("g", "member")
        await layer.group_discard("g", "not.member")
        await layer.group_send("g", {"type": "still"})
        assert await receive_within(layer, "member") == {"type": "still"}


async def test_group_send_to_missing_group_is_fine(redis_url: str) -> None:
    async with make_layer(redis_url) as layer:
        await layer.group_send("no.such.group", {"type": "void"})
    written = keys_with_prefix(redis_url, "asgi:")
    assert [key for key in written if keys.split_key("asgi:", key)[0] == "q"] == []


# -- flush ----------------------------------------------------------------------------------


async def fill(layer: RedisChannelLayer) -> None:
    """Create every kind of key: named and local queues, counts, groups, capacities."""
    local = await layer.new_channel()
    await layer.send("flushme", {"type": "x"})
    await layer.send(local, {"type": "x"})
    await layer.group_add("grp", local)
    await layer.group_add("grp", "flushme")


async def test_flush_deletes_this_prefix_and_layer_works_after(redis_url: str) -> None:
    async with make_layer(redis_url, prefix="mine:", channel_capacity={"flushme": 5}) as layer:
        await fill(layer)
        assert keys_with_prefix(redis_url, "mine:")
        await layer.flush()
        assert keys_with_prefix(redis_url, "mine:") == set()
        await layer.group_send("grp", {"type": "after.flush"})
        await layer.send("flushme", {"type": "fresh"})
        assert await receive_within(layer, "flushme") == {"type": "fresh"}


# Keys that prefix "iso" (which means "iso:") owns: one of the tags in braces, one kind letter,
# a colon, then a channel or group name (names never contain ':'). Everything else belongs to
# someone else.
OWNED_BY_ISO = re.compile(
    rb"iso:\{(?:%s)\}[%s]:[A-Za-z0-9_.\-!/]+" % ("|".join(keys.TAGS).encode(), keys.KINDS.encode())
)


async def flush_iso_next_to(redis_url: str, neighbours: list[str]) -> dict[str, Any]:
    """Fill prefix "iso" and its ``neighbours``, flush "iso", check only its keys went.

    Returns the server's command statistics of the flush.
    """
    with sync_client(redis_url) as client:
        client.set("iso", b"a key equal to the prefix itself")
        client.set("isoq", b"no colon after the kind letter")
        # SCAN's pattern "iso:{*}q:*" matches these two, but they are not "iso" keys.
        client.set("iso:{zzz}q:chan", b"not one of the tags")
        client.set(f"iso:{{{keys.TAGS[0]}}}q:a:b", b"a colon in the name")
        client.set("unrelated", b"1")
        layers = [make_layer(redis_url, prefix=prefix) for prefix in ["iso", *neighbours]]
        try:
            for layer in layers:
                await fill(layer)
            before = keys_with_prefix(redis_url, "")
            owned = {key for key in before if OWNED_BY_ISO.fullmatch(key)}
            assert len(owned) >= 4, owned
            client.config_resetstat()
            await layers[0].flush()
            stats: dict[str, Any] = client.info("commandstats")
            assert sorted(keys_with_prefix(redis_url, "")) == sorted(before - owned)
        finally:
            for layer in layers:
                await layer.close()
    return stats


async def test_flush_leaves_other_prefixes_alone_and_uses_no_keys_command(
    redis_url: str,
) -> None:
    stats = await flush_iso_next_to(redis_url, ["iso2", "iso::", "is", "isoq", "iso.", "ISO"])
    assert "cmdstat_keys" not in stats
    assert "cmdstat_scan" in stats


@pytest.mark.parametrize("neighbour", ["iso:q:", "iso:g:", "iso:n.x:"])
async def test_flush_leaves_prefix_that_looks_like_a_key_kind_alone(
    redis_url: str, neighbour: str
) -> None:
    # Prefix "iso:q:" writes keys like "iso:q:{tag}q:chan"; they are not "iso:" queues (no tag
    # right after "iso:"), so flushing "iso" must keep them.
    await flush_iso_next_to(redis_url, [neighbour])


# -- lifecycle ------------------------------------------------------------------------------


def layer_connections(url: str) -> int:
    """Connections to the server other than the one asking."""
    with sync_client(url) as client:
        return len(client.client_list()) - 1


async def test_async_with_closes_connections(private_redis: RedisServer) -> None:
    redis_url = private_redis.url
    assert layer_connections(redis_url) == 0
    # With the garbage collector off, only an explicit close can end the connections
    # (a dropped, unclosed pool would otherwise be closed by chance when it is collected).
    gc.disable()
    try:
        async with make_layer(redis_url) as layer:
            local = await layer.new_channel()
            await layer.send(local, {"type": "x"})
            await layer.send("named", {"type": "x"})
            await receive_within(layer, local)
            await receive_within(layer, "named")
            assert layer_connections(redis_url) >= 1
        await wait_until(lambda: layer_connections(redis_url) == 0)
    finally:
        gc.enable()


# -- large messages -------------------------------------------------------------------------


async def test_multi_megabyte_messages_round_trip(layer_hosts: list[Any]) -> None:
    payload = random.Random(1).randbytes(BIG_BYTES)
    async with make_layer(layer_hosts) as layer:
        local = await layer.new_channel()
        await layer.send("big", {"type": "big", "data": payload})
        got = await receive_within(layer, "big")
        assert got["data"] == payload

        await layer.group_add("big.group", local)
        await layer.group_add("big.group", "big.named")
        await layer.group_send("big.group", {"type": "big", "data": payload, "text": "x" * 1000})
        for channel in (local, "big.named"):
            got = await receive_within(layer, channel)
            assert got == {"type": "big", "data": payload, "text": "x" * 1000}


@pytest.mark.parametrize("count", [1, 3])
async def test_several_big_messages_keep_order(layer_hosts: list[Any], count: int) -> None:
    async with make_layer(layer_hosts) as layer:
        for index in range(count):
            await layer.send("big.order", {"type": "big", "i": index, "data": b"z" * 1_000_000})
        got = await receive_n(layer, "big.order", count)
    assert [message["i"] for message in got] == list(range(count))
