"""Compare asgi_redis with channels_redis on the same redis-server, in one run.

Run from the repository root::

    python benchmarks/bench.py            # 3 repetitions, about 2-3 minutes
    python benchmarks/bench.py --quick    # 1 repetition, smaller sizes
    python benchmarks/bench.py --hosts redis://127.0.0.1:6379

Without ``--hosts`` the script starts its own ``redis-server`` (no persistence) on a free
port of 127.0.0.1 and stops it at the end. With ``--hosts`` it only deletes keys under its
own prefixes (through each layer's ``flush``), never the rest of the database.

See ``benchmarks/README.md`` for what each workload measures and how to read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import importlib.metadata
import math
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis

OURS = "asgi_redis"
THEIRS = "channels_redis"
PREFIXES = {OURS: "benchar:", THEIRS: "benchcr:"}
RAW_PREFIX = "benchraw:"
RUN_TIMEOUT_S = 120.0
# Encryption workload: one secret for every encrypting layer (a benchmark, not a deployment).
BENCH_KEY = "benchmark-only-secret-0123456789abcdef"
ENCRYPTION_MEMBERS = 1000
PLAIN = f"{OURS} plain"
ENCRYPTED = f"{OURS} encrypted"
THEIRS_ENCRYPTED = f"{THEIRS} encrypted"
SERVER_START_TIMEOUT_S = 10.0


class ChannelLayer(Protocol):
    """The part of the Channels layer API that the workloads use."""

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Enqueue one message."""

    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message."""

    async def new_channel(self, prefix: str = ...) -> str:
        """Return a new process-local channel name."""

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel to a group."""

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send to every member of a group."""

    async def flush(self) -> None:
        """Delete everything under the layer's prefix."""


LayerFactory = Callable[[], ChannelLayer]
Workload = Callable[[LayerFactory], Awaitable[dict[str, float]]]


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    messages: int
    round_trips: int
    group_calls: int
    group_members: tuple[int, ...] = (100, 1000)

    @property
    def capacity(self) -> int:
        """A capacity no workload can reach, so neither layer drops anything."""
        return max(self.messages, self.group_calls) + 1


FULL = Sizes(messages=5000, round_trips=1000, group_calls=200)
QUICK = Sizes(messages=2000, round_trips=500, group_calls=100)


@dataclass(frozen=True)
class Metric:
    """One line of the result table."""

    key: str
    label: str
    unit: str
    higher_is_better: bool


@dataclass
class Results:
    """Values per metric and per layer, one per repetition (NaN when a run failed)."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    baseline: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, layer: str, metrics: dict[str, float]) -> None:
        """Record one run's metrics for ``layer``."""
        for key, value in metrics.items():
            self.values.setdefault(key, {OURS: [], THEIRS: []})[layer].append(value)


# --------------------------------------------------------------------------- redis-server


def free_port() -> int:
    """Ask the kernel for a TCP port that is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_server(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Block until redis-server answers on ``port``, or raise."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on port {port} in time")


@contextlib.contextmanager
def own_redis_server() -> Iterator[str]:
    """Run a throwaway redis-server without persistence; yield its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found on PATH (or pass --hosts redis://...)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="asgi-redis-bench-") as workdir:
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--loglevel",
            "warning",
        ]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_server(port, proc)
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- layers


def import_ours() -> type[Any] | str:
    """Return asgi_redis.RedisChannelLayer, or a message saying why it cannot be used."""
    try:
        module = importlib.import_module("asgi_redis")
    except ImportError:
        # Running from a checkout without installing: the package sits next to benchmarks/.
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        try:
            module = importlib.import_module("asgi_redis")
        except ImportError as exc:
            return f"cannot import asgi_redis: {exc}"
    try:
        layer_class: type[Any] = module.RedisChannelLayer
    except AttributeError as exc:
        return f"asgi_redis has no RedisChannelLayer: {exc}"
    return layer_class


def import_theirs() -> type[Any]:
    """Return channels_redis.core.RedisChannelLayer."""
    from channels_redis.core import RedisChannelLayer

    layer_class: type[Any] = RedisChannelLayer
    return layer_class


