"""The ``asgi-redis`` command (also ``python -m asgi_redis``).

``asgi-redis inspect`` shows what the layer holds in Redis (see ``cli/inspect.py``).

``asgi-redis bench`` is a short benchmark of asgi_redis against channels_redis. It runs
against ``--hosts`` or a private ``redis-server`` started on a free port, shows its progress,
and prints a table of medians and ratios. channels_redis is optional: when it is not installed
asgi_redis is measured alone. ``benchmarks/bench.py`` runs the full version with the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TextIO

from asgi_redis import __version__

from . import (
    bench,
    bench_baselines,
    bench_broadcast,
    bench_groups,
    bench_scale,
    bench_sync,
    inspect,
)
from .args import positive_float, positive_int
from .bench import OURS, THEIRS, THEIRS_PUBSUB, LayerSpec, Sizes, Workload
from .server import private_redis_server

RUN_TIMEOUT_S = 180.0
PREFIXES = {OURS: "benchar:", THEIRS: "benchcr:", THEIRS_PUBSUB: "benchcp:"}
COLUMNS = (OURS, THEIRS)
SHORT = Sizes(
    messages=1000,
    round_trips=300,
    group_calls=((10, 300), (1000, 30)),
    local_group_calls=((1000, 20),),
    broadcast_shapes=((4, 250, 20), (2, 2500, 10)),
    many_channels=1000,
    many_messages=2,
    waiting_channels=(100, 1000),
    trickle_channels=(100, 1000),
    waiting_receives=1000,
    memory_messages=2000,
)
# Rows whose layer column is compared with asgi_redis's value of another metric: the PubSub
# layer runs the many_channels workload under its own key.
COMPARED_WITH = {"many_channels_pubsub": "many_channels"}


@dataclass(frozen=True)
class RunFailure:
    """One run that raised or timed out: which layer, which workload, and why."""

    workload: str
    layer: str
    kind: str
    repetition: int
    detail: str

    @property
    def incumbent(self) -> bool:
        """Whether channels_redis failed (its known limits are not our failures)."""
        return self.kind in (THEIRS, THEIRS_PUBSUB)

    def __str__(self) -> str:
        return f"{self.workload} / {self.layer} (repetition {self.repetition}): {self.detail}"


@dataclass
class Results:
    """metric -> layer -> one value per repetition (NaN when that run failed)."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: list[RunFailure] = field(default_factory=list)

    def add(self, layer: str, metrics: dict[str, float]) -> None:
        """Record one run's metrics for ``layer``."""
        for key, value in metrics.items():
            self.values.setdefault(key, {}).setdefault(layer, []).append(value)

    def median(self, key: str, layer: str) -> float:
        """Median of the finite values (NaN when there are none)."""
        finite = [v for v in self.values.get(key, {}).get(layer, []) if not math.isnan(v)]
        return statistics.median(finite) if finite else math.nan


# --------------------------------------------------------------------------- running


def theirs_installed() -> bool:
    """Whether channels_redis can be imported (it is only needed for the comparison)."""
    return importlib.util.find_spec("channels_redis") is not None


def layer_specs(url: str, with_theirs: bool) -> dict[str, LayerSpec]:
    """The specs to compare (same options, own prefixes) plus the raw baseline's."""
    specs = {
        name: LayerSpec(name, name, url, PREFIXES[name], (("expiry", 60),))
        for name in COLUMNS
        if name == OURS or with_theirs
    }
    if with_theirs:  # default settings: it only runs many_channels
        specs[THEIRS_PUBSUB] = LayerSpec(THEIRS_PUBSUB, THEIRS_PUBSUB, url, PREFIXES[THEIRS_PUBSUB])
    specs[bench_baselines.RAW] = LayerSpec(bench_baselines.RAW, OURS, url, bench.RAW_PREFIX)
    return specs


