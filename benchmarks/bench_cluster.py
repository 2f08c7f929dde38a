"""asgi_redis on one redis-server and on a 3-primary Redis Cluster, side by side, in one run.

Run from the repository root::

    python benchmarks/bench_cluster.py            # 5 repetitions, about 2 minutes on 2 cores
    python benchmarks/bench_cluster.py --quick    # 1 repetition, smaller sizes
    python -m benchmarks.bench_cluster --reps 3   # the same, as a module

It starts its own servers on free ports of 127.0.0.1 (``tests.servers.RedisServer`` and
``tests.cluster.RedisClusterServers``, no persistence) and stops them at the end. Every
workload runs on both, alternating which goes first, and the table shows medians and the
ratio cluster / single server. Besides the rates it counts, for group_send, the commands each
call costs on the servers (``INFO commandstats`` of every node, reset before the timed calls)
and, on the client, its round trips and round-trip phases (see `traced_round_trips`).

- ``send+receive``: one producer and one consumer task per channel, all concurrent, on one
  layer; first named channels (on the cluster each has its own tag, so they spread over the
  primaries), then as many process-local ones (they share their client's queue, one tag).
- ``group_send named``: calls in a row to a group of named channels nobody reads.
- ``group_send local``: calls in a row to a group of process-local channels held by other
  processes (``--clients``, each with its own layer and event loop, ``new_channel`` +
  ``group_add``). They stay alive (heartbeats) but do not receive, so the two cores go to
  the sender and the servers; each call adds one entry to each client's queue.

See ``benchmarks/README.md``; the latest numbers are in ``RESULTS.md`` (section Redis Cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # for tests.servers, tests.cluster
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from redis.asyncio.connection import AbstractConnection

from asgi_redis import RedisChannelLayer, __version__, keys, writer
from tests.cluster import RedisClusterServers
from tests.servers import RedisServer

SINGLE, CLUSTER = "single", "cluster"
SR_PREFIX, NAMED_PREFIX, LOCAL_PREFIX = "benchcl-sr:", "benchcl-named:", "benchcl-local:"
NAMED_GROUP, LOCAL_GROUP = "bench-named", "bench-local"
# Larger than anything a run queues, so no send or group_send is ever refused.
CAPACITY = 1_000_000
EXPIRY_S = 600
ADD_CONCURRENCY = 100
WARMUP_CALLS = 2
HELPER_TIMEOUT_S = 120.0
STEP_TIMEOUT_S = 120.0
PAYLOAD_TEXT = "x" * 100


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does, and how often it is repeated."""

    messages: int = 10_000
    channels: int = 10
    named_members: int = 1000
    named_calls: int = 200
    clients: int = 10
    channels_per_client: int = 1000
    local_calls: int = 30
    traced_calls: int = 5
    reps: int = 5

    @property
    def local_members(self) -> int:
        """Process-local members of the local group, over all clients."""
        return self.clients * self.channels_per_client


FULL = Sizes()
QUICK = Sizes(messages=3000, named_calls=50, local_calls=10, traced_calls=3, reps=1)


def message(kind: str, index: int) -> dict[str, Any]:
    """The benchmark's message: a type, a counter and a 100-byte text (as bench.py's)."""
    return {"type": f"bench.{kind}", "n": index, "text": PAYLOAD_TEXT}


class BenchFailedError(Exception):
    """A workload did not finish correctly (lost messages, a helper that did not start)."""


# --------------------------------------------------------------------------- servers


