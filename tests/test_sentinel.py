"""Hosts described by Redis Sentinel: the layer follows the master the sentinels name.

Every server here is a real process on a free port: a master, sometimes a replica, and one
``redis-sentinel`` (quorum 1) watching them, so a killed master fails over in a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.exceptions
from asgiref.sync import async_to_sync

from asgi_redis import RedisChannelLayer, keys
from asgi_redis.config import Host, parse
from tests.conftest import no_redis, start_server
from tests.layer_helpers import blocked_clients, receive_within, sync_client, wait_until
from tests.servers import HOST, RedisServer, RedisServerError, start_sentinel
from tests.test_syncpath import churn, count_blocking_calls, wait_for
from tests.tls import TlsFiles
from tests.workload import exercise_from_sync_code

MASTER_NAME = "mymaster"
# Bounds that stop a broken test from hanging; a healthy failover takes a few seconds.
SETTLE_S = 10.0
FAILOVER_S = 20.0
RECOVER_S = 25.0


@dataclass
class SentinelSet:
    """A master, its replica (if any) and one sentinel watching them."""

    master: RedisServer
    sentinel: RedisServer
    replica: RedisServer | None = None

    def host(self, **options: Any) -> dict[str, Any]:
        """A ``hosts`` item in the channels_redis Sentinel format."""
        return {"sentinels": [(HOST, self.sentinel.port)], "master_name": MASTER_NAME, **options}

    def layer(self, **options: Any) -> RedisChannelLayer:
        """A layer whose only host is this set's sentinel service."""
        return RedisChannelLayer(hosts=[self.host()], **options)

    def master_address(self) -> tuple[str, int] | None:
        """What the sentinel says the master is right now."""
        with sync_client(self.sentinel.client_url) as client:
            address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        return None if address is None else (address[0].decode(), int(address[1]))

    def replica_ready(self) -> bool:
        """Whether the sentinel sees the replica connected and in sync, able to take over."""
        with sync_client(self.sentinel.client_url) as client:
            replicas = client.sentinel_slaves(MASTER_NAME)
        return any(
            replica["flags"] == "slave" and replica["master-link-status"] == "ok"
            for replica in replicas
        )

    def close(self) -> None:
        """Stop every process of the set."""
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.close()


def start_set(
    with_replica: bool, *, tls: TlsFiles | None = None, tls_auth_clients: bool = False
) -> SentinelSet:
    """Start a master (and a replica), then a sentinel; fail/skip when Redis is missing.

    With ``tls`` every server and the sentinel serve TLS only and talk TLS to each other;
    ``tls_auth_clients`` makes them all want a client certificate.
    """
    tls_options = {"tls": tls, "tls_auth_clients": tls_auth_clients}
    # Without the default 5 s wait before a diskless full sync, the replica is ready at once.
    master = start_server("--repl-diskless-sync-delay", "0", **tls_options)
    servers = [master]
    try:
        replica = None
        if with_replica:
            replica = start_server("--replicaof", HOST, str(master.port), **tls_options)
            servers.append(replica)
        try:
            sentinel = start_sentinel(
                MASTER_NAME, master.port, tls=tls, tls_auth_clients=tls_auth_clients
            )
        except RedisServerError as exc:
            no_redis(str(exc))
    except BaseException:
        for server in servers:
            server.close()
        raise
    with sync_client(sentinel.client_url) as client:
        # Test-only tunables: replicas' INFO stays fresh enough to promote them at any time,
        # and a scheduling hiccup on a busy machine (TILT mode) pauses failovers for 2 s, not 30.
        client.execute_command("SENTINEL", "DEBUG", "info-period", 1000, "tilt-period", 2000)
    return SentinelSet(master, sentinel, replica)


@pytest.fixture
def monitored() -> Iterator[SentinelSet]:
    """A master watched by one sentinel."""
    servers = start_set(with_replica=False)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def with_replica() -> Iterator[SentinelSet]:
    """A master and one replica watched by one sentinel that may promote the replica."""
    servers = start_set(with_replica=True)
    try:
        yield servers
    finally:
        servers.close()


def client_count(server: RedisServer) -> int:
    """Clients of ``server`` other than the one asking and the sentinel's own links."""
    with sync_client(server.client_url) as client:
        clients = client.client_list()
    return sum(1 for info in clients if not info["name"].startswith("sentinel-")) - 1


# -- the layer's API through a sentinel ------------------------------------------------------