class Progress:
    """Progress of the runs: a bar redrawn in place on a terminal, one line per step otherwise.

    Piped or redirected output gets plain lines, since carriage returns would put every
    redraw of the bar on one line of a log file.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = max(total, 1), 0, width
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()

    def show(self, label: str) -> None:
        """Report ``label`` as the step that is running now."""
        if not self.interactive:
            self.stream.write(f"[{self.done + 1:>3}/{self.total}] {label}\n")
            self.stream.flush()
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done:>3}/{self.total} {label[:50]:<50}")
        self.stream.flush()

    def finish(self) -> None:
        """Complete the bar and end its line (a last plain line when not on a terminal)."""
        self.done = self.total
        if not self.interactive:
            self.stream.write(f"[{self.total:>3}/{self.total}] done\n")
            self.stream.flush()
            return
        self.show("done")
        self.stream.write("\n")


async def run_one(
    workload: Workload, spec: LayerSpec, column: str, results: Results, rep: int
) -> None:
    """Run ``workload`` once for ``spec``; a failure is recorded as NaN plus its error."""
    try:
        metrics = await asyncio.wait_for(workload.run(spec), RUN_TIMEOUT_S)
    except Exception as exc:  # one broken run must not hide the other results
        detail = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        results.errors.append(RunFailure(workload.name, spec.name, spec.kind, rep + 1, detail))
        metrics = dict.fromkeys(workload.keys, math.nan)
    results.add(column, metrics)


async def run_workloads(
    workloads: Sequence[Workload], specs: dict[str, LayerSpec], reps: int, progress: Progress
) -> Results:
    """Every workload ``reps`` times, alternating which layer goes first in each repetition."""
    results = Results()
    for rep in range(reps):
        for workload in workloads:
            order = list(workload.layers) if rep % 2 == 0 else list(reversed(workload.layers))
            for column in order:
                progress.show(f"rep {rep + 1}/{reps} {workload.name} {column}")
                spec = specs.get(column)
                if spec is None:
                    results.add(column, dict.fromkeys(workload.keys, math.nan))
                else:
                    spec = replace(spec, host_options=workload.host_options or spec.host_options)
                    await run_one(workload, spec, column, results, rep)
                progress.done += 1
    progress.finish()
    return results


def steps(workloads: Sequence[Workload], reps: int) -> int:
    """How many runs ``run_workloads`` will make (for the progress bar)."""
    return reps * sum(len(workload.layers) for workload in workloads)


# --------------------------------------------------------------------------- output


def describe(key: str) -> tuple[str, str, bool]:
    """(label, unit, higher_is_better) of a metric key."""
    kind, _, size = key.rpartition("_")
    if kind == "group_send_named":
        return f"group_send {int(size):,} named", "calls/s", True
    if kind == "group_send_local":
        return f"group_send {int(size):,} local (other process)", "calls/s", True
    if kind == "broadcast":
        processes, _, members = size.partition("x")
        return f"broadcast {processes} processes x {int(members):,}", "deliveries/s", True
    if kind == "broadcast_cpu":
        processes, _, members = size.partition("x")
        label = f"Redis CPU per delivery, broadcast {processes} x {int(members):,}"
        return label, "µs", False
    if kind == "group_bytes":
        return f"bytes sent per group_send {int(size):,}", "B", False
    if kind == "raw_script":
        return f"raw: 1 script, {int(size):,} keys", "calls/s", True
    if kind == "many_waiting":
        return f"many waiting channels, N={int(size):,}", "msgs/s", True
    if kind == "trickle":
        return f"trickle: 1 send at a time to N waiting, N={int(size):,}", "msgs/s", True
    if kind == "client_memory":
        return f"client memory per waiting receive, {int(size):,}", "B", False
    fixed = {
        "send_receive_named": ("send_receive named", "msgs/s", True),
        "send_receive_local": ("send_receive process-local", "msgs/s", True),
        "raw_rpush": ("raw: RPUSH loop, 1 round trip each", "msgs/s", True),
        "raw_pipelined": ("raw: RPUSH, pipelines of 100", "msgs/s", True),
        "raw_pair": ("raw: RPUSH + BLPOP task (send_receive floor)", "msgs/s", True),
        "raw_ping_pong_p50": ("raw: RPUSH/BLPOP ping_pong p50", "ms", False),
        "raw_ping_pong_p99": ("raw: RPUSH/BLPOP ping_pong p99", "ms", False),
        "ping_pong_p50": ("ping_pong p50", "ms", False),
        "ping_pong_p99": ("ping_pong p99", "ms", False),
        "ping_pong_floor_x": ("ping_pong p50 / raw floor, chunks interleaved", "x", False),
        "many_channels": ("many_channels, default settings", "msgs/s", True),
        "many_channels_pool": ("many_channels, larger pool", "msgs/s", True),
        "many_channels_pubsub": ("many_channels, channels_redis PubSub layer", "msgs/s", True),
        "memory_per_message": ("Redis memory per queued message", "B", False),
        "sync_group_send_10": ("sync: async_to_sync(group_send), 10 named", "calls/s", True),
        "sync_send": ("sync: async_to_sync(send)", "calls/s", True),
        "sync_group_send_10_x8": ("sync, 8 threads: group_send, 10 named", "calls/s", True),
        "sync_send_x8": ("sync, 8 threads: send", "calls/s", True),
        "raw_sync_floor": ("raw: async_to_sync(no-op) + 1 sync command", "calls/s", True),
        "raw_sync_floor_x8": ("raw, 8 threads: async_to_sync(no-op) + 1 command", "calls/s", True),
    }
    return fixed.get(key, (key, "", True))


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """> 1 means asgi_redis is better: ours/theirs for rates, theirs/ours otherwise.

    NaN unless both values are positive: a ratio of a failed or unmeasurable value means nothing.
    """
    if not (ours > 0 and theirs > 0):  # also false for NaN
        return math.nan
    return ours / theirs if higher_is_better else theirs / ours


def fmt(value: float, unit: str = "x") -> str:
    """A number for the table: 2 decimals for ms and ratios, thousands otherwise."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if unit in ("ms", "x", "µs") else f"{value:,.0f}"


