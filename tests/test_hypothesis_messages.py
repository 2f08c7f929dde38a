"""Generated messages and names: each one round-trips exactly or fails before Redis is touched.

Messages mix nested dicts and lists, bytes, ints past 64 bits, non-str keys, floats (NaN, -0.0,
inf), None, bools and 1 MB values. Names are valid and invalid channel and group names
(non-ASCII, a trailing newline, 99 and 100 characters, ``!`` forms). A refused call must raise
TypeError or ValueError, leave the server without keys and send it no command at all
(``total_commands_processed`` moves by exactly the one INFO that reads it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asgi_redis import RedisChannelLayer
from tests.servers import RedisServer

MAX_EXAMPLES = 60
RECEIVE_TIMEOUT_S = 10.0  # only stops a broken example from hanging
ONE_MB = 1024 * 1024
NAME_CHARS = "A-Za-z0-9_.\\-"
# The rule the layer documents (Channels' regex, ASCII only, at most 99 characters, and
# something after '!'), written here independently of asgi_redis.names.
VALID_CHANNEL = re.compile(f"[{NAME_CHARS}]+(![{NAME_CHARS}]+)?")
VALID_GROUP = re.compile(f"[{NAME_CHARS}]+")
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.sampled_from([b"\x00" * ONE_MB, "\u00e9" * (ONE_MB // 2)])
)
map_keys = (
    st.text(max_size=10)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.binary(max_size=8)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(map_keys, inner, max_size=4),
    max_leaves=12,
)
messages = st.builds(
    lambda kind, extra: {**extra, "type": kind},
    st.text(min_size=1, max_size=20),
    st.dictionaries(map_keys, values, max_size=5),
)
name_parts = st.from_regex(f"[{NAME_CHARS}]{{1,60}}", fullmatch=True)
channel_names = (
    name_parts
    | st.builds(lambda head, tail: f"{head}!{tail}", name_parts, name_parts)
    | st.text(max_size=110)
    | st.sampled_from(
        [
            "a" * 99,
            "a" * 100,
            "chat\n",
            "chat!x\n",
            "caf\u00e9",
            "a!\u00e9",
            "!x",
            "a!",
            "a!b!c",
            "a" * 50 + "!" + "b" * 48,
            "a" * 50 + "!" + "b" * 49,
            "",
            " ",
            "a b",
            "a:b",
        ]
    )
)
group_names = (
    name_parts
    | st.text(max_size=110)
    | st.sampled_from(["g" * 99, "g" * 100, "room\n", "r\u00f6om", "a!b", ""])
)


def canonical(value: Any) -> Any:
    """A comparable form that tells 1, 1.0 and True apart and treats NaN as equal to NaN."""
    if isinstance(value, dict):
        return ("dict", [(canonical(key), canonical(item)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [canonical(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


@pytest.fixture(scope="module")
def server_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """One connected client for the whole module, so its own handshake is not counted."""
    if not redis_server.running:  # a test before this one may have stopped the shared server
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.ping()
    try:
        yield client
    finally:
        client.close()


def run(
    url: str,
    client: redis.Redis,
    body: Callable[[RedisChannelLayer], Coroutine[Any, Any, None]],
    refused: bool,
) -> None:
    """Run ``body`` on a fresh layer; when refused, check that Redis saw nothing at all."""
    client.flushall()
    before = int(client.info("stats")["total_commands_processed"])

    async def main() -> None:
        async with RedisChannelLayer(hosts=[url], capacity=10) as layer:
            if not refused:
                await body(layer)
                return
            with pytest.raises((TypeError, ValueError)):
                await body(layer)

    asyncio.run(main())
    if refused:
        after = int(client.info("stats")["total_commands_processed"])
        assert after - before == 1, "a refused call still sent commands to Redis"
        assert client.dbsize() == 0


def fits_msgpack(value: Any) -> bool:
    """Whether msgpack can encode ``value``: ints in 64 bits, text without lone surrogates."""
    if isinstance(value, dict):
        return all(fits_msgpack(key) and fits_msgpack(item) for key, item in value.items())
    if isinstance(value, list):
        return all(fits_msgpack(item) for item in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -(2**63) <= value < 2**64
    if isinstance(value, str):
        return not any("\ud800" <= char <= "\udfff" for char in value)
    return True


@HYPOTHESIS
@given(message=messages, local=st.booleans())
def test_message_round_trips_or_is_refused_before_redis(
    redis_server: RedisServer, server_client: redis.Redis, message: dict[str, Any], local: bool
) -> None:
    async def body(layer: RedisChannelLayer) -> None:
        channel = await layer.new_channel() if local else "hypothesis.messages"
        await layer.send(channel, message)
        got = await asyncio.wait_for(layer.receive(channel), RECEIVE_TIMEOUT_S)
        assert canonical(got) == canonical(message)

    refused = not fits_msgpack(message)
    event("refused before Redis" if refused else "round trip")
    run(redis_server.url, server_client, body, refused=refused)


def valid(pattern: re.Pattern[str], name: str) -> bool:
    """Whether ``name`` follows ``pattern`` and the 99-character limit."""
    return len(name) <= 99 and pattern.fullmatch(name) is not None


@HYPOTHESIS
@given(channel=channel_names, group=group_names, via_group=st.booleans())
def test_names_round_trip_or_are_refused_before_redis(
    redis_server: RedisServer,
    server_client: redis.Redis,
    channel: str,
    group: str,
    via_group: bool,
) -> None:
    message = {"type": "hypothesis.name", "channel": channel}

    async def body(layer: RedisChannelLayer) -> None:
        if via_group:
            await layer.group_add(group, channel)
            await layer.group_send(group, message)
        else:
            await layer.send(channel, message)
        got = await asyncio.wait_for(layer.receive(channel), RECEIVE_TIMEOUT_S)
        assert got == message

    ok = valid(VALID_CHANNEL, channel) and (not via_group or valid(VALID_GROUP, group))
    event("refused before Redis" if not ok else "round trip")
    run(redis_server.url, server_client, body, refused=not ok)


def test_tuple_dict_key_is_refused_before_redis(
    redis_server: RedisServer, server_client: redis.Redis
) -> None:
    """msgpack packs a tuple key as an array, which cannot be a key again: refused at send."""
    message = {"type": "tuple.key", "k": {(1, 2): "value"}}

    async def body(layer: RedisChannelLayer) -> None:
        await layer.send("hypothesis.tuple", message)

    run(redis_server.url, server_client, body, refused=True)