@dataclass
class Target:
    """Where a layer runs: its ``hosts`` and a plain client of every primary for INFO."""

    name: str
    hosts: list[Any]
    node_urls: list[str]
    _clients: list[redis.Redis] = field(default_factory=list, repr=False)

    def layer(self, prefix: str) -> RedisChannelLayer:
        """A new layer on this target (see `make_layer`)."""
        return make_layer(self.hosts, prefix)

    def clients(self) -> list[redis.Redis]:
        """One synchronous client per node (made on first use)."""
        if not self._clients:
            self._clients = [redis.Redis.from_url(url) for url in self.node_urls]
        return self._clients

    def reset_stats(self) -> None:
        """``CONFIG RESETSTAT`` on every node: commandstats count from zero."""
        for client in self.clients():
            client.config_resetstat()

    def command_stats(self) -> list[dict[str, dict[str, float]]]:
        """``INFO commandstats`` of every node, in ``node_urls`` order."""
        return [client.info("commandstats") for client in self.clients()]

    def close(self) -> None:
        """Close the INFO clients."""
        for client in self._clients:
            client.close()
        self._clients = []


def make_layer(hosts: list[Any], prefix: str) -> RedisChannelLayer:
    """A layer that neither refuses nor expires a message during a run."""
    return RedisChannelLayer(hosts=hosts, prefix=prefix, capacity=CAPACITY, expiry=EXPIRY_S)


def single_target(url: str) -> Target:
    """A target of one redis-server."""
    return Target(SINGLE, [url], [url])


def cluster_target(startup_urls: Sequence[str]) -> Target:
    """A target of a Redis Cluster given its primaries' URLs."""
    return Target(CLUSTER, [{"cluster": list(startup_urls)}], list(startup_urls))


def calls_of(stats: dict[str, dict[str, float]], command: str) -> int:
    """How many times ``command`` ran on one node (0 if it never did)."""
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def usec_of(stats: dict[str, dict[str, float]], command: str) -> float:
    """Server microseconds spent in ``command`` on one node."""
    return float(stats.get(f"cmdstat_{command}", {}).get("usec", 0))


# --------------------------------------------------------------------------- round trips

# The trace of the group_send being traced, inherited by every task it starts.
_TRACE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("bench_trace", default=None)
# The highest phase whose reply this task (or the task that started it) has read.
_PHASE: contextvars.ContextVar[int] = contextvars.ContextVar("bench_phase", default=0)


@dataclass
class Trace:
    """Round trips of one call (writes of a command or pipeline) and its phases (the longest
    chain of round trips each sent only after the reply of the one before)."""

    round_trips: int = 0
    phases: int = 0