async def test_send_receive_group_send(monitored: SentinelSet) -> None:
    async with monitored.layer() as layer:
        await layer.send("named", {"type": "hello"})
        assert await receive_within(layer, "named") == {"type": "hello"}
        local = await layer.new_channel()
        await layer.group_add("room", local)
        await layer.group_add("room", "named")
        await layer.group_send("room", {"type": "everyone"})
        assert await receive_within(layer, local) == {"type": "everyone"}
        assert await receive_within(layer, "named") == {"type": "everyone"}
        await layer.send("left", {"type": "waiting"})
        with sync_client(monitored.master.url) as master:
            # The data is on the sentinels' master.
            assert master.llen(keys.queue_key("asgi:", "left")) == 1
        stats = await layer.global_statistics()
        assert stats["shards"][0]["host"] == f"sentinel://{HOST}:{monitored.sentinel.port}/mymaster"


def test_sync_callers_through_a_sentinel(monitored: SentinelSet) -> None:
    exercise_from_sync_code([monitored.host()])
    assert client_count(monitored.master) == 0
    assert client_count(monitored.sentinel) == 0


async def test_other_keys_are_options_of_the_master(monitored: SentinelSet) -> None:
    async with RedisChannelLayer(hosts=[monitored.host(db=3)]) as layer:
        await layer.send("in.db3", {"type": "x"})
        with sync_client(f"{monitored.master.url}/3") as db3:
            assert db3.llen(keys.queue_key("asgi:", "in.db3")) == 1
        assert await receive_within(layer, "in.db3") == {"type": "x"}


async def test_a_burst_waits_for_free_connections(monitored: SentinelSet) -> None:
    # redis-py's own Sentinel pool would raise "Too many connections" here.
    async with RedisChannelLayer(hosts=[monitored.host(max_connections=2)]) as layer:
        await asyncio.gather(*(layer.send("burst", {"n": n}) for n in range(40)))
        got = [(await receive_within(layer, "burst"))["n"] for _ in range(40)]
        assert sorted(got) == list(range(40))


async def test_close_disconnects_from_master_and_sentinel(monitored: SentinelSet) -> None:
    layer = monitored.layer()
    local = await layer.new_channel()
    await layer.send(local, {"type": "a"})
    assert await receive_within(layer, local) == {"type": "a"}
    assert client_count(monitored.master) >= 1
    assert client_count(monitored.sentinel) >= 1
    await layer.close()
    assert client_count(monitored.master) == 0
    assert client_count(monitored.sentinel) == 0


# -- failover --------------------------------------------------------------------------------


