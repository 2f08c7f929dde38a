"""Shared fixtures: real redis-server processes on free ports, and script clients.

When redis-server cannot be started the tests that need it are skipped, except under CI
(env ``CI``) or ``make test`` (env ``ASGI_REDIS_REQUIRE_REDIS``), where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from asgi_redis import held
from tests.cluster import RedisClusterServers
from tests.servers import RedisServer, RedisServerError

SCRIPT_BACKENDS = ["fakeredis", "redis-server"]


def redis_required() -> bool:
    """Whether a missing redis-server must fail the run instead of skipping tests."""
    return any(os.environ.get(name) for name in ("CI", "ASGI_REDIS_REQUIRE_REDIS"))


def no_redis(reason: str) -> NoReturn:
    """Fail or skip the current test because Redis is unavailable."""
    if redis_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def start_server(*extra_args: str, **options: Any) -> RedisServer:
    """Start a RedisServer (``options`` are its keywords, e.g. ``tls``), or fail/skip the
    test with the reason."""
    try:
        return RedisServer(extra_args, **options)
    except RedisServerError as exc:
        no_redis(str(exc))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole run; tests get it empty via `redis_url`."""
    server = start_server()
    try:
        yield server
    finally:
        server.close()


def flush(url: str) -> None:
    """Delete every key on the server at ``url`` (and drop its cached scripts)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session server, flushed so the test starts empty."""
    if not redis_server.running:
        # A test that stopped the shared server must not break the ones after it.
        redis_server.start()
    flush(redis_server.url)
    return redis_server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server just for this test, free to stop and restart (same port)."""
    server = start_server()
    try:
        yield server
    finally:
        server.close()


def start_cluster(replicas_per_primary: int = 0) -> RedisClusterServers:
    """Start a 3-primary Redis Cluster, or fail/skip the test with the reason."""
    try:
        return RedisClusterServers(3, replicas_per_primary)
    except RedisServerError as exc:
        no_redis(f"a Redis Cluster could not be started: {exc}")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """One Redis Cluster (3 primaries, no replicas) for the whole run; see `cluster_urls`."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def cluster_urls(redis_cluster: RedisClusterServers) -> list[str]:
    """The primaries' URLs of the session cluster, emptied so the test starts clean.

    Nodes a previous test stopped are started again and half-done slot moves are closed.
    """
    redis_cluster.restart_stopped()
    redis_cluster.flush()
    return redis_cluster.startup_urls


@pytest.fixture
def cluster_with_replicas() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of this test only: 3 primaries with one replica each, to fail over."""
    cluster = start_cluster(replicas_per_primary=1)
    try:
        yield cluster
    finally:
        cluster.close()


def fake_client() -> Any:
    """A fakeredis client able to run Lua, or fail/skip when fakeredis[lua] is missing."""
    try:
        import fakeredis
    except ImportError as exc:
        no_redis(f"fakeredis is missing ({exc}); pip install 'fakeredis[lua]'")
    if importlib.util.find_spec("lupa") is None:
        # fakeredis runs EVAL through lupa; without it every script test would error.
        no_redis("lupa is missing, so fakeredis cannot run Lua; pip install 'fakeredis[lua]'")
    return fakeredis.FakeRedis(decode_responses=False)


@pytest.fixture(params=SCRIPT_BACKENDS, ids=SCRIPT_BACKENDS)
def script_client(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A sync client (bytes responses) on fakeredis or a real server, flushed first.

    Lua contract tests run once per backend with this fixture.
    """
    client: Any
    if request.param == "fakeredis":
        client = fake_client()
    else:
        url: str = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url, decode_responses=False)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def shard_servers() -> Iterator[list[RedisServer]]:
    """Two more redis-servers for the whole run, for layers sharding over several hosts."""
    servers = [start_server(), start_server()]
    try:
        yield servers
    finally:
        for server in servers:
            server.close()


LAYER_MODES = ["server", "shards", "cluster"]


@pytest.fixture(params=LAYER_MODES, ids=LAYER_MODES)
def layer_hosts(request: pytest.FixtureRequest) -> list[Any]:
    """The ``hosts`` of a layer, once per deployment: one server, two shards, a cluster.

    Behaviour tests that only use the layer's API take this instead of ``redis_url`` and so
    run on every mode; every server is emptied first.
    """
    if request.param == "server":
        return [request.getfixturevalue("redis_url")]
    if request.param == "shards":
        servers: list[RedisServer] = request.getfixturevalue("shard_servers")
        for server in servers:
            if not server.running:
                server.start()
            flush(server.url)
        return [server.url for server in servers]
    return [{"cluster": request.getfixturevalue("cluster_urls")}]


@pytest.fixture
def unraisable() -> Iterator[list[str]]:
    """Exceptions Python could not raise (e.g. in __del__ of a socket of a closed loop)."""
    caught: list[str] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda info: caught.append(f"{info.exc_type.__name__}: {info.exc_value}")
    try:
        yield caught
    finally:
        sys.unraisablehook = previous_hook


@pytest.fixture
def no_blmpop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every BLMPOP fail the way Redis 6 answers an unknown command."""
    refused: list[str] = []

    async def blmpop(self: Redis, *args: Any, **kwargs: Any) -> Any:
        refused.append("BLMPOP")
        raise ResponseError("unknown command 'BLMPOP', with args beginning with: ")

    original = held.call

    async def held_call(client: Redis, *args: Any) -> Any:
        if args[0] == "BLMPOP":  # the readers' pops go here (held connections)
            return await blmpop(client)
        return await original(client, *args)

    monkeypatch.setattr(Redis, "blmpop", blmpop)
    monkeypatch.setattr(held, "call", held_call)
    return refused
