"""Load the bundled Lua scripts once and run them with EVALSHA.

Each ``lua/NAME.lua`` is one script; files starting with ``_`` are shared helpers that
are prepended to every script, so a script's text (and SHA1) is ``helpers + body``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Arg = str | bytes | int
# One script call: the script's name, its KEYS and its ARGV.
ScriptCall = tuple[str, list[str], list[Arg]]


@dataclass(frozen=True)
class Script:
    """One Lua script: its name, full source and SHA1."""

    name: str
    source: str
    sha: str


def _load() -> dict[str, Script]:
    """Read every ``lua/*.lua`` file shipped with the package."""
    folder = resources.files("asgi_redis").joinpath("lua")
    files = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    )
    helpers = "".join(text for name, text in files if name.startswith("_"))
    loaded = {}
    for file_name, body in files:
        if file_name.startswith("_"):
            continue
        name = file_name[: -len(".lua")]
        source = helpers + body
        loaded[name] = Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())
    return loaded


SCRIPTS: dict[str, Script] = _load()


def source(name: str) -> str:
    """The full text of script ``name``, helpers included."""
    return SCRIPTS[name].source


def command(
    script: Script, keys: Sequence[Arg], args: Sequence[Arg], *, by_sha: bool = True
) -> tuple[Arg, ...]:
    """The command that runs ``script``: ``EVALSHA`` of its SHA or, without ``by_sha`` (after
    NOSCRIPT), ``EVAL`` of its text, with its KEYS and ARGV."""
    head: tuple[Arg, ...] = ("EVALSHA", script.sha) if by_sha else ("EVAL", script.source)
    return (*head, len(keys), *keys, *args)


async def run(client: Redis, name: str, keys: list[str], args: list[Arg]) -> Any:
    """Run script ``name`` with EVALSHA; on NOSCRIPT send the text once with EVAL.

    Returns the script's reply as redis-py decodes it (ints, bytes, nested lists); each
    function of ``commands``/``keyspace`` turns it into typed values.
    """
    script = SCRIPTS[name]
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.eval(script.source, len(keys), *keys, *args)
