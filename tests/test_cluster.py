"""The layer on a real Redis Cluster: configuration, redirections, TLS and ACLs.

Behaviour tests run on the cluster too through the ``layer_hosts`` fixture; fault scenarios
under traffic (slot migrations, failover) are in ``tests/faults/test_cluster_faults.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from asgi_redis import RedisChannelLayer, keys, pipelining, scripts
from asgi_redis.cli import inspect
from asgi_redis.cli.main import parse_args
from asgi_redis.cluster import owners
from tests.cluster import RedisClusterServers
from tests.conftest import no_redis
from tests.layer_helpers import names_in_tag, receive_n, receive_within
from tests.servers import RedisServerError
from tests.test_acl import PASSWORD, SHORT_RULE, STRICT_RULE, USER
from tests.tls import make_tls_files
from tests.workload import exercise, exercise_from_sync_code

CLUSTER_COMMANDS = "+cluster|slots +asking"


def cluster_hosts(cluster: RedisClusterServers, **options: Any) -> list[dict[str, Any]]:
    """``hosts`` for a layer on ``cluster``."""
    return [{"cluster": cluster.startup_urls, **options}]


# -- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "error", "words"),
    [
        ({"cluster": []}, TypeError, "non-empty list"),
        ({"cluster": "redis://h:7000"}, TypeError, "non-empty list"),
        ({"cluster": ["redis://h:7000/2"]}, ValueError, "database 0"),
        ({"cluster": ["unix:///tmp/redis.sock"]}, ValueError, "redis:// or rediss://"),
        ({"cluster": ["redis://h:7000", "rediss://h:7001"]}, ValueError, "all use"),
        ({"cluster": ["redis://h:7000"], "address": "redis://h"}, ValueError, "'address'"),
        ({"cluster": ["redis://h:7000"], "bogus": 1}, TypeError, "'bogus'"),
        ({"cluster": ["redis://h:7000"], "socket_timeout": 1}, ValueError, "socket_timeout"),
    ],
)
def test_bad_cluster_hosts_are_refused_before_anything_runs(
    host: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        RedisChannelLayer(hosts=[host])


def test_a_cluster_is_the_only_host() -> None:
    with pytest.raises(ValueError, match="only item of hosts"):
        RedisChannelLayer(hosts=[{"cluster": ["redis://h:7000"]}, "redis://other:6379"])


def test_no_password_in_repr_or_label() -> None:
    layer = RedisChannelLayer(
        hosts=[{"cluster": ["redis://app:hunter2-secret@h:7000", ("h2", 7001)], "password": "p2"}]
    )
    shown = " ".join([repr(layer.config), repr(layer.config.hosts[0]), *layer.hosts])
    assert "hunter2-secret" not in shown
    assert "p2" not in shown.replace("h2", "")
    assert layer.hosts == ["cluster://h:7000,h2:7001"]


def test_every_tag_is_owned_once_the_slots_are_covered() -> None:
    reply = [[0, 8191, [b"10.0.0.1", 7000, b"id1"]], [8192, 16383, [b"10.0.0.2", 7001, b"id2"]]]
    found = owners(reply)
    assert len(found) == keys.TAG_COUNT
    assert found.count("10.0.0.1:7000") == found.count("10.0.0.2:7001") == keys.TAG_COUNT // 2
    with pytest.raises(redis.exceptions.ConnectionError, match="not served"):
        owners(reply[:1])


# -- redirections --------------------------------------------------------------------------


async def test_a_moved_slot_is_followed(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        await layer.send("moving", {"n": 1})
        slot = redis_cluster.slot_of(keys.queue_key(layer.prefix, "moving"))
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, redis_cluster.other_primary(slot))
        # The layer's map still names the old owner: MOVED must bring it to the new one.
        await layer.send("moving", {"n": 2})
        assert await receive_n(layer, "moving", 2) == [{"n": 1}, {"n": 2}]


async def test_ask_goes_to_the_target_on_one_connection_with_idle_connections(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    """The redis-py trap: ASKING and the command on different pooled connections. Several
    idle connections per node make a split pair likely; the layer must still succeed."""
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        # Fill the pools with idle connections: many concurrent calls to every node.
        await asyncio.gather(*(layer.send(f"warm{n}", {"n": n}) for n in range(300)))
        moved, staying = "asked.moved", "asked.staying"
        slot = redis_cluster.slot_of(keys.queue_key(layer.prefix, moved))
        await layer.send(moved, {"n": 1})
        target = redis_cluster.other_primary(slot)
        migration = redis_cluster.begin_migration(slot, target)
        try:
            while redis_cluster.move_keys(migration):
                pass  # every key of the slot is on the target now; the slot is still MIGRATING
            for n in range(2, 12):
                await layer.send(moved, {"n": n})  # ASK -> ASKING + EVALSHA on the target
            # Keys missing on both sides: the target answers TRYAGAIN until the move ends,
            # and the layer waits for it (the script never ran).
            adding = asyncio.ensure_future(layer.group_add("asked", moved))
            await asyncio.sleep(0.3)
            assert not adding.done()
        finally:
            await asyncio.to_thread(redis_cluster.finish_migration, migration)
        await asyncio.wait_for(adding, 10)
        await layer.group_send("asked", {"n": 12})
        assert await receive_n(layer, moved, 12) == [{"n": n} for n in range(1, 13)]
        await layer.send(staying, {"n": 0})
        assert await receive_within(layer, staying) == {"n": 0}


async def test_scripts_are_loaded_again_after_script_flush_on_every_node(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        channels = [f"flushed{n}" for n in range(30)]
        for channel in channels:
            await layer.group_add("flushed", channel)
        redis_cluster.script_flush_all()
        await layer.group_send("flushed", {"type": "after"})
        for channel in channels:
            assert await receive_within(layer, channel) == {"type": "after"}


async def test_first_use_by_many_tasks_at_once(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        await asyncio.gather(*(layer.send(f"first{n}", {"n": n}) for n in range(200)))
        got = await asyncio.gather(*(receive_within(layer, f"first{n}") for n in range(200)))
        assert got == [{"n": n} for n in range(200)]


async def test_receives_waiting_in_every_tag_leave_the_pool_to_sends(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    # 64 tag readers block on three nodes; with their pops on the pool that sends use (3
    # connections per node here) a send would wait for a pop to time out, or forever.
    hosts = cluster_hosts(redis_cluster, max_connections=3)
    async with RedisChannelLayer(hosts=hosts) as layer:
        waiting = [names_in_tag("idle", tag, 1)[0] for tag in range(keys.TAG_COUNT)]
        receives = [asyncio.ensure_future(layer.receive(name)) for name in waiting]
        try:
            await asyncio.sleep(0.5)  # every reader is blocking now
            for number in range(20):
                await asyncio.wait_for(layer.send("busy", {"n": number}), 2)
            assert await receive_n(layer, "busy", 20) == [{"n": n} for n in range(20)]
            await asyncio.wait_for(layer.send(waiting[-1], {"type": "last"}), 2)
            assert await asyncio.wait_for(receives[-1], 5) == {"type": "last"}
        finally:
            for task in receives:
                task.cancel()
            await asyncio.gather(*receives, return_exceptions=True)


def command_calls(cluster: RedisClusterServers, command: str) -> int:
    """How often ``command`` ran on the primaries (INFO commandstats)."""
    total = 0
    for node in cluster.primaries():
        stats = cluster.client(node).info("commandstats")
        total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


async def test_group_send_is_a_directory_read_then_one_script_per_tag(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        members = [f"member{n}" for n in range(200)]
        local = [await layer.new_channel() for _ in range(50)]
        for channel in [*members, *local]:
            await layer.group_add("big", channel)
        tags = {keys.tag_of(keys.split_channel(channel)[0]) for channel in [*members, *local]}
        for node in redis_cluster.primaries():
            redis_cluster.client(node).config_resetstat()
        await layer.group_send("big", {"type": "all"})
        assert command_calls(redis_cluster, "smembers") == 1
        # Per tag one script for its named members and one for its clients' entries.
        assert command_calls(redis_cluster, "evalsha") == 2 * len(tags)
        assert len(tags) < len(members)  # per tag, not per member
        for channel in [*members, *local]:
            assert await receive_within(layer, channel) == {"type": "all"}


async def test_group_send_whose_noscript_retry_cannot_connect_runs_no_tag_twice(
    redis_cluster: RedisClusterServers, cluster_urls: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SCRIPT FLUSH lands in the middle of a node's pipeline (its first tags ran, the rest
    meet NOSCRIPT), then the EVAL re-send cannot connect: only the tags that did not run are
    sent again, so every member gets the message once."""
    real = pipelining._pipeline
    refused = [0]

    async def pipeline(client: Any, sends: list[Any]) -> list[Any]:
        if all(sha is None for sha, _ in sends):
            if refused[0] == 0:
                refused[0] += 1
                raise redis.exceptions.ConnectionError(
                    "Error 111 connecting to 127.0.0.1:1. Connection refused."
                )
            return await real(client, sends)
        half = len(sends) // 2
        first = await real(client, sends[:half])
        await client.script_flush()
        return first + await real(client, sends[half:])

    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        members = [f"member{n}" for n in range(60)]
        for channel in members:
            await layer.group_add("room", channel)
        for node in redis_cluster.primaries():
            for name in ("group_send_named", "group_send_local"):
                redis_cluster.client(node).script_load(scripts.source(name))
        monkeypatch.setattr(pipelining, "_pipeline", pipeline)
        await layer.group_send("room", {"type": "once"})
        monkeypatch.setattr(pipelining, "_pipeline", real)
        assert refused[0] == 1
        for channel in members:
            assert await receive_within(layer, channel) == {"type": "once"}
        stats = [await layer.channel_statistics(channel) for channel in members]
        assert [stat["depth"] for stat in stats] == [0] * len(members)  # no second copy


