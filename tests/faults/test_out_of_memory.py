"""Scenario 4: ``maxmemory`` reached with ``noeviction``.

A send then raises an error that says Redis is out of memory (never ``ChannelFull``) and
leaves nothing behind (no entry, no count); receivers keep draining; sends work again once
the drained messages have freed the memory.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.exceptions

from asgi_redis import ChannelFull, RedisChannelLayer, keys
from tests.faults.helpers import Tally, record
from tests.layer_helpers import make_layer, receive_within, sync_client
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

CHANNEL = "faults.oom.fill"
ROOM = "faults.oom.room"
PAYLOAD = b"x" * 8192
HEADROOM_BYTES = 1024 * 1024
MAX_FILL_SENDS = 2000  # 8 KB each: far more than 1 MB of headroom


def _limit_memory(client: redis.Redis) -> None:
    """Allow 1 MB more than Redis uses now, and refuse writes past it."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", str(used + HEADROOM_BYTES))


def _footprint(client: redis.Redis, prefix: str, channels: list[str]) -> list[object]:
    """Queue lengths and count hashes of ``channels``: what a half-written send would change."""
    found: list[object] = []
    for channel in channels:
        found.append(client.llen(keys.queue_key(prefix, channel)))
        found.append(client.hgetall(keys.counts_key(prefix, channel)))
    return found


async def test_out_of_memory_refuses_cleanly_and_recovers(private_redis: RedisServer) -> None:
    tally = Tally("maxmemory with noeviction", "refused sends raise OOM, write nothing; lost = 0")
    errors: list[str] = []
    async with make_layer(private_redis.url, capacity=100_000) as layer:
        local = await layer.new_channel()
        await layer.send(local, {"type": "warm"})  # the local channel has a queue and a count
        await layer.group_add(ROOM, local)
        acked: list[int] = []
        refused: list[int] = []
        with sync_client(private_redis.url) as client:
            _limit_memory(client)
            for number in range(MAX_FILL_SENDS):
                try:
                    await layer.send(CHANNEL, {"type": "job", "id": number, "pad": PAYLOAD})
                except ChannelFull:
                    pytest.fail("send raised ChannelFull for a server out of memory")
                except redis.exceptions.RedisError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    refused.append(number)
                    break
                acked.append(number)
            assert refused, f"Redis never ran out of memory after {len(acked)} sends"
            before = _footprint(client, layer.prefix, [CHANNEL, local])
            for channel, number in [(CHANNEL, -1), (local, -2), (local, -3)]:
                with pytest.raises(redis.exceptions.OutOfMemoryError) as caught:
                    await layer.send(channel, {"type": "job", "id": number, "pad": PAYLOAD})
                errors.append(f"{caught.type.__name__}: {caught.value}")
                refused.append(number)
            assert _footprint(client, layer.prefix, [CHANNEL, local]) == before
            tally.extra["group_send_when_full"] = await _try_group_send(layer)
            assert _is_oom_text(tally.extra["group_send_when_full"])
            assert _footprint(client, layer.prefix, [CHANNEL, local]) == before
            # Receivers keep draining: popping needs no memory.
            seen = [(await receive_within(layer, CHANNEL))["id"] for _ in acked]
            assert await receive_within(layer, local) == {"type": "warm"}
            tally.extra["used_after_drain"] = int(client.info("memory")["used_memory"])
            await layer.send(CHANNEL, {"type": "job", "id": MAX_FILL_SENDS})
            acked.append(MAX_FILL_SENDS)
            seen.append((await receive_within(layer, CHANNEL))["id"])
            await layer.send(local, {"type": "after"})
            assert await receive_within(layer, local) == {"type": "after"}
            client.config_set("maxmemory", "0")
    tally.count(acked, refused, seen)
    tally.extra["first_error"] = errors[0]
    record(tally)
    assert all(_is_oom_text(error) for error in errors), errors
    assert all(private_redis.url.split("//")[1] in error for error in errors), errors
    assert tally.lost == 0 and tally.duplicates == 0 and tally.late == 0


def _is_oom_text(error: str) -> bool:
    """Whether a recorded error says plainly that Redis is out of memory.

    The layer re-raises redis-py's ``OutOfMemoryError`` as its subclass
    ``RedisOutOfMemoryError``, naming the operation and the server.
    """
    return error.startswith("RedisOutOfMemoryError: ") and "Redis is out of memory" in error


async def _try_group_send(layer: RedisChannelLayer) -> str:
    """What group_send does when Redis is full: the error text, or "ok" if it wrote."""
    try:
        await asyncio.wait_for(layer.group_send(ROOM, {"type": "g"}), 10)
    except redis.exceptions.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"
