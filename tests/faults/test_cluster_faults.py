"""Faults of a real Redis Cluster under traffic: live slot moves, a failover, SCRIPT FLUSH.

Every scenario sends numbered messages and counts each one as delivered once, duplicated or
lost (``tests.faults.helpers.Tally``), prints the counts and checks its bound:

1. The slot of a busy named channel moves to another primary in small batches while a
   producer sends to it, a consumer receives and a group_send loop (that channel is a
   member) runs: every message exactly once, in order, and no layer call raises.
2. The same for the slot of a client's process-local queue (``new_channel()`` channels),
   and for the slot of a group's member copy (``keys.group_key``) while group_send runs.
3. The in-between state, held still with ``half_migrate``: a send to a queue already moved
   (ASK) succeeds and is received after the move ends; a group_send whose derived keys are
   split is retried, not half-delivered. Two more tests show calls that cannot pass ASK.
4. A primary is killed (its replica is promoted): the layer resumes; messages acknowledged
   before the kill are lost only on the killed primary and only in its last moment
   (asynchronous replication); no duplicates. Sends that raised are counted apart.
5. ``SCRIPT FLUSH`` on every node mid-traffic: nothing fails, every message exactly once.

Timeouts here are guards that stop a broken scenario; no test asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import pytest
import redis.exceptions

import asgi_redis.cluster
from asgi_redis import RedisChannelLayer, keys
from tests.cluster import Migration, RedisClusterServers
from tests.faults.helpers import Tally, record
from tests.layer_helpers import name_outside, names_in_tag, receive_n, receive_within, wait_until
from tests.servers import RedisServer

pytestmark = pytest.mark.faults

# (channel, producer, number): one message to one channel; a group_send files one per member.
Key = tuple[str, str, int]

FAILURES = (redis.exceptions.RedisError, OSError)
CAPACITY = 100_000  # no ChannelFull while a consumer waits for a slot to settle
SEND_PAUSE_S = 0.005
GROUP_PAUSE_S = 0.02
MAX_NUMBER = 20_000  # bounds every producer loop whatever the clock does
FLOWING_GUARD_S = 20.0
DRAIN_GUARD_S = 30.0
STOP_ATTEMPTS = 40
STOP_RETRY_S = 0.25
RECEIVE_RETRY_S = 0.1
# Live moves: keys per MIGRATE, and the traffic time between two batches.
BATCH = 3
MIGRATE_PAUSE_S = 0.03
BETWEEN_BATCHES_S = 0.05
FILLERS = 24  # other channels in the moving slot, one message each, so it takes many batches
BACKLOG = 30  # entries the watched queue holds when the move starts (consumers held back)
AFTER_FAULT_S = 0.5  # traffic kept running once the fault is over
# Failover: what "the last moment before the kill" means for the loss bound.
LAST_MOMENT_S = 1.0
RESUME_GUARD_S = 30.0
FLUSHES = 6
FLUSH_EVERY_S = 0.25
# The in-between tests: how long a call is left retrying before the move is finished.
RETRYING_S = 0.5
HELD = 5  # messages queued before the move, and sent again while it is held half way
# More keys than a slot holds here: half_migrate moves them all, then leaves the slot open
# (a count taken first could miss a key written meanwhile, such as a first heartbeat).
EVERY_KEY = 1_000_000
SHORT_DEADLINE_S = 2.0


# -- cluster helpers -----------------------------------------------------------------------


def cluster_layer(urls: list[str], **options: Any) -> RedisChannelLayer:
    """A layer on the Redis Cluster whose primaries are at ``urls``."""
    return RedisChannelLayer(hosts=[{"cluster": urls}], **{"capacity": CAPACITY, **options})


def queue_slot(layer: RedisChannelLayer, channel: str) -> int:
    """The hash slot of ``channel``'s queue key."""
    return RedisClusterServers.slot_of(keys.queue_key(layer.prefix, channel))


def error_counts(cluster: RedisClusterServers) -> Counter[str]:
    """Error replies of every running node so far, by code (``INFO errorstats``)."""
    counts: Counter[str] = Counter()
    for node in cluster.nodes:
        if not node.running:
            continue
        for name, value in cluster.client(node).info("errorstats").items():
            code = str(name).removeprefix("errorstat_")
            if isinstance(value, str):  # redis-py < 5.1 leaves "count=N" unparsed
                value = dict(item.split("=") for item in value.split(","))
            counts[code] += int(value["count"] if isinstance(value, dict) else value)
    return counts


def redirects_since(cluster: RedisClusterServers, before: Counter[str]) -> dict[str, int]:
    """How many MOVED, ASK and TRYAGAIN replies the nodes sent since ``before``."""
    now = error_counts(cluster)
    return {code: now[code] - before[code] for code in ("MOVED", "ASK", "TRYAGAIN")}


