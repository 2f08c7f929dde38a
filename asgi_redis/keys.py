"""Every Redis key name and the queue entry format, in one place.

Key kinds (all start with the layer prefix, then one letter and a colon):

- ``q:<channel>``         list, the queue of a named channel.
- ``q:<prefix>!``         list, the queue shared by all process-local channels
                          ``<prefix>!<suffix>`` of one client.
- ``n:<prefix>!``         hash, per-suffix count of messages queued (in Redis or in a
                          receiving process's buffer) for those process-local channels.
- ``g:<group>``           sorted set, member = channel, score = last group_add in ms.
- ``c:<group>``           hash, member = channel, value = capacity, only where it differs
                          from the layer's default capacity.
- ``w:<client>``          list, wake-up tokens for one process's blocked reader.
- ``r:<queue part>/<id>`` string, marks a hand-back of popped entries to that queue as done,
                          so a retried hand-back never pushes them twice.
- ``h:<prefix>!``         string, liveness mark of the client owning the process-local
                          channels ``<prefix>!<suffix>``; its process refreshes it every
                          heartbeat with a TTL of 3 heartbeats, and group_add creates it
                          (only if missing) for a new member. group_send drops the members
                          of a client whose mark is gone, and deletes its keys.

Queue entry: ``DEADLINE`` (13 ASCII digits, ms since the epoch) ``NN`` (2 ASCII digits,
length of the suffix) ``SUFFIX`` (the process-local part after ``!``, empty for named
channels) then the serialized message. A group_send to several process-local channels of one
client writes a single entry for all of them: ``NN`` is then ``99``, followed by a 6-digit
byte length and the suffixes joined with ``,``. Suffixes use the characters Channels allows
after ``!`` (ASCII letters, digits, ``-``, ``_``, ``.``). Anything else is a malformed entry:
``parse_entry`` raises ``ValueError`` and the scripts drop it (see ``lua/_helpers.lua``).
"""

from __future__ import annotations

import re
from functools import lru_cache

KINDS = "qncgwrh"
DEADLINE_DIGITS = 13
SUFFIX_LEN_DIGITS = 2
HEADER_LEN = DEADLINE_DIGITS + SUFFIX_LEN_DIGITS
# Suffix length 99 (longer than any suffix) marks a group_send entry for several channels of
# one client: a 6-digit byte length and the suffixes joined with ',' follow.
MULTI = 99
LIST_LEN_DIGITS = 6
_DIGITS = re.compile(rb"[0-9]+")
_SUFFIX = re.compile(rb"[A-Za-z0-9_.\-]+")
_SUFFIX_LIST = re.compile(rb"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")


def split_channel(channel: str) -> tuple[str, str]:
    """Split a channel into (queue part, suffix): ``a.b!c`` -> (``a.b!``, ``c``)."""
    bang = channel.find("!")
    if bang < 0:
        return channel, ""
    return channel[: bang + 1], channel[bang + 1 :]


@lru_cache(maxsize=65536)
def queue_key(prefix: str, channel: str) -> str:
    """The list holding ``channel``'s messages (shared by a client's local channels)."""
    return f"{prefix}q:{split_channel(channel)[0]}"


@lru_cache(maxsize=65536)
def counts_key(prefix: str, channel: str) -> str:
    """The hash counting queued messages of the local channels sharing a queue."""
    return f"{prefix}n:{split_channel(channel)[0]}"


def group_key(prefix: str, group: str) -> str:
    """The sorted set of a group's members."""
    return f"{prefix}g:{group}"


def group_capacity_key(prefix: str, group: str) -> str:
    """The hash of members' capacities that differ from the default."""
    return f"{prefix}c:{group}"


def wake_key(prefix: str, client: str) -> str:
    """The list a process pushes to so its own blocked reader wakes up."""
    return f"{prefix}w:{client}"


def queue_part(prefix: str, queue: str) -> str:
    """The channel part of a queue key: ``asgi:q:a.b!`` -> ``a.b!``; ``asgi:q:jobs`` -> ``jobs``."""
    return queue[len(prefix) + 2 :]


def requeue_token_key(prefix: str, queue: str, token: str) -> str:
    """The marker of one hand-back of entries to ``queue`` (a queue key)."""
    return f"{prefix}r:{queue_part(prefix, queue)}/{token}"


def heartbeat_key(prefix: str, channel_or_head: str) -> str:
    """The liveness mark of the client owning a process-local channel (or its ``a.b!`` head)."""
    return f"{prefix}h:{split_channel(channel_or_head)[0]}"


def scan_patterns(prefix: str, kinds: str = KINDS) -> list[str]:
    """SCAN MATCH patterns covering this prefix's keys of ``kinds`` (glob chars escaped)."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)
    return [f"{escaped}{kind}:*" for kind in kinds]


def is_own_key(prefix: str, key: bytes) -> bool:
    """Whether a key SCAN matched really is this prefix's.

    Names never contain ':', so the colon after the kind letter is the key's last one; a key
    of another prefix that merely starts the same way (``iso`` vs ``isoq:``) has a later one.
    """
    return b":" not in key[len(prefix) + 2 :]


def deadline_text(deadline_ms: int) -> str:
    """An entry's deadline field: 13 digits (the Lua scripts build entries from it too)."""
    return f"{deadline_ms:0{DEADLINE_DIGITS}d}"


def make_entry(deadline_ms: int, suffix: str, payload: bytes) -> bytes:
    """Build one queue entry: fixed header, then the payload."""
    header = f"{deadline_text(deadline_ms)}{len(suffix):0{SUFFIX_LEN_DIGITS}d}{suffix}"
    return header.encode("ascii") + payload


def parse_entry(entry: bytes) -> tuple[int, list[str], bytes]:
    """Split an entry into (deadline_ms, suffixes, payload); no suffix for a named channel.

    Raises:
        ValueError: the header is malformed (the same rule the Lua scripts apply).
    """
    deadline_ms = _digits(entry, 0, DEADLINE_DIGITS)
    suffix_len = _digits(entry, DEADLINE_DIGITS, HEADER_LEN)
    if suffix_len == 0:
        return deadline_ms, [], entry[HEADER_LEN:]
    if suffix_len != MULTI:
        suffix_end = HEADER_LEN + suffix_len
        suffix = entry[HEADER_LEN:suffix_end]
        if len(suffix) != suffix_len or not _SUFFIX.fullmatch(suffix):
            raise ValueError("malformed queue entry: bad suffix")
        return deadline_ms, [suffix.decode("ascii")], entry[suffix_end:]
    list_start = HEADER_LEN + LIST_LEN_DIGITS
    list_end = list_start + _digits(entry, HEADER_LEN, list_start)
    listed = entry[list_start:list_end]
    if len(listed) != list_end - list_start or not _SUFFIX_LIST.fullmatch(listed):
        raise ValueError("malformed queue entry: bad suffix list")
    return deadline_ms, listed.decode("ascii").split(","), entry[list_end:]


def _digits(entry: bytes, start: int, end: int) -> int:
    """The number written in ASCII digits at ``entry[start:end]``; ValueError if it is not."""
    field = entry[start:end]
    if len(field) != end - start or not _DIGITS.fullmatch(field):
        raise ValueError(f"malformed queue entry: bytes {start}-{end} are not {end - start} digits")
    return int(field)


def split_key(prefix: str, key: bytes) -> tuple[str, str]:
    """A key of this prefix as (kind letter, name): ``asgi:g:room`` -> (``g``, ``room``)."""
    rest = key.decode("utf-8", "replace")[len(prefix) :]
    return rest[:1], rest[2:]