def factory_for(
    layer_class: type[Any], name: str, hosts: list[str], capacity: int, **extra: Any
) -> LayerFactory:
    """A function building a fresh layer with the options both layers share (plus ``extra``)."""

    def build() -> ChannelLayer:
        layer: ChannelLayer = layer_class(
            hosts=hosts, prefix=PREFIXES[name], expiry=60, capacity=capacity, **extra
        )
        return layer

    return build


async def close_layer(layer: ChannelLayer) -> None:
    """Release a layer's connections (channels_redis has ``close_pools``, not ``close``)."""
    close = getattr(layer, "close", None) or getattr(layer, "close_pools", None)
    if close is not None:
        await close()


@contextlib.asynccontextmanager
async def fresh_layers(factory: LayerFactory, count: int) -> Any:
    """Build ``count`` layers on one prefix; flush before and after; close them."""
    layers = [factory() for _ in range(count)]
    try:
        await layers[0].flush()
        yield layers
    finally:
        try:
            await layers[0].flush()
        finally:
            for layer in layers:
                await close_layer(layer)


# --------------------------------------------------------------------------- workloads


async def pump(layer: ChannelLayer, channel: str, count: int) -> float:
    """Send ``count`` messages while one task receives them; return msgs/s."""

    async def produce() -> None:
        for index in range(count):
            await layer.send(channel, {"type": "bench.message", "n": index})

    async def consume() -> None:
        for _ in range(count):
            await layer.receive(channel)

    started = time.perf_counter()
    await asyncio.gather(consume(), produce())
    return count / (time.perf_counter() - started)


def send_receive_workload(sizes: Sizes) -> Workload:
    """One producer, one consumer, one named then one process-local channel."""

    async def run(factory: LayerFactory) -> dict[str, float]:
        async with fresh_layers(factory, 1) as (layer,):
            await pump(layer, "bench.warmup", 50)
            named = await pump(layer, "bench.queue", sizes.messages)
            local_channel = await layer.new_channel()
            await pump(layer, local_channel, 50)
            local = await pump(layer, local_channel, sizes.messages)
        return {"send_receive_named": named, "send_receive_local": local}

    return run


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def ping_pong_workload(sizes: Sizes) -> Workload:
    """Two layer instances bounce one message over two named channels."""

    async def echo(layer: ChannelLayer, count: int) -> None:
        for _ in range(count):
            message = await layer.receive("bench.ping")
            await layer.send("bench.pong", message)

    async def run(factory: LayerFactory) -> dict[str, float]:
        warmup = 20
        async with fresh_layers(factory, 2) as (client, server):
            echo_task = asyncio.create_task(echo(server, warmup + sizes.round_trips))
            latencies_ms: list[float] = []
            for index in range(warmup + sizes.round_trips):
                started = time.perf_counter()
                await client.send("bench.ping", {"type": "bench.ping", "n": index})
                await client.receive("bench.pong")
                if index >= warmup:
                    latencies_ms.append((time.perf_counter() - started) * 1000)
            await echo_task
        latencies_ms.sort()
        return {
            "ping_pong_p50": percentile(latencies_ms, 0.5),
            "ping_pong_p99": percentile(latencies_ms, 0.99),
        }

    return run


def group_send_workload(sizes: Sizes, members: int) -> Workload:
    """``group_send`` calls/s to a group of named channels that nobody reads."""

    async def run(factory: LayerFactory) -> dict[str, float]:
        group = f"bench-group-{members}"
        async with fresh_layers(factory, 1) as (layer,):
            # One at a time: channels_redis holds a pooled connection per concurrent call.
            for index in range(members):
                await layer.group_add(group, f"bench.member.{index}")
            await layer.group_send(group, {"type": "bench.warmup"})
            started = time.perf_counter()
            for index in range(sizes.group_calls):
                await layer.group_send(group, {"type": "bench.group", "n": index})
            elapsed = time.perf_counter() - started
        return {f"group_send_{members}": sizes.group_calls / elapsed}

    return run


