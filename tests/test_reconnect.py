"""A restart of redis-server: pending receives survive it, sends while it is down fail fast."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer, commands
from tests.layer_helpers import blocked_clients, make_layer, receive_within, wait_until
from tests.servers import RedisServer, free_port

# Bounds that stop a broken test from hanging; a healthy run needs far less.
FAIL_FAST_S = 10.0
RECOVER_S = 30.0


@pytest.mark.parametrize("kind", ["named", "local"])
async def test_pending_receive_survives_a_server_restart(
    private_redis: RedisServer, kind: str
) -> None:
    url = private_redis.url
    async with make_layer(url) as layer:
        channel = "survivor" if kind == "named" else await layer.new_channel()
        pending = asyncio.create_task(layer.receive(channel))
        await wait_until(lambda: blocked_clients(url) == 1)
        private_redis.stop()
        await asyncio.sleep(1.0)  # the reader sees the connection fail, maybe several times
        assert not pending.done()
        private_redis.start()
        async with make_layer(url) as sender:
            await sender.send(channel, {"type": "after.restart"})
        # The same receive call, not a new one, gets the message.
        assert await asyncio.wait_for(pending, RECOVER_S) == {"type": "after.restart"}
        await layer.send(channel, {"type": "again"})
        assert await receive_within(layer, channel) == {"type": "again"}


async def test_operations_while_down_raise_connection_error_quickly(
    private_redis: RedisServer,
) -> None:
    url = private_redis.url
    async with make_layer(url) as layer:
        await layer.send("warm", {"type": "connects first"})
        assert await receive_within(layer, "warm") == {"type": "connects first"}
        local = await layer.new_channel()
        private_redis.stop()
        calls = {
            "send": lambda: layer.send("down", {"type": "lost"}),
            "send local": lambda: layer.send(local, {"type": "lost"}),
            "group_add": lambda: layer.group_add("g", "down"),
            "group_discard": lambda: layer.group_discard("g", "down"),
            "group_send": lambda: layer.group_send("g", {"type": "lost"}),
            "flush": layer.flush,
        }
        for name, call in calls.items():
            try:
                await asyncio.wait_for(call(), FAIL_FAST_S)
            except redis.exceptions.ConnectionError:
                continue
            except Exception as exc:
                pytest.fail(f"{name} raised {exc!r}, not redis.exceptions.ConnectionError")
            pytest.fail(f"{name} raised nothing while the server was down")
        private_redis.start()
        # The same layer reconnects by itself once the server is back (empty after restart).
        await layer.send("down", {"type": "back"})
        await layer.group_add("g", local)
        await layer.group_send("g", {"type": "group.back"})
        assert await receive_within(layer, "down") == {"type": "back"}
        assert await receive_within(layer, local) == {"type": "group.back"}


async def test_send_to_a_server_that_never_ran_raises_connection_error() -> None:
    async with make_layer(f"redis://127.0.0.1:{free_port()}") as layer:
        with pytest.raises(redis.exceptions.ConnectionError):
            await asyncio.wait_for(layer.send("nowhere", {"type": "x"}), FAIL_FAST_S)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ConnectionError("simulated outage"),
        # Not transient: the side task must retry it too, not die with it.
        redis.exceptions.ResponseError("OOM command not allowed (simulated)"),
    ],
    ids=["outage", "refused"],
)
async def test_count_releases_are_retried_after_a_failed_call(
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: redis.exceptions.RedisError,
) -> None:
    """A delivered message stops counting against capacity even if Redis blinked just then."""
    real_release = commands.release
    failures = [error]

    async def flaky_release(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real_release(*args, **kwargs)

    monkeypatch.setattr(commands, "release", flaky_release)
    async with RedisChannelLayer(hosts=[redis_url], capacity=1) as layer:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "first"})
        assert await asyncio.wait_for(layer.receive(channel), 5) == {"type": "first"}
        for _ in range(50):  # the retry comes after a short backoff
            if (await layer.channel_statistics(channel))["counted"] == 0:
                break
            await asyncio.sleep(0.05)
        assert not failures, "the release call never failed: the test did not test anything"
        await layer.send(channel, {"type": "second"})  # capacity 1: room again
    assert "retrying" in caplog.text


async def test_receive_from_a_server_that_never_ran_fails_naming_it() -> None:
    """A typo in ``hosts`` is an error, not an endless retry that looks like a hang."""
    port = free_port()
    async with make_layer(f"redis://127.0.0.1:{port}") as layer:
        with pytest.raises(redis.exceptions.ConnectionError, match=f"127.0.0.1:{port}"):
            await asyncio.wait_for(layer.receive("nowhere"), FAIL_FAST_S)
