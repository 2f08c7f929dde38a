"""The ``serializer`` option: msgpack (default), json, custom objects, and bad values."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from asgi_redis import RedisChannelLayer, keys
from tests.layer_helpers import make_layer

RECEIVE_TIMEOUT_S = 10.0
KEY = "serializer-test-secret-" + "s" * 32


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    """Receive with a bound so that a broken layer fails the test instead of hanging."""
    return await asyncio.wait_for(layer.receive(channel), RECEIVE_TIMEOUT_S)


def queued_payload(url: str, layer: RedisChannelLayer, channel: str) -> bytes:
    """The payload of the first entry queued on a named channel."""
    client = redis.Redis.from_url(url)
    try:
        entry = client.lindex(keys.queue_key(layer.prefix, channel), 0)
    finally:
        client.close()
    assert entry is not None
    return keys.parse_entry(entry)[2]


def key_count(url: str) -> int:
    """Keys on the server."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.dbsize())
    finally:
        client.close()


async def test_msgpack_is_the_default_and_keeps_bytes(redis_url: str) -> None:
    async with make_layer(redis_url) as layer:
        message = {"type": "bin", "data": b"\x00\xff", "text": "caf\u00e9"}
        await layer.send("ser.default", message)
        assert queued_payload(redis_url, layer, "ser.default")[:1] == b"\x83"  # fixmap of 3
        assert await receive(layer, "ser.default") == message


async def test_json_round_trip(redis_url: str) -> None:
    async with make_layer(redis_url, serializer="json") as layer:
        message = {"type": "chat", "text": "caf\u00e9", "n": 3, "list": [1, 2.5, None, True]}
        await layer.send("ser.json", message)
        assert json.loads(queued_payload(redis_url, layer, "ser.json")) == message
        assert await receive(layer, "ser.json") == message
        await layer.group_add("ser-json", "ser.json.member")
        await layer.group_send("ser-json", message)
        assert await receive(layer, "ser.json.member") == message


async def test_json_with_encryption(redis_url: str) -> None:
    options: dict[str, Any] = {"serializer": "json", "symmetric_encryption_keys": [KEY]}
    async with make_layer(redis_url, **options) as layer:
        await layer.send("ser.json.enc", {"type": "secret", "text": "hidden-json"})
        assert b"hidden-json" not in queued_payload(redis_url, layer, "ser.json.enc")
        assert await receive(layer, "ser.json.enc") == {"type": "secret", "text": "hidden-json"}


@pytest.mark.parametrize(
    "value", [b"bytes", {1, 2}, object(), float("nan")], ids=["bytes", "set", "object", "nan"]
)
async def test_json_refuses_unrepresentable_values_before_writing(
    redis_url: str, value: object
) -> None:
    async with make_layer(redis_url, serializer="json") as layer:
        await layer.group_add("ser-bad", "ser.bad.member")
        before = key_count(redis_url)
        with pytest.raises(TypeError, match=r"channel 'ser\.bad' cannot be serialized"):
            await layer.send("ser.bad", {"type": "bad", "value": value})
        with pytest.raises(TypeError, match=r"group 'ser-bad' cannot be serialized"):
            await layer.group_send("ser-bad", {"type": "bad", "value": value})
        assert key_count(redis_url) == before  # nothing queued anywhere


class Tagged:
    """A custom serializer: JSON behind a tag, counting its calls."""

    def __init__(self) -> None:
        self.dumped = 0
        self.loaded = 0

    def dumps(self, message: dict[str, Any]) -> bytes:
        self.dumped += 1
        return b"TAG" + json.dumps(message).encode()

    def loads(self, payload: bytes) -> dict[str, Any]:
        self.loaded += 1
        if not payload.startswith(b"TAG"):
            raise ValueError("untagged payload")
        result: dict[str, Any] = json.loads(payload[3:])
        return result


async def test_custom_serializer_object(redis_url: str) -> None:
    serializer = Tagged()
    async with make_layer(redis_url, serializer=serializer) as layer:
        await layer.send("ser.custom", {"type": "custom", "n": 1})
        assert queued_payload(redis_url, layer, "ser.custom").startswith(b"TAG{")
        assert await receive(layer, "ser.custom") == {"type": "custom", "n": 1}
        for index in range(5):
            await layer.group_add("ser-custom", f"ser.custom.{index}")
        await layer.group_send("ser-custom", {"type": "fan"})
        assert serializer.dumped == 2  # once per send, once per group_send
        assert await receive(layer, "ser.custom.4") == {"type": "fan"}
        assert serializer.loaded == 2


async def test_custom_serializer_with_encryption(redis_url: str) -> None:
    serializer = Tagged()
    options: dict[str, Any] = {"serializer": serializer, "symmetric_encryption_keys": [KEY]}
    async with make_layer(redis_url, **options) as layer:
        await layer.send("ser.custom.enc", {"type": "custom"})
        assert b"TAG" not in queued_payload(redis_url, layer, "ser.custom.enc")
        assert await receive(layer, "ser.custom.enc") == {"type": "custom"}


async def test_layers_with_different_serializers_drop_not_crash(layer_hosts: list[Any]) -> None:
    async with (
        make_layer(layer_hosts, serializer=Tagged()) as tagged,
        make_layer(layer_hosts) as plain,
    ):
        await plain.send("ser.mixed", {"type": "msgpack"})
        await tagged.send("ser.mixed", {"type": "tagged"})
        assert await receive(tagged, "ser.mixed") == {"type": "tagged"}
        assert tagged.dropped_undecodable == 1


async def test_serializer_returning_str_is_refused(redis_url: str) -> None:
    class Text:
        def dumps(self, message: dict[str, Any]) -> Any:
            return json.dumps(message)

        def loads(self, payload: bytes) -> dict[str, Any]:
            result: dict[str, Any] = json.loads(payload)
            return result

    async with make_layer(redis_url, serializer=Text()) as layer:
        with pytest.raises(TypeError, match=r"channel 'ser\.str'.*returned str, not bytes"):
            await layer.send("ser.str", {"type": "x"})
        assert key_count(redis_url) == 0


class DumpsOnly:
    def dumps(self, message: dict[str, Any]) -> bytes:
        return b""


class NotCallable:
    dumps = b"x"
    loads = b"y"


@pytest.mark.parametrize(
    "value",
    ["pickle", "JSON", None, 3, object(), DumpsOnly(), NotCallable()],
    ids=["pickle", "JSON", "None", "int", "object", "dumps-only", "not-callable"],
)
def test_bad_serializer_raises_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="serializer must be"):
        RedisChannelLayer(serializer=value)


def test_serializer_is_a_known_option() -> None:
    from asgi_redis.layer import OPTIONS

    assert {"serializer", "symmetric_encryption_keys"} <= set(OPTIONS)
    with pytest.raises(TypeError, match="serialiser"):
        RedisChannelLayer(serialiser="json")
