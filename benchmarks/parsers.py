"""hiredis or not: the same workloads in two subprocesses, one with redis-py's pure-Python
reply parser forced, the other with hiredis (when it is installed).

Run alone (``python benchmarks/parsers.py --url redis://...``) or from ``bench.py``, which
adds the table to RESULTS.md. Each variant is its own process because redis-py chooses its
parser once, at import; both layers and the raw floors share the variant's parser.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if importlib.util.find_spec("asgi_redis") is None:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asgi_redis.cli import bench, bench_baselines, bench_groups
from asgi_redis.cli import main as cli
from asgi_redis.cli.bench import OURS, THEIRS, Sizes, Workload

HERE = Path(__file__).resolve().parent
HIDE_HIREDIS = HERE / "no_hiredis"
VARIANTS = ("hiredis", "pure Python")
COLUMNS = (OURS, THEIRS, bench_baselines.RAW)
GROUP_MEMBERS = 1000
CHILD_TIMEOUT_S = 900


def workloads(sizes: Sizes) -> list[Workload]:
    """send_receive, ping_pong and group_send to 1,000 members, with the raw floors."""
    named_calls = dict(sizes.group_calls).get(GROUP_MEMBERS, 30)
    local_calls = dict(sizes.local_group_calls).get(GROUP_MEMBERS, 20)
    return [
        bench.send_receive(sizes),
        bench_baselines.raw_pair(sizes),
        bench.ping_pong(sizes),
        bench_baselines.raw_ping_pong(sizes),
        bench_groups.group_send_named(GROUP_MEMBERS, named_calls),
        bench_groups.group_send_local(GROUP_MEMBERS, local_calls),
    ]


def parser_name() -> str:
    """The reply parser redis-py's asyncio clients use in this process."""
    from redis.asyncio.connection import DefaultParser

    return DefaultParser.__name__


def measure(url: str, sizes: Sizes, reps: int) -> dict[str, object]:
    """Run the workloads here; medians per metric and column, and the parser used."""
    chosen = workloads(sizes)
    progress = cli.Progress(cli.steps(chosen, reps))
    results = asyncio.run(cli.run_workloads(chosen, cli.layer_specs(url, True), reps, progress))
    medians = {
        key: {column: results.median(key, column) for column in COLUMNS}
        for key in cli.metric_keys(chosen)
    }
    return {"parser": parser_name(), "medians": medians, "errors": [str(e) for e in results.errors]}


def run_variant(url: str, variant: str, quick: bool, reps: int) -> dict[str, object]:
    """One variant in a subprocess; its JSON report."""
    env = dict(os.environ)
    if variant == "pure Python":
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(HIDE_HIREDIS), env.get("PYTHONPATH")])
        )
    command = [sys.executable, __file__, "--url", url, "--reps", str(reps), "--json"]
    done = subprocess.run(
        [*command, *(["--quick"] if quick else [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        return {"parser": "failed", "medians": {}, "errors": [done.stderr.strip()[-500:]]}
    report: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return report


def section(url: str, quick: bool, reps: int) -> list[str]:
    """Both variants; a markdown section with one row per metric and column."""
    reports = {variant: run_variant(url, variant, quick, reps) for variant in VARIANTS}
    parsers = ", ".join(f"{v}: `{reports[v]['parser']}`" for v in VARIANTS)
    lines = [
        "## hiredis",
        "",
        f"Same workloads, one subprocess per parser ({parsers}); medians of {reps} repetition(s).",
        "",
        "| workload | unit | layer | hiredis | pure Python | hiredis gain |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    first: dict[str, dict[str, float]] = reports[VARIANTS[0]]["medians"]  # type: ignore[assignment]
    second: dict[str, dict[str, float]] = reports[VARIANTS[1]]["medians"]  # type: ignore[assignment]
    for key in [k for k in first or second if not k.startswith("group_bytes")]:
        label, unit, higher = cli.describe(key)
        for column in COLUMNS:
            with_hiredis = first.get(key, {}).get(column, math.nan)
            without = second.get(key, {}).get(column, math.nan)
            if math.isnan(with_hiredis) and math.isnan(without):
                continue
            gain = cli.ratio(with_hiredis, without, higher)
            cells = [cli.fmt(with_hiredis, unit), cli.fmt(without, unit), cli.fmt(gain)]
            lines.append(f"| {label} | {unit} | {column} | " + " | ".join(cells) + " |")
    lines += ["", "hiredis gain > 1: faster with hiredis (a rate ratio, or the inverse for ms)."]
    for variant in VARIANTS:
        lines += [f"- {variant} run failed: {error}" for error in reports[variant]["errors"]]  # type: ignore[attr-defined]
    print("\n".join(lines))
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", help="Redis server (default: start a private redis-server)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--json", action="store_true", help="measure here, print JSON (child)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: both variants side by side, or one variant as JSON with ``--json``."""
    args = parse_args(argv)
    sizes = cli.SHORT if args.quick else Sizes()
    if args.json:
        print(json.dumps(measure(args.url, sizes, args.reps)))
        return
    if args.url:
        section(args.url, args.quick, args.reps)
        return
    with cli.private_redis_server() as url:
        section(url, args.quick, args.reps)


if __name__ == "__main__":
    main()
