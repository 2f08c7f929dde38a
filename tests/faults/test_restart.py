"""Scenarios 3 and 6: redis-server restarts under one layer instance that is never rebuilt.

3. With ``appendonly yes`` and ``appendfsync always`` (SIGTERM, same port): every
   acknowledged message, queued before the restart, is received afterwards by the same layer.
6. Without persistence (data and the script cache gone): the layer loads its scripts again
   (EVALSHA answers NOSCRIPT, the layer sends the text with EVAL) and carries on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.conftest import start_server
from tests.faults.helpers import Tally, record
from tests.layer_helpers import make_layer, receive_within, sync_client
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

QUEUED = 200
FAILURES = (redis.exceptions.RedisError, OSError)


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A redis-server that writes every command to its append-only file before replying."""
    server = start_server("--appendonly", "yes", "--appendfsync", "always")
    try:
        yield server
    finally:
        server.close()


async def _warm_up(layer: RedisChannelLayer, channels: list[str]) -> None:
    """One send and receive per channel: scripts cached, connections pooled, readers run."""
    for channel in channels:
        await layer.send(channel, {"type": "warm"})
        assert await receive_within(layer, channel) == {"type": "warm"}


async def _send_counted(
    layer: RedisChannelLayer, channel: str, first_id: int, count: int, tally: Tally
) -> tuple[list[int], list[int]]:
    """Send ``count`` numbered messages; returns (acknowledged ids, failed ids)."""
    acked: list[int] = []
    failed: list[int] = []
    errors = tally.extra.setdefault("errors", [])
    assert isinstance(errors, list)
    for number in range(first_id, first_id + count):
        try:
            await layer.send(channel, {"type": "job", "id": number})
        except FAILURES as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            failed.append(number)
        else:
            acked.append(number)
    return acked, failed


async def test_restart_with_aof_keeps_every_acknowledged_message(aof_redis: RedisServer) -> None:
    tally = Tally("restart with appendfsync always", "lost = 0, duplicates = 0")
    async with make_layer(aof_redis.url, capacity=10_000) as layer:
        local = await layer.new_channel()
        channels = ["faults.aof.jobs", local]
        await _warm_up(layer, channels)
        acked: list[int] = []
        failed: list[int] = []
        for index, channel in enumerate(channels):
            sent = await _send_counted(layer, channel, index * QUEUED, QUEUED, tally)
            acked += sent[0]
            failed += sent[1]
        aof_redis.stop()  # SIGTERM
        aof_redis.start()
        seen: list[int] = []
        for channel in channels:
            for _ in range(QUEUED):
                seen.append((await receive_within(layer, channel))["id"])
        with sync_client(aof_redis.url) as client:
            tally.extra["left_in_redis"] = sum(
                client.llen(key)
                for key in client.scan_iter(count=1000)
                if client.type(key) == b"list"
            )
    tally.count(acked, failed, seen)
    record(tally)
    assert tally.failed == 0
    assert tally.lost == 0
    assert tally.duplicates == 0
    assert tally.extra["left_in_redis"] == 0


async def test_restart_without_persistence_reloads_scripts(private_redis: RedisServer) -> None:
    tally = Tally("restart without persistence", "sends and receives work after it, no new layer")
    async with make_layer(private_redis.url) as layer:
        local = await layer.new_channel()
        channels = ["faults.restart.jobs", local]
        await _warm_up(layer, channels)
        private_redis.stop()
        private_redis.start()  # empty: no data, no cached scripts
        with sync_client(private_redis.url) as client:
            assert not any(client.script_exists(*_shas()))
        acked: list[int] = []
        failed: list[int] = []
        seen: list[int] = []
        for index, channel in enumerate(channels):
            ok, bad = await _send_counted(layer, channel, index * 10, 10, tally)
            acked += ok
            failed += bad
            seen += [(await receive_within(layer, channel))["id"] for _ in ok]
        await layer.group_add("faults.restart.room", local)
        await layer.group_send("faults.restart.room", {"type": "job", "id": 99})
        seen.append((await receive_within(layer, local))["id"])
        acked.append(99)
        with sync_client(private_redis.url) as client:
            tally.extra["send_script_cached_again"] = client.script_exists(_shas()[0])[0]
    tally.count(acked, failed, seen)
    record(tally)
    assert tally.failed == 0, tally.extra.get("errors")
    assert tally.lost == 0 and tally.duplicates == 0


async def test_script_cache_and_data_flushed_under_a_running_layer(redis_url: str) -> None:
    """The same without a restart: NOSCRIPT on a live connection, then EVAL once."""
    async with make_layer(redis_url) as layer:
        local = await layer.new_channel()
        await _warm_up(layer, ["faults.flush.jobs", local])
        with sync_client(redis_url) as client:
            client.flushall()
            client.script_flush()
        for channel in ["faults.flush.jobs", local]:
            await layer.send(channel, {"type": "after.flush"})
            assert await receive_within(layer, channel) == {"type": "after.flush"}
        with sync_client(redis_url) as client:
            assert client.script_exists(_shas()[0]) == [True]


def _shas() -> list[str]:
    """SHA1 of the scripts the layer uses on the send and receive path."""
    from asgi_redis import scripts

    return [scripts.SCRIPTS[name].sha for name in ("send", "receive")]