def encryption_workload(sizes: Sizes) -> Workload:
    """send+receive on one named channel and group_send to 1,000 members, one layer."""
    send_receive = send_receive_workload(sizes)
    group_send = group_send_workload(sizes, ENCRYPTION_MEMBERS)

    async def run(factory: LayerFactory) -> dict[str, float]:
        named = (await send_receive(factory))["send_receive_named"]
        fan_out = (await group_send(factory))[f"group_send_{ENCRYPTION_MEMBERS}"]
        return {"send_receive_named": named, f"group_send_{ENCRYPTION_MEMBERS}": fan_out}

    return run


async def run_encryption(
    factories: dict[str, LayerFactory], sizes: Sizes, reps: int
) -> dict[str, dict[str, list[float]]]:
    """The encryption workload on each layer, ``reps`` times: metric -> layer -> values."""
    workload = encryption_workload(sizes)
    keys = ["send_receive_named", f"group_send_{ENCRYPTION_MEMBERS}"]
    values: dict[str, dict[str, list[float]]] = {key: {} for key in keys}
    for rep in range(reps):
        order = list(factories) if rep % 2 == 0 else list(reversed(factories))
        print(f"encryption repetition {rep + 1}/{reps} ...", flush=True)
        for name in order:
            started = time.perf_counter()
            try:
                metrics = await asyncio.wait_for(workload(factories[name]), RUN_TIMEOUT_S)
            except Exception as exc:  # a broken layer must not hide the other results
                print(f"    ERROR {name}: {type(exc).__name__}: {exc}", flush=True)
                metrics = dict.fromkeys(keys, math.nan)
            for key in keys:
                values[key].setdefault(name, []).append(metrics[key])
            print(f"  {'encryption':<18} {name:<26} {time.perf_counter() - started:6.1f} s")
    return values


def print_encryption_table(values: dict[str, dict[str, list[float]]], sizes: Sizes) -> None:
    """Medians per layer; the last column is asgi_redis encrypted / channels_redis encrypted."""
    labels = {
        "send_receive_named": (f"send_receive named ({sizes.messages})", "msgs/s"),
        f"group_send_{ENCRYPTION_MEMBERS}": (
            f"group_send {ENCRYPTION_MEMBERS} members ({sizes.group_calls})",
            "calls/s",
        ),
    }
    names = [PLAIN, ENCRYPTED, THEIRS_ENCRYPTED]
    header = f"{'encryption (count)':<36} {'unit':<8} " + " ".join(f"{n:>25}" for n in names)
    header += f" {'ratio':>7}"
    print()
    print(header)
    print("-" * len(header))
    for key, (label, unit) in labels.items():
        medians = [median(values[key].get(name, [])) for name in names]
        cells = " ".join(f"{fmt(value, unit):>25}" for value in medians)
        print(f"{label:<36} {unit:<8} {cells} {fmt(ratio(medians[1], medians[2], True), 'ms'):>7}")
    print()
    print(
        "ratio = asgi_redis encrypted / channels_redis encrypted (> 1: asgi_redis is faster). "
        "Both use symmetric_encryption_keys=[one key]:"
    )
    print("AES-256-GCM once per call for asgi_redis, Fernet for channels_redis.")


async def raw_rpush_baseline(url: str, count: int) -> float:
    """RPUSH with redis-py, awaiting each call (one round trip per message): msgs/s."""
    client = aioredis.Redis.from_url(url)
    key = f"{RAW_PREFIX}queue"
    try:
        await client.delete(key)
        for _ in range(50):
            await client.rpush(key, b"warmup")
        payload = b"x" * 40
        started = time.perf_counter()
        for _ in range(count):
            await client.rpush(key, payload)
        rate = count / (time.perf_counter() - started)
        await client.delete(key)
        return rate
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- running


def metrics_for(sizes: Sizes) -> list[Metric]:
    """The table's lines, in display order."""
    rows = [
        Metric("send_receive_named", f"send_receive named ({sizes.messages})", "msgs/s", True),
        Metric("send_receive_local", f"send_receive local ({sizes.messages})", "msgs/s", True),
        Metric("ping_pong_p50", f"ping_pong p50 ({sizes.round_trips})", "ms", False),
        Metric("ping_pong_p99", f"ping_pong p99 ({sizes.round_trips})", "ms", False),
    ]
    rows += [
        Metric(
            f"group_send_{members}",
            f"group_send {members} members ({sizes.group_calls})",
            "calls/s",
            True,
        )
        for members in sizes.group_members
    ]
    return rows