def move_only(
    cluster: RedisClusterServers, slot: int, to_node: RedisServer, moved: list[str]
) -> Migration:
    """Open a move of ``slot`` to ``to_node`` and MIGRATE exactly the keys ``moved``."""
    migration = cluster.begin_migration(slot, to_node)
    source, target = migration.source, migration.target
    cluster.call(source, "MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *moved)
    migration.moved.extend(key.encode() for key in moved)
    return migration


def asking(cluster: RedisClusterServers, node: RedisServer, *command: Any) -> Any:
    """``command`` on ``node`` right after ``ASKING`` (reads a key on a slot's import target)."""
    pipe = cluster.client(node).pipeline(transaction=False)
    pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
    pipe.execute_command(*command)  # type: ignore[no-untyped-call]
    return pipe.execute()[1]


def describe(exc: BaseException) -> str:
    """An exception as ``Class: message`` (redis-py's repr drops the message)."""
    return f"{type(exc).__name__}: {exc}"[:300]


# -- traffic -------------------------------------------------------------------------------


class Traffic:
    """Producers, a group_send loop and one consumer per channel, every message filed.

    ``sender`` sends and group_sends; ``receiver`` receives (it owns the process-local
    channels). Messages are ``{"type": "job", "src": producer, "id": number}``; each channel's
    consumer stops at a ``{"type": "stop"}`` sent after everything else (FIFO per queue), so
    a message missing then is lost, not late. ``parked`` channels get a message before the
    fault and no consumer until the end, so their queues stay in Redis while slots move.
    Clearing ``gate`` holds every consumer back before its next receive (queues fill up).

    Args:
        sender: the layer of the producers.
        receiver: the layer of the consumers.
        sends: one producer per channel here, numbered sends.
        group: the group the group_send loop sends to (None: no loop).
        members: the channels to group_add to ``group`` first.
        parked: channels that keep their messages in Redis until ``finish``.
    """

    def __init__(
        self,
        sender: RedisChannelLayer,
        receiver: RedisChannelLayer,
        sends: Iterable[str],
        group: str | None = None,
        members: Iterable[str] = (),
        parked: Iterable[str] = (),
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.sends = list(sends)
        self.group = group
        self.members = list(members)
        self.parked = list(parked)
        self.channels = list(dict.fromkeys([*self.sends, *self.members]))
        self.acked: dict[Key, float] = {}  # -> when the call returned (monotonic)
        self.failed: dict[Key, str] = {}  # -> what the call raised
        self.failed_at: list[float] = []  # when each failing call raised (monotonic)
        self.seen: dict[str, list[tuple[str, int]]] = {
            channel: [] for channel in [*self.channels, *self.parked]
        }
        self.first_seen: dict[Key, float] = {}
        self.errors: Counter[str] = Counter()  # "<call>: <exception class>" -> times
        self.error_samples: list[str] = []
        self.drain_timed_out = False
        self.gate = asyncio.Event()
        self.gate.set()
        self._running = True
        self._producers: list[asyncio.Task[None]] = []
        self._consumers: list[asyncio.Task[None]] = []

    # -- running -------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group, park messages, start consumers, then producers."""
        for member in self.members:
            assert self.group is not None
            await self.sender.group_add(self.group, member)
        for channel in self.parked:
            await self._send(channel, "parked", 0)
        self._consumers = [asyncio.create_task(self._consume(ch)) for ch in self.channels]
        self._producers = [asyncio.create_task(self._produce(ch)) for ch in self.sends]
        if self.group is not None:
            self._producers.append(asyncio.create_task(self._group_loop(self.group)))

    async def flowing(self) -> None:
        """Wait until every channel has delivered a message (the fault hits live traffic)."""
        await wait_until(lambda: all(self.seen[ch] for ch in self.channels), FLOWING_GUARD_S)

    async def finish(self) -> None:
        """Stop the producers, send the stops, wait for the consumers, drain parked queues."""
        self._running = False
        self.gate.set()
        await asyncio.gather(*self._producers)
        for channel in self.channels:
            await self._send_stop(channel)
        _, pending = await asyncio.wait(self._consumers, timeout=DRAIN_GUARD_S)
        self.drain_timed_out = bool(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        for channel in self.parked:
            message = await receive_within(self.receiver, channel, DRAIN_GUARD_S)
            self._file(channel, message)

    async def _produce(self, channel: str) -> None:
        """Numbered sends to ``channel`` until ``finish``."""
        for number in range(MAX_NUMBER):
            if not self._running:
                return
            await self._send(channel, "send", number)
            await asyncio.sleep(SEND_PAUSE_S)

    async def _send(self, channel: str, src: str, number: int) -> None:
        """One numbered send, filed as acknowledged or failed."""
        key = (channel, src, number)
        try:
            await self.sender.send(channel, {"type": "job", "src": src, "id": number})
        except FAILURES as exc:
            self._failed("send", exc, [key])
        else:
            self.acked[key] = time.monotonic()

    async def _group_loop(self, group: str) -> None:
        """Numbered group_sends until ``finish``; each files one message per member."""
        for number in range(MAX_NUMBER):
            if not self._running:
                return
            filed = [(member, "group", number) for member in self.members]
            try:
                await self.sender.group_send(group, {"type": "job", "src": "group", "id": number})
            except FAILURES as exc:
                self._failed("group_send", exc, filed)
            else:
                acked_at = time.monotonic()
                self.acked.update((key, acked_at) for key in filed)
            await asyncio.sleep(GROUP_PAUSE_S)

    async def _consume(self, channel: str) -> None:
        """Receive on ``channel`` until its stop message."""
        while True:
            await self.gate.wait()
            try:
                message = await self.receiver.receive(channel)
            except FAILURES as exc:
                self._failed("receive", exc, [])
                await asyncio.sleep(RECEIVE_RETRY_S)
                continue
            if message["type"] == "stop":
                return
            self._file(channel, message)

    def _file(self, channel: str, message: dict[str, Any]) -> None:
        """Note one received message."""
        self.seen[channel].append((message["src"], message["id"]))
        self.first_seen.setdefault((channel, message["src"], message["id"]), time.monotonic())

    async def _send_stop(self, channel: str) -> None:
        """Send the stop message, retrying while the cluster settles."""
        for _ in range(STOP_ATTEMPTS):
            try:
                await self.sender.send(channel, {"type": "stop"})
                return
            except FAILURES as exc:
                self._failed("stop", exc, [])
                await asyncio.sleep(STOP_RETRY_S)
        raise AssertionError(f"could not send the stop message to {channel}")

    def _failed(self, call: str, exc: BaseException, filed: list[Key]) -> None:
        """Note a layer call that raised."""
        self.errors[f"{call}: {type(exc).__name__}"] += 1
        self.failed_at.append(time.monotonic())
        if len(self.error_samples) < 5:
            self.error_samples.append(f"{call}: {describe(exc)}")
        for key in filed:
            self.failed[key] = type(exc).__name__

    # -- counting ------------------------------------------------------------------------

    def seen_keys(self) -> list[Key]:
        """Every delivery as a key (a duplicate appears twice)."""
        return [(ch, src, number) for ch, got in self.seen.items() for src, number in got]

    def lost_keys(self) -> set[Key]:
        """Acknowledged messages never received."""
        return set(self.acked) - set(self.seen_keys())

    def out_of_order(self) -> list[str]:
        """Producers whose messages a channel delivered out of their sending order."""
        problems = []
        for channel, got in self.seen.items():
            by_src: dict[str, list[int]] = defaultdict(list)
            for src, number in got:
                by_src[src].append(number)
            for src, numbers in by_src.items():
                if any(b <= a for a, b in itertools.pairwise(numbers)):
                    problems.append(f"{channel} from {src}: {numbers[:50]}")
        return problems

    def tally(self, scenario: str, bound: str) -> Tally:
        """The counts, with the errors and the drain state as extras."""
        tally = Tally(scenario, bound)
        tally.count(self.acked, self.failed, self.seen_keys())
        tally.extra.update(errors=dict(self.errors), drain_timed_out=self.drain_timed_out)
        # A group_send that raised may have delivered to the tags that answered: "late".
        late = Counter(key[1] for key in set(self.failed) & set(self.seen_keys()))
        tally.extra["late_by_call"] = dict(late)
        if self.error_samples:
            tally.extra["error_samples"] = self.error_samples
        return tally


def longest_gap_s(traffic: Traffic, channel: str) -> float:
    """The longest wait between two first deliveries on ``channel`` (reported, not asserted)."""
    times = sorted(t for (ch, _, _), t in traffic.first_seen.items() if ch == channel)
    return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 3)


def assert_exactly_once(tally: Tally, traffic: Traffic) -> None:
    """The bound of the migration and SCRIPT FLUSH scenarios."""
    assert not traffic.errors, traffic.error_samples
    assert tally.failed == 0
    assert tally.lost == 0 and tally.duplicates == 0, sorted(traffic.lost_keys())[:20]
    assert tally.extra["unknown"] == 0
    assert traffic.out_of_order() == []
    assert not traffic.drain_timed_out


# -- 1 and 2: live slot moves --------------------------------------------------------------


def on_node(cluster: RedisClusterServers, node: RedisServer, key: str) -> bool:
    """Whether ``key`` exists on ``node`` (asked with ASKING: the node may be importing it)."""
    return bool(asking(cluster, node, "EXISTS", key))


async def migrate_under_traffic(
    cluster: RedisClusterServers, traffic: Traffic, slot: int, watched: str
) -> dict[str, object]:
    """Move ``slot`` to another primary in batches of `BATCH` keys, traffic in between.

    The consumers are held back until the key ``watched`` has reached the target, so it
    moves with a backlog (or, for a group copy, while group_sends write to its members).
    """
    target = cluster.other_primary(slot)
    batches = 0
    acked_before = len(traffic.acked)

    async def between_batches() -> None:
        nonlocal batches
        batches += 1
        if not traffic.gate.is_set() and on_node(cluster, target, watched):
            traffic.gate.set()
        await asyncio.sleep(BETWEEN_BATCHES_S)

    before = error_counts(cluster)
    migration = await cluster.amigrate_slot(
        slot, target, batch=BATCH, between_batches=between_batches, pause_s=MIGRATE_PAUSE_S
    )
    traffic.gate.set()
    await asyncio.sleep(AFTER_FAULT_S)
    assert cluster.node_for_slot(slot) is target
    return {
        "slot": slot,
        "keys_moved": len(migration.moved),
        "watched_key_moved": watched.encode() in migration.moved,
        "batches": batches,
        "acked_during_move": len(traffic.acked) - acked_before,
        "redirects": redirects_since(cluster, before),
    }


async def run_migration(
    cluster: RedisClusterServers,
    traffic: Traffic,
    slot: int,
    scenario: str,
    *,
    backlog: str,
    watched: str,
) -> tuple[Tally, dict[str, object]]:
    """Start ``traffic``; once the queue ``backlog`` holds `BACKLOG` entries, move ``slot``
    under it (see `migrate_under_traffic` for ``watched``); finish and count."""
    await traffic.start()
    await traffic.flowing()
    traffic.gate.clear()
    owner = cluster.client(cluster.node_for_slot(slot))
    await wait_until(lambda: owner.llen(backlog) >= BACKLOG, FLOWING_GUARD_S)
    moved = await migrate_under_traffic(cluster, traffic, slot, watched)
    await traffic.finish()
    tally = traffic.tally(scenario, "every message exactly once, in order; no call raises")
    tally.extra.update(moved, backlog_at_start=BACKLOG)
    watched_channel = next(
        ch for ch in traffic.channels if keys.queue_key(traffic.sender.prefix, ch) == backlog
    )
    tally.extra["longest_receive_gap_s"] = longest_gap_s(traffic, watched_channel)
    record(tally)
    return tally, moved


def assert_moved_live(tally: Tally, traffic: Traffic, moved: dict[str, object]) -> None:
    """The bound of scenarios 1 and 2, and that the move really was live and batched."""
    assert_exactly_once(tally, traffic)
    assert moved["watched_key_moved"] is True
    assert isinstance(moved["batches"], int) and moved["batches"] > 1


async def test_moving_the_slot_of_a_busy_named_channel(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    async with cluster_layer(cluster_urls) as sender, cluster_layer(cluster_urls) as receiver:
        busy = "faults.cluster.busy"
        tag = keys.tag_index(busy)
        others = [name_outside(f"faults.cluster.other{n}", [tag]) for n in range(2)]
        local = await receiver.new_channel()
        traffic = Traffic(
            sender,
            receiver,
            sends=[busy],
            group="faults.cluster.room",
            members=[busy, *others, local],
            parked=names_in_tag("faults.cluster.fill", tag, FILLERS),
        )
        queue = keys.queue_key(sender.prefix, busy)
        tally, moved = await run_migration(
            redis_cluster,
            traffic,
            queue_slot(sender, busy),
            "cluster: slot of a busy named channel moved live",
            backlog=queue,
            watched=queue,
        )
    assert_moved_live(tally, traffic, moved)


async def test_moving_the_slot_of_a_process_local_queue(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    async with cluster_layer(cluster_urls) as sender, cluster_layer(cluster_urls) as receiver:
        locals_ = [await receiver.new_channel() for _ in range(2)]
        tag = keys.tag_index(keys.split_channel(locals_[0])[0])
        traffic = Traffic(
            sender,
            receiver,
            sends=locals_,
            group="faults.cluster.locals",
            members=[*locals_, name_outside("faults.cluster.named", [tag])],
            parked=names_in_tag("faults.cluster.fill", tag, FILLERS),
        )
        queue = keys.queue_key(sender.prefix, locals_[0])
        tally, moved = await run_migration(
            redis_cluster,
            traffic,
            queue_slot(sender, locals_[0]),
            "cluster: slot of a client's process-local queue moved live",
            backlog=queue,
            watched=queue,
        )
    assert_moved_live(tally, traffic, moved)


async def test_moving_the_slot_of_a_group_member_copy(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    group = "faults.cluster.copy"
    copy_tag = (keys.tag_index(group) + 1) % keys.TAG_COUNT  # not the directory's slot
    in_copy = names_in_tag("faults.cluster.member", copy_tag, 2)
    elsewhere = name_outside("faults.cluster.outside", [copy_tag])
    # Capacity overrides give the copy its capacities hash, so both keys group_send names
    # exist and its script runs (and checks the derived keys) while the slot moves.
    overrides = {"faults.cluster.member.*": CAPACITY - 1}
    async with (
        cluster_layer(cluster_urls, channel_capacity=overrides) as sender,
        cluster_layer(cluster_urls) as receiver,
    ):
        local = await receiver.new_channel()
        traffic = Traffic(
            sender,
            receiver,
            sends=[elsewhere],
            group=group,
            members=[*in_copy, elsewhere, local],
            parked=names_in_tag("faults.cluster.fill", copy_tag, FILLERS),
        )
        copy_key = keys.group_key(sender.prefix, group, keys.TAGS[copy_tag])
        tally, moved = await run_migration(
            redis_cluster,
            traffic,
            RedisClusterServers.slot_of(copy_key),
            "cluster: slot of a group's member copy moved live",
            backlog=keys.queue_key(sender.prefix, in_copy[0]),
            watched=copy_key,
        )
    assert_moved_live(tally, traffic, moved)


# -- 3: the in-between state, held still ---------------------------------------------------


def queue_lengths(cluster: RedisClusterServers, queue_keys: Iterable[str]) -> dict[str, int]:
    """LLEN of each queue on the primary owning it (a leftover would be a duplicate)."""
    return {
        key: int(cluster.client(cluster.node_for_slot(cluster.slot_of(key))).llen(key))
        for key in queue_keys
    }


@pytest.mark.parametrize("kind", ["named", "process-local"])
async def test_send_to_a_queue_already_moved_follows_ask(
    redis_cluster: RedisClusterServers, cluster_urls: list[str], kind: str
) -> None:
    tally = Tally(
        f"cluster: half-migrated slot, send to a moved {kind} queue (ASK)",
        "every send succeeds; all received after the move ends, once, in order",
    )
    async with cluster_layer(cluster_urls) as layer:
        channel = "faults.cluster.half" if kind == "named" else await layer.new_channel()
        acked = [(channel, "send", n) for n in range(2 * HELD)]
        for number in range(HELD):
            await layer.send(channel, {"type": "job", "id": number})
        queue = keys.queue_key(layer.prefix, channel)
        slot = redis_cluster.slot_of(queue)
        target = redis_cluster.other_primary(slot)
        migration = await asyncio.to_thread(redis_cluster.half_migrate, slot, target, EVERY_KEY)
        assert queue.encode() in migration.moved
        before = error_counts(redis_cluster)
        for number in range(HELD, 2 * HELD):
            await layer.send(channel, {"type": "job", "id": number})  # must not raise
        tally.extra["redirects"] = redirects_since(redis_cluster, before)
        tally.extra["queued_on_target_while_held"] = asking(redis_cluster, target, "LLEN", queue)
        waiting = asyncio.create_task(receive_n(layer, channel, 2 * HELD))
        await asyncio.sleep(RETRYING_S)
        tally.extra["received_while_held"] = waiting.done()
        await asyncio.to_thread(redis_cluster.finish_migration, migration)
        received = await waiting
        tally.extra["left_in_queue"] = queue_lengths(redis_cluster, [queue])[queue]
    tally.count(acked, [], [(channel, "send", message["id"]) for message in received])
    record(tally)
    assert [message["id"] for message in received] == list(range(2 * HELD))
    assert tally.extra["queued_on_target_while_held"] == 2 * HELD
    assert tally.extra["left_in_queue"] == 0
    assert tally.lost == 0 and tally.duplicates == 0


async def test_group_send_with_split_derived_keys_is_retried_not_half_delivered(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    tally = Tally(
        "cluster: half-migrated slot, group_send with a member queue moved away",
        "retried until the move ends, then delivered once to each member; none half-delivered",
    )
    group = "faults.cluster.split"
    tag = (keys.tag_index(group) + 1) % keys.TAG_COUNT
    moved_member, staying_member = names_in_tag("faults.cluster.split", tag, 2)
    elsewhere = name_outside("faults.cluster.split.far", [tag])
    members = [moved_member, staying_member, elsewhere]
    # An override gives the copy its capacities hash: both keys the script names stay on the
    # source, so the script itself runs there and must find the moved member queue.
    overrides = {"faults.cluster.split.*": CAPACITY - 1}
    async with cluster_layer(cluster_urls, channel_capacity=overrides) as layer:
        for member in members:
            await layer.group_add(group, member)
        for member in members[:2]:  # their queues exist, one on each side of the move
            await layer.send(member, {"type": "job", "src": "send", "id": 0})
        moved_queue = keys.queue_key(layer.prefix, moved_member)
        staying_queue = keys.queue_key(layer.prefix, staying_member)
        slot = redis_cluster.slot_of(moved_queue)
        target = redis_cluster.other_primary(slot)
        migration = await asyncio.to_thread(move_only, redis_cluster, slot, target, [moved_queue])
        before = error_counts(redis_cluster)
        sending = asyncio.create_task(
            layer.group_send(group, {"type": "job", "src": "group", "id": 0})
        )
        await asyncio.sleep(RETRYING_S)
        tally.extra["done_while_split"] = sending.done()
        source = redis_cluster.client(migration.source)
        tally.extra["while_split"] = {
            "staying_queue_on_source": int(source.llen(staying_queue)),
            "moved_queue_on_target": int(asking(redis_cluster, target, "LLEN", moved_queue)),
        }
        tally.extra["redirects_while_split"] = redirects_since(redis_cluster, before)
        await asyncio.to_thread(redis_cluster.finish_migration, migration)
        await sending
        seen = []
        for member in members:
            got = await receive_n(layer, member, 2 if member in members[:2] else 1)
            seen += [(member, message["src"], message["id"]) for message in got]
        queues = [keys.queue_key(layer.prefix, member) for member in members]
        tally.extra["left_in_queues"] = sum(queue_lengths(redis_cluster, queues).values())
    acked = [(m, "send", 0) for m in members[:2]] + [(m, "group", 0) for m in members]
    tally.count(acked, [], seen)
    record(tally)
    assert tally.extra["done_while_split"] is False
    # Nothing of the retried call was written in the split tag: each queue holds only its send.
    assert tally.extra["while_split"] == {"staying_queue_on_source": 1, "moved_queue_on_target": 1}
    assert tally.extra["redirects_while_split"]["TRYAGAIN"] > 0
    assert tally.lost == 0 and tally.duplicates == 0 and tally.extra["left_in_queues"] == 0


async def test_group_add_while_the_group_directory_is_half_migrated(
    redis_cluster: RedisClusterServers, cluster_urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After an ASK, a MULTI block (the directory's SADD + EXPIRE) needs ASKING before MULTI;
    # without it the call would loop between the nodes until the deadline (kept short here).
    monkeypatch.setattr(asgi_redis.cluster, "REDIRECT_DEADLINE_S", SHORT_DEADLINE_S)
    group = "faults.cluster.directory"
    first = name_outside("faults.cluster.directory.a", [keys.tag_index(group)])
    second = name_outside("faults.cluster.directory.b", [keys.tag_index(group)])
    async with cluster_layer(cluster_urls) as layer:
        await layer.group_add(group, first)
        directory = keys.directory_key(layer.prefix, group)
        slot = redis_cluster.slot_of(directory)
        target = redis_cluster.other_primary(slot)
        migration = await asyncio.to_thread(move_only, redis_cluster, slot, target, [directory])
        before = error_counts(redis_cluster)
        try:
            await layer.group_add(group, second)  # the directory is on the target: ASK
        finally:
            redirects = redirects_since(redis_cluster, before)
            print(f"[faults] cluster: group_add, its directory on the import target: {redirects}")
            await asyncio.to_thread(redis_cluster.finish_migration, migration)
        await layer.group_send(group, {"type": "job", "id": 1})
        assert [(await receive_within(layer, ch))["id"] for ch in (first, second)] == [1, 1]


async def test_liveness_mark_is_refreshed_while_its_slot_is_half_migrated(
    redis_cluster: RedisClusterServers,
    cluster_urls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(asgi_redis.cluster, "REDIRECT_DEADLINE_S", SHORT_DEADLINE_S)
    heartbeat_s = 0.3
    # The beat writes the mark with its tag's uptime clock: both moved (a batch of MIGRATE
    # that splits them makes the beat wait for TRYAGAIN, and a mark missing meanwhile is not
    # death: the next group_send takes it as seen then).
    async with cluster_layer(cluster_urls, heartbeat=heartbeat_s) as layer:
        local = await layer.new_channel()
        await layer.send(local, {"type": "job", "id": 0})
        assert (await receive_within(layer, local))["id"] == 0
        mark = keys.heartbeat_key(layer.prefix, local)
        clock = keys.clock_key(layer.prefix, keys.tag_of(keys.split_channel(local)[0]))
        slot = redis_cluster.slot_of(mark)
        target = redis_cluster.other_primary(slot)
        migration = await asyncio.to_thread(move_only, redis_cluster, slot, target, [mark, clock])
        try:
            before = error_counts(redis_cluster)
            await asyncio.sleep(13 * heartbeat_s)  # longer than a mark's lifetime
            # A live process's mark must still be there (else group_send drops its members).
            # Under a heavily loaded machine a beat can come late and the mark lapse for a
            # moment: the next beat must bring it back on the target, so poll a few beats.
            remaining_ms = int(asking(redis_cluster, target, "PTTL", mark))
            for _ in range(10):
                if remaining_ms > 0:
                    break
                await asyncio.sleep(heartbeat_s)
                remaining_ms = int(asking(redis_cluster, target, "PTTL", mark))
            redirects = redirects_since(redis_cluster, before)
            print(
                "[faults] cluster: liveness mark on the import target after "
                f"{13 * heartbeat_s:.1f} s of beats: PTTL {remaining_ms} ms, {redirects}"
            )
        finally:
            await asyncio.to_thread(redis_cluster.finish_migration, migration)
    # Seen under heavy load before the polling (PTTL -2): the failed beats' warnings say why.
    assert remaining_ms > 0, [record.getMessage() for record in caplog.records]


async def test_group_send_to_a_copy_already_moved_runs_on_the_ask_target(
    redis_cluster: RedisClusterServers, cluster_urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asgi_redis.cluster, "REDIRECT_DEADLINE_S", SHORT_DEADLINE_S)
    group = "faults.cluster.moved"
    tag = (keys.tag_index(group) + 1) % keys.TAG_COUNT
    members = names_in_tag("faults.cluster.moved", tag, 2)
    async with cluster_layer(cluster_urls) as layer:  # no capacity overrides: no c: hash
        for member in members:
            await layer.group_add(group, member)
            await layer.send(member, {"type": "job", "src": "send", "id": 0})
        copy_key = keys.group_key(layer.prefix, group, keys.TAGS[tag])
        slot = redis_cluster.slot_of(copy_key)
        target = redis_cluster.other_primary(slot)
        migration = await asyncio.to_thread(redis_cluster.half_migrate, slot, target, EVERY_KEY)
        before = error_counts(redis_cluster)
        try:
            # Every key of the copy and of its members is on the target now: nothing is split.
            await layer.group_send(group, {"type": "job", "src": "group", "id": 0})
        finally:
            redirects = redirects_since(redis_cluster, before)
            print(f"[faults] cluster: group_send, copy fully on the import target: {redirects}")
            await asyncio.to_thread(redis_cluster.finish_migration, migration)
        for member in members:
            got = await receive_n(layer, member, 2)
            assert [(m["src"], m["id"]) for m in got] == [("send", 0), ("group", 0)]


# -- 4: failover ---------------------------------------------------------------------------


def channels_on_every_primary(
    cluster: RedisClusterServers, prefix: str, stem: str, each: int
) -> list[str]:
    """``each`` named channels ``stem.N`` per primary, grouped by primary."""
    wanted: dict[int, list[str]] = {node.port: [] for node in cluster.primaries()}
    for number in itertools.count():
        name = f"{stem}.{number}"
        port = cluster.node_for_slot(cluster.slot_of(keys.queue_key(prefix, name))).port
        if len(wanted[port]) < each:
            wanted[port].append(name)
        if all(len(names) == each for names in wanted.values()):
            return [name for names in wanted.values() for name in names]
    raise AssertionError("unreachable")  # pragma: no cover


def first_after(times: Iterable[tuple[Key, float]], channel: str, since: float) -> float | None:
    """Seconds from ``since`` to the first of ``times`` on ``channel`` at or after it."""
    found = [at - since for key, at in times if key[0] == channel and at >= since]
    return round(min(found), 2) if found else None


def resumed(traffic: Traffic, channels: Iterable[str], since: float) -> dict[str, float | None]:
    """Per channel: seconds from ``since`` until a message acknowledged after it arrived."""
    after = [
        (key, delivered_at)
        for key, delivered_at in traffic.first_seen.items()
        if traffic.acked.get(key, -1.0) >= since
    ]
    return {channel: first_after(after, channel, since) for channel in channels}


class Failover:
    """When a primary was killed and replaced, and which channels it held."""

    def __init__(self, cluster: RedisClusterServers, traffic: Traffic, victim: RedisServer):
        self.cluster = cluster
        self.traffic = traffic
        self.victim = victim
        prefix = traffic.sender.prefix
        self.on_victim = {
            ch
            for ch in traffic.channels
            if cluster.node_for_slot(cluster.slot_of(keys.queue_key(prefix, ch))) is victim
        }
        self.killed_at = self.promoted_at = 0.0

    async def run(self) -> None:
        """Kill the primary, wait for its replica's promotion, then for traffic to resume."""
        self.killed_at = time.monotonic()
        promoted = await asyncio.to_thread(self.cluster.kill_primary, self.victim)
        self.promoted_at = time.monotonic()
        assert promoted.port != self.victim.port
        await wait_until(
            lambda: None not in resumed(self.traffic, self.on_victim, self.promoted_at).values(),
            RESUME_GUARD_S,
        )
        await asyncio.sleep(AFTER_FAULT_S)

    def stopped_at(self) -> float:
        """When the killed primary stopped answering: the first call that raised after the
        kill (before it, no call failed; after it, its slots wait for the new primary)."""
        failures = [at for at in self.traffic.failed_at if at >= self.killed_at]
        return min(failures) if failures else self.promoted_at

    def at_risk(self) -> set[Key]:
        """Messages the kill may lose: on the killed primary, acknowledged in its last moment."""
        first, last = self.killed_at - LAST_MOMENT_S, self.stopped_at()
        return {
            key
            for key, acked_at in self.traffic.acked.items()
            if key[0] in self.on_victim and first <= acked_at <= last
        }

    def report(self) -> dict[str, object]:
        """The numbers of the failover itself, for the tally."""
        traffic, since = self.traffic, self.promoted_at
        acks = list(traffic.acked.items())
        return {
            "on_killed_primary": sorted(self.on_victim),
            "at_risk": len(self.at_risk()),
            "failover_s": round(since - self.killed_at, 2),
            "kill_to_first_failure_s": round(self.stopped_at() - self.killed_at, 3),
            "first_ack_after_promotion_s": {
                ch: first_after(acks, ch, since) for ch in sorted(self.on_victim)
            },
            "delivered_after_promotion_s": resumed(traffic, sorted(self.on_victim), since),
            "last_failure_after_promotion_s": round(max(traffic.failed_at, default=0) - since, 2),
        }


async def test_failover_of_a_primary_under_traffic(
    cluster_with_replicas: RedisClusterServers,
) -> None:
    cluster = cluster_with_replicas
    urls = cluster.startup_urls
    # The receiver beats every 0.3 s: the failover (about 4 s) lasts many heartbeats, and
    # its process-local member must stay in the group (guarantee 12).
    async with cluster_layer(urls) as sender, cluster_layer(urls, heartbeat=0.3) as receiver:
        named = channels_on_every_primary(cluster, sender.prefix, "faults.cluster.failover", 2)
        local = await receiver.new_channel()
        traffic = Traffic(
            sender,
            receiver,
            sends=[*named, local],
            group="faults.cluster.failover.room",
            members=[*named[::2], local],
        )
        await traffic.start()
        await traffic.flowing()
        failover = Failover(cluster, traffic, cluster.node_for_slot(queue_slot(sender, named[0])))
        await failover.run()
        await traffic.finish()
        local_members = (await sender.group_statistics("faults.cluster.failover.room"))["local"]
        rejoins = receiver.counters.rejoins
    tally = traffic.tally(
        "cluster: failover of a primary (kill -9, replica promoted)",
        f"duplicates = 0; lost only on the killed primary, acked in its last {LAST_MOMENT_S} s",
    )
    tally.extra.update(failover.report())
    tally.extra.update({"local_members_after": local_members, "rejoins": rejoins})
    record(tally)
    assert local_members == 1 and rejoins == 0
    lost = traffic.lost_keys()
    assert tally.duplicates == 0
    assert lost <= failover.at_risk(), sorted(lost - failover.at_risk())[:20]
    assert tally.extra["unknown"] == 0
    assert traffic.out_of_order() == []
    assert not traffic.drain_timed_out
    # Calls raised only because the killed node could not be reached.
    unreachable = ("ConnectionError", "TimeoutError")
    assert all(kind.endswith(unreachable) for kind in traffic.errors), traffic.error_samples


# -- 5: SCRIPT FLUSH -----------------------------------------------------------------------


async def test_script_flush_on_every_node_mid_traffic(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    async with cluster_layer(cluster_urls) as sender, cluster_layer(cluster_urls) as receiver:
        named = channels_on_every_primary(redis_cluster, sender.prefix, "faults.cluster.flush", 1)
        local = await receiver.new_channel()
        traffic = Traffic(
            sender,
            receiver,
            sends=[*named, local],
            group="faults.cluster.flush.room",
            members=[*named, local],
        )
        await traffic.start()
        await traffic.flowing()
        before = error_counts(redis_cluster)
        for _ in range(FLUSHES):
            await asyncio.to_thread(redis_cluster.script_flush_all)
            await asyncio.sleep(FLUSH_EVERY_S)
        noscript = error_counts(redis_cluster)["NOSCRIPT"] - before["NOSCRIPT"]
        await traffic.finish()
    tally = traffic.tally(
        "cluster: SCRIPT FLUSH on every node mid-traffic",
        "every message exactly once, in order; no call raises",
    )
    tally.extra.update(flushes=FLUSHES, noscript_replies=noscript)
    record(tally)
    assert_exactly_once(tally, traffic)
    assert noscript > 0  # the flushes did hit calls in flight
