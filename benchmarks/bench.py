"""Compare asgi_redis with channels_redis on the same redis-server, in one run.

Run from the repository root::

    python benchmarks/bench.py            # 3 repetitions, about 17 minutes on 2 cores
    python benchmarks/bench.py --quick    # 1 repetition, smaller sizes, under a minute
    python benchmarks/bench.py --hosts redis://127.0.0.1:6379
    python benchmarks/bench.py --only broadcast --reps 1   # one family of workloads

Without ``--hosts`` the script starts its own ``redis-server`` (no persistence) on a free
port of 127.0.0.1 and stops it at the end. With ``--hosts`` it only deletes keys under its
own prefixes, never the rest of the database. A full run (not ``--quick``) rewrites
``RESULTS.md`` and ``group_send.png`` next to this file unless ``--no-write`` is given.
Any run that measured the broadcast workload draws ``broadcast.png`` (the same exceptions);
``--save FILE`` keeps every repetition's values as JSON.

The workloads live in ``asgi_redis.cli.bench`` (shared with ``asgi-redis bench``); this script
adds the full sizes, the raw baselines, the targets, the encryption table and the report.
See ``benchmarks/README.md`` for what each workload measures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import importlib.util
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

if importlib.util.find_spec("asgi_redis") is None:  # a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import loops
import parsers
import redis.asyncio as aioredis
import report
import targets

from asgi_redis import __version__
from asgi_redis.cli import (
    bench,
    bench_baselines,
    bench_broadcast,
    bench_groups,
    bench_scale,
    bench_sync,
)
from asgi_redis.cli import main as cli
from asgi_redis.cli.bench import OURS, THEIRS, THEIRS_PUBSUB, LayerSpec, Sizes, Workload

FULL = Sizes()
QUICK = Sizes(
    messages=1500,
    round_trips=300,
    group_calls=((1, 300), (10, 200), (100, 100), (1000, 20), (10000, 3)),
    local_group_calls=((1, 100), (100, 50), (10000, 3)),
    broadcast_shapes=((4, 250, 20), (8, 25, 20), (2, 2500, 20), (1, 10000, 10)),
    many_messages=3,
    waiting_channels=(100, 1000, 4000),
    waiting_receives=10000,
    memory_messages=3000,
    script_keys=(1000,),
    script_calls=5,
    sync_calls=100,
)
BIG_POOL = (("max_connections", 2500),)
BENCH_KEY = "benchmark-only-secret-0123456789abcdef"
PLAIN, ENCRYPTED, THEIRS_ENCRYPTED = OURS, f"{OURS} encrypted", f"{THEIRS} encrypted"
ENCRYPTION_MEMBERS = 1000


def workloads_for(sizes: Sizes) -> list[Workload]:
    """Every workload of a full run, in table order."""
    result = [
        bench.send_receive(sizes),
        bench_baselines.raw_pair(sizes),
        bench_baselines.rpush_loop(sizes),
        bench_baselines.pipelined_writes(sizes),
        bench.ping_pong(sizes),
        bench_baselines.raw_ping_pong(sizes),
        bench_baselines.ping_pong_interleaved(sizes),
        bench_sync.sync_calls(sizes),
        bench_sync.sync_floor(sizes),
    ]
    result += [bench_groups.group_send_named(size, calls) for size, calls in sizes.group_calls]
    result += [
        bench_groups.group_send_local(size, calls) for size, calls in sizes.local_group_calls
    ]
    result += [bench_broadcast.broadcast(*shape) for shape in sizes.broadcast_shapes]
    result += [bench_baselines.script_keys(sizes, count) for count in sizes.script_keys]
    result += [
        bench.memory_per_message(sizes),
        bench_scale.many_channels(sizes),
        bench_scale.many_channels(sizes, "many_channels_pool", (THEIRS,), BIG_POOL),
        bench_scale.many_channels(sizes, "many_channels_pubsub", (THEIRS_PUBSUB,)),
    ]
    result += [bench_scale.many_waiting(count) for count in sizes.waiting_channels]
    result += [bench_scale.trickle(count) for count in sizes.trickle_channels]
    result += [bench_scale.client_memory(sizes.waiting_receives)]
    return result


def table_order(workloads: Sequence[Workload]) -> list[str]:
    """Metric keys with the bytes-per-call rows moved after the calls/s rows."""
    keys = cli.metric_keys(workloads)
    return [k for k in keys if not k.startswith("group_bytes")] + [
        k for k in keys if k.startswith("group_bytes")
    ]


# --------------------------------------------------------------------------- encryption


def encryption_specs(url: str) -> dict[str, LayerSpec]:
    """asgi_redis plain, asgi_redis encrypted and channels_redis encrypted."""
    keys = (("expiry", 60), ("symmetric_encryption_keys", [BENCH_KEY]))
    return {
        PLAIN: LayerSpec(PLAIN, OURS, url, cli.PREFIXES[OURS], (("expiry", 60),)),
        ENCRYPTED: LayerSpec(ENCRYPTED, OURS, url, cli.PREFIXES[OURS], keys),
        THEIRS_ENCRYPTED: LayerSpec(THEIRS_ENCRYPTED, THEIRS, url, cli.PREFIXES[THEIRS], keys),
    }


def encryption_section(url: str, sizes: Sizes, reps: int) -> list[str]:
    """Run the encryption comparison; return its table as markdown lines (also printed)."""
    calls = dict(sizes.group_calls).get(ENCRYPTION_MEMBERS, 50)
    columns = (PLAIN, ENCRYPTED, THEIRS_ENCRYPTED)
    workloads = [
        replace(bench.send_receive(sizes), layers=columns),
        replace(bench_groups.group_send_named(ENCRYPTION_MEMBERS, calls), layers=columns),
    ]
    progress = cli.Progress(cli.steps(workloads, reps))
    results = asyncio.run(cli.run_workloads(workloads, encryption_specs(url), reps, progress))
    lines = ["## Encryption", "", "| workload | unit | " + " | ".join(columns) + " | ratio |"]
    lines.append("|" + " --- |" * (len(columns) + 3))
    for key in ("send_receive_named", f"group_send_named_{ENCRYPTION_MEMBERS}"):
        label, unit, _ = cli.describe(key)
        medians = [results.median(key, column) for column in columns]
        cells = " | ".join(cli.fmt(value, unit) for value in medians)
        lines.append(f"| {label} | {unit} | {cells} | {cli.fmt(cli.ratio(*medians[1:], True))} |")
    lines += [
        "",
        "ratio = asgi_redis encrypted / channels_redis encrypted. Both use "
        "`symmetric_encryption_keys=[one key]`: AES-256-GCM once per call for asgi_redis, "
        "Fernet for channels_redis.",
    ]
    print("\n".join(lines))
    for error in results.errors:
        print(f"FAILED {error}")
    return lines


# --------------------------------------------------------------------------- running


def package_version(name: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


async def server_version(url: str) -> str:
    """The redis_version reported by the server at ``url``."""
    client = aioredis.Redis.from_url(url)
    try:
        return str((await client.info("server")).get("redis_version", "unknown"))
    finally:
        await client.aclose()


def header_lines(url: str, reps: int, quick: bool) -> list[str]:
    """Date, versions and sizes."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"date: {now}; {'--quick' if quick else 'full'} run, {reps} repetition(s)",
        f"python {platform.python_version()}, redis-server {asyncio.run(server_version(url))}, "
        f"redis-py {package_version('redis')}, hiredis {package_version('hiredis')}, "
        f"channels_redis {package_version('channels_redis')}, asgi_redis {__version__}",
    ]