def table_rows(results: Results, keys: Sequence[str]) -> list[list[str]]:
    """[label, unit, ours, theirs, ratios per repetition, ratio of medians] per metric."""
    rows = []
    for key in keys:
        label, unit, higher = describe(key)
        per_layer = results.values.get(key, {})
        if bench_baselines.RAW in per_layer:
            value = fmt(results.median(key, bench_baselines.RAW), unit)
            rows.append([label, unit, value, value, "-", "-"])
            continue
        ours_key = COMPARED_WITH.get(key, key)
        theirs_column = THEIRS_PUBSUB if THEIRS_PUBSUB in per_layer else THEIRS
        ours = results.values.get(ours_key, {}).get(OURS, [])
        theirs = per_layer.get(theirs_column, [])
        reps = " ".join(fmt(ratio(a, b, higher)) for a, b in zip(ours, theirs, strict=False))
        med_ours, med_theirs = results.median(ours_key, OURS), results.median(key, theirs_column)
        overall = fmt(ratio(med_ours, med_theirs, higher))
        rows.append([label, unit, fmt(med_ours, unit), fmt(med_theirs, unit), reps or "-", overall])
    return rows


def print_table(results: Results, keys: Sequence[str], stream: TextIO | None = None) -> None:
    """Medians per layer, the ratio of each repetition and of the medians."""
    stream = stream or sys.stdout
    header = ["workload", "unit", OURS, THEIRS, "ratio per repetition", "ratio"]
    rows = [header, *table_rows(results, keys)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(width) for cell, width in zip(row[2:], widths[2:], strict=True)]
        print("  ".join(cells), file=stream)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=stream)
    print(
        "ratio > 1: asgi_redis is better (ours/theirs for rates, theirs/ours for ms and B).",
        file=stream,
    )
    for line in failure_lines(results):
        print(line, file=stream)


def failure_lines(results: Results) -> list[str]:
    """One line per failed run; channels_redis's failures are named as its own."""
    lines = []
    for failure in results.errors:
        if failure.incumbent:
            lines.append(
                f"{failure.layer} failed (not asgi_redis) in {failure.workload} "
                f"(repetition {failure.repetition}): {failure.detail}"
            )
        else:
            lines.append(f"FAILED {failure}")
    return lines


def metric_keys(workloads: Sequence[Workload]) -> list[str]:
    """Every metric key of ``workloads`` in order."""
    return [key for workload in workloads for key in workload.keys]


