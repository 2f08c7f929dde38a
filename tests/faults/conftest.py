"""Fixtures of the fault scenarios: worker processes that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.helpers import Worker

Spawn = Callable[..., Worker]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``tests.faults.worker`` processes; every one is stopped (or killed) at the end."""
    started: list[Worker] = []

    def start(url: str, name: str, mode: str, *args: str) -> Worker:
        worker = Worker(url, tmp_path, name, mode, *args)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop(timeout_s=10.0)