# -- TLS and ACLs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A cluster serving TLS only (clients, bus and replication)."""
    tls = make_tls_files(Path(tmp_path_factory.mktemp("cluster-tls")))
    try:
        cluster = RedisClusterServers(tls=tls)
    except RedisServerError as exc:
        no_redis(str(exc))
    try:
        yield cluster
    finally:
        cluster.close()


def set_user_everywhere(cluster: RedisClusterServers, rule: str) -> None:
    """Create user ``USER`` with ``rule`` on every node (ACLs are per node)."""
    for node in cluster.nodes:
        admin = cluster.client(node)
        admin.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *rule.split())
        admin.execute_command("ACL", "LOG", "RESET")


def refusals(cluster: RedisClusterServers) -> list[Any]:
    """ACL refusals logged on any node since the user was set."""
    found: list[Any] = []
    for node in cluster.nodes:
        found += cluster.client(node).execute_command("ACL", "LOG")
    return found


def test_sync_callers_on_a_tls_cluster_with_a_user(tls_cluster: RedisClusterServers) -> None:
    tls_cluster.flush()
    set_user_everywhere(tls_cluster, SHORT_RULE)
    assert tls_cluster.tls is not None
    options = {"username": USER, "password": PASSWORD, **tls_cluster.tls.client_options()}
    exercise_from_sync_code(cluster_hosts(tls_cluster, **options))
    assert refusals(tls_cluster) == []


