"""Every Redis key name and the queue entry format, in one place.

Every key reads ``<prefix>{<tag>}<kind>:<name>``. The tag is one of ``TAG_COUNT`` fixed
strings, spread evenly over Redis Cluster's 16,384 hash slots; each routing unit (a named
channel, the queue part ``a.b!`` of a client's process-local channels, a group's name) maps to
one tag by a stable hash, so every key a script touches shares one slot. The same layout is
used on single servers, shards and clusters.

Key kinds (after the prefix and tag, one letter and a colon):

- ``q:<channel>``         list, the queue of a named channel.
- ``q:<prefix>!``         list, the queue shared by all process-local channels
                          ``<prefix>!<suffix>`` of one client.
- ``n:<prefix>!``         hash, per-suffix count of direct messages queued (in Redis or in a
                          receiving process's buffer) for those process-local channels, and
                          per ``+<suffix>`` the slots the receiving process reserved for
                          group copies it holds for that channel (a send counts both).
- ``g:<group>``           sorted set, member = named channel, score = last group_add in ms;
                          one per tag that has named members, holding those of that tag.
- ``c:<group>``           hash, member = named channel, value = capacity, only where it
                          differs from the layer's default capacity; one per tag like ``g:``.
- ``l:<group>``           sorted set, member = a client's queue part ``a.b!``, score = the
                          latest group_add of one of its channels in ms; one per tag, holding
                          the clients of that tag with process-local members in the group.
- ``m:<prefix>!<group>``  sorted set, member = suffix, score = last group_add in ms: the
                          process-local members of one client in one group (same tag as the
                          client's queue), so group_send reads them with one command.
- ``j:<prefix>!<group>``  string, cache of those members for group_send: their count, ``|``,
                          then the suffixes joined with ``,`` in chunks joined with ``;``;
                          deleted by group_add of a new member and by group_discard, and
                          expires when its oldest member would go stale.
- ``d:<group>``           set of the tags holding members of the group (the group's tag).
- ``w:<client>``          list, wake-up tokens for one process's blocked reader (one per
                          tag the reader blocks on); ``w:<client>/<n>`` for its lane n > 0.
- ``r:<queue part>/<id>`` string, marks a hand-back of popped entries to that queue as done,
                          so a retried hand-back never pushes them twice; with a ``n.`` id,
                          the number of the last count release a process applied there.
- ``h:<prefix>!``         string, liveness mark of the client owning the process-local
                          channels ``<prefix>!<suffix>``: the tag clock's ``up`` at its last
                          beat (or ``dead``); its process refreshes it every heartbeat with
                          a TTL of 12 heartbeats, and group_add creates it (only if missing)
                          for a new member. group_send drops the members of a client whose
                          mark is 3 heartbeats of uptime old, deletes its queue and counts,
                          and sets the mark to ``dead``.
- ``u:clock``             hash, the tag's uptime clock (``up``: ms of server uptime seen,
                          ``at``: server time of the last tick); liveness marks hold a value
                          of ``up``, and a client is dead 3 heartbeats of uptime after its
                          last beat (see ``lua/_helpers.lua``).

Queue entry: ``DEADLINE`` (13 ASCII digits, ms since the epoch) ``NN`` (2 ASCII digits,
length of the suffix) ``SUFFIX`` (the process-local part after ``!``, empty for named
channels) then the serialized message. A group_send to the process-local channels of one
client writes a single *group entry* for all of them: ``G`` instead of ``NN``, a 6-digit byte
length and the suffixes joined with ``,``, then the message. Its copies are not counted in
Redis: the receiving process checks each channel's capacity. (``NN`` = ``99`` with the same
list is the counted form earlier versions wrote; it is still read.) Suffixes use the
characters Channels allows after ``!`` (ASCII letters, digits, ``-``, ``_``, ``.``).
Anything else is a malformed entry: ``parse_entry`` raises ``ValueError`` and the scripts
drop it (see ``lua/_helpers.lua``).
"""

from __future__ import annotations

import itertools
import re
import string
import zlib
from functools import lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

KINDS = "qncgdwrhulmj"
TAG_COUNT = 64
DEADLINE_DIGITS = 13
SUFFIX_LEN_DIGITS = 2
HEADER_LEN = DEADLINE_DIGITS + SUFFIX_LEN_DIGITS
# Suffix length 99 (longer than any suffix) marks a group_send entry for several channels of
# one client: a 6-digit byte length and the suffixes joined with ',' follow.
MULTI = 99
LIST_LEN_DIGITS = 6
# In place of the suffix length: a group entry, whose copies are counted by the receiver.
GROUP_MARK = b"G"
_DIGITS = re.compile(rb"[0-9]+")
_SUFFIX = re.compile(rb"[A-Za-z0-9_.\-]+")
_SUFFIX_LIST = re.compile(rb"[A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*")


