"""Errors from Redis name the operation and the server, keep redis-py's class, hide passwords.

Issue 8 point 5, on a real redis-server each: down, read-only, out of memory, and an ACL
user without EVALSHA. Bounds only stop a broken test from hanging; nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import ChannelFull, RedisChannelLayer
from asgi_redis.errors import RedisOutOfMemoryError
from tests.layer_helpers import make_layer, receive_within, sync_client
from tests.servers import RedisServer, free_port

FAIL_FAST_S = 10.0
SECRET = "not-a-real-secret"

Call = Callable[[], Awaitable[Any]]


def calls(layer: RedisChannelLayer) -> dict[str, tuple[Call, str]]:
    """Each public call that reaches Redis, with the words its error must contain."""
    return {
        "send": (lambda: layer.send("jobs", {"type": "x"}), "send to channel 'jobs'"),
        "group_add": (lambda: layer.group_add("room", "jobs"), "group_add of 'jobs' to 'room'"),
        "group_discard": (
            lambda: layer.group_discard("room", "jobs"),
            "group_discard of 'jobs' from 'room'",
        ),
        "group_send": (lambda: layer.group_send("room", {"type": "x"}), "group_send to group"),
        "flush": (layer.flush, "flush of prefix"),
        "channel_statistics": (
            lambda: layer.channel_statistics("jobs"),
            "channel_statistics of 'jobs'",
        ),
        "global_statistics": (layer.global_statistics, "global_statistics"),
    }


async def expect_error(
    layer: RedisChannelLayer, name: str, error: type[Exception], *words: str
) -> Exception:
    """Run call ``name``; it must raise ``error`` naming the call, the server and ``words``."""
    call, operation = calls(layer)[name]
    with pytest.raises(error) as caught:
        await asyncio.wait_for(call(), FAIL_FAST_S)
    message = str(caught.value)
    for word in (operation, layer._servers.labels[0], *words):
        assert word in message, f"{name}: {word!r} not in {message!r}"
    assert SECRET not in message
    assert isinstance(caught.value.__cause__, redis.exceptions.RedisError)
    assert isinstance(caught.value, type(caught.value.__cause__))
    return caught.value


async def test_server_down_names_operation_and_server(private_redis: RedisServer) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{private_redis.port}"
    private_redis.stop()
    async with make_layer(url) as layer:
        for name in calls(layer):
            await expect_error(layer, name, redis.exceptions.ConnectionError, "cannot reach")


async def test_never_started_server_fails_fast() -> None:
    async with make_layer(f"redis://127.0.0.1:{free_port()}") as layer:
        await expect_error(layer, "send", redis.exceptions.ConnectionError)


async def test_out_of_memory_is_said_plainly_and_passes(private_redis: RedisServer) -> None:
    url = private_redis.url
    async with make_layer(url) as layer:
        await layer.send("jobs", {"type": "before"})
        with sync_client(url) as admin:
            admin.set("ballast", b"x" * 2_000_000)
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", used - 500_000)
            for name in ("send", "group_add"):
                error = await expect_error(layer, name, RedisOutOfMemoryError, "out of memory")
                assert isinstance(error, redis.exceptions.OutOfMemoryError)
                assert not isinstance(error, ChannelFull)
            # Receivers keep draining while writes are refused.
            assert await receive_within(layer, "jobs") == {"type": "before"}
            admin.delete("ballast")
        await layer.send("jobs", {"type": "after"})
        assert await receive_within(layer, "jobs") == {"type": "after"}


async def test_read_only_replica_names_operation_and_server(private_redis: RedisServer) -> None:
    url = private_redis.url
    async with make_layer(url) as layer:
        await layer.group_add("room", "jobs")
        with sync_client(url) as admin:
            admin.replicaof("127.0.0.1", free_port())  # a master that never answers
            try:
                for name in ("send", "group_add", "group_discard", "group_send"):
                    await expect_error(layer, name, redis.exceptions.ReadOnlyError, "read-only")
            finally:
                admin.replicaof("NO", "ONE")
        await layer.send("jobs", {"type": "writable again"})


async def test_acl_refusal_names_operation_and_server(private_redis: RedisServer) -> None:
    with sync_client(private_redis.url) as admin:
        admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=[f"+{SECRET}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-evalsha", "-eval"],
        )
    url = f"redis://limited:{SECRET}@127.0.0.1:{private_redis.port}"
    async with RedisChannelLayer(hosts=[url]) as layer:
        for name in ("send", "group_add", "group_discard", "group_send", "channel_statistics"):
            await expect_error(layer, name, redis.exceptions.NoPermissionError, "ACL")


async def test_errors_name_the_server_of_the_failing_shard(
    redis_url: str, private_redis: RedisServer
) -> None:
    private_redis.stop()
    async with RedisChannelLayer(hosts=[redis_url, private_redis.url]) as layer:
        dead = layer._servers.labels[1]
        with pytest.raises(redis.exceptions.ConnectionError, match=dead.replace(".", r"\.")):
            await asyncio.wait_for(layer.group_send("room", {"type": "x"}), FAIL_FAST_S)
        with pytest.raises(redis.exceptions.ConnectionError, match="global_statistics"):
            await asyncio.wait_for(layer.global_statistics(), FAIL_FAST_S)