@contextlib.contextmanager
def traced_round_trips() -> Iterator[None]:
    """Count the round trips of the calls run under `traced` while the block lasts.

    redis-py's connection is wrapped (in this process only): each write of one command or
    pipeline is a round trip; its phase is one more than the highest phase whose reply the
    writing task had read before (a task inherits that from the task that created it, through
    a context variable). Round trips sent at once are one phase, one sent only after reading
    the reply of another is the next phase: the phases of a call are how many round-trip
    latencies it waits for in a row, however many commands and nodes are involved.
    """
    original_send = AbstractConnection.send_packed_command
    original_read = AbstractConnection.read_response

    async def send_packed_command(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        trace = _TRACE.get()
        if trace is not None:
            phase = _PHASE.get() + 1
            trace.round_trips += 1
            trace.phases = max(trace.phases, phase)
            self._bench_phase = phase  # type: ignore[attr-defined]
        await original_send(self, *args, **kwargs)

    async def read_response(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        response = await original_read(self, *args, **kwargs)
        phase = getattr(self, "_bench_phase", 0)
        if _TRACE.get() is not None and phase > _PHASE.get():
            _PHASE.set(phase)
        return response

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    AbstractConnection.read_response = read_response  # type: ignore[method-assign]
    # Script calls on the dedicated connection (asgi_redis.writer) are written without
    # send_packed_command and read in its own task: trace the pool's path, which makes the
    # same round trips.
    writer_enabled, writer.ENABLED = writer.ENABLED, False
    try:
        yield
    finally:
        writer.ENABLED = writer_enabled
        AbstractConnection.send_packed_command = original_send  # type: ignore[method-assign]
        AbstractConnection.read_response = original_read  # type: ignore[method-assign]


async def traced(call: Callable[[], Awaitable[object]]) -> Trace:
    """Run ``call`` (inside `traced_round_trips`) and return its round trips and phases."""
    trace = Trace()
    trace_token = _TRACE.set(trace)
    phase_token = _PHASE.set(0)
    try:
        await call()
    finally:
        _PHASE.reset(phase_token)
        _TRACE.reset(trace_token)
    return trace


# --------------------------------------------------------------------------- workloads

Metrics = dict[str, float]


async def add_members(layer: RedisChannelLayer, group: str, channels: Sequence[str]) -> None:
    """group_add every channel, ``ADD_CONCURRENCY`` at a time (untimed set-up)."""
    for start in range(0, len(channels), ADD_CONCURRENCY):
        batch = channels[start : start + ADD_CONCURRENCY]
        await asyncio.gather(*(layer.group_add(group, channel) for channel in batch))


@dataclass(frozen=True)
class Timing:
    """Wall-clock and client CPU seconds of a timed part, and what the servers ran."""

    wall_s: float
    cpu_s: float
    stats: list[dict[str, dict[str, float]]]


async def timed(target: Target, work: Callable[[], Awaitable[object]]) -> Timing:
    """Run ``work`` with the nodes' commandstats reset before and read after."""
    target.reset_stats()
    wall, cpu = time.perf_counter(), time.process_time()
    await work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Timing(wall, cpu, target.command_stats())


async def pump(layer: RedisChannelLayer, channels: Sequence[str], per_channel: int) -> None:
    """One producer and one consumer task per channel, all at once.

    Raises BenchFailedError unless every message arrived.
    """
    received = 0

    async def produce(channel: str) -> None:
        for index in range(per_channel):
            await layer.send(channel, message("message", index))

    async def consume(channel: str) -> None:
        nonlocal received
        for _ in range(per_channel):
            await layer.receive(channel)
            received += 1

    await asyncio.gather(
        *(consume(channel) for channel in channels), *(produce(channel) for channel in channels)
    )
    if received != per_channel * len(channels):
        raise BenchFailedError(f"received {received} of {per_channel * len(channels)} messages")


async def send_receive(target: Target, sizes: Sizes) -> Metrics:
    """msgs/s of ``sizes.messages`` over ``sizes.channels`` named channels, then over as many
    process-local ones; client CPU and commands (scripts and pops) per message."""
    layer = target.layer(SR_PREFIX)
    metrics: Metrics = {}
    per_channel = max(1, sizes.messages // sizes.channels)
    try:
        await layer.flush()
        named = [f"bench.sr.{index}" for index in range(sizes.channels)]
        local = [await layer.new_channel() for _ in range(sizes.channels)]
        for kind, channels in (("named", named), ("local", local)):
            await pump(layer, channels, 20)  # connections, scripts and readers: untimed
            timing = await timed(target, partial(pump, layer, channels, per_channel))
            count = per_channel * len(channels)
            commands = sum(
                calls_of(node, "evalsha") + calls_of(node, "blmpop") + calls_of(node, "blpop")
                for node in timing.stats
            )
            metrics[f"sr_{kind}_rate"] = count / timing.wall_s
            metrics[f"sr_{kind}_cpu_us"] = timing.cpu_s / count * 1e6
            metrics[f"sr_{kind}_commands"] = commands / count
        await layer.flush()
    finally:
        await layer.close()
    return metrics


async def timed_group_sends(
    layer: RedisChannelLayer, target: Target, group: str, calls: int, members: int
) -> Timing:
    """Warm up, then ``calls`` group_sends in a row, timed.

    Raises BenchFailedError unless every call reached every member.
    """
    for index in range(WARMUP_CALLS):
        await layer.group_send(group, message("warmup", index))
    sent_before, full_before = layer.counters.sent, layer.counters.channel_full

    async def sends() -> None:
        for index in range(calls):
            await layer.group_send(group, message("group", index))

    timing = await timed(target, sends)
    delivered = layer.counters.sent - sent_before
    full = layer.counters.channel_full - full_before
    if delivered != calls * members or full:
        raise BenchFailedError(
            f"{calls} group_sends to {members:,} members delivered {delivered:,} "
            f"({full:,} refused as full); expected {calls * members:,}"
        )
    return timing


async def call_metrics(
    layer: RedisChannelLayer, group: str, calls: int, timing: Timing, traced_calls: int
) -> Metrics:
    """Rate, client CPU and commands per call of the timed calls, then the round trips of
    ``traced_calls`` more."""
    evalsha = [calls_of(node, "evalsha") for node in timing.stats]
    usec = [usec_of(node, "evalsha") for node in timing.stats]
    metrics = {
        "rate": calls / timing.wall_s,
        "cpu_us": timing.cpu_s / calls * 1e6,
        "evalsha": sum(evalsha) / calls,
        "smembers": sum(calls_of(node, "smembers") for node in timing.stats) / calls,
        "busiest_evalsha": max(evalsha) / calls,
        "server_us": sum(usec) / calls,
        "busiest_us": max(usec) / calls,
    }
    with traced_round_trips():
        # Untraced: calls so far ran on the writer's connection, so open the pool's first (its
        # connection handshake is no round trip of a group_send).
        await layer.group_send(group, message("traced", -1))
        traces = [
            await traced(partial(layer.group_send, group, message("traced", index)))
            for index in range(traced_calls)
        ]
    metrics["round_trips"] = statistics.median(trace.round_trips for trace in traces)
    metrics["phases"] = max(trace.phases for trace in traces)
    return metrics


async def group_send_named(target: Target, sizes: Sizes) -> Metrics:
    """calls/s of group_send to ``sizes.named_members`` named channels nobody reads."""
    layer = target.layer(NAMED_PREFIX)
    group = NAMED_GROUP
    try:
        await layer.flush()
        members = [f"bench.member.{index}" for index in range(sizes.named_members)]
        await add_members(layer, group, members)
        timing = await timed_group_sends(layer, target, group, sizes.named_calls, len(members))
        metrics = await call_metrics(layer, group, sizes.named_calls, timing, sizes.traced_calls)
        await layer.flush()
    finally:
        await layer.close()
    return {f"named_{key}": value for key, value in metrics.items()}


async def group_send_local(target: Target, sizes: Sizes) -> Metrics:
    """calls/s of group_send to the process-local members the helper processes hold.

    Nothing is flushed: the members belong to the helpers for the whole run.
    """
    layer = target.layer(LOCAL_PREFIX)
    try:
        timing = await timed_group_sends(
            layer, target, LOCAL_GROUP, sizes.local_calls, sizes.local_members
        )
        metrics = await call_metrics(
            layer, LOCAL_GROUP, sizes.local_calls, timing, sizes.traced_calls
        )
    finally:
        await layer.close()
    return {f"local_{key}": value for key, value in metrics.items()}


WORKLOADS: tuple[Callable[[Target, Sizes], Awaitable[Metrics]], ...] = (
    send_receive,
    group_send_named,
    group_send_local,
)


# --------------------------------------------------------------------------- member processes


@dataclass(frozen=True)
class HeldMembers:
    """What one helper process holds on one target: its client queue (``a.b!``)."""

    target: str
    queue: str


def hold_members(
    specs: list[tuple[str, list[Any]]], channels: int, conn: Any
) -> None:  # pragma: no cover - runs in a helper process
    """Helper process body: on each target, ``channels`` new channels in the local group."""
    try:
        asyncio.run(_hold_members(specs, channels, conn))
    except Exception as exc:  # the parent must hear about it instead of waiting
        with contextlib.suppress(OSError):
            conn.send(f"{type(exc).__name__}: {exc}")


async def _hold_members(specs: list[tuple[str, list[Any]]], channels: int, conn: Any) -> None:
    """One layer per target in this process's loop; hold the channels until told to stop."""
    layers: list[RedisChannelLayer] = []
    held: list[HeldMembers] = []
    try:
        for name, hosts in specs:
            layer = make_layer(hosts, LOCAL_PREFIX)
            layers.append(layer)
            names = [await layer.new_channel() for _ in range(channels)]
            await add_members(layer, LOCAL_GROUP, names)
            held.append(HeldMembers(name, keys.split_channel(names[0])[0]))
        conn.send(held)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
        await stop.wait()
    finally:
        for layer in layers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(layer.close(), 10)


@contextlib.contextmanager
def member_processes(targets: Sequence[Target], sizes: Sizes) -> Iterator[list[HeldMembers]]:
    """Start ``sizes.clients`` helper processes holding the local group on every target.

    Yields what they hold; stops them when the block ends.
    """
    context = multiprocessing.get_context("spawn")
    specs = [(target.name, target.hosts) for target in targets]
    started: list[tuple[Any, Any]] = []
    try:
        for _ in range(sizes.clients):
            parent, child = context.Pipe()
            process = context.Process(
                target=hold_members, args=(specs, sizes.channels_per_client, child), daemon=True
            )
            process.start()
            started.append((process, parent))
        held: list[HeldMembers] = []
        deadline = time.monotonic() + HELPER_TIMEOUT_S
        for _, parent in started:
            if not parent.poll(max(0.0, deadline - time.monotonic())):
                raise BenchFailedError(f"member process not ready after {HELPER_TIMEOUT_S:.0f} s")
            try:
                reply = parent.recv()
            except EOFError:
                reply = "exited before it was ready"
            if isinstance(reply, str):
                raise BenchFailedError(f"member process failed: {reply}")
            held += reply
        yield held
    finally:
        for _, parent in started:
            with contextlib.suppress(OSError):
                parent.send("stop")
        for process, parent in started:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            parent.close()


# --------------------------------------------------------------------------- running


@dataclass
class Results:
    """Every measured value: (metric, target) -> one value per repetition, and failures."""

    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    queues: dict[str, list[str]] = field(default_factory=dict)

    def add(self, target: str, metrics: Metrics) -> None:
        """Record one repetition's metrics of one target."""
        for key, value in metrics.items():
            self.values.setdefault((key, target), []).append(value)

    def median(self, key: str, target: str) -> float:
        """The median over repetitions, NaN when nothing was measured."""
        found = self.values.get((key, target))
        return statistics.median(found) if found else math.nan

    def per_rep(self, key: str, target: str) -> list[float]:
        """The values of each repetition, in order."""
        return self.values.get((key, target), [])


async def measure(targets: Sequence[Target], sizes: Sizes, results: Results) -> None:
    """Every workload on every target, ``sizes.reps`` times, alternating which goes first."""
    for rep in range(sizes.reps):
        for workload in WORKLOADS:
            order = list(targets) if rep % 2 == 0 else list(reversed(targets))
            for target in order:
                name = workload.__name__
                print(f"[rep {rep + 1}/{sizes.reps}] {name} on {target.name}", file=sys.stderr)
                try:
                    metrics = await asyncio.wait_for(workload(target, sizes), STEP_TIMEOUT_S)
                except (Exception, asyncio.TimeoutError) as exc:
                    results.failures.append(
                        f"{name} on {target.name} (repetition {rep + 1}): "
                        f"{type(exc).__name__}: {exc}"
                    )
                    continue
                results.add(target.name, metrics)


def run_on(single_url: str, cluster_urls: Sequence[str], sizes: Sizes) -> Results:
    """Measure on servers that are already running (the tests pass theirs)."""
    targets = [single_target(single_url), cluster_target(cluster_urls)]
    results = Results()
    try:
        with member_processes(targets, sizes) as held:
            for member in held:
                results.queues.setdefault(member.target, []).append(member.queue)
            asyncio.run(measure(targets, sizes, results))
    except BenchFailedError as exc:
        results.failures.append(f"local members: {exc}")
    finally:
        for target in targets:
            target.close()
    return results


def run(sizes: Sizes) -> tuple[Results, str]:
    """Start one redis-server and one 3-primary cluster, measure, stop them.

    Returns the results and the redis-server version.
    """
    with RedisServer() as server, RedisClusterServers(3) as cluster:
        version = redis.Redis.from_url(server.url).info("server")["redis_version"]
        return run_on(server.url, cluster.startup_urls, sizes), str(version)


# --------------------------------------------------------------------------- report

# (metric, label, unit): the rows of the table, in order.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("sr_named_rate", "send+receive, {channels} named channels", "msgs/s"),
    ("sr_named_cpu_us", "- client CPU per message", "µs"),
    ("sr_named_commands", "- scripts + pops per message", "cmds"),
    ("sr_local_rate", "send+receive, {channels} process-local channels", "msgs/s"),
    ("sr_local_cpu_us", "- client CPU per message", "µs"),
    ("sr_local_commands", "- scripts + pops per message", "cmds"),
    ("named_rate", "group_send {named:,} named", "calls/s"),
    ("named_cpu_us", "- client CPU per call", "µs"),
    ("named_evalsha", "- EVALSHA per call (all nodes)", "cmds"),
    ("named_busiest_evalsha", "- EVALSHA per call, busiest node", "cmds"),
    ("named_smembers", "- SMEMBERS per call (in scripts too)", "cmds"),
    ("named_round_trips", "- client round trips per call", "trips"),
    ("named_phases", "- client round-trip phases per call", "phases"),
    ("named_server_us", "- EVALSHA server time per call (all nodes)", "µs"),
    ("named_busiest_us", "- EVALSHA server time per call, busiest node", "µs"),
    ("local_rate", "group_send {local:,} local ({clients} clients)", "calls/s"),
    ("local_cpu_us", "- client CPU per call", "µs"),
    ("local_evalsha", "- EVALSHA per call (all nodes)", "cmds"),
    ("local_busiest_evalsha", "- EVALSHA per call, busiest node", "cmds"),
    ("local_round_trips", "- client round trips per call", "trips"),
    ("local_phases", "- client round-trip phases per call", "phases"),
    ("local_server_us", "- EVALSHA server time per call (all nodes)", "µs"),
    ("local_busiest_us", "- EVALSHA server time per call, busiest node", "µs"),
)


def fmt(value: float, unit: str) -> str:
    """A number for the table: rates and µs as whole numbers, counts with up to 2 decimals."""
    if math.isnan(value):
        return "n/a"
    if unit in ("msgs/s", "calls/s", "µs"):
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def ratio(cluster: float, single: float) -> float:
    """cluster / single, NaN unless both are positive."""
    return cluster / single if cluster > 0 and single > 0 else math.nan


def table(results: Results, sizes: Sizes) -> list[str]:
    """The markdown table of medians and ratios."""
    names = {
        "channels": sizes.channels,
        "named": sizes.named_members,
        "local": sizes.local_members,
        "clients": sizes.clients,
    }
    lines = [
        "| workload | unit | single server | 3-primary cluster | ratio per repetition | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label, unit in ROWS:
        single, cluster = results.median(key, SINGLE), results.median(key, CLUSTER)
        pairs = zip(results.per_rep(key, SINGLE), results.per_rep(key, CLUSTER), strict=False)
        per_rep = " ".join(f"{ratio(c, s):.2f}" for s, c in pairs)
        lines.append(
            f"| {label.format(**names)} | {unit} | {fmt(single, unit)} | "
            f"{fmt(cluster, unit)} | {per_rep or '-'} | {ratio(cluster, single):.2f} |"
        )
    return lines


@dataclass(frozen=True)
class Verdict:
    """One target: what it asks, whether it is met, and what was measured."""

    target: str
    met: bool
    measured: str


def verdicts(results: Results, sizes: Sizes) -> list[Verdict]:
    """The cluster targets, checked against the medians."""
    single_rate = results.median("named_rate", SINGLE)
    cluster_rate = results.median("named_rate", CLUSTER)
    share = ratio(cluster_rate, single_rate)
    phases = results.median("named_phases", CLUSTER)
    trips = results.median("named_round_trips", CLUSTER)
    scripts = results.median("named_evalsha", CLUSTER)
    local_scripts = results.median("local_evalsha", CLUSTER)
    queues = results.queues.get(CLUSTER, [])
    tags = {keys.tag_of(queue) for queue in queues}
    return [
        Verdict(
            f"group_send {sizes.named_members:,} named on 3 primaries >= 1/3 of one server",
            share >= 1 / 3,
            f"{share:.2f} ({fmt(cluster_rate, 'calls/s')} vs {fmt(single_rate, 'calls/s')} "
            "calls/s)",
        ),
        Verdict(
            f"group_send {sizes.named_members:,} named on the cluster in <= 2 round-trip phases",
            phases <= 2,
            f"{fmt(phases, 'x')} phases ({fmt(trips, 'x')} round trips: the directory, then "
            f"{fmt(scripts, 'x')} scripts)",
        ),
        Verdict(
            f"group_send {sizes.local_members:,} local: per tag one script for its named "
            "members and one for its clients' entries, not one per member",
            len(queues) > 0 and local_scripts <= 2 * len(tags),
            f"{fmt(local_scripts, 'x')} scripts per call for {len(queues)} client queues "
            f"({len(tags)} distinct tags)",
        ),
    ]


def verdict_lines(found: Sequence[Verdict]) -> list[str]:
    """The targets as a markdown table."""
    lines = ["| target | status | measured |", "| --- | --- | --- |"]
    for verdict in found:
        status = "**MET**" if verdict.met else "**MISSED**"
        lines.append(f"| {verdict.target} | {status} | {verdict.measured} |")
    return lines


def report(results: Results, sizes: Sizes, header: Sequence[str]) -> list[str]:
    """Header, table, targets and failures, as markdown lines."""
    lines = [f"- {line}" for line in header]
    lines += ["", *table(results, sizes), "", *verdict_lines(verdicts(results, sizes))]
    lines += [
        "",
        "ratio = cluster / single server (medians; > 1 means the cluster is higher).",
    ]
    if results.failures:
        lines += ["", "Failed runs:", ""]
        lines += [f"- FAILED {failure}" for failure in results.failures]
    return lines


# Sizes that have a command-line option of the same name.
OPTION_SIZES = ("reps", "clients", "channels_per_client", "named_members", "messages")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 repetition, fewer calls")
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL.reps})")
    parser.add_argument("--clients", type=int, help="processes holding local members")
    parser.add_argument("--channels-per-client", type=int, help="local members per process")
    parser.add_argument("--named-members", type=int, help="members of the named group")
    parser.add_argument("--messages", type=int, help="messages of each send+receive")
    args = parser.parse_args(argv)
    for name in OPTION_SIZES:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def sizes_from(args: argparse.Namespace) -> Sizes:
    """The sizes the options ask for."""
    sizes = QUICK if args.quick else FULL
    changes = {
        name: getattr(args, name) for name in OPTION_SIZES if getattr(args, name) is not None
    }
    return replace(sizes, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit code 1 when a run failed."""
    args = parse_args(argv)
    sizes = sizes_from(args)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    results, version = run(sizes)
    header = [
        f"{'--quick' if args.quick else 'full'} run, {sizes.reps} repetition(s), "
        f"total {time.perf_counter() - started:.0f} s",
        f"python {platform.python_version()}, redis-server {version}, "
        f"redis-py {redis.__version__}, asgi_redis {__version__}",
        f"{os.cpu_count()} CPUs, load average (1 min) {load_before:.2f} before the run, "
        f"{os.getloadavg()[0]:.2f} after",
    ]
    print("\n".join(report(results, sizes, header)))
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