@pytest.mark.parametrize(
    "rule", [SHORT_RULE, f"{STRICT_RULE} {CLUSTER_COMMANDS}"], ids=["short", "strict"]
)
async def test_tls_cluster_with_a_user_limited_to_the_prefix(
    tls_cluster: RedisClusterServers, rule: str
) -> None:
    tls_cluster.flush()
    set_user_everywhere(tls_cluster, rule)
    assert all(url.startswith("rediss://") for url in tls_cluster.startup_urls)
    assert tls_cluster.tls is not None
    options = {"username": USER, "password": PASSWORD, **tls_cluster.tls.client_options()}
    await exercise(cluster_hosts(tls_cluster, **options))
    assert refusals(tls_cluster) == []


async def test_a_wrong_password_fails_naming_the_cluster_without_the_password(
    tls_cluster: RedisClusterServers,
) -> None:
    assert tls_cluster.tls is not None
    options = {"username": USER, "password": "not-it-9f2", **tls_cluster.tls.client_options()}
    async with RedisChannelLayer(hosts=cluster_hosts(tls_cluster, **options)) as layer:
        with pytest.raises(redis.exceptions.RedisError) as caught:
            await layer.send("x", {"type": "x"})
    assert "clusters://" in str(caught.value)
    assert "not-it-9f2" not in str(caught.value)


async def test_inspect_reads_every_primary(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        for n in range(30):
            await layer.send(f"seen{n}", {"n": n})
            await layer.group_add("watched", f"seen{n}")
    out, err = io.StringIO(), io.StringIO()
    args = parse_args(["inspect", "--json", "--cluster", redis_cluster.startup_urls[0]])
    status = await asyncio.to_thread(inspect.run, args, out, err)
    assert status == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert len(report["servers"]) == len(redis_cluster.primaries())
    assert sum(server["queues"]["total"] for server in report["servers"]) == 30
    members = [row["members"] for s in report["servers"] for row in s["groups"]["rows"]]
    assert sum(members) == 30


def test_a_layer_serves_one_short_lived_loop_after_another(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    """async_to_sync runs each call on a new loop: every loop gets its own node clients."""
    layer = RedisChannelLayer(hosts=cluster_hosts(redis_cluster))
    for number in range(5):
        asyncio.run(layer.send("loops", {"n": number}))

    async def drain() -> list[dict[str, Any]]:
        try:
            return await receive_n(layer, "loops", 5)
        finally:
            await layer.close()

    assert asyncio.run(drain()) == [{"n": number} for number in range(5)]


async def test_a_receive_goes_on_while_its_slot_is_half_moved(
    redis_cluster: RedisClusterServers, cluster_urls: Any
) -> None:
    """Multi-key pops get TRYAGAIN while a migration splits the slot's keys; the reader then
    pops key by key, so a message sent meanwhile arrives before the move ends."""
    async with RedisChannelLayer(hosts=cluster_hosts(redis_cluster)) as layer:
        other = names_in_tag("split.other", keys.tag_index("split.watched"), 1)[0]
        await layer.send(other, {"n": 0})
        other_queue = keys.queue_key(layer.prefix, other)
        slot = redis_cluster.slot_of(other_queue)
        waiting = asyncio.ensure_future(layer.receive("split.watched"))
        await asyncio.sleep(0.2)
        migration = redis_cluster.begin_migration(slot, redis_cluster.other_primary(slot))
        try:
            # Move the other queue only: the slot now has keys on both nodes.
            redis_cluster.call(
                migration.source, "MIGRATE", migration.target.host, migration.target.port,
                "", 0, 5000, "KEYS", other_queue,
            )  # fmt: skip
            await layer.send("split.watched", {"n": 1})
            assert await asyncio.wait_for(waiting, 5) == {"n": 1}
        finally:
            await asyncio.to_thread(redis_cluster.finish_migration, migration)
        assert await receive_within(layer, other) == {"n": 0}
