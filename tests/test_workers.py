"""Several worker processes on one channel: every message once, none twice (guarantee 1)."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from tests.layer_helpers import collect, make_layer, worker_main

WORKERS = 3
MESSAGES = 1000
CHANNEL = "work.queue"
# Bounds against a hung worker; spawning three interpreters on two cores takes a few seconds.
START_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 60.0


async def test_three_worker_processes_share_one_channel(redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=worker_main, args=(redis_url, CHANNEL, number, results))
        for number in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    try:
        collect(results, "ready", WORKERS, START_TIMEOUT_S)
        async with make_layer(redis_url, capacity=MESSAGES + WORKERS) as layer:
            for index in range(MESSAGES):
                await layer.send(CHANNEL, {"type": "job", "id": index})
            # FIFO: each worker meets one stop after the jobs, then stops receiving.
            for _ in range(WORKERS):
                await layer.send(CHANNEL, {"type": "stop"})
        received = collect(results, "done", WORKERS, FINISH_TIMEOUT_S)
        for worker in workers:
            worker.join(FINISH_TIMEOUT_S)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
        results.close()

    counts = Counter(job for jobs in received.values() for job in jobs)
    duplicates = sorted(job for job, seen in counts.items() if seen > 1)
    missing = sorted(set(range(MESSAGES)) - set(counts))
    assert duplicates == []
    assert missing == []
    assert sum(len(jobs) for jobs in received.values()) == MESSAGES
    busy = [number for number, jobs in received.items() if jobs]
    assert len(busy) > 1, {number: len(jobs) for number, jobs in received.items()}
    # Each worker saw its own share in sending order (FIFO per sender).
    for jobs in received.values():
        assert jobs == sorted(jobs)
