"""The hot-path rows under uvloop (the loop uvicorn uses when installed), beside the default.

``bench.py`` calls :func:`section` after its main table: it runs send_receive, ping_pong,
their raw floors and the trickle once more with uvloop's event loop, and returns a markdown
table of both loops' asgi_redis and channels_redis medians (the default-loop values come from
the main run). Without uvloop installed it says so and measures nothing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Sequence

from asgi_redis.cli import bench, bench_baselines, bench_scale
from asgi_redis.cli import main as cli
from asgi_redis.cli.bench import OURS, THEIRS, Sizes, Workload
from asgi_redis.cli.bench_baselines import RAW
from asgi_redis.cli.main import Results


def workloads(sizes: Sizes) -> list[Workload]:
    """The rows issue 19 asks to see under uvloop too."""
    return [
        bench.send_receive(sizes),
        bench_baselines.raw_pair(sizes),
        bench.ping_pong(sizes),
        bench_baselines.raw_ping_pong(sizes),
        bench_baselines.ping_pong_interleaved(sizes),
        *(bench_scale.trickle(count) for count in sizes.trickle_channels),
    ]


def run_with_uvloop(url: str, items: Sequence[Workload], reps: int) -> Results:
    """``items`` on a uvloop event loop (``asyncio.run`` with uvloop's policy)."""
    import uvloop  # optional: only the bench extra installs it

    progress = cli.Progress(cli.steps(items, reps))
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(cli.run_workloads(items, cli.layer_specs(url, True), reps, progress))
    finally:
        asyncio.set_event_loop_policy(None)


def _value(results: Results, key: str, column: str) -> float:
    """A median, from the raw column for the floors."""
    raw = results.median(key, RAW)
    return raw if not math.isnan(raw) else results.median(key, column)


def section(url: str, sizes: Sizes, reps: int, default: Results) -> list[str]:
    """Markdown lines: each row under the default loop (from ``default``) and under uvloop."""
    if importlib.util.find_spec("uvloop") is None:
        return ["## Event loops", "", "uvloop is not installed: nothing measured."]
    items = workloads(sizes)
    results = run_with_uvloop(url, items, reps)
    lines = [
        "## Event loops",
        "",
        "| workload | unit | asyncio: asgi_redis | asyncio: channels_redis "
        "| uvloop: asgi_redis | uvloop: channels_redis | uvloop ratio |",
        "|" + " --- |" * 7,
    ]
    for key in cli.metric_keys(items):
        label, unit, higher = cli.describe(key)
        cells = [
            _value(default, key, OURS),
            _value(default, key, THEIRS),
            _value(results, key, OURS),
            _value(results, key, THEIRS),
        ]
        ratio = cli.ratio(cells[2], cells[3], higher)
        text = " | ".join(cli.fmt(cell, unit) for cell in cells)
        lines.append(f"| {label} | {unit} | {text} | {cli.fmt(ratio)} |")
    lines += ["", "Raw rows show the floor (no layer) in both columns of a loop."]
    print("\n".join(lines))
    for error in results.errors:
        print(f"FAILED {error}")
    return lines
