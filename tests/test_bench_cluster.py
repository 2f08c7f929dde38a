"""benchmarks/bench_cluster.py at tiny sizes, so the cluster benchmark cannot rot.

No timing is asserted: only that every row is measured, and the counts the targets are about
(round-trip phases, scripts per call), which do not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from benchmarks import bench_cluster
from benchmarks.bench_cluster import CLUSTER, SINGLE, Sizes, traced, traced_round_trips
from tests.cluster import RedisClusterServers

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
TINY = Sizes(
    messages=40,
    channels=4,
    named_members=30,
    named_calls=3,
    clients=2,
    channels_per_client=5,
    local_calls=2,
    traced_calls=2,
    reps=1,
)


def test_every_row_is_measured_and_the_counts_hold(redis_url: str, cluster_urls: list[str]) -> None:
    results = bench_cluster.run_on(redis_url, cluster_urls, TINY)
    assert results.failures == []
    for key, _, _ in bench_cluster.ROWS:
        for target in (SINGLE, CLUSTER):
            value = results.median(key, target)
            assert not math.isnan(value), (key, target)
    # One server: two scripts (named members, clients' entries), one round trip per group_send.
    for workload in ("named", "local"):
        assert results.median(f"{workload}_evalsha", SINGLE) == 2
        assert results.median(f"{workload}_phases", SINGLE) == 1
    # The cluster: the directory, then the scripts (two per tag holding members).
    assert results.median("named_smembers", CLUSTER) == 1
    assert results.median("named_phases", CLUSTER) == 2
    assert results.median("local_phases", CLUSTER) == 2
    assert 2 <= results.median("local_evalsha", CLUSTER) <= 2 * TINY.clients
    assert len(results.queues[CLUSTER]) == TINY.clients
    report = "\n".join(bench_cluster.report(results, TINY, ["tiny run"]))
    assert "| group_send 30 named on the cluster in <= 2 round-trip phases | **MET** |" in report
    local_line = next(line for line in report.splitlines() if " 10 local: per tag" in line)
    assert "clients' entries, not one per member | **MET** |" in local_line


def test_the_command_starts_its_servers_and_prints_the_table(
    redis_cluster: RedisClusterServers,  # only so that a machine without Redis skips
) -> None:
    command = [sys.executable, "benchmarks/bench_cluster.py", "--quick"]
    command += ["--clients", "2", "--channels-per-client", "3", "--named-members", "10"]
    done = subprocess.run(
        [*command, "--messages", "40"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("| workload | unit | single server | 3-primary") for line in lines)
    for row in (
        "send+receive, 10 named channels",
        "group_send 10 named",
        "group_send 6 local (2 clients)",
    ):
        line = next(line for line in lines if line.startswith(f"| {row}"))
        assert "n/a" not in line, line
    assert "FAILED" not in done.stdout


def test_sizes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_cluster.parse_args(["--clients", "0"])
    assert stopped.value.code == 2
    assert "--clients must be at least 1" in capsys.readouterr().err


async def test_phases_count_round_trips_that_wait_for_another(redis_url: str) -> None:
    """Two PINGs in a row are two phases; two at once are one, however many round trips."""
    client = aioredis.Redis.from_url(redis_url)

    async def in_a_row() -> None:
        await client.ping()
        await client.ping()

    async def at_once() -> None:
        await asyncio.gather(client.ping(), client.ping())

    try:
        await at_once()  # two connections open before anything is counted
        with traced_round_trips():
            sequential = await traced(in_a_row)
            concurrent = await traced(at_once)
            untraced_ping = await client.ping()
    finally:
        await client.aclose()
    assert (sequential.round_trips, sequential.phases) == (2, 2)
    assert (concurrent.round_trips, concurrent.phases) == (2, 1)
    assert untraced_ping