def workloads_for(sizes: Sizes) -> list[tuple[str, Workload, list[str]]]:
    """Each workload with the metric keys it produces (used to fill NaN on failure)."""
    result: list[tuple[str, Workload, list[str]]] = [
        (
            "send_receive",
            send_receive_workload(sizes),
            ["send_receive_named", "send_receive_local"],
        ),
        ("ping_pong", ping_pong_workload(sizes), ["ping_pong_p50", "ping_pong_p99"]),
    ]
    result += [
        (f"group_send {members}", group_send_workload(sizes, members), [f"group_send_{members}"])
        for members in sizes.group_members
    ]
    return result


async def run_one(
    name: str, workload: Workload, factory: LayerFactory, keys: list[str], results: Results
) -> None:
    """Run one workload on one layer, recording NaN and the error if it fails."""
    try:
        metrics = await asyncio.wait_for(workload(factory), RUN_TIMEOUT_S)
    except Exception as exc:  # a broken layer must not hide the other results
        detail = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        results.errors.append(f"{name}: {detail}")
        print(f"    ERROR {name}: {detail}", flush=True)
        metrics = dict.fromkeys(keys, math.nan)
    results.add(name, metrics)


async def run_all(factories: dict[str, LayerFactory], sizes: Sizes, reps: int, url: str) -> Results:
    """Every workload, ``reps`` times, alternating which layer goes first."""
    results = Results()
    for rep in range(reps):
        order = [OURS, THEIRS] if rep % 2 == 0 else [THEIRS, OURS]
        print(f"repetition {rep + 1}/{reps} ...", flush=True)
        results.baseline.setdefault("raw_rpush", []).append(
            await raw_rpush_baseline(url, sizes.messages)
        )
        for label, workload, keys in workloads_for(sizes):
            for name in order:
                if name not in factories:
                    results.add(name, dict.fromkeys(keys, math.nan))
                    continue
                started = time.perf_counter()
                await run_one(name, workload, factories[name], keys, results)
                print(
                    f"  {label:<18} {name:<15} {time.perf_counter() - started:6.1f} s", flush=True
                )
    return results


# --------------------------------------------------------------------------- output


