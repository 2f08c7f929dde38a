"""Tests of the shared fixtures: real servers start, restart on their port, run Lua."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from tests import workload
from tests.servers import RedisServer, RedisServerError, find_binary, free_port


def test_session_server_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
        assert client.dbsize() == 0
    finally:
        client.close()


def test_redis_url_starts_empty_again(redis_url: str) -> None:
    # The previous test's keys (if any) are gone; write one so the next flush has work.
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("asgi-fixture-probe", b"1")
    finally:
        client.close()


def test_private_server_restarts_on_same_port(private_redis: RedisServer) -> None:
    port = private_redis.port
    client = redis.Redis.from_url(private_redis.url)
    try:
        client.set("before", b"1")
        private_redis.stop()
        assert not private_redis.running
        with pytest.raises(redis.ConnectionError):
            client.ping()
        private_redis.start()
        assert private_redis.port == port
        assert private_redis.url == f"redis://127.0.0.1:{port}"
        assert client.ping() is True
        # --save "" and no AOF: a restart is an empty server.
        assert client.get("before") is None
    finally:
        client.close()


def test_server_context_manager_stops_process() -> None:
    try:
        server = RedisServer(start=False)
    except RedisServerError as exc:
        pytest.skip(str(exc))
    with server as running:
        assert running.running
        assert redis.Redis(host=running.host, port=running.port).ping() is True
    assert not server.running


def test_start_failure_reports_log_tail() -> None:
    try:
        server = RedisServer(["--no-such-option", "yes"], start=False)
    except RedisServerError as exc:
        pytest.skip(str(exc))
    with pytest.raises(RedisServerError, match="no-such-option"):
        server.start()
    server.close()


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536


def test_missing_binary_names_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RedisServerError, match="apt-get install -y redis-tools"):
        find_binary("redis-cli")


def test_script_client_runs_lua(script_client: Any) -> None:
    assert script_client.eval("return 1", 0) == 1
    assert script_client.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", b"v") == b"OK"
    assert script_client.get("k") == b"v"


def test_script_client_starts_empty(script_client: Any) -> None:
    assert script_client.dbsize() == 0
    script_client.set("leftover", b"1")


async def test_a_workload_pass_that_hangs_fails_naming_where_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workload, "DEADLINE_S", 0.2)

    async def stuck_in_close() -> None:
        await asyncio.Event().wait()

    with pytest.raises(AssertionError, match=r"(?s)did not end within 0.2 s.*stuck_in_close"):
        await workload.within_deadline(stuck_in_close())
