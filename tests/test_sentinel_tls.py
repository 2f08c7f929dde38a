"""Redis Sentinel over TLS: a master, a replica and a sentinel that all serve TLS only.

The replica and the sentinel talk TLS to the servers (``tls-replication yes``) and show the
client certificate (``tls-client-cert-file``): the servers' own certificate is for server
authentication only, so a server that checks client certificates would refuse it. The layer
reaches the sentinel with TLS options in ``sentinel_kwargs`` and the master with the same
options next to ``sentinels``. Certificates are made by the run (``tests.tls``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.layer_helpers import sync_client, wait_until
from tests.servers import HOST
from tests.test_acl import SHORT_RULE, USER, acl_log, set_user
from tests.test_secrets import (
    PASSWORD,
    SENTINEL_PASSWORD,
    assert_layer_hides_secrets,
    assert_no_secret,
    failure_of,
    logged,
    texts_of,
)
from tests.test_sentinel import (
    MASTER_NAME,
    SETTLE_S,
    SentinelSet,
    check_failover,
    sentinel_host,
    start_set,
)
from tests.tls import TlsFiles, make_tls_files
from tests.workload import exercise


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA with a server and a client certificate, made for this module."""
    return make_tls_files(tmp_path_factory.mktemp("sentinel-tls"))


@pytest.fixture(scope="module", params=[False, True], ids=["server-certs", "client-certs"])
def tls_set(request: pytest.FixtureRequest, tls_files: TlsFiles) -> Iterator[SentinelSet]:
    """Master, replica and sentinel on TLS only; with ``client-certs`` all three want one."""
    servers = start_set(with_replica=True, tls=tls_files, tls_auth_clients=request.param)
    try:
        yield servers
    finally:
        servers.close()


def tls_host(servers: SentinelSet, tls_files: TlsFiles, **options: Any) -> dict[str, Any]:
    """A Sentinel ``hosts`` item with TLS to the sentinel and to the master.

    The client certificate is added where the servers want one. ``sentinel_kwargs`` in
    ``options`` are added to the sentinels' TLS options; the other keys are the master's.
    """
    with_cert = servers.master.tls_auth_clients
    tls = {"ssl": True, **tls_files.client_options(with_cert=with_cert)}
    sentinel_kwargs = {**tls, **options.pop("sentinel_kwargs", {})}
    return servers.host(sentinel_kwargs=sentinel_kwargs, **tls, **options)


def service_label(servers: SentinelSet) -> str:
    """How the layer names the set's master in errors and statistics."""
    return f"sentinel://{HOST}:{servers.sentinel.port}/{MASTER_NAME}"


@pytest.fixture
def sentinel_password(tls_set: SentinelSet) -> Iterator[str]:
    """The sentinel wants `SENTINEL_PASSWORD` (its default user's) until the test ends."""
    url = tls_set.sentinel.client_url
    with sync_client(url) as admin:
        admin.execute_command("ACL", "SETUSER", "default", "resetpass", f">{SENTINEL_PASSWORD}")
    try:
        yield SENTINEL_PASSWORD
    finally:
        with sync_client(url.replace("://", f"://:{SENTINEL_PASSWORD}@", 1)) as admin:
            admin.execute_command("ACL", "SETUSER", "default", "nopass")


async def test_the_whole_layer_works_through_a_sentinel_over_tls(
    tls_set: SentinelSet, tls_files: TlsFiles
) -> None:
    # The sentinel sees the replica in sync: it reached both servers, and they each other.
    await wait_until(tls_set.replica_ready, SETTLE_S)
    await exercise([tls_host(tls_set, tls_files)])


@pytest.mark.parametrize("tls_set", [True], ids=["client-certs"], indirect=True)
async def test_an_acl_user_and_a_sentinel_password_over_tls(
    tls_set: SentinelSet,
    tls_files: TlsFiles,
    sentinel_password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    set_user(tls_set.master.client_url, SHORT_RULE, password=PASSWORD)
    host = tls_host(
        tls_set,
        tls_files,
        sentinel_kwargs={"password": sentinel_password},
        username=USER,
        password=PASSWORD,
    )
    layer = RedisChannelLayer(hosts=[host])
    assert_layer_hides_secrets(layer)
    await layer.close()
    await exercise([host])
    assert acl_log(tls_set.master.client_url) == []
    assert_no_secret(*logged(caplog))


@pytest.mark.parametrize("tls_set", [True], ids=["client-certs"], indirect=True)
@pytest.mark.parametrize(
    ("wrong", "error"),
    [
        ("master", redis.exceptions.AuthenticationError),
        ("sentinel", redis.exceptions.ConnectionError),
    ],
    ids=["master", "sentinel"],
)
async def test_a_wrong_password_over_tls_is_not_shown(
    tls_set: SentinelSet,
    tls_files: TlsFiles,
    sentinel_password: str,
    caplog: pytest.LogCaptureFixture,
    wrong: str,
    error: type[Exception],
) -> None:
    caplog.set_level(logging.DEBUG)
    set_user(tls_set.master.client_url, SHORT_RULE, password=PASSWORD)
    # Each wrong password holds the right one: showing either would fail the checks.
    passwords = {"master": PASSWORD, "sentinel": sentinel_password}
    passwords[wrong] += "-not-it"
    host = tls_host(
        tls_set,
        tls_files,
        sentinel_kwargs={"password": passwords["sentinel"]},
        username=USER,
        password=passwords["master"],
    )
    layer = RedisChannelLayer(hosts=[host])
    assert_layer_hides_secrets(layer)
    failure = await failure_of(layer)
    assert isinstance(failure, error)
    assert f"failed on {service_label(tls_set)}: cannot reach Redis" in str(failure)
    assert_no_secret(*texts_of(failure), *logged(caplog))


async def test_a_failover_over_tls(tls_files: TlsFiles) -> None:
    servers = start_set(with_replica=True, tls=tls_files, tls_auth_clients=True)
    try:
        await check_failover(servers, tls_host(servers, tls_files))
    finally:
        servers.close()


@pytest.mark.parametrize("plain", ["sentinel", "master"])
async def test_plain_text_to_a_tls_port_fails_naming_the_service(
    tls_set: SentinelSet, tls_files: TlsFiles, plain: str
) -> None:
    host = tls_host(tls_set, tls_files)
    if plain == "sentinel":
        host["sentinel_kwargs"] = {}
    else:
        host = {key: value for key, value in host.items() if not key.startswith("ssl")}
    layer = RedisChannelLayer(hosts=[host])
    failure = await failure_of(layer)
    assert isinstance(failure, redis.exceptions.ConnectionError)
    assert f"failed on {service_label(tls_set)}: cannot reach Redis" in str(failure)


def test_ssl_options_of_the_master_need_ssl_true(tls_files: TlsFiles) -> None:
    # Without ``ssl`` the pool builds plain connections, which take no ssl_* option.
    with pytest.raises(TypeError, match=r"'ssl_ca_certs'.*add 'ssl': True"):
        RedisChannelLayer(hosts=[sentinel_host(**tls_files.client_options())])


def test_ssl_options_for_the_sentinels_without_ssl_are_refused() -> None:
    """redis-py would ignore them and talk plain text to the sentinels."""
    host = {
        "sentinels": [("127.0.0.1", 26379)],
        "master_name": "mymaster",
        "sentinel_kwargs": {"ssl_ca_certs": "ca.pem"},
    }
    with pytest.raises(TypeError, match="'ssl': True"):
        RedisChannelLayer(hosts=[host])
