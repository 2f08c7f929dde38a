"""No password leaves the configuration: not in repr/str, logs, exceptions or statistics.

Layers get passwords in every accepted place (URL, host dict, ``sentinel_kwargs``) and then
fail in every way a password is involved in (unreachable server, wrong password, ACL
refusal), with every log record captured at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.conftest import start_server
from tests.layer_helpers import sync_client
from tests.servers import HOST, RedisServer, free_port

PASSWORD = "pw-Zq7-never-shown"
SENTINEL_PASSWORD = "sentinel-pw-Xk3-never-shown"
ENCRYPTION_KEY = "encryption-key-Jd8-never-shown-0123456789"
SECRETS = (PASSWORD, SENTINEL_PASSWORD, ENCRYPTION_KEY)
FAIL_WITHIN_S = 10.0


def texts_of(exc: BaseException) -> Iterator[str]:
    """str, repr and args of ``exc`` and of every exception chained to it."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(arg) for arg in current.args)
        pending += [current.__cause__, current.__context__]


def assert_no_secret(*texts: str) -> None:
    """Fail naming the first text that holds one of `SECRETS`."""
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked into: {text!r}"


def assert_layer_hides_secrets(layer: RedisChannelLayer) -> None:
    """The layer's and its config's repr/str, hosts included."""
    config = layer.config
    assert_no_secret(repr(layer), str(layer), repr(config), str(config))
    assert_no_secret(*(repr(host) for host in config.hosts))


async def failure_of(layer: RedisChannelLayer) -> BaseException:
    """The exception of the first command (a send), with the layer closed afterwards."""
    try:
        with pytest.raises(redis.exceptions.RedisError) as caught:
            await asyncio.wait_for(layer.send("chat", {"type": "x"}), FAIL_WITHIN_S)
    finally:
        await layer.close()
    return caught.value


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record: its formatted message, its arguments and its traceback."""
    texts = []
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args)]
        if record.exc_info and record.exc_info[1] is not None:
            texts += texts_of(record.exc_info[1])
    return texts


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every logger at DEBUG; after the test no record may hold a secret."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    assert_no_secret(*logged(caplog))


@pytest.fixture
def locked_server() -> Iterator[RedisServer]:
    """A server whose default user wants another password, with user ``app`` (PASSWORD)
    allowed nothing but logging in."""
    server = start_server("--requirepass", "the-right-one")
    with sync_client(f"redis://:the-right-one@{HOST}:{server.port}") as admin:
        admin.execute_command("ACL", "SETUSER", "app", "on", f">{PASSWORD}", "-@all")
    try:
        yield server
    finally:
        server.close()


def unreachable(userinfo: str) -> str:
    """A URL with credentials for a port where nothing listens."""
    return f"redis://{userinfo}@{HOST}:{free_port()}/0"


HOSTS_WITH_PASSWORDS: dict[str, Any] = {
    "url-password": unreachable(f":{PASSWORD}"),
    "url-user-password": unreachable(f"app:{PASSWORD}"),
    "dict-password": {"address": unreachable("app"), "password": PASSWORD},
    "dict-options": {"host": HOST, "port": free_port(), "username": "a", "password": PASSWORD},
    "sentinel": {
        "sentinels": [(HOST, free_port())],
        "master_name": "mymaster",
        "password": PASSWORD,
        "sentinel_kwargs": {"password": SENTINEL_PASSWORD},
    },
}


@pytest.mark.parametrize("host", HOSTS_WITH_PASSWORDS.values(), ids=HOSTS_WITH_PASSWORDS.keys())
async def test_unreachable_servers(host: Any) -> None:
    layer = RedisChannelLayer(hosts=[host], symmetric_encryption_keys=[ENCRYPTION_KEY])
    assert_layer_hides_secrets(layer)
    assert_no_secret(*texts_of(await failure_of(layer)))


@pytest.mark.parametrize("userinfo", [f":{PASSWORD}", f"app:{PASSWORD}x"], ids=["default", "app"])
async def test_a_wrong_password(locked_server: RedisServer, userinfo: str) -> None:
    layer = RedisChannelLayer(hosts=[f"redis://{userinfo}@{HOST}:{locked_server.port}"])
    assert_layer_hides_secrets(layer)
    error = await failure_of(layer)
    assert isinstance(error, redis.exceptions.AuthenticationError)
    assert_no_secret(*texts_of(error))


async def test_an_acl_refusal(locked_server: RedisServer) -> None:
    host = {"address": f"redis://{HOST}:{locked_server.port}", "username": "app"}
    layer = RedisChannelLayer(hosts=[{**host, "password": PASSWORD}])
    error = await failure_of(layer)
    assert isinstance(error, redis.exceptions.NoPermissionError)
    assert_no_secret(*texts_of(error))


async def test_statistics_and_a_working_layer(locked_server: RedisServer) -> None:
    url = f"redis://:the-right-one@{HOST}:{locked_server.port}"
    with sync_client(url) as admin:
        admin.execute_command("ACL", "SETUSER", "app", "+@all", "~*")
    hosts = [f"redis://app:{PASSWORD}@{HOST}:{locked_server.port}/0"]
    async with RedisChannelLayer(hosts=hosts) as layer:
        await layer.send("chat", {"type": "x"})
        await layer.receive("chat")
        stats = await layer.global_statistics()
        assert_layer_hides_secrets(layer)
    assert stats["shards"][0]["host"] == f"redis://{HOST}:{locked_server.port}/0"
    assert_no_secret(repr(stats))
