"""channels_redis 4.x names and CONFIG keep working on asgi_redis (issue 11, drop-in)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from asgi_redis import RedisChannelLayer, codec, keys
from tests.layer_helpers import keys_with_prefix, make_layer, receive_within, sync_client

UNREACHABLE = "redis://127.0.0.1:1"
THREE = ["redis://127.0.0.1:1/0", "redis://127.0.0.1:1/1", "redis://127.0.0.1:1/2"]
NEW_CHANNEL = re.compile(r"specific\.([0-9a-f]+)!([0-9a-f]+)")


# -- lifecycle ----------------------------------------------------------------------------


async def test_close_pools_returns_buffered_messages_and_closes(redis_url: str) -> None:
    layer = make_layer(redis_url)
    local = await layer.new_channel()
    for index in range(3):
        await layer.send(local, {"type": "m", "i": index})
    assert (await receive_within(layer, local))["i"] == 0
    await layer.close_pools()
    with sync_client(redis_url) as client:
        # Whatever the reader had buffered is back in Redis, in order; nothing is lost.
        assert client.llen(keys.queue_key("asgi:", layer.non_local_name(local))) == 2
    # Usable again afterwards, like channels_redis after close_pools().
    assert [(await receive_within(layer, local))["i"] for _ in range(2)] == [1, 2]
    await layer.close_pools()


async def test_wait_received_returns_with_nothing_pending(layer_hosts: list[Any]) -> None:
    async with make_layer(layer_hosts) as layer:
        await layer.send("waited", {"type": "x"})
        await receive_within(layer, "waited")
        await layer.wait_received()


# -- configuration names ------------------------------------------------------------------


def test_hosts_and_ring_size() -> None:
    layer = RedisChannelLayer(hosts=[*THREE, ("127.0.0.1", 2)])
    assert layer.hosts == [*THREE, "redis://127.0.0.1:2/0"]
    assert layer.ring_size == 4


def test_hosts_never_show_a_password() -> None:
    layer = RedisChannelLayer(hosts=["redis://:s3cret@127.0.0.1:1"])
    assert "s3cret" not in repr(layer.hosts)


def test_channel_capacity_and_get_capacity() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE], capacity=7, channel_capacity={"tiny*": 1})
    [(pattern, capacity)] = layer.channel_capacity
    assert pattern.match("tiny.chan") and capacity == 1
    assert layer.get_capacity("tiny.chan") == 1
    assert layer.get_capacity("other") == 7


async def test_client_prefix_is_the_loops_client_and_unique() -> None:
    first = RedisChannelLayer(hosts=[UNREACHABLE])
    second = RedisChannelLayer(hosts=[UNREACHABLE])
    channel = await first.new_channel()
    match = NEW_CHANNEL.fullmatch(channel)
    assert match and match.group(1) == first.client_prefix
    assert first.client_prefix != second.client_prefix


def test_client_prefix_outside_a_loop_says_why() -> None:
    with pytest.raises(RuntimeError, match="event loop"):
        _ = RedisChannelLayer(hosts=[UNREACHABLE]).client_prefix


async def test_new_channel_accepts_channels_redis_default_prefix() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE])
    without_dot = await layer.new_channel("specific")
    with_dot = await layer.new_channel("specific.")
    assert NEW_CHANNEL.fullmatch(without_dot) and NEW_CHANNEL.fullmatch(with_dot)
    assert without_dot.split("!")[0] == with_dot.split("!")[0]


# -- servers ------------------------------------------------------------------------------


def test_consistent_hash_names_the_server_of_a_channel() -> None:
    layer = RedisChannelLayer(hosts=THREE)
    servers = {layer.consistent_hash(f"chan{n}") for n in range(60)}
    assert servers == {0, 1, 2}
    # A client's process-local channels share its queue, so they share one server.
    assert len({layer.consistent_hash(f"specific.abc!{n}") for n in range(20)}) == 1
    assert layer.consistent_hash("specific.abc!1") == layer.consistent_hash("specific.abc!")


async def test_consistent_hash_server_holds_the_queue(redis_server: Any) -> None:
    urls = [f"{redis_server.url}/{db}" for db in range(3)]
    with sync_client(redis_server.url) as client:
        client.flushall()
    async with RedisChannelLayer(hosts=urls) as layer:
        for n in range(6):
            await layer.send(f"where{n}", {"type": "x"})
            index = layer.consistent_hash(f"where{n}")
            assert await layer.connection(index).llen(keys.queue_key("asgi:", f"where{n}")) == 1
        await layer.flush()


@pytest.mark.parametrize(("index", "error"), [(3, ValueError), (-1, ValueError), ("0", TypeError)])
async def test_connection_refuses_a_bad_index(index: object, error: type[Exception]) -> None:
    layer = RedisChannelLayer(hosts=THREE)
    with pytest.raises(error):
        layer.connection(index)  # type: ignore[arg-type]


# -- names and payloads -------------------------------------------------------------------


def test_name_checks_return_true_or_raise_type_error() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE])
    assert layer.non_local_name("a.b!c") == "a.b!"
    assert layer.non_local_name("plain") == "plain"
    assert layer.valid_channel_name("a.b!c") is True
    assert layer.require_valid_channel_name("a.b!", receive=True) is True
    assert layer.valid_group_name("grp") is True
    for bad_channel in ["a.b!", "caf\u00e9", "x" * 100]:
        with pytest.raises(TypeError):
            layer.valid_channel_name(bad_channel)
    with pytest.raises(TypeError):
        layer.require_valid_group_name("a!b")


def test_serialize_round_trips_and_refuses_non_dicts() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE], symmetric_encryption_keys=["k" * 32])
    message = {"type": "x", "bytes": b"\x00\xff"}
    payload = layer.serialize(message)
    assert isinstance(payload, bytes) and b"\x00\xff" not in payload
    assert layer.deserialize(payload) == message
    with pytest.raises(TypeError):
        layer.serialize(["not", "a", "dict"])  # type: ignore[arg-type]


# -- CONFIG moved over from channels_redis ------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("asgi", "asgi:"), ("myapp", "myapp:"), ("myapp:", "myapp:"), ("a.b-", "a.b-:"), ("", "")],
)
def test_prefix_without_colon_gets_one(prefix: str, expected: str) -> None:
    assert RedisChannelLayer(hosts=[UNREACHABLE], prefix=prefix).prefix == expected


async def test_channels_redis_prefix_writes_colon_separated_keys(redis_url: str) -> None:
    async with make_layer(redis_url, prefix="myapp") as layer:
        await layer.send("chan", {"type": "x"})
        tag = keys.tag_of("chan")
        assert keys_with_prefix(redis_url, "myapp") == {f"myapp:{{{tag}}}q:chan".encode()}
        await layer.flush()
        assert keys_with_prefix(redis_url, "myapp") == set()


@pytest.mark.parametrize("name", ["msgpack", "json"])
def test_serializer_format_is_mapped_to_serializer(name: str) -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE], serializer_format=name)
    assert type(layer.config.serializer) is codec.BUILTIN[name]


def test_serializer_format_with_an_agreeing_serializer_is_fine() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE], serializer="json", serializer_format="json")
    assert type(layer.config.serializer) is codec.JsonSerializer


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"serializer_format": "pickle"}, "serializer="),
        ({"serializer_format": "msgpack", "serializer": "json"}, "give only serializer"),
        ({"random_prefix_length": "12"}, "remove it"),
        ({"random_prefix_length": -1}, "remove it"),
    ],
)
def test_channels_redis_options_fail_with_a_hint(options: dict[str, Any], hint: str) -> None:
    with pytest.raises(TypeError, match=hint):
        RedisChannelLayer(hosts=[UNREACHABLE], **options)


def test_random_prefix_length_is_accepted_and_unused() -> None:
    layer = RedisChannelLayer(hosts=[UNREACHABLE], random_prefix_length=12)
    assert type(layer.config.serializer) is codec.MsgpackSerializer


def test_a_whole_channels_redis_config_moves_over() -> None:
    config: dict[str, Any] = {
        "hosts": [("127.0.0.1", 1)],
        "prefix": "asgi",
        "expiry": 60,
        "group_expiry": 86400,
        "capacity": 100,
        "channel_capacity": {"http.request": 200, re.compile(r"^websocket.send\!.+"): 20},
        "symmetric_encryption_keys": ["s" * 32],
        "random_prefix_length": 12,
        "serializer_format": "msgpack",
    }
    layer = RedisChannelLayer(**config)
    assert layer.prefix == "asgi:"
    assert layer.get_capacity("http.request") == 200
