"""Scenario 5: the path between layer and Redis stalls for 10 s, then resumes.

The layer talks to Redis through `StallProxy` with ``socket_timeout`` 7 s. Bounds: the receive
waiting when the stall begins survives it and gets the messages sent afterwards; sends in the
window fail with a Redis timeout or connection error (raised by the socket timeout, not by the
test's guard); traffic resumes; no message is delivered twice.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.faults.helpers import Tally, record
from tests.faults.proxy import StallProxy
from tests.layer_helpers import blocked_clients, receive_within, wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

CHANNEL = "faults.stall.jobs"
STALL_S = 10.0
SOCKET_TIMEOUT_S = 7
WINDOW_SENDS = 2
AFTER_SENDS = 20
GUARD_S = SOCKET_TIMEOUT_S + 8  # only stops a hang; the send must fail by itself before it
LATE_WAIT_S = 2.0  # how long to look for late or repeated messages at the end


async def _send_in_window(layer: RedisChannelLayer, number: int) -> tuple[str, float]:
    """One send during the stall; returns (what it raised, seconds until it raised)."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(layer.send(CHANNEL, {"type": "job", "id": number}), GUARD_S)
    except asyncio.TimeoutError:
        return "hung until the test's guard", time.monotonic() - started
    except (redis.exceptions.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}", time.monotonic() - started
    return "succeeded", time.monotonic() - started


async def _drain(layer: RedisChannelLayer, first: int, want: set[int]) -> list[int]:
    """Receive until every id in ``want`` came, then look a little longer for extras."""
    seen = [first]
    while not want <= set(seen):
        seen.append((await receive_within(layer, CHANNEL))["id"])
    while True:
        try:
            seen.append((await asyncio.wait_for(layer.receive(CHANNEL), LATE_WAIT_S))["id"])
        except asyncio.TimeoutError:
            return seen


async def test_stall_between_layer_and_redis(private_redis: RedisServer) -> None:
    tally = Tally("10 s stall, socket_timeout 7", "waiting receive survives, duplicates = 0")
    proxy = await StallProxy(private_redis.port).start()
    host = {"address": proxy.url, "socket_timeout": SOCKET_TIMEOUT_S}
    layer = RedisChannelLayer(hosts=[host], capacity=1000)
    try:
        # Warm up: scripts cached, a reader, and pooled connections for the window's sends, so
        # their commands reach the proxy (and may run late) instead of stalling in a handshake.
        await asyncio.gather(
            *(layer.send(CHANNEL, {"type": "job", "id": -1 - n}) for n in range(WINDOW_SENDS))
        )
        for _ in range(WINDOW_SENDS):
            assert (await receive_within(layer, CHANNEL))["id"] < 0
        pending = asyncio.create_task(layer.receive(CHANNEL))
        await wait_until(lambda: blocked_clients(private_redis.url) == 1)
        proxy.stall()
        sleeper = asyncio.create_task(asyncio.sleep(STALL_S))
        outcomes = await asyncio.gather(
            *(_send_in_window(layer, 1000 + n) for n in range(WINDOW_SENDS))
        )
        await sleeper
        proxy.resume()
        assert not pending.done(), "the waiting receive ended during the stall"
        acked = []
        for number in range(AFTER_SENDS):
            await layer.send(CHANNEL, {"type": "job", "id": number})
            acked.append(number)
        first = (await asyncio.wait_for(pending, GUARD_S))["id"]
        seen = await _drain(layer, first, set(acked))
    finally:
        await layer.close()
        await proxy.close()
    tally.count(acked, [1000 + n for n in range(WINDOW_SENDS)], seen)
    tally.extra.update(
        window_errors=sorted({text for text, _ in outcomes}),
        window_fail_s=[round(seconds, 1) for _, seconds in outcomes],
        proxy_connections=proxy.connections,
    )
    record(tally)
    for text, _ in outcomes:
        assert text.startswith(("TimeoutError", "ConnectionError")), text
    assert tally.duplicates == 0
    assert tally.lost == 0
