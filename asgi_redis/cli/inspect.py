"""``asgi-redis inspect``: what the layer holds in Redis, per server, read with SCAN only.

It shows queues (depth, counted messages, capacity, oldest age; busiest first), groups
(members named, process-local and of dead clients) and clients (liveness marks, with the
time since their last heartbeat). Payloads are never printed; hosts appear by their label,
without passwords. ``--json`` prints the schema documented in docs/operations.md; with
``--watch`` it prints one report every so many seconds (one JSON document per line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from redis.asyncio import Redis

from asgi_redis import config
from asgi_redis.cluster import ClusterNodes
from asgi_redis.connections import LoopHook, close_client, make_client

from .args import positive_int
from .inspect_report import (
    CAPACITY_NOTE,
    DROPS_NOTE,
    SCHEMA_VERSION,
    Settings,
    render_table,
    server_report,
)

DEFAULT_LIMIT = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``asgi-redis inspect``."""
    parser.add_argument(
        "--hosts",
        nargs="+",
        metavar="URL",
        default=["redis://localhost:6379"],
        help="Redis server URLs, as in the layer's CONFIG (default redis://localhost:6379)",
    )
    parser.add_argument(
        "--cluster",
        nargs="+",
        metavar="URL",
        help="Redis Cluster nodes to start from (instead of --hosts); every primary is read",
    )
    parser.add_argument("--prefix", default="asgi:", help="the layer's prefix (default asgi:)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--limit", type=positive_int, default=DEFAULT_LIMIT, help="rows per section (default 20)"
    )
    parser.add_argument(
        "--capacity", type=positive_int, help="the layer's capacity, to show next to each queue"
    )
    parser.add_argument(
        "--expiry",
        type=positive_int,
        default=60,
        help="the layer's expiry in s, for ages (default 60)",
    )
    parser.add_argument(
        "--group-expiry",
        type=positive_int,
        default=86400,
        help="the layer's group_expiry in s (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=config.DEFAULT_HEARTBEAT_S,
        help="the layer's heartbeat in s, for heartbeat ages (default %(default)s)",
    )
    parser.add_argument(
        "--watch", type=float, metavar="SECONDS", help="print a new report every SECONDS"
    )
    parser.add_argument(
        "--count", type=positive_int, help="with --watch: stop after this many reports"
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``inspect`` with parsed ``args``; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        hosts = [{"cluster": args.cluster}] if args.cluster else args.hosts
        layer_config = config.parse(hosts=hosts, prefix=args.prefix)
    except (TypeError, ValueError) as exc:
        err.write(f"asgi-redis inspect: {exc}\n")
        return 2
    if args.watch is not None and args.watch <= 0:
        err.write("asgi-redis inspect: --watch must be above 0 seconds\n")
        return 2
    settings = Settings(
        prefix=layer_config.prefix,
        expiry_s=args.expiry,
        group_expiry_s=args.group_expiry,
        heartbeat_s=args.heartbeat,
        capacity=args.capacity,
        limit=args.limit,
    )
    try:
        asyncio.run(_loop(layer_config, settings, args, out, err))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a server down, a wrong URL: one line, not a traceback
        err.write(f"asgi-redis inspect: {exc}\n")
        return 1
    return 0


async def _loop(
    layer_config: config.Config,
    settings: Settings,
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
) -> None:
    """One report, or with --watch one every ``args.watch`` seconds (``--count`` of them)."""
    printed = 0
    while True:
        report = await inspect_once(layer_config, settings, err)
        if args.json:
            out.write(json.dumps(report, sort_keys=True) + "\n")
        else:
            if args.watch is not None:
                out.write(f"--- {time.strftime('%H:%M:%S')}\n")
            out.write(render_table(report))
        out.flush()
        printed += 1
        if args.watch is None or (args.count is not None and printed >= args.count):
            return
        await asyncio.sleep(args.watch)


async def inspect_once(
    layer_config: config.Config, settings: Settings, err: TextIO | None = None
) -> dict[str, Any]:
    """The report for every server of ``layer_config`` (the ``--json`` document)."""
    err = err or sys.stderr
    servers = []
    for host in layer_config.hosts:
        if host.cluster is not None:
            servers += await _cluster_reports(host, settings, err)
            continue
        client = make_client(host)
        try:
            servers.append(await _report(client, host.label(), settings, err))
        finally:
            await close_client(client)
    return {
        "schema": SCHEMA_VERSION,
        "prefix": settings.prefix,
        "generated_at_ms": int(time.time() * 1000),
        "servers": servers,
        "drops_note": DROPS_NOTE,
        "capacity_note": None if settings.capacity is not None else CAPACITY_NOTE,
    }


async def _report(client: Redis, label: str, settings: Settings, err: TextIO) -> dict[str, Any]:
    """One server's report, with progress on a terminal."""
    progress = _progress(label, err)
    report = await server_report(client, label, settings, int(time.time() * 1000), progress)
    if progress is not None:
        err.write("\r\033[K")
        err.flush()
    return report


async def _cluster_reports(
    host: config.Host, settings: Settings, err: TextIO
) -> list[dict[str, Any]]:
    """One report per primary of a Redis Cluster (a group shows on each node holding members)."""

    async def nothing() -> None:
        return None

    nodes = ClusterNodes(host, LoopHook(nothing))
    try:
        await nodes.ready()
        return [
            await _report(
                nodes.client_at(address), f"{nodes.label} (node {address})", settings, err
            )
            for address in nodes.primaries()
        ]
    finally:
        await nodes.close()


def _progress(label: str, err: TextIO) -> Callable[[int], None] | None:
    """A callback redrawing 'scanning HOST: N keys' on stderr, or None when it is no terminal."""
    if not err.isatty():
        return None

    def show(found: int) -> None:
        err.write(f"\rscanning {label}: {found:,} keys")
        err.flush()

    return show