# --------------------------------------------------------------------------- command


def short_workloads(sizes: Sizes) -> list[Workload]:
    """The workloads of ``asgi-redis bench``."""
    workloads = [
        bench.send_receive(sizes),
        bench_baselines.raw_pair(sizes),
        bench_baselines.rpush_loop(sizes),
        bench.ping_pong(sizes),
        bench_baselines.raw_ping_pong(sizes),
    ]
    workloads += [bench_sync.sync_calls(sizes), bench_sync.sync_floor(sizes)]
    workloads += [bench_groups.group_send_named(m, c) for m, c in sizes.group_calls]
    workloads += [bench_groups.group_send_local(m, c) for m, c in sizes.local_group_calls]
    workloads += [bench_broadcast.broadcast(*shape) for shape in sizes.broadcast_shapes]
    workloads += [
        bench_scale.many_channels(sizes),
        bench_scale.many_channels(sizes, "many_channels_pubsub", (THEIRS_PUBSUB,)),
    ]
    workloads += [bench_scale.many_waiting(count) for count in sizes.waiting_channels]
    workloads += [bench_scale.trickle(count) for count in sizes.trickle_channels]
    workloads += [
        bench_scale.client_memory(sizes.waiting_receives),
        bench.memory_per_message(sizes),
    ]
    return workloads


def run_bench(url: str, args: argparse.Namespace) -> int:
    """Run the short benchmark against ``url``; 1 if an asgi_redis run failed."""
    with_theirs = theirs_installed()
    if not with_theirs:
        print("channels_redis is not installed: measuring asgi_redis alone.")
    sizes = SHORT.scaled(args.scale)
    workloads = short_workloads(sizes)
    specs = layer_specs(url, with_theirs)
    print(f"asgi-redis bench against {url}, {args.reps} repetition(s), scale {args.scale}")
    started = time.perf_counter()
    progress = Progress(steps(workloads, args.reps))
    results = asyncio.run(run_workloads(workloads, specs, args.reps, progress))
    print_table(results, metric_keys(workloads))
    if math.isnan(results.median("memory_per_message", OURS)):
        print(
            f"Memory per message is n/a: it is measured only with at least "
            f"{bench.MIN_MEMORY_MESSAGES:,} queued messages (this run: "
            f"{sizes.memory_messages:,}; use a larger --scale)."
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    # channels_redis failing (e.g. "Too many connections") is a result, not an error of ours.
    return 1 if any(not failure.incumbent for failure in results.errors) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options of ``asgi-redis``."""
    parser = argparse.ArgumentParser(
        prog="asgi-redis", description="Tools for the asgi_redis channel layer."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    bench_cmd = commands.add_parser(
        "bench",
        help="a short benchmark against channels_redis",
        description="A short benchmark of asgi_redis and, when it is installed, channels_redis "
        "on the same Redis server: send/receive throughput, ping-pong latency, group_send, many "
        "channels, memory per message and raw redis-py baselines. Prints medians and the ratio "
        "asgi_redis / channels_redis. Without --hosts it starts a private redis-server on a "
        "free port. benchmarks/bench.py is the full run.",
    )
    bench_cmd.add_argument(
        "--hosts", metavar="URL", help="Redis server URL (default: start a private redis-server)"
    )
    bench_cmd.add_argument(
        "--reps", type=positive_int, default=1, help="repetitions, 1 or more (default 1)"
    )
    bench_cmd.add_argument(
        "--scale",
        type=positive_float,
        default=1.0,
        help="multiply message and call counts by this number above 0 (default 1)",
    )
    inspect.add_arguments(
        commands.add_parser(
            "inspect",
            help="what the layer holds in Redis: queues, groups, clients (SCAN only)",
            description="Queues, groups and clients of a prefix, per server. Reads only; "
            "never prints payloads or passwords.",
        )
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asgi-redis`` console command."""
    args = parse_args(argv)
    if args.command == "inspect":
        return inspect.run(args)
    if args.hosts:
        return run_bench(args.hosts, args)
    with private_redis_server() as url:
        return run_bench(url, args)


if __name__ == "__main__":
    sys.exit(main())
