"""Bad input fails before anything reaches Redis (DESIGN.md guarantee 9), also under -O."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from asgi_redis import RedisChannelLayer
from tests.layer_helpers import keyspace, make_layer, receive_within, sync_client

REPO_ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "redis://127.0.0.1:1"

BAD_NAMES: list[object] = [
    "caf\u00e9",
    "has space",
    "a" * 100,
    "chan\n",
    "tab\there",
    "colon:name",
    "",
    "\u0661\u0662",  # Arabic-Indic digits: Unicode-aware \d would accept them
    123,
    None,
    b"bytes.name",
    ["list"],
]
BAD_CHANNELS: list[object] = [*BAD_NAMES, "a!b!c", "x!caf\u00e9", "x!\n", "nothing.after!"]
BAD_GROUPS: list[object] = [*BAD_NAMES, "a!b", "x!"]
GOOD = {"type": "ok"}

Call = Callable[[RedisChannelLayer], Awaitable[Any]]


def channel_calls(name: Any) -> dict[str, Call]:
    """Every API call that takes ``name`` as a channel."""
    return {
        "send": lambda layer: layer.send(name, GOOD),
        "receive": lambda layer: layer.receive(name),
        "receive_many": lambda layer: layer.receive_many(["fine", name]),
        "group_add": lambda layer: layer.group_add("group", name),
        "group_discard": lambda layer: layer.group_discard("group", name),
    }


def group_calls(name: Any) -> dict[str, Call]:
    """Every API call that takes ``name`` as a group."""
    return {
        "group_add": lambda layer: layer.group_add(name, "fine"),
        "group_discard": lambda layer: layer.group_discard(name, "fine"),
        "group_send": lambda layer: layer.group_send(name, GOOD),
    }


async def assert_rejected_without_redis(url: str, calls: dict[str, Call], value: object) -> None:
    """Each call raises TypeError naming ``value``; Redis sees no command and no write."""
    async with make_layer(url) as layer:
        await layer.send("queued", {"type": "already.there"})
        before = keyspace(url)
        with sync_client(url) as client:
            client.config_resetstat()
            for call_name, call in calls.items():
                with pytest.raises(TypeError) as caught:
                    await call(layer)
                assert repr(value) in str(caught.value), call_name
            stats = client.info("commandstats")
        assert keyspace(url) == before
        # Only the statistics calls of this check reached the server.
        assert set(stats) <= {"cmdstat_config|resetstat", "cmdstat_dump", "cmdstat_scan"}
        assert await receive_within(layer, "queued") == {"type": "already.there"}


@pytest.mark.parametrize("name", BAD_CHANNELS, ids=repr)
async def test_invalid_channel_names_raise_type_error(redis_url: str, name: object) -> None:
    await assert_rejected_without_redis(redis_url, channel_calls(name), name)


@pytest.mark.parametrize("name", BAD_GROUPS, ids=repr)
async def test_invalid_group_names_raise_type_error(redis_url: str, name: object) -> None:
    await assert_rejected_without_redis(redis_url, group_calls(name), name)


@pytest.mark.parametrize("prefix", ["caf\u00e9.", "a b", "a!", "", 5, "a" * 99], ids=repr)
async def test_invalid_new_channel_prefix_raises(prefix: object) -> None:
    async with RedisChannelLayer(hosts=[UNREACHABLE]) as layer:
        with pytest.raises(TypeError) as caught:
            await layer.new_channel(prefix)  # type: ignore[arg-type]
    assert repr(prefix) in str(caught.value)


async def test_longest_valid_names_are_accepted(layer_hosts: list[Any]) -> None:
    channel, group = "c" * 99, "g" * 99
    local_named = "p" * 90 + "!" + "s" * 8
    async with make_layer(layer_hosts) as layer:
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "long"})
        await layer.send(local_named, {"type": "bang"})
        assert await receive_within(layer, channel) == {"type": "long"}
        assert await receive_within(layer, local_named) == {"type": "bang"}


async def test_receive_many_needs_a_list_of_channels() -> None:
    async with RedisChannelLayer(hosts=[UNREACHABLE]) as layer:
        for bad in ("single.channel", []):
            with pytest.raises(TypeError) as caught:
                await layer.receive_many(bad)  # type: ignore[arg-type]
            assert repr(bad) in str(caught.value)


# -- messages --------------------------------------------------------------------------------


NOT_DICTS: list[object] = [["type", "x"], "text", None, b"bytes", 42, ("type", "x")]
UNSERIALIZABLE: list[dict[str, Any]] = [
    {"type": "x", "thing": object()},
    {"type": "x", "set": {1, 2}},
    {"type": "x", "deep": {"list": [1, {"inner": object()}]}},
    {"type": "x", "huge": 2**70},
    {"type": "x", "function": len},
]


async def assert_message_rejected(url: str, message: object) -> None:
    """send and group_send raise TypeError; queues and groups are left exactly as they were."""
    async with make_layer(url) as layer:
        local = await layer.new_channel()
        await layer.send("queued", {"type": "first"})
        await layer.send(local, {"type": "first.local"})
        await layer.group_add("members", "queued")
        await layer.group_add("members", local)
        before = keyspace(url)
        with sync_client(url) as client:
            client.config_resetstat()
            for channel in ("queued", local, "empty.channel"):
                with pytest.raises(TypeError):
                    await layer.send(channel, message)  # type: ignore[arg-type]
            for group in ("members", "no.group"):
                with pytest.raises(TypeError):
                    await layer.group_send(group, message)  # type: ignore[arg-type]
            stats = client.info("commandstats")
        assert keyspace(url) == before
        assert set(stats) <= {"cmdstat_config|resetstat", "cmdstat_dump", "cmdstat_scan"}
        assert await receive_within(layer, "queued") == {"type": "first"}
        assert await receive_within(layer, local) == {"type": "first.local"}


@pytest.mark.parametrize("message", NOT_DICTS, ids=repr)
async def test_non_dict_message_raises_type_error(redis_url: str, message: object) -> None:
    await assert_message_rejected(redis_url, message)


@pytest.mark.parametrize(
    "message", UNSERIALIZABLE, ids=["object", "set", "nested-object", "huge-int", "function"]
)
async def test_unserializable_message_raises_before_writing(
    redis_url: str, message: dict[str, Any]
) -> None:
    await assert_message_rejected(redis_url, message)


# -- options ---------------------------------------------------------------------------------


def test_unknown_option_is_named() -> None:
    with pytest.raises(TypeError) as caught:
        RedisChannelLayer(hosts=[UNREACHABLE], capcity=5)
    assert "capcity" in str(caught.value)
    with pytest.raises(TypeError) as caught:
        RedisChannelLayer(hosts=[UNREACHABLE], expiry=5, group_expriy=3, capacity=2)
    assert "group_expriy" in str(caught.value)


BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"capacity": 0}, ValueError, "capacity"),
    ({"capacity": -3}, ValueError, "capacity"),
    ({"capacity": True}, TypeError, "capacity"),
    ({"capacity": "10"}, TypeError, "capacity"),
    ({"capacity": 2.5}, TypeError, "capacity"),
    ({"expiry": "x"}, TypeError, "expiry"),
    ({"expiry": 0}, ValueError, "expiry"),
    ({"expiry": False}, TypeError, "expiry"),
    ({"group_expiry": None}, TypeError, "group_expiry"),
    ({"group_expiry": -1}, ValueError, "group_expiry"),
    ({"channel_capacity": {1: 2}}, TypeError, "channel_capacity"),
    ({"channel_capacity": {"a.*": 0}}, ValueError, "channel_capacity"),
    ({"channel_capacity": {"a.*": True}}, TypeError, "channel_capacity"),
    ({"channel_capacity": {"a.*": "5"}}, TypeError, "channel_capacity"),
    ({"channel_capacity": [("a.*", 5)]}, TypeError, "channel_capacity"),
    ({"prefix": 5}, TypeError, "prefix"),
    ({"prefix": "has space"}, ValueError, "prefix"),
    ({"prefix": "app{x}"}, ValueError, "prefix"),  # keys carry a hash tag after the prefix
    ({"prefix": "app}"}, ValueError, "prefix"),
    ({"hosts": [object()]}, TypeError, "host"),
    ({"hosts": ["localhost:6379"]}, ValueError, "host"),
    ({"hosts": []}, TypeError, "hosts"),
    ({"heartbeat": 0}, ValueError, "heartbeat"),
    ({"heartbeat": -1.5}, ValueError, "heartbeat"),
    ({"heartbeat": float("nan")}, ValueError, "heartbeat"),
    ({"heartbeat": float("inf")}, ValueError, "heartbeat"),
    ({"heartbeat": "5"}, TypeError, "heartbeat"),
    ({"heartbeat": None}, TypeError, "heartbeat"),
    ({"heartbeat": True}, TypeError, "heartbeat"),
]


@pytest.mark.parametrize(
    ("options", "error", "named"), BAD_OPTIONS, ids=[repr(case[0]) for case in BAD_OPTIONS]
)
def test_bad_option_values_raise(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    options = {"hosts": [UNREACHABLE], **options}
    with pytest.raises(error) as caught:
        RedisChannelLayer(**options)
    assert named in str(caught.value)


@pytest.mark.parametrize(("heartbeat", "expected_s"), [(None, 5.0), (2, 2.0), (0.25, 0.25)])
def test_heartbeat_is_kept_in_seconds(heartbeat: float | None, expected_s: float) -> None:
    options = {} if heartbeat is None else {"heartbeat": heartbeat}
    layer = RedisChannelLayer(hosts=[UNREACHABLE], **options)
    assert layer.heartbeat == layer.config.heartbeat_s == expected_s
    assert isinstance(layer.heartbeat, float)


def test_host_forms_are_accepted() -> None:
    for hosts in (
        [UNREACHABLE],
        [("127.0.0.1", 1)],
        [{"address": UNREACHABLE, "socket_connect_timeout": 1}],
        None,
    ):
        RedisChannelLayer(hosts=hosts)


# -- python -O -------------------------------------------------------------------------------


OPTIMIZED_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    from asgi_redis import RedisChannelLayer

    if not sys.flags.optimize:
        sys.exit("not running under -O")
    failures = []

    def expect(error, what, call):
        try:
            call()
        except error:
            return
        except Exception as exc:
            failures.append(f"{what}: {exc!r}")
            return
        failures.append(f"{what}: nothing raised")

    url = "redis://127.0.0.1:1"
    expect(TypeError, "unknown option", lambda: RedisChannelLayer(hosts=[url], capcity=1))
    expect(ValueError, "capacity=0", lambda: RedisChannelLayer(hosts=[url], capacity=0))
    expect(TypeError, "expiry='x'", lambda: RedisChannelLayer(hosts=[url], expiry="x"))
    expect(TypeError, "capacity=True", lambda: RedisChannelLayer(hosts=[url], capacity=True))
    expect(
        TypeError,
        "channel_capacity={1: 2}",
        lambda: RedisChannelLayer(hosts=[url], channel_capacity={1: 2}),
    )

    async def names():
        layer = RedisChannelLayer(hosts=[url])
        calls = {
            "send é": lambda: layer.send("caf\\u00e9", {"type": "x"}),
            "send space": lambda: layer.send("a b", {"type": "x"}),
            "send 100 chars": lambda: layer.send("a" * 100, {"type": "x"}),
            "send two !": lambda: layer.send("a!b!c", {"type": "x"}),
            "send newline": lambda: layer.send("chan\\n", {"type": "x"}),
            "send int": lambda: layer.send(5, {"type": "x"}),
            "receive é": lambda: layer.receive("caf\\u00e9"),
            "group_add bad group": lambda: layer.group_add("a!b", "ok"),
            "group_send newline": lambda: layer.group_send("g\\n", {"type": "x"}),
            "send non-dict": lambda: layer.send("ok", ["x"]),
            "send object()": lambda: layer.send("ok", {"x": object()}),
            "group_send set": lambda: layer.group_send("ok", {"x": {1}}),
        }
        for what, call in calls.items():
            try:
                await asyncio.wait_for(call(), 5)
            except TypeError:
                continue
            except Exception as exc:
                failures.append(f"{what}: {exc!r}")
                continue
            failures.append(f"{what}: nothing raised")
        await layer.close()

    asyncio.run(names())
    if failures:
        sys.exit("\\n".join(failures))
    print("all rejected under -O")
    """
)


def test_validation_survives_python_dash_o() -> None:
    result = subprocess.run(
        [sys.executable, "-O", "-c", OPTIMIZED_SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "all rejected under -O" in result.stdout
