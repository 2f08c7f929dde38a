"""Blocking script calls on sync clients (syncpath.py), below the layer."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from redis.asyncio.connection import Connection as AsyncConnection

from asgi_redis import RedisChannelLayer, commands, keys, syncpath
from asgi_redis.syncpath import SyncServers

from .layer_helpers import sync_client
from .servers import free_port


def servers_for(*hosts: Any) -> SyncServers:
    """Sync clients for ``hosts`` as a layer would parse them."""
    config = RedisChannelLayer(hosts=list(hosts)).config
    return SyncServers(config.hosts, [host.label() for host in config.hosts])


def send_call(channel: str, number: int) -> Any:
    """The script call of a send of a small entry to ``channel``."""
    entry = keys.make_entry(10**13, "", f"entry {number}".encode())
    queue, counts = keys.queue_key("asgi:", channel), keys.counts_key("asgi:", channel)
    return commands.send_call(
        queue=queue, counts=counts, now_ms=1, entry=entry, capacity=100, ttl_s=60, suffix=""
    )


def test_scripts_run_and_noscript_loads_them_again(redis_url: str) -> None:
    servers = servers_for(redis_url)
    assert servers.run(0, "send", send_call("direct", 1)) == 1
    with sync_client(redis_url) as client:
        client.script_flush()
    replies = servers.run_many(0, "two sends", [send_call("direct", 2), send_call("direct", 3)])
    assert replies == [1, 1]
    with sync_client(redis_url) as client:
        assert client.llen(keys.queue_key("asgi:", "direct")) == 3
    servers.close()


def test_a_connection_the_server_closed_is_replaced(redis_url: str) -> None:
    servers = servers_for(redis_url)
    servers.run(0, "send", send_call("killed", 1))
    with sync_client(redis_url) as client:
        client.client_kill_filter(_type="normal", skipme=True)
    assert servers.run(0, "send", send_call("killed", 2)) == 1
    servers.close()


def test_errors_name_the_operation_and_the_server() -> None:
    port = free_port()
    servers = servers_for(f"redis://127.0.0.1:{port}")
    with pytest.raises(redis.exceptions.ConnectionError) as raised:
        servers.run(0, "send to channel 'x'", send_call("x", 1))
    assert str(raised.value).startswith(
        f"send to channel 'x' failed on redis://127.0.0.1:{port}/0: cannot reach Redis"
    )


def test_a_failed_connect_gives_its_connection_back() -> None:
    servers = servers_for({"address": f"redis://127.0.0.1:{free_port()}", "max_connections": 1})
    for _ in range(3):  # with the only connection lost, the second call would wait forever
        with pytest.raises(redis.exceptions.ConnectionError):
            servers.run(0, "send", send_call("x", 1))


def test_threads_share_at_most_max_connections(redis_url: str) -> None:
    servers = servers_for({"address": redis_url, "max_connections": 2})
    errors: list[BaseException] = []

    def sends() -> None:
        try:
            for number in range(20):
                servers.run(0, "send", send_call("narrow", number))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=sends) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert servers.server(0)._made <= 2
    with sync_client(redis_url) as client:
        assert client.llen(keys.queue_key("asgi:", "narrow")) == 100  # capacity 100
    servers.close()


@pytest.mark.parametrize(
    ("host", "usable"),
    [
        ("redis://localhost:6379", True),
        ("rediss://localhost:6379", True),
        ("unix:///tmp/redis.sock", True),
        ({"sentinels": [("localhost", 26379)], "master_name": "mymaster"}, True),
        ({"cluster": ["redis://localhost:7000"]}, False),
        ({"address": "redis://localhost:6379", "connection_class": AsyncConnection}, False),
    ],
)
def test_which_hosts_have_sync_clients(host: Any, usable: bool) -> None:
    assert servers_for(host).usable is usable


def test_the_path_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncpath, "ENABLED", False)
    assert not servers_for("redis://localhost:6379").usable
