"""The layer over TLS: ``rediss://`` hosts against a redis-server that serves TLS only.

The CA and the certificates are made by the session (``tests.tls``), never committed. A
redis-server built without TLS makes these tests fail under CI and skip elsewhere, as the
other Redis fixtures do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.conftest import no_redis
from tests.servers import RedisServer, RedisServerError
from tests.tls import TlsFiles, make_ca, make_tls_files
from tests.workload import exercise, exercise_from_sync_code

# Bounds a hang; a refused handshake fails at once.
FAIL_WITHIN_S = 10.0


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA with a server and a client certificate, made for this run."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def start_tls_server(tls_files: TlsFiles, *, auth_clients: bool = False) -> RedisServer:
    """A redis-server on TLS only, or fail/skip when this redis-server cannot do TLS."""
    try:
        return RedisServer(tls=tls_files, tls_auth_clients=auth_clients)
    except RedisServerError as exc:
        no_redis(f"redis-server could not serve TLS (built without it?): {exc}")


@pytest.fixture(scope="session")
def tls_server(tls_files: TlsFiles) -> Iterator[RedisServer]:
    """A TLS-only redis-server that does not ask clients for certificates."""
    server = start_tls_server(tls_files)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mutual_tls_server(tls_files: TlsFiles) -> Iterator[RedisServer]:
    """A TLS-only redis-server that wants a client certificate signed by the CA."""
    server = start_tls_server(tls_files, auth_clients=True)
    try:
        yield server
    finally:
        server.close()


async def test_everything_works_over_tls(tls_server: RedisServer, tls_files: TlsFiles) -> None:
    host = {"address": tls_server.url, **tls_files.client_options()}
    await exercise([host])


def test_sync_callers_over_tls(tls_server: RedisServer, tls_files: TlsFiles) -> None:
    exercise_from_sync_code([{"address": tls_server.url, **tls_files.client_options()}])


async def test_the_ca_can_be_given_in_the_url(tls_server: RedisServer, tls_files: TlsFiles) -> None:
    await exercise([f"{tls_server.url}?ssl_ca_certs={tls_files.ca_cert}"])


async def test_a_client_certificate_where_the_server_wants_one(
    mutual_tls_server: RedisServer, tls_files: TlsFiles
) -> None:
    host = {"address": mutual_tls_server.url, **tls_files.client_options(with_cert=True)}
    await exercise([host])


async def test_statistics_label_a_tls_server_rediss(
    tls_server: RedisServer, tls_files: TlsFiles
) -> None:
    host = {"address": tls_server.url, **tls_files.client_options()}
    async with RedisChannelLayer(hosts=[host]) as layer:
        stats = await layer.global_statistics()
    assert stats["shards"][0]["host"] == f"{tls_server.url}/0"


async def test_a_wrong_ca_fails_at_the_first_command_naming_the_server(
    tls_server: RedisServer, tmp_path: Path
) -> None:
    other_ca, _ = make_ca(tmp_path, "unrelated-ca")
    layer = RedisChannelLayer(hosts=[{"address": tls_server.url, "ssl_ca_certs": str(other_ca)}])
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            await asyncio.wait_for(layer.send("chat", {"type": "x"}), FAIL_WITHIN_S)
    finally:
        await layer.close()
    message = str(caught.value)
    assert f"send to channel 'chat' failed on {tls_server.url}/0" in message
    assert "certificate verify failed" in message


async def connection_error_of_a_send(hosts: list[Any]) -> str:
    """The message of the ConnectionError a send to ``hosts`` fails with."""
    layer = RedisChannelLayer(hosts=hosts)
    try:
        with pytest.raises(redis.exceptions.ConnectionError) as caught:
            await asyncio.wait_for(layer.send("chat", {"type": "x"}), FAIL_WITHIN_S)
    finally:
        await layer.close()
    return str(caught.value)


async def test_no_client_certificate_where_the_server_wants_one_fails_clearly(
    mutual_tls_server: RedisServer, tls_files: TlsFiles
) -> None:
    host = {"address": mutual_tls_server.url, **tls_files.client_options()}
    assert f"failed on {mutual_tls_server.url}/0" in await connection_error_of_a_send([host])


async def test_plain_text_to_a_tls_port_fails_naming_the_server(tls_server: RedisServer) -> None:
    plain_url = tls_server.url.replace("rediss://", "redis://")
    assert f"failed on {plain_url}/0" in await connection_error_of_a_send([plain_url])
