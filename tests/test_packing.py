"""hiredis packs our commands to the same bytes as redis-py's connections do."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis

from asgi_redis import packing
from asgi_redis.scripts import SCRIPTS, command

COMMANDS = [
    command(SCRIPTS["send"], ["asgi:q!x", "asgi:counts"], [b"\x81\xa4type\xa1x", 100, 60, "ch"]),
    command(SCRIPTS["send"], ["k"], [b"", -1, 0, 2**62], by_sha=False),
    ("BLMPOP", 5, 3, "asgi:a", "asgi:b", "asgi:wake", "LEFT", "COUNT", 1),
    ("BLPOP", "asgi:a", 5.5),
    ("PING",),
]


@pytest.mark.parametrize("connection_class", [aioredis.Connection, redis.Connection])
def test_commands_pack_to_what_redis_py_writes(connection_class: type) -> None:
    connection = connection_class()
    ours = b"".join(packing.pack(connection, COMMANDS))
    theirs = b"".join(connection.pack_commands(COMMANDS))
    assert ours == theirs
    assert ours.startswith(b"*")


def test_without_hiredis_the_connection_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "_hiredis_pack", None)
    connection = aioredis.Connection()
    assert b"".join(packing.pack(connection, COMMANDS)) == b"".join(
        connection.pack_commands(COMMANDS)
    )


def test_hiredis_is_used_when_installed() -> None:
    pytest.importorskip("hiredis")
    assert packing._hiredis_pack is not None