def _make_tags(count: int) -> tuple[str, ...]:
    """``count`` tags: tag ``i`` is the shortest (then first) string whose hash slot lies in
    the ``i``-th of ``count`` equal ranges of the slots, so the tags spread evenly over any
    slot layout (bare ``0``, ``1``, ... would not)."""
    width = REDIS_CLUSTER_HASH_SLOTS // count
    found: dict[int, str] = {}
    alphabet = string.digits + string.ascii_lowercase
    for length in itertools.count(1):
        for letters in itertools.product(alphabet, repeat=length):
            candidate = "".join(letters)
            found.setdefault(key_slot(candidate.encode()) // width, candidate)
            if len(found) == count:
                return tuple(found[index] for index in range(count))
    raise AssertionError("unreachable")  # pragma: no cover


TAGS = _make_tags(TAG_COUNT)
_TAG_SET = frozenset(TAGS)
TAG_INDEX = {tag: index for index, tag in enumerate(TAGS)}


@lru_cache(maxsize=65536)
def tag_index(unit: str) -> int:
    """The index in ``TAGS`` of a routing unit's tag (see ``tag_of``)."""
    return zlib.crc32(unit.encode()) % TAG_COUNT


def tag_of(unit: str) -> str:
    """The tag of a routing unit: a named channel, a queue part ``a.b!``, or a group."""
    return TAGS[tag_index(unit)]


def split_channel(channel: str) -> tuple[str, str]:
    """Split a channel into (queue part, suffix): ``a.b!c`` -> (``a.b!``, ``c``)."""
    bang = channel.find("!")
    if bang < 0:
        return channel, ""
    return channel[: bang + 1], channel[bang + 1 :]


@lru_cache(maxsize=65536)
def queue_key(prefix: str, channel: str) -> str:
    """The list holding ``channel``'s messages (shared by a client's local channels)."""
    head = split_channel(channel)[0]
    return f"{prefix}{{{tag_of(head)}}}q:{head}"


@lru_cache(maxsize=65536)
def counts_key(prefix: str, channel: str) -> str:
    """The hash counting queued messages of the local channels sharing a queue."""
    head = split_channel(channel)[0]
    return f"{prefix}{{{tag_of(head)}}}n:{head}"


def group_key(prefix: str, group: str, tag: str) -> str:
    """The sorted set of a group's members of one tag."""
    return f"{prefix}{{{tag}}}g:{group}"


def group_capacity_key(prefix: str, group: str, tag: str) -> str:
    """The hash of capacities that differ from the default, of a group's members of one tag."""
    return f"{prefix}{{{tag}}}c:{group}"


def clients_key(prefix: str, group: str, tag: str) -> str:
    """The sorted set of the clients (``a.b!``) of ``tag`` with process-local members in
    ``group``."""
    return f"{prefix}{{{tag}}}l:{group}"


def local_members_key(prefix: str, group: str, head: str) -> str:
    """The sorted set of the suffixes of client ``head``'s members of ``group``."""
    return f"{prefix}{{{tag_of(head)}}}m:{head}{group}"


def joined_key(prefix: str, group: str, head: str) -> str:
    """The cached, joined member list of client ``head`` in ``group`` (group_send's read)."""
    return f"{prefix}{{{tag_of(head)}}}j:{head}{group}"


def reserved_field(suffix: str) -> str:
    """The counts-hash field holding the slots reserved for group copies of ``suffix``."""
    return f"+{suffix}"


def directory_key(prefix: str, group: str) -> str:
    """The set of tags that hold members of ``group``."""
    return f"{prefix}{{{tag_of(group)}}}d:{group}"


def wake_key(prefix: str, client: str, tag: str) -> str:
    """The list a process pushes to so its own reader blocked on ``tag``'s queues wakes up."""
    return f"{prefix}{{{tag}}}w:{client}"


def lane_wake_key(wake_key: str, lane: int) -> str:
    """The wake list of a reader's lane ``lane`` (``lanes.py``): lane 0 uses ``wake_key``,
    the others add ``/<lane>`` (same tag, so the same slot)."""
    return wake_key if lane == 0 else f"{wake_key}/{lane}"


def tag_of_key(prefix: str, key: str) -> str:
    """The tag of one of this prefix's keys: ``asgi:{x1}q:jobs`` -> ``x1``."""
    return key[len(prefix) + 1 : key.index("}", len(prefix))]


def queue_part(prefix: str, queue: str) -> str:
    """The channel part of a queue key: ``asgi:{x1}q:a.b!`` -> ``a.b!``."""
    return queue[queue.index("}", len(prefix)) + 3 :]


def requeue_token_key(prefix: str, queue: str, token: str) -> str:
    """The marker of one hand-back of entries to ``queue`` (a queue key), in its slot."""
    close = queue.index("}", len(prefix))
    return f"{queue[: close + 1]}r:{queue[close + 3 :]}/{token}"


def release_mark_key(prefix: str, queue: str, releaser: str) -> str:
    """The number of the last count-release batch ``releaser`` applied, in ``queue``'s slot."""
    return requeue_token_key(prefix, queue, f"n.{releaser}")


def clock_key(prefix: str, tag: str) -> str:
    """The uptime clock of one tag (liveness is judged on it, see ``lua/_helpers.lua``)."""
    return f"{prefix}{{{tag}}}u:clock"


def heartbeat_key(prefix: str, channel_or_head: str) -> str:
    """The liveness mark of the client owning a process-local channel (or its ``a.b!`` head)."""
    head = split_channel(channel_or_head)[0]
    return f"{prefix}{{{tag_of(head)}}}h:{head}"


def scan_patterns(prefix: str, kinds: str = KINDS) -> list[str]:
    """SCAN MATCH patterns covering this prefix's keys of ``kinds`` (glob chars escaped)."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)
    return [f"{escaped}{{*}}{kind}:*" for kind in kinds]


def is_own_key(prefix: str, key: bytes) -> bool:
    """Whether a key SCAN matched really is this prefix's: ``{tag}``, a kind letter, ``:``.

    Tags and names never contain ``{``, ``}`` or ``:``, so a key of another prefix that merely
    matches the pattern (``a*`` also matching ``ab{...}``) fails one of these checks.
    """
    rest = key[len(prefix) :]
    close = rest.find(b"}")
    return (
        rest.startswith(b"{")
        and close > 1
        and rest[1:close].decode("ascii", "replace") in _TAG_SET
        and rest[close + 2 : close + 3] == b":"
        and b":" not in rest[close + 3 :]
    )


def deadline_text(deadline_ms: int) -> str:
    """An entry's deadline field: 13 digits (the Lua scripts build entries from it too)."""
    return f"{deadline_ms:0{DEADLINE_DIGITS}d}"


def make_entry(deadline_ms: int, suffix: str, payload: bytes) -> bytes:
    """Build one queue entry: fixed header, then the payload."""
    header = f"{deadline_text(deadline_ms)}{len(suffix):0{SUFFIX_LEN_DIGITS}d}{suffix}"
    return header.encode("ascii") + payload


def make_group_entry(deadline_ms: int, suffixes: list[str], payload: bytes) -> bytes:
    """Build a group entry for process-local channels of one client (not counted in Redis)."""
    listed = ",".join(suffixes)
    header = f"{deadline_text(deadline_ms)}G{len(listed):0{LIST_LEN_DIGITS}d}{listed}"
    return header.encode("ascii") + payload


def is_group_entry(entry: bytes) -> bool:
    """Whether ``entry`` is a group entry (its copies are not counted in Redis)."""
    return entry[DEADLINE_DIGITS : DEADLINE_DIGITS + 1] == GROUP_MARK


def parse_entry(entry: bytes) -> tuple[int, list[str], bytes]:
    """Split an entry into (deadline_ms, suffixes, payload); no suffix for a named channel.

    Raises:
        ValueError: the header is malformed (the same rule the Lua scripts apply).
    """
    deadline_ms = _digits(entry, 0, DEADLINE_DIGITS)
    if is_group_entry(entry):
        return (deadline_ms, *_suffix_list(entry, DEADLINE_DIGITS + 1))
    suffix_len = _digits(entry, DEADLINE_DIGITS, HEADER_LEN)
    if suffix_len == 0:
        return deadline_ms, [], entry[HEADER_LEN:]
    if suffix_len != MULTI:
        suffix_end = HEADER_LEN + suffix_len
        suffix = entry[HEADER_LEN:suffix_end]
        if len(suffix) != suffix_len or not _SUFFIX.fullmatch(suffix):
            raise ValueError("malformed queue entry: bad suffix")
        return deadline_ms, [suffix.decode("ascii")], entry[suffix_end:]
    return (deadline_ms, *_suffix_list(entry, HEADER_LEN))


def _suffix_list(entry: bytes, start: int) -> tuple[list[str], bytes]:
    """(suffixes, payload) of a suffix list whose 6-digit length starts at ``start``."""
    list_start = start + LIST_LEN_DIGITS
    list_end = list_start + _digits(entry, start, list_start)
    listed = entry[list_start:list_end]
    if len(listed) != list_end - list_start or not _SUFFIX_LIST.fullmatch(listed):
        raise ValueError("malformed queue entry: bad suffix list")
    return listed.decode("ascii").split(","), entry[list_end:]


def _digits(entry: bytes, start: int, end: int) -> int:
    """The number written in ASCII digits at ``entry[start:end]``; ValueError if it is not."""
    field = entry[start:end]
    if len(field) != end - start or not _DIGITS.fullmatch(field):
        raise ValueError(f"malformed queue entry: bytes {start}-{end} are not {end - start} digits")
    return int(field)


def split_key(prefix: str, key: bytes) -> tuple[str, str]:
    """A key of this prefix as (kind letter, name): ``asgi:{x1}g:room`` -> (``g``, ``room``)."""
    rest = key.decode("utf-8", "replace")[len(prefix) :]
    close = rest.index("}")
    return rest[close + 1 : close + 2], rest[close + 3 :]