def benchmark(url: str, args: argparse.Namespace) -> None:
    """Run everything, print the tables and targets, write the report on full runs."""
    sizes = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 3)
    header = header_lines(url, reps, args.quick)
    print("\n".join(header))
    started = time.perf_counter()
    workloads = [w for w in workloads_for(sizes) if w.name.startswith(tuple(args.only or [""]))]
    progress = cli.Progress(cli.steps(workloads, reps))
    results = asyncio.run(cli.run_workloads(workloads, cli.layer_specs(url, True), reps, progress))
    keys = table_order(workloads)
    cli.print_table(results, keys)
    group_sizes = [members for members, _ in sizes.group_calls]
    shapes = [f"{processes}x{members}" for processes, members, _ in sizes.broadcast_shapes]
    verdicts = targets.verdicts(
        results, group_sizes, list(sizes.waiting_channels), shapes, sizes.trickle_channels
    )
    if args.only:  # only the targets of the workloads that ran
        verdicts = [v for v in verdicts if any(name in v.target for name in args.only)]
    if verdicts:
        targets.print_verdicts(verdicts)
    extra = [] if args.no_encryption else encryption_section(url, sizes, reps)
    if not args.no_uvloop:
        extra += ["", *loops.section(url, sizes, reps, results)]
    if not args.no_hiredis:
        extra += ["", *parsers.section(url, args.quick, reps)]
    elapsed = f"total {time.perf_counter() - started:.0f} s"
    print(elapsed)
    if args.save:
        args.save.write_text(json.dumps({"header": header, "values": results.values}, indent=1))
        print(f"saved the results to {args.save}")
    chart = not args.quick and not args.no_write
    if chart and report.write_broadcast_chart(results.values, shapes):
        print(f"wrote {report.BROADCAST_PNG.name}")
    if not args.quick and not args.no_write and not args.only:
        report.write_chart(results, group_sizes)
        report.write_results([*header, elapsed], results, keys, verdicts, ["\n".join(extra)])
        print(f"wrote {report.RESULTS_MD.name} and {report.CHART_PNG.name}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller sizes")
    parser.add_argument("--hosts", metavar="URL", help="use this Redis server instead")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS.md")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only the workloads whose name starts with NAME (repeatable; no report)",
    )
    parser.add_argument(
        "--save", type=Path, metavar="FILE", help="also write every repetition's results as JSON"
    )
    parser.add_argument("--no-encryption", action="store_true", help="skip the encryption table")
    parser.add_argument(
        "--no-hiredis", action="store_true", help="skip the hiredis / pure-Python comparison"
    )
    parser.add_argument(
        "--no-uvloop", action="store_true", help="skip the hot-path rows under uvloop"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: ``python benchmarks/bench.py [--quick] [--hosts redis://...]``."""
    args = parse_args(argv)
    if args.hosts:
        benchmark(args.hosts, args)
        return
    with cli.private_redis_server() as url:
        benchmark(url, args)


if __name__ == "__main__":
    main()
