"""The side task that writes pending work to Redis (hand-backs, count releases)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from asgi_redis import sidetask
from asgi_redis.sidetask import SideTask


async def test_stop_cuts_a_write_that_never_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A step stuck without bound (no reply, no error) no longer holds close() forever."""
    monkeypatch.setattr(sidetask, "STOP_TIMEOUT_S", 0.2, raising=False)
    started = asyncio.Event()

    async def stuck_step() -> bool:
        started.set()
        await asyncio.Event().wait()  # never set
        return False

    task = SideTask("write something", stuck_step)
    task.start()
    await asyncio.wait_for(started.wait(), 5)
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(task.stop(), 5)
    assert "Could not write something: a write under way did not end within" in caplog.text


async def test_stop_waits_for_a_write_that_ends() -> None:
    """A step under way is never cut while it ends within the bound (it may have run)."""
    finished = []

    async def slow_step() -> bool:
        await asyncio.sleep(0.1)
        finished.append(True)
        return False

    task = SideTask("write something", slow_step)
    task.start()
    await asyncio.sleep(0.01)
    await task.stop()
    assert finished == [True]
