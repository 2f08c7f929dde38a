"""The Redis Cluster test harness itself (tests/cluster.py): start-up, slot moves, failover, TLS.

These tests use redis-py's own cluster client, not the layer, so they show the harness does
what later Cluster tests of the layer rely on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
import redis.asyncio.cluster
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.cluster import SLOTS, RedisClusterServers, parse_cluster_nodes
from tests.conftest import no_redis
from tests.servers import RedisServerError
from tests.tls import make_tls_files

KEYS = 50


def fill_slot(cluster: RedisClusterServers, tag: str) -> tuple[int, dict[str, str]]:
    """Write `KEYS` keys that share the hash tag ``tag``; return their slot and values."""
    values = {f"{{{tag}}}:{number}": f"value-{number}" for number in range(KEYS)}
    client = cluster.cluster_client(decode_responses=True)
    try:
        client.mset_nonatomic(values)
    finally:
        client.close()
    return cluster.slot_of(f"{{{tag}}}"), values


def read_all(cluster: RedisClusterServers, keys: list[str]) -> dict[str, object]:
    """Read ``keys`` through a fresh redis-py cluster client (it follows MOVED and ASK)."""
    client = cluster.cluster_client(decode_responses=True)
    try:
        return {key: client.get(key) for key in keys}
    finally:
        client.close()


def test_the_cluster_comes_up_with_every_slot_served(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    assert len(cluster_urls) == 3
    assert all(url.startswith("redis://127.0.0.1:") for url in cluster_urls)
    assert redis_cluster.replicas() == []
    for node in redis_cluster.nodes:
        info = redis_cluster.cluster_info(node)
        assert info["cluster_state"] == "ok"
        assert info["cluster_slots_ok"] == str(SLOTS)
    slot_map = redis_cluster.slot_map(redis_cluster.nodes[0])
    assert sum(last - first + 1 for first, last, _, _ in slot_map) == SLOTS


def test_a_cluster_client_writes_and_reads_on_every_primary(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    # One key per primary: the first of key-0, key-1, ... whose slot that primary owns.
    keys: dict[int, str] = {}
    number = 0
    while len(keys) < len(cluster_urls):
        key = f"key-{number}"
        keys.setdefault(redis_cluster.node_for_slot(redis_cluster.slot_of(key)).port, key)
        number += 1
    client = redis.cluster.RedisCluster.from_url(cluster_urls[0], decode_responses=True)
    try:
        for key in keys.values():
            client.set(key, f"at {key}")
        assert [client.get(key) for key in keys.values()] == [f"at {key}" for key in keys.values()]
    finally:
        client.close()
    for port, key in keys.items():
        assert redis_cluster.client(redis_cluster.server(port)).get(key) == f"at {key}".encode()


def test_flush_empties_every_primary(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    fill_slot(redis_cluster, "flush-a")
    fill_slot(redis_cluster, "flush-b")
    redis_cluster.flush()
    assert [redis_cluster.client(node).dbsize() for node in redis_cluster.primaries()] == [0, 0, 0]


def test_migrate_slot_moves_every_key_in_batches(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    slot, values = fill_slot(redis_cluster, "moving")
    source = redis_cluster.node_for_slot(slot)
    target = redis_cluster.other_primary(slot)
    seen_mid_move: list[dict[str, object]] = []

    migration = redis_cluster.migrate_slot(
        slot,
        target,
        batch=10,
        between_batches=lambda: seen_mid_move.append(read_all(redis_cluster, list(values))),
    )

    assert len(migration.moved) == KEYS
    assert len(seen_mid_move) == KEYS // 10
    assert all(seen == values for seen in seen_mid_move)
    assert redis_cluster.node_for_slot(slot) is target
    assert read_all(redis_cluster, list(values)) == values
    key = next(iter(values))
    assert redis_cluster.client(target).get(key) == values[key].encode()
    with pytest.raises(redis.exceptions.MovedError):
        redis_cluster.client(source).get(key)


def test_half_migrate_leaves_the_slot_between_nodes_with_ask_redirections(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    slot, values = fill_slot(redis_cluster, "half")
    source = redis_cluster.node_for_slot(slot)
    target = redis_cluster.other_primary(slot)

    migration = redis_cluster.half_migrate(slot, target)

    moved = [key.decode() for key in migration.moved]
    assert len(moved) == KEYS // 2
    staying = next(key for key in values if key not in moved)
    source_view = redis_cluster.cluster_nodes(source)
    myself = next(entry for entry in source_view if "myself" in entry.flags)
    assert f"[{slot}->-{migration.target_id}]" in myself.slots
    # The source still serves the keys it has, and sends clients to the target for the rest.
    assert redis_cluster.client(source).get(staying) == values[staying].encode()
    with pytest.raises(redis.exceptions.AskError) as asked:
        redis_cluster.client(source).get(moved[0])
    assert (asked.value.slot_id, asked.value.port) == (slot, target.port)
    # The target answers only after ASKING; otherwise it says the slot is the source's.
    with pytest.raises(redis.exceptions.MovedError):
        redis_cluster.client(target).get(moved[0])
    pipe = redis_cluster.client(target).pipeline(transaction=False)
    pipe.execute_command("ASKING")  # type: ignore[no-untyped-call]
    pipe.get(moved[0])
    assert pipe.execute()[1] == values[moved[0]].encode()
    assert read_all(redis_cluster, list(values)) == values

    redis_cluster.finish_migration(migration)

    assert redis_cluster.node_for_slot(slot) is target
    assert redis_cluster.call(target, "CLUSTER", "COUNTKEYSINSLOT", slot) == KEYS
    assert read_all(redis_cluster, list(values)) == values


def test_flush_closes_a_half_done_migration(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    slot, _ = fill_slot(redis_cluster, "abandoned")
    source = redis_cluster.node_for_slot(slot)
    redis_cluster.half_migrate(slot, redis_cluster.other_primary(slot))

    redis_cluster.flush()

    for node in redis_cluster.primaries():
        myself = next(e for e in redis_cluster.cluster_nodes(node) if "myself" in e.flags)
        assert not [item for item in myself.slots if item.startswith("[")]
    assert redis_cluster.node_for_slot(slot) is source
    redis_cluster.wait_until_stable()


async def test_amigrate_slot_lets_the_event_loop_run_between_batches(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    slot, values = fill_slot(redis_cluster, "async-move")
    target = redis_cluster.other_primary(slot)
    node = redis.asyncio.cluster.ClusterNode("127.0.0.1", int(cluster_urls[0].rsplit(":", 1)[1]))
    client = redis.asyncio.cluster.RedisCluster(startup_nodes=[node], decode_responses=True)
    reads: list[list[object]] = []

    async def read_everything() -> None:
        reads.append([await client.get(key) for key in values])

    try:
        await redis_cluster.amigrate_slot(slot, target, batch=25, between_batches=read_everything)
        after = [await client.get(key) for key in values]
    finally:
        await client.aclose()

    assert reads == [list(values.values())] * 2
    assert after == list(values.values())
    assert await asyncio.to_thread(redis_cluster.node_for_slot, slot) is target


def test_kill_primary_refuses_a_primary_without_replica(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    primary = redis_cluster.primaries()[0]
    with pytest.raises(ValueError, match="no running replica"):
        redis_cluster.kill_primary(primary)
    assert primary.running


def test_restart_stopped_brings_a_killed_node_back_with_its_slots(
    redis_cluster: RedisClusterServers, cluster_urls: list[str]
) -> None:
    slot = redis_cluster.slot_of("{restart}")
    victim = redis_cluster.node_for_slot(slot)
    victim.kill()

    redis_cluster.restart_stopped()

    assert victim.running
    assert redis_cluster.node_for_slot(slot) is victim
    assert read_all(redis_cluster, ["{restart}:key"]) == {"{restart}:key": None}
    redis_cluster.client(victim).set("{restart}:key", "back")
    assert read_all(redis_cluster, ["{restart}:key"]) == {"{restart}:key": "back"}


def test_kill_primary_promotes_its_replica(cluster_with_replicas: RedisClusterServers) -> None:
    cluster = cluster_with_replicas
    assert len(cluster.primaries()) == len(cluster.replicas()) == 3
    slot, values = fill_slot(cluster, "failover")
    victim = cluster.node_for_slot(slot)
    # Make sure the replica has the keys before its primary dies.
    assert cluster.call(victim, "WAIT", 1, 5000) == 1
    replica_ports = {
        entry.port for entry in cluster.cluster_nodes(victim) if entry.primary_id is not None
    }

    promoted = cluster.kill_primary(victim)

    assert not victim.running
    assert promoted.port in replica_ports
    assert promoted in cluster.primaries()
    assert victim not in cluster.primaries()
    assert cluster.node_for_slot(slot) is promoted
    assert len(cluster.startup_urls) == 3
    assert read_all(cluster, list(values)) == values


def test_a_tls_cluster_answers_over_tls_only(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    try:
        cluster = RedisClusterServers(tls=tls)
    except RedisServerError as exc:
        no_redis(f"a TLS Redis Cluster could not be started (built without TLS?): {exc}")
    with cluster:
        assert all(url.startswith("rediss://127.0.0.1:") for url in cluster.startup_urls)
        client = cluster.cluster_client(decode_responses=True)
        try:
            for number in range(20):
                client.set(f"tls-{number}", number)
            assert [client.get(f"tls-{number}") for number in range(20)] == [
                str(number) for number in range(20)
            ]
        finally:
            client.close()
        plain = redis.Redis(
            "127.0.0.1", cluster.nodes[0].port, socket_timeout=2.0, retry=Retry(NoBackoff(), 0)
        )
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                plain.ping()
        finally:
            plain.close()


def test_parse_cluster_nodes_reads_flags_replicas_and_slot_states() -> None:
    text = (
        "aaa 127.0.0.1:7000@17000,host myself,master - 0 0 1 connected 0-10 12 [11->-bbb]\n"
        "bbb 127.0.0.1:7001@17001 slave aaa 0 1 1 connected\n"
        "ccc 127.0.0.1:7002@17002 master,fail - 0 1 2 disconnected\n"
    )
    own, replica, failed = parse_cluster_nodes(text)
    assert (own.id, own.port, own.is_primary, own.failing) == ("aaa", 7000, True, False)
    assert own.slots == ("0-10", "12", "[11->-bbb]")
    assert (replica.primary_id, replica.is_primary) == ("aaa", False)
    assert failed.failing
