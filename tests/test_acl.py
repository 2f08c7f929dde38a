"""Redis ACL users restricted to the layer's keys can do everything the layer does.

Two rules are tested and documented word for word in docs/security.md: the short one
(every command but the dangerous ones, on the prefix's keys) and the strict one (exactly the
commands the layer and its scripts send). ``ACL LOG`` must stay empty after a full pass, so
a refusal in a background task (reader, heartbeat, hand-back on close) fails the test too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

from asgi_redis import RedisChannelLayer
from tests.layer_helpers import sync_client
from tests.test_sentinel import start_set
from tests.test_syncpath import exercise_blocking
from tests.workload import exercise

SECURITY_DOC = Path(__file__).parent.parent / "docs" / "security.md"
README = Path(__file__).parent.parent / "README.md"
USER = "app"
PASSWORD = "s3cret-for-acl-tests"
# The layer's own commands, then the ones its Lua scripts call (ACLs check those too).
LAYER_COMMANDS = (
    "+evalsha +eval +blmpop +blpop +multi +exec +set +rpush +expire +scan +unlink "
    "+llen +zcard +scard +lindex +hvals +pttl +ping +hello +select"
)
SCRIPT_COMMANDS = (
    "+del +exists +get +hdel +hget +hincrby +hmget +hset +lpop +lpush +lrange +rpop "
    "+sadd +smembers +zadd +zcount +zrangebyscore +zrem +zremrangebyscore +time"
)
SHORT_RULE = "~asgi:* resetchannels +@all -@dangerous"
STRICT_RULE = f"~asgi:* resetchannels -@all {LAYER_COMMANDS} {SCRIPT_COMMANDS}"
# redis-py names its connections with CLIENT SETINFO, a command Redis 7.2 added; it ignores a
# refusal, but the server would log one.
SETINFO = "+client|setinfo"
FAIL_WITHIN_S = 10.0


def server_version(url: str) -> tuple[int, ...]:
    """The server's version as numbers, e.g. (7, 0, 15)."""
    with sync_client(url) as admin:
        text = admin.info("server")["redis_version"]
    return tuple(int(part) for part in str(text).split("."))


def rule_for(url: str, rule: str) -> str:
    """``rule`` with `SETINFO` on servers that know that command."""
    return f"{rule} {SETINFO}" if server_version(url) >= (7, 2) else rule


def set_user(url: str, rule: str, name: str = USER, password: str = PASSWORD) -> None:
    """Create (or reset) user ``name`` with ``password`` and the ACL ``rule``."""
    with sync_client(url) as admin:
        words = rule_for(url, rule).split()
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *words)
        admin.execute_command("ACL", "LOG", "RESET")


def acl_log(url: str) -> list[object]:
    """Refusals the server logged since the last reset."""
    with sync_client(url) as admin:
        entries: list[object] = admin.execute_command("ACL", "LOG")
    return entries


def user_url(server_url: str, name: str = USER) -> str:
    """The server's URL logging in as ``name``."""
    return server_url.replace("://", f"://{name}:{PASSWORD}@", 1)


@pytest.fixture
def acl_url(redis_url: str) -> Iterator[str]:
    """The session server; users made by the test are deleted afterwards."""
    yield redis_url
    with sync_client(redis_url) as admin:
        for name in admin.execute_command("ACL", "USERS"):
            if name != b"default":
                admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize("rule", [SHORT_RULE, STRICT_RULE], ids=["short", "strict"])
async def test_a_user_limited_to_the_prefix_can_do_everything(acl_url: str, rule: str) -> None:
    set_user(acl_url, rule)
    await exercise([user_url(acl_url)])
    assert acl_log(acl_url) == []


async def test_credentials_in_a_host_dict(acl_url: str) -> None:
    set_user(acl_url, STRICT_RULE)
    await exercise([{"address": acl_url, "username": USER, "password": PASSWORD, "db": 2}])
    assert acl_log(acl_url) == []


def test_blocking_sync_calls_as_a_user_limited_to_the_prefix(acl_url: str) -> None:
    set_user(acl_url, STRICT_RULE)
    exercise_blocking([{"address": acl_url, "username": USER, "password": PASSWORD}])
    assert acl_log(acl_url) == []


async def test_another_prefix_needs_its_own_key_pattern(acl_url: str) -> None:
    set_user(acl_url, SHORT_RULE.replace("~asgi:*", "~myapp:*"))
    await exercise([user_url(acl_url)], prefix="myapp")
    assert acl_log(acl_url) == []


@pytest.mark.parametrize("rule", [SHORT_RULE, STRICT_RULE], ids=["short", "strict"])
def test_the_documented_rules_are_the_tested_ones(rule: str) -> None:
    text = " ".join(SECURITY_DOC.read_text().split())
    assert f"ACL SETUSER app on >PASSWORD {rule}" in text


def test_the_readme_shows_the_tested_short_rule() -> None:
    assert f"ACL SETUSER app on >PASSWORD {SHORT_RULE}\n" in README.read_text()


async def test_keys_outside_the_pattern_are_refused_naming_operation_and_server(
    acl_url: str,
) -> None:
    set_user(acl_url, SHORT_RULE.replace("~asgi:*", "~other:*"))
    async with RedisChannelLayer(hosts=[user_url(acl_url)]) as layer:
        with pytest.raises(redis.exceptions.NoPermissionError) as caught:
            await layer.send("chat", {"type": "x"})
    message = str(caught.value)
    assert f"send to channel 'chat' failed on {acl_url}/0" in message
    assert "lacks a permission the layer needs (ACL)" in message
    assert PASSWORD not in message


async def test_a_missing_command_is_refused_naming_operation_and_server(acl_url: str) -> None:
    set_user(acl_url, STRICT_RULE.replace(" +unlink", ""))
    async with RedisChannelLayer(hosts=[user_url(acl_url)]) as layer:
        await layer.send("chat", {"type": "x"})
        with pytest.raises(redis.exceptions.NoPermissionError) as caught:
            await asyncio.wait_for(layer.flush(), FAIL_WITHIN_S)
    assert f"flush of prefix 'asgi:' failed on {acl_url}/0" in str(caught.value)
    # Redis's own text names 'unlink'; redis-py 6 replaces it with the pipeline's "(UNLINK ...)".
    assert "unlink" in str(caught.value).lower()


async def test_a_receive_refused_by_acl_fails_instead_of_waiting(acl_url: str) -> None:
    """The reader's pop is refused: the waiting receive raises, naming the server."""
    set_user(acl_url, STRICT_RULE.replace(" +blmpop", ""))
    async with RedisChannelLayer(hosts=[user_url(acl_url)]) as layer:
        with pytest.raises(redis.exceptions.NoPermissionError) as caught:
            await asyncio.wait_for(layer.receive("chat"), FAIL_WITHIN_S)
    assert f"{acl_url}/0" in str(caught.value)
    assert PASSWORD not in str(caught.value)


async def test_sentinel_with_an_acl_user() -> None:
    servers = start_set(with_replica=False)
    try:
        set_user(servers.master.url, STRICT_RULE)
        host = servers.host(username=USER, password=PASSWORD)
        await exercise([host])
        assert acl_log(servers.master.url) == []
    finally:
        servers.close()


def test_set_user_rejects_nothing_in_the_rules(acl_url: str) -> None:
    # Redis refuses an unknown command or category in SETUSER: both rules are valid as written.
    for rule in (SHORT_RULE, STRICT_RULE):
        set_user(acl_url, rule)
    with redis.Redis.from_url(user_url(acl_url)) as client:
        assert client.ping()