async def send_until_it_lands(layer: RedisChannelLayer, channel: str, message: Any) -> int:
    """Retry ``send`` while the layer cannot reach a master yet; returns the attempts made."""
    deadline = time.monotonic() + RECOVER_S
    attempts = 0
    while True:
        attempts += 1
        try:
            await asyncio.wait_for(layer.send(channel, message), SETTLE_S)
            return attempts
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def check_failover(servers: SentinelSet, host: dict[str, Any]) -> None:
    """Kill the master (SIGKILL); a receive waiting on it gets a message sent once the
    sentinel has promoted the replica, through a layer on ``host``."""
    assert servers.replica is not None
    old_master = (HOST, servers.master.port)
    await wait_until(servers.replica_ready, SETTLE_S)
    assert servers.master_address() == old_master
    async with RedisChannelLayer(hosts=[host]) as layer:
        await layer.send("before", {"type": "warm up"})  # the layer knows the old master
        assert await receive_within(layer, "before") == {"type": "warm up"}
        pending = asyncio.create_task(layer.receive("survivor"))
        await wait_until(lambda: blocked_clients(servers.master.client_url) == 1)
        servers.master.kill()
        try:
            await wait_until(lambda: servers.master_address() != old_master, FAILOVER_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; sentinel log:\n{servers.sentinel.log_tail(40)}") from exc
        assert servers.master_address() == (HOST, servers.replica.port)
        assert not pending.done()
        await send_until_it_lands(layer, "survivor", {"type": "after.failover"})
        # The same receive call, not a new one, gets the message from the new master.
        assert await asyncio.wait_for(pending, RECOVER_S) == {"type": "after.failover"}
        with sync_client(servers.replica.client_url) as new_master:
            assert new_master.role()[0] == b"master"


async def test_a_pending_receive_survives_a_failover(with_replica: SentinelSet) -> None:
    await check_failover(with_replica, with_replica.host())


# -- validation (no I/O) ---------------------------------------------------------------------


def test_blocking_sync_calls_follow_a_failover(with_replica: SentinelSet) -> None:
    servers = with_replica
    assert servers.replica is not None
    old_master = (HOST, servers.master.port)
    assert wait_for(servers.replica_ready, SETTLE_S)
    layer = RedisChannelLayer(hosts=[servers.host()])
    churn(layer)
    blocking_calls = count_blocking_calls(layer)
    async_to_sync(layer.send)("before", {"type": "warm up"})  # it knows the old master
    servers.master.kill()
    assert wait_for(lambda: servers.master_address() != old_master, FAILOVER_S)
    deadline = time.monotonic() + RECOVER_S
    while True:
        try:
            async_to_sync(layer.send)("after", {"type": "after.failover"})
            break
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with sync_client(servers.replica.client_url) as new_master:
        assert new_master.llen(keys.queue_key("asgi:", "after")) == 1
    assert set(blocking_calls) == {"send to channel 'before'", "send to channel 'after'"}
    async_to_sync(layer.close)()


def sentinel_host(**changes: Any) -> dict[str, Any]:
    """A valid Sentinel dict with some keys changed (``None`` removes a key)."""
    host: dict[str, Any] = {"sentinels": [("127.0.0.1", 26379)], "master_name": "mymaster"}
    host.update(changes)
    return {key: value for key, value in host.items() if value is not None}


@pytest.mark.parametrize(
    ("host", "error", "names"),
    [
        ({"master_name": "mymaster"}, TypeError, "sentinels"),
        ({"sentinels": [("127.0.0.1", 26379)]}, TypeError, "master_name"),
        (sentinel_host(sentinels=[]), ValueError, "sentinels"),
        (sentinel_host(sentinels="127.0.0.1:26379"), TypeError, "sentinels"),
        (sentinel_host(sentinels=[("127.0.0.1",)]), TypeError, "sentinels"),
        (sentinel_host(sentinels=[("127.0.0.1", "26379")]), TypeError, "sentinels"),
        (sentinel_host(sentinels=[(26379, "127.0.0.1")]), TypeError, "sentinels"),
        (sentinel_host(sentinels=[("127.0.0.1", 0)]), ValueError, "sentinels"),
        (sentinel_host(sentinels=[("127.0.0.1", 70000)]), ValueError, "sentinels"),
        (sentinel_host(sentinels=["127.0.0.1"]), ValueError, "sentinels"),
        (sentinel_host(sentinels=["127.0.0.1:port"]), ValueError, "sentinels"),
        (sentinel_host(sentinels=["http://127.0.0.1:26379"]), ValueError, "sentinels"),
        (sentinel_host(sentinels=[None]), TypeError, "sentinels"),
        (sentinel_host(master_name=""), ValueError, "master_name"),
        (sentinel_host(master_name=" "), ValueError, "master_name"),
        (sentinel_host(master_name=["mymaster"]), TypeError, "master_name"),
        (sentinel_host(sentinel_kwargs="password"), TypeError, "sentinel_kwargs"),
        (sentinel_host(address="redis://127.0.0.1:6379"), ValueError, "address"),
        (sentinel_host(host="127.0.0.1", port=6379), ValueError, "host"),
    ],
)
def test_invalid_sentinel_dicts_raise_naming_the_key(
    host: dict[str, Any], error: type[Exception], names: str
) -> None:
    with pytest.raises(error, match=names):
        RedisChannelLayer(hosts=[host])


@pytest.mark.parametrize(
    "host",
    [
        sentinel_host(sentinels=["redis://:hunter2@10.0.0.1:26379"]),
        sentinel_host(sentinels=["user:hunter2@10.0.0.1:26379"]),
        sentinel_host(sentinel_kwargs="hunter2"),
    ],
)
def test_misplaced_secrets_are_refused_without_echoing_them(host: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError), match="sentinel_kwargs") as raised:
        parse(hosts=[host])
    assert "hunter2" not in str(raised.value)


def test_sentinel_addresses_in_every_accepted_form() -> None:
    host = parse(
        hosts=sentinel_host(
            sentinels=[
                ("10.0.0.1", 26379),
                ["10.0.0.2", 26380],
                "10.0.0.3:26381",
                "redis://10.0.0.4",
                "sentinel://[::1]:26382",
            ],
            sentinel_kwargs={"password": "sentinel-secret"},
            password="master-secret",
            db=2,
        )
    ).hosts[0]
    assert host.sentinel is not None
    assert host.sentinel.sentinels == (
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26380),
        ("10.0.0.3", 26381),
        ("10.0.0.4", 26379),
        ("::1", 26382),
    )
    assert host.sentinel.sentinel_options == {"password": "sentinel-secret"}
    assert host.options == {"password": "master-secret", "db": 2}
    label = host.label()
    assert label == (
        "sentinel://10.0.0.1:26379,10.0.0.2:26380,10.0.0.3:26381,10.0.0.4:26379,[::1]:26382"
        "/mymaster"
    )
    assert "secret" not in label


def test_plain_hosts_are_unchanged() -> None:
    assert parse(hosts=[{"address": "redis://h:1", "db": 1}]).hosts == (
        Host("redis://h:1", {"db": 1}),
    )
