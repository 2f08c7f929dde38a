"""Channel and group name rules of Django Channels, checked with real code (not assert)."""

from __future__ import annotations

import re
from functools import lru_cache

MAX_NAME_LENGTH = 99
# Channels also allows nothing after '!'; we don't: such a name would share its key with the
# queue of a whole client's process-local channels.
_CHANNEL = re.compile(r"[A-Za-z0-9_.\-]+(![A-Za-z0-9_.\-]+)?")
_GROUP = re.compile(r"[A-Za-z0-9_.\-]+")


def _check(kind: str, name: object, pattern: re.Pattern[str]) -> str:
    """Raise TypeError naming ``name`` unless it is a valid ``kind`` name."""
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str, got {type(name).__name__}: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise TypeError(
            f"{kind} name {name!r} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    if not pattern.fullmatch(name):
        raise TypeError(
            f"{kind} name {name!r} is invalid: use ASCII letters, digits, '-', '_' and '.'"
            + (
                " with at most one '!', followed by at least one character"
                if kind == "channel"
                else ""
            )
        )
    return name


def check_channel(name: object) -> str:
    """Validate a channel name; returns it."""
    if type(name) is str:
        return _valid_channel(name)
    return _check("channel", name, _CHANNEL)


@lru_cache(maxsize=65536)
def _valid_channel(name: str) -> str:
    """``check_channel`` of a str, remembered: every receive and send checks its channel
    (an invalid name raises, and exceptions are never cached)."""
    return _check("channel", name, _CHANNEL)


def check_group(name: object) -> str:
    """Validate a group name; returns it."""
    return _check("group", name, _GROUP)


def check_channel_prefix(prefix: object) -> str:
    """Validate the prefix given to ``new_channel``."""
    if not isinstance(prefix, str) or not _GROUP.fullmatch(prefix):
        raise TypeError(
            f"new_channel prefix {prefix!r} is invalid: use ASCII letters, digits, '-', '_', '.'"
        )
    if len(prefix) > MAX_NAME_LENGTH - 40:
        raise TypeError(f"new_channel prefix {prefix!r} leaves no room for the unique part")
    return prefix
