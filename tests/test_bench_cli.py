"""The ``asgi-redis`` command: bench at tiny sizes, options, progress and failures.

No timing is asserted: only what is printed and the exit codes.
"""

from __future__ import annotations

import importlib.metadata
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from asgi_redis import __version__
from asgi_redis.cli import bench, bench_baselines, bench_scale, bench_sync, main
from asgi_redis.cli.bench import (
    OURS,
    THEIRS,
    THEIRS_PUBSUB,
    LayerSpec,
    Metrics,
    Sizes,
    Workload,
)

pytestmark = pytest.mark.timeout(60)


def test_bench_command_prints_the_table(redis_url: str) -> None:
    """The command runs every short workload against the given server and exits 0."""
    command = [sys.executable, "-m", "asgi_redis", "bench", "--hosts", redis_url]
    done = subprocess.run(
        [*command, "--scale", "0.01"], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    assert "asgi_redis" in header
    for row in (
        "send_receive named",
        "raw: RPUSH + BLPOP task (send_receive floor)",
        "ping_pong p50",
        "raw: RPUSH/BLPOP ping_pong p50",
        "group_send 1,000 named",
        "many_channels, default settings",
        "many_channels, channels_redis PubSub layer",
        "many waiting channels, N=",
        "client memory per waiting receive, ",
        "sync: async_to_sync(group_send), 10 named",
        "sync, 8 threads: send",
        "raw: async_to_sync(no-op) + 1 sync command",
    ):
        assert any(line.startswith(row) for line in lines), done.stdout
    # The floors and asgi_redis's new rows are numbers, not n/a.
    for row in ("raw: RPUSH + BLPOP", "raw: RPUSH/BLPOP ping_pong p99", "many waiting channels"):
        line = next(line for line in lines if line.startswith(row))
        assert "n/a" not in line.split()[-4], line
    # 20 queued messages cannot be measured: no (negative) number and no ratio for it.
    memory = next(line for line in lines if line.startswith("Redis memory per queued message"))
    assert memory.split()[-4:] == ["n/a"] * 4, memory
    assert "Memory per message is n/a" in done.stdout
    # stderr is a pipe: one plain line per step, no carriage returns.
    assert "\r" not in done.stderr
    assert done.stderr.splitlines()[-1].endswith("done"), done.stderr


def test_bench_help_lists_the_options() -> None:
    """``asgi-redis bench --help`` documents --hosts and --scale."""
    done = subprocess.run(
        [sys.executable, "-m", "asgi_redis.cli.main", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--hosts" in done.stdout
    assert "--scale" in done.stdout
    assert "A short benchmark" in done.stdout  # a description, not only the usage line


def test_python_m_asgi_redis_prints_the_version() -> None:
    """``python -m asgi_redis`` is the ``asgi-redis`` command, and it has ``--version``."""
    done = subprocess.run(
        [sys.executable, "-m", "asgi_redis", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == f"asgi-redis {__version__}"


@pytest.mark.parametrize(
    ("option", "value"), [("--scale", "0"), ("--scale", "-1"), ("--reps", "0")]
)
def test_bench_rejects_counts_that_are_not_positive(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main.parse_args(["bench", option, value])
    assert stopped.value.code == 2
    assert f"argument {option}: must be" in capsys.readouterr().err


def test_progress_prints_one_plain_line_per_step_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = main.Progress(3, stream)
    for label in ("first", "second", "third"):
        progress.show(label)
        progress.done += 1
    progress.finish()
    assert stream.getvalue().splitlines() == [
        "[  1/3] first",
        "[  2/3] second",
        "[  3/3] third",
        "[  3/3] done",
    ]


async def test_memory_per_message_is_nan_below_the_minimum(redis_url: str) -> None:
    """Too few queued messages give NaN (n/a), never a noisy or negative number."""
    spec = LayerSpec(OURS, OURS, redis_url, "benchmem:")
    sizes = Sizes(memory_messages=bench.MIN_MEMORY_MESSAGES // 10)
    metrics = await bench.memory_per_message(sizes).run(spec)
    assert math.isnan(metrics["memory_per_message"])


async def test_memory_per_message_counts_the_layers_keys_only(redis_url: str) -> None:
    """Measured from the layer's own keys: other keys and client buffers do not move it."""
    spec = LayerSpec(OURS, OURS, redis_url, "benchmem:")
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set("other:big", b"x" * 100_000)
        assert await bench.keys_memory(client, "benchmem:") == 0
        sizes = Sizes(memory_messages=bench.MIN_MEMORY_MESSAGES)
        bytes_per_message = (await bench.memory_per_message(sizes).run(spec))["memory_per_message"]
        # The 100-byte payload plus the entry's header and the list's overhead.
        assert 100 < bytes_per_message < 1000, bytes_per_message
    finally:
        await client.aclose()


def test_no_ratio_of_unmeasurable_values() -> None:
    assert math.isnan(main.ratio(-1726.0, 300.0, higher_is_better=False))
    assert math.isnan(main.ratio(math.nan, 300.0, higher_is_better=False))
    assert main.ratio(100.0, 300.0, higher_is_better=False) == 3.0


def failing_workload(failing_kind: str) -> Workload:
    """A workload whose runs of ``failing_kind`` raise the incumbent's known error."""

    async def run(spec: LayerSpec) -> Metrics:
        if spec.kind == failing_kind:
            raise ConnectionError("Too many connections")
        return {"fake_rate": 1.0}

    return Workload("fake", run, ("fake_rate",))


def run_bench_with(
    workload: Workload, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run ``asgi-redis bench`` in-process with ``workload`` only; (exit code, stdout)."""
    monkeypatch.setattr(main, "short_workloads", lambda sizes: [workload])
    monkeypatch.setattr(main, "theirs_installed", lambda: True)
    code = main.main(["bench", "--hosts", "redis://127.0.0.1:1"])
    return code, capsys.readouterr().out


def test_the_incumbents_failure_reads_as_its_own(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_bench_with(failing_workload(THEIRS), monkeypatch, capsys)
    assert code == 0, output
    assert "channels_redis failed (not asgi_redis) in fake" in output, output
    assert "Too many connections" in output
    assert "FAILED" not in output


def test_exits_non_zero_when_one_of_our_workloads_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run_bench_with(failing_workload(OURS), monkeypatch, capsys)
    assert code == 1, output
    assert "FAILED fake / asgi_redis (repetition 1): ConnectionError: Too many connections" in (
        output
    )


def test_console_scripts_point_at_the_cli() -> None:
    """``asgi-redis`` and ``asgi-redis-demo`` are installed commands, as the README says."""
    scripts = {
        entry.name: entry.value
        for entry in importlib.metadata.distribution("asgi-redis-lua").entry_points
        if entry.group == "console_scripts"
    }
    assert scripts["asgi-redis"] == "asgi_redis.cli.main:main"
    assert scripts["asgi-redis-demo"] == "asgi_redis.cli.demo:main"


async def test_raw_floors_measure_a_pair_and_a_ping_pong(redis_url: str) -> None:
    spec = LayerSpec(bench_baselines.RAW, OURS, redis_url, bench.RAW_PREFIX)
    sizes = Sizes(messages=20, round_trips=10)
    pair = await bench_baselines.raw_pair(sizes).run(spec)
    assert pair["raw_pair"] > 0
    ping = await bench_baselines.raw_ping_pong(sizes).run(spec)
    assert 0 < ping["raw_ping_pong_p50"] <= ping["raw_ping_pong_p99"]
    client = aioredis.Redis.from_url(redis_url)
    try:  # every popped entry was consumed: nothing is left behind
        assert await client.keys(f"{bench.RAW_PREFIX}*") == []
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", [OURS, THEIRS])
async def test_interleaved_ping_pong_reports_the_layer_against_its_floor(
    redis_url: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list[str] = []
    real_layer, real_raw = bench_baselines.layer_round_trips, bench_baselines.raw_round_trips

    async def layer_chunk(*args: object) -> None:
        chunks.append("layer")
        await real_layer(*args)  # type: ignore[arg-type]

    async def raw_chunk(*args: object) -> None:
        chunks.append("raw")
        await real_raw(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_baselines, "layer_round_trips", layer_chunk)
    monkeypatch.setattr(bench_baselines, "raw_round_trips", raw_chunk)
    monkeypatch.setattr(bench_baselines, "INTERLEAVED_CHUNK", 5)
    spec = LayerSpec(kind, kind, redis_url, "benchpair:")
    metrics = await bench_baselines.ping_pong_interleaved(Sizes(round_trips=20)).run(spec)
    assert metrics["ping_pong_floor_x"] > 0
    # a warm-up of each, then four chunks of each, alternating which goes first
    assert len(chunks) == 10
    warm_up, *measured = [chunks[:2], *(chunks[i : i + 2] for i in range(2, 10, 2))]
    assert warm_up == ["layer", "raw"]
    assert measured == [["layer", "raw"], ["raw", "layer"], ["layer", "raw"], ["raw", "layer"]]
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.keys(f"{bench.RAW_PREFIX}*") == []
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", [OURS, THEIRS_PUBSUB])
async def test_many_waiting_delivers_one_message_to_each_channel(redis_url: str, kind: str) -> None:
    spec = LayerSpec(kind, kind, redis_url, "benchwait:")
    metrics = await bench_scale.many_waiting(30).run(spec)
    assert metrics["many_waiting_30"] > 0


@pytest.mark.parametrize("kind", [OURS, THEIRS])
async def test_sync_rows_call_through_async_to_sync_from_threads(redis_url: str, kind: str) -> None:
    spec = LayerSpec(kind, kind, redis_url, "benchsync:")
    metrics = await bench_sync.sync_calls(Sizes(sync_calls=5)).run(spec)
    assert sorted(metrics) == sorted(bench_sync.KEYS)
    assert all(value > 0 for value in metrics.values())


async def test_sync_floor_is_measured_for_one_and_eight_threads(redis_url: str) -> None:
    spec = LayerSpec(bench_baselines.RAW, OURS, redis_url, bench.RAW_PREFIX)
    metrics = await bench_sync.sync_floor(Sizes(sync_calls=5)).run(spec)
    assert metrics["raw_sync_floor"] > 0 and metrics["raw_sync_floor_x8"] > 0


@pytest.mark.parametrize("kind", [OURS, THEIRS])
async def test_trickle_delivers_one_message_to_each_waiting_channel(
    redis_url: str, kind: str
) -> None:
    spec = LayerSpec(kind, kind, redis_url, "benchtrickle:")
    metrics = await bench_scale.trickle(30).run(spec)
    assert metrics["trickle_30"] > 0


def test_the_uvloop_section_puts_both_loops_side_by_side(redis_url: str) -> None:
    pytest.importorskip("uvloop")  # the bench extra installs it; the layer never needs it
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        import loops  # benchmarks/ is not a package
    finally:
        sys.path.remove(str(folder))
    sizes = Sizes(messages=20, round_trips=10, trickle_channels=(5, 10))
    lines = loops.section(redis_url, sizes, 1, main.Results())
    rows = [line for line in lines if line.startswith("| ") and "unit" not in line][1:]
    # send_receive x2, raw pair, ping_pong x2, raw ping_pong x2, interleaved ping_pong, trickle x2
    assert len(rows) == 10
    assert all(line.count("|") == 8 for line in rows)
    assert "n/a" not in "".join(row.split("|")[5] for row in rows)  # uvloop: asgi_redis


async def test_client_memory_is_measured_per_waiting_receive(redis_url: str) -> None:
    spec = LayerSpec(OURS, OURS, redis_url, "benchidle:")
    metrics = await bench_scale.client_memory(50).run(spec)
    assert metrics["client_memory_50"] > 0


def test_the_pubsub_row_is_compared_with_our_many_channels() -> None:
    results = main.Results()
    results.add(OURS, {"many_channels": 600.0})
    results.add(THEIRS_PUBSUB, {"many_channels_pubsub": 200.0})
    (row,) = main.table_rows(results, ["many_channels_pubsub"])
    assert row == [
        "many_channels, channels_redis PubSub layer",
        "msgs/s",
        "600",
        "200",
        "3.00",
        "3.00",
    ]


def test_a_pubsub_failure_is_the_incumbents() -> None:
    failure = main.RunFailure("many channels", THEIRS_PUBSUB, THEIRS_PUBSUB, 1, "timed out")
    assert failure.incumbent


def test_the_no_hiredis_folder_forces_the_pure_python_parser() -> None:
    """benchmarks/parsers.py's pure-Python variant: hiredis hidden, whether installed or not."""
    folder = Path(__file__).resolve().parent.parent / "benchmarks" / "no_hiredis"
    code = "from redis.asyncio.connection import DefaultParser; print(DefaultParser.__name__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # redis-py's pure-Python parsers (RESP3 is the default from redis-py 8 on), not hiredis's.
    assert done.stdout.strip() in {"_AsyncRESP2Parser", "_AsyncRESP3Parser"}