def median(values: Sequence[float]) -> float:
    """Median ignoring NaN (NaN when nothing is left)."""
    finite = [value for value in values if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def ratio(ours: float, theirs: float, higher_is_better: bool) -> float:
    """> 1 means asgi_redis is better: ours/theirs for rates, theirs/ours for latencies."""
    if math.isnan(ours) or math.isnan(theirs) or ours == 0 or theirs == 0:
        return math.nan
    return ours / theirs if higher_is_better else theirs / ours


def fmt(value: float, unit: str) -> str:
    """A number formatted for the table."""
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if unit == "ms" else f"{value:,.0f}"


def print_table(results: Results, sizes: Sizes) -> None:
    """Medians per layer and the ratio of each repetition and of the medians."""
    header = (
        f"{'workload (count)':<36} {'unit':<8} {OURS:>11} {THEIRS:>15} "
        f"{'ratio per repetition':>22} {'ratio':>7}"
    )
    print()
    print(header)
    print("-" * len(header))
    for metric in metrics_for(sizes):
        if metric.key == "ping_pong_p50":
            print_baseline(results, sizes)
        per_layer = results.values.get(metric.key, {OURS: [], THEIRS: []})
        ours, theirs = per_layer[OURS], per_layer[THEIRS]
        pairs = zip(ours, theirs, strict=True)
        reps = " ".join(fmt(ratio(a, b, metric.higher_is_better), "ms") for a, b in pairs)
        med_ours, med_theirs = median(ours), median(theirs)
        overall = ratio(med_ours, med_theirs, metric.higher_is_better)
        print(
            f"{metric.label:<36} {metric.unit:<8} {fmt(med_ours, metric.unit):>11} "
            f"{fmt(med_theirs, metric.unit):>15} {reps:>22} {fmt(overall, 'ms'):>7}"
        )
    print()
    print(
        "limit = raw redis-py RPUSH loop without any layer, one awaited round trip per "
        "message: the most"
    )
    print("any send_receive can reach when each send costs at least one round trip.")
    print("ratio > 1 means asgi_redis is faster: asgi_redis/channels_redis for msgs/s and calls/s,")
    print("channels_redis/asgi_redis for latencies (ms). Values are medians of the repetitions.")
    print(
        f"group_send: capacity={sizes.capacity} > {sizes.group_calls} calls, so every call "
        "really delivers to every member; nobody receives."
    )
    for error in results.errors:
        print(f"error: {error}")


def print_baseline(results: Results, sizes: Sizes) -> None:
    """The raw redis-py row, shown in both layer columns: it is the same limit for both."""
    raw = fmt(median(results.baseline.get("raw_rpush", [])), "msgs/s")
    print(
        f"{f'  limit: raw RPUSH 1 RT/msg ({sizes.messages})':<36} {'msgs/s':<8} "
        f"{raw:>11} {raw:>15} {'-':>22} {'-':>7}"
    )


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
        info = await client.info("server")
        return str(info.get("redis_version", "unknown"))
    finally:
        await client.aclose()


def print_header(url: str, ours: type[Any] | str, sizes: Sizes, reps: int) -> None:
    """Date and versions of everything that takes part."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ours_version = (
        ours
        if isinstance(ours, str)
        else getattr(sys.modules.get("asgi_redis"), "__version__", "unknown")
    )
    print(f"asgi_redis benchmark, {now}")
    print(
        f"python {platform.python_version()}, redis-server {asyncio.run(server_version(url))}, "
        f"redis-py {package_version('redis')}, channels_redis {package_version('channels_redis')}"
        f", asgi_redis {ours_version}"
    )
    print(
        f"repetitions {reps}, messages {sizes.messages}, round trips {sizes.round_trips}, "
        f"group_send calls {sizes.group_calls}, capacity {sizes.capacity} (both layers)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller sizes")
    parser.add_argument(
        "--hosts", nargs="+", metavar="URL", help="use these Redis servers instead of starting one"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument(
        "--encryption-only",
        action="store_true",
        help="run only the encryption comparison (plain vs encrypted vs channels_redis encrypted)",
    )
    return parser.parse_args(argv)


def benchmark(hosts: list[str], args: argparse.Namespace) -> None:
    """Print the header, run everything and print the table."""
    sizes = QUICK if args.quick else FULL
    reps = args.reps or (1 if args.quick else 3)
    ours = import_ours()
    print_header(hosts[0], ours, sizes, reps)
    factories = {THEIRS: factory_for(import_theirs(), THEIRS, hosts, sizes.capacity)}
    if isinstance(ours, str):
        print(f"SKIPPING asgi_redis: {ours}")
    else:
        factories[OURS] = factory_for(ours, OURS, hosts, sizes.capacity)
    started = time.perf_counter()
    if not args.encryption_only:
        results = asyncio.run(run_all(factories, sizes, reps, hosts[0]))
        print_table(results, sizes)
    if not isinstance(ours, str):
        encrypted = {"symmetric_encryption_keys": [BENCH_KEY]}
        trio = {
            PLAIN: factories[OURS],
            ENCRYPTED: factory_for(ours, OURS, hosts, sizes.capacity, **encrypted),
            THEIRS_ENCRYPTED: factory_for(
                import_theirs(), THEIRS, hosts, sizes.capacity, **encrypted
            ),
        }
        print_encryption_table(asyncio.run(run_encryption(trio, sizes, reps)), sizes)
    print(f"total {time.perf_counter() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: ``python benchmarks/bench.py [--quick] [--hosts redis://...]``."""
    args = parse_args(argv)
    if args.hosts:
        benchmark(list(args.hosts), args)
        return
    with own_redis_server() as url:
        benchmark([url], args)


if __name__ == "__main__":
    main()
