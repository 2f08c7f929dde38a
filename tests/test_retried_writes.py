"""Every write the layer retries is idempotent (DESIGN.md guarantee 14).

Each test lets the script run and then loses its reply (the wrapped command raises a
connection error after the real one returned), so the layer retries a write that already ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from asgi_redis import ChannelFull, commands, keys
from asgi_redis import layer as layer_module
from tests.layer_helpers import make_layer, receive_within, sync_client, wait_until

CAPACITY = 3


def lose_first_replies(monkeypatch: pytest.MonkeyPatch, name: str, count: int = 1) -> list[int]:
    """Make ``commands.<name>`` run, then raise as if the reply was lost, ``count`` times.

    Returns a one-item list counting the calls that ran.
    """
    real: Callable[..., Awaitable[Any]] = getattr(commands, name)
    ran = [0]

    async def reply_lost(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        ran[0] += 1
        if ran[0] <= count:
            raise redis.exceptions.ConnectionError("simulated: connection lost before the reply")
        return result

    monkeypatch.setattr(commands, name, reply_lost)
    return ran


def lose_first_script_replies(
    monkeypatch: pytest.MonkeyPatch, script: str, count: int = 1
) -> list[int]:
    """As ``lose_first_replies`` for a script the layer runs through ``run_batched`` with a
    call from ``commands.<script>_call`` (send, group_add, group_discard)."""
    real = layer_module.run_batched
    ran = [0]

    async def reply_lost(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        result = await real(client, name, keys, args)
        if name == script:
            ran[0] += 1
            if ran[0] <= count:
                raise redis.exceptions.ConnectionError(
                    "simulated: connection lost before the reply"
                )
        return result

    monkeypatch.setattr(layer_module, "run_batched", reply_lost)
    return ran


async def test_a_count_release_whose_reply_was_lost_never_raises_capacity(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: capacity 3, a release retried after its lost reply admitted a 4th."""
    ran = lose_first_replies(monkeypatch, "release")
    async with make_layer(redis_url, capacity=CAPACITY) as layer:
        channel = await layer.new_channel()
        for index in range(CAPACITY):
            await layer.send(channel, {"type": "m", "i": index})
        assert await receive_within(layer, channel, 5) == {"type": "m", "i": 0}
        await wait_until(lambda: ran[0] >= 2)  # ran, reply lost, retried (and found done)
        counts_key = keys.counts_key("asgi:", channel)
        suffix = keys.split_channel(channel)[1]
        with sync_client(redis_url) as plain:
            assert plain.hget(counts_key, suffix) == b"2"
        await layer.send(channel, {"type": "m", "i": CAPACITY})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "m", "i": CAPACITY + 1})


async def test_a_heartbeat_whose_reply_was_lost_is_simply_written_again(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A liveness mark is a SET with a lifetime: writing it twice is writing it once."""
    ran = lose_first_replies(monkeypatch, "heartbeat")
    async with make_layer(redis_url, heartbeat=0.2) as layer:
        channel = await layer.new_channel()
        await wait_until(lambda: ran[0] >= 2)
        with sync_client(redis_url) as plain:
            assert plain.exists(keys.heartbeat_key("asgi:", channel)) == 1


async def test_a_rejoin_whose_group_add_reply_was_lost_is_retried_to_one_membership(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rejoin after a process was judged dead re-runs its group_adds at the next beat
    when one failed: a group_add that ran twice leaves one membership with its first time."""
    async with make_layer(redis_url, heartbeat=0.2) as layer:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        head, suffix = keys.split_channel(channel)
        member_key = keys.local_members_key("asgi:", "room", head)
        with sync_client(redis_url) as plain:
            score = plain.zscore(member_key, suffix)
            await asyncio.sleep(0.5)  # a few beats: the mark is this process's own
            ran = lose_first_script_replies(monkeypatch, "group_add")
            plain.set(keys.heartbeat_key("asgi:", head), "dead")  # as a group_send leaves it
            await wait_until(lambda: layer.counters.rejoins == 1)
            assert ran[0] == 2  # ran, reply lost; ran again at the next beat
            assert plain.zrange(member_key, 0, -1, withscores=True) == [(suffix.encode(), score)]
