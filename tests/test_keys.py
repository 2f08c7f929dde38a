"""keys.py: the tags and their hash slots, and every key name's shape and round trips."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from asgi_redis import keys

PREFIXES = ["asgi:", "", "my.app-1:", "a*b?[c]\\:"]
CHANNELS = ["jobs", "chat.room-1_x", "specific.abc123!", "specific.abc123!def456", "a!b.c-d_e"]
GROUPS = ["room", "chat.lobby-2", "g_1"]
RANGE_WIDTH = REDIS_CLUSTER_HASH_SLOTS // keys.TAG_COUNT


def slot(text: str) -> int:
    """The hash slot of a key (its ``{tag}`` when it has one)."""
    return int(key_slot(text.encode()))


def head(channel: str) -> str:
    """The routing unit of a channel: itself, or its ``a.b!`` queue part."""
    return keys.split_channel(channel)[0]


# -- the tags -------------------------------------------------------------------------------


def test_there_are_64_distinct_tags() -> None:
    assert keys.TAG_COUNT == len(keys.TAGS) == len(set(keys.TAGS)) == 64


def test_each_tag_falls_in_its_own_equal_slot_range() -> None:
    assert [slot(tag) // RANGE_WIDTH for tag in keys.TAGS] == list(range(keys.TAG_COUNT))


def test_tags_are_short_and_plain() -> None:
    for tag in keys.TAGS:
        assert re.fullmatch("[0-9a-z]{1,2}", tag), tag


def test_tag_of_is_one_of_the_tags_and_spreads_over_all() -> None:
    found = Counter(keys.tag_of(f"chat.room{number}") for number in range(64_000))
    assert set(found) == set(keys.TAGS)
    assert min(found.values()) > 800  # 1,000 each on average


# Stored data depends on these values: a change would orphan every key already in Redis.
PINNED = {"room": "0r", "jobs": "21", "specific.client!": "0b", "lobby": "8"}


def test_tag_of_is_pinned() -> None:
    assert {unit: keys.tag_of(unit) for unit in PINNED} == PINNED


def test_tag_of_does_not_depend_on_the_process() -> None:
    code = "from asgi_redis import keys; print(' '.join(keys.tag_of(u) for u in %r))"
    expected = " ".join(PINNED.values())
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code % list(PINNED)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.stdout.strip() == expected


def test_every_channel_of_a_client_has_the_tag_of_its_queue_part() -> None:
    tags = {keys.tag_of(head(f"specific.abc!{suffix}")) for suffix in ("a", "b", "xyz", "0")}
    assert tags == {keys.tag_of("specific.abc!")}


# -- every key sits in the slot of its unit's tag ------------------------------------------

CHANNEL_KEYS: list[Callable[[str, str], str]] = [
    keys.queue_key,
    keys.counts_key,
    keys.heartbeat_key,
]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("make", CHANNEL_KEYS, ids=lambda make: make.__name__)
def test_a_channel_key_hashes_to_the_slot_of_its_queue_parts_tag(
    prefix: str, make: Callable[[str, str], str]
) -> None:
    for channel in CHANNELS:
        tag = keys.tag_of(head(channel))
        key = make(prefix, channel)
        assert key.startswith(f"{prefix}{{{tag}}}")
        assert slot(key) == slot(tag)
        assert keys.tag_of_key(prefix, key) == tag


@pytest.mark.parametrize("prefix", PREFIXES)
def test_group_keys_hash_to_the_slot_of_the_tag_given(prefix: str) -> None:
    for group in GROUPS:
        for tag in keys.TAGS:
            for key in (
                keys.group_key(prefix, group, tag),
                keys.group_capacity_key(prefix, group, tag),
            ):
                assert slot(key) == slot(tag)
                assert keys.tag_of_key(prefix, key) == tag


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_directory_hashes_to_the_slot_of_its_groups_tag(prefix: str) -> None:
    for group in GROUPS:
        key = keys.directory_key(prefix, group)
        assert key == f"{prefix}{{{keys.tag_of(group)}}}d:{group}"
        assert slot(key) == slot(keys.tag_of(group))


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_wake_key_hashes_to_the_slot_of_the_tag_given(prefix: str) -> None:
    for tag in keys.TAGS:
        key = keys.wake_key(prefix, "specific.abc", tag)
        assert key == f"{prefix}{{{tag}}}w:specific.abc"
        assert slot(key) == slot(tag)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_requeue_token_sits_in_its_queues_slot(prefix: str) -> None:
    for channel in CHANNELS:
        queue = keys.queue_key(prefix, channel)
        token_key = keys.requeue_token_key(prefix, queue, "t-1")
        assert token_key == f"{prefix}{{{keys.tag_of(head(channel))}}}r:{head(channel)}/t-1"
        assert slot(token_key) == slot(queue)


# -- round trips ----------------------------------------------------------------------------


def every_key(prefix: str) -> dict[str, tuple[str, str]]:
    """One key of every kind for ``prefix``, each with its (kind, name)."""
    queue = keys.queue_key(prefix, "specific.abc!x")
    found = {
        queue: ("q", "specific.abc!"),
        keys.queue_key(prefix, "jobs"): ("q", "jobs"),
        keys.counts_key(prefix, "specific.abc!x"): ("n", "specific.abc!"),
        keys.group_capacity_key(prefix, "room", "0r"): ("c", "room"),
        keys.group_key(prefix, "room", "x"): ("g", "room"),
        keys.directory_key(prefix, "room"): ("d", "room"),
        keys.wake_key(prefix, "specific.abc", "k"): ("w", "specific.abc"),
        keys.requeue_token_key(prefix, queue, "t1"): ("r", "specific.abc!/t1"),
        keys.heartbeat_key(prefix, "specific.abc!x"): ("h", "specific.abc!"),
        keys.clients_key(prefix, "room", "x"): ("l", "room"),
        keys.local_members_key(prefix, "room", "specific.abc!"): ("m", "specific.abc!room"),
        keys.joined_key(prefix, "room", "specific.abc!"): ("j", "specific.abc!room"),
        keys.clock_key(prefix, "k"): ("u", "clock"),
    }
    assert {kind for kind, _ in found.values()} == set(keys.KINDS)
    return found


@pytest.mark.parametrize("prefix", PREFIXES)
def test_split_key_and_is_own_key_round_trip(prefix: str) -> None:
    for key, kind_and_name in every_key(prefix).items():
        assert keys.split_key(prefix, key.encode()) == kind_and_name
        assert keys.is_own_key(prefix, key.encode())


@pytest.mark.parametrize("prefix", PREFIXES)
def test_queue_part_round_trips(prefix: str) -> None:
    for channel in CHANNELS:
        assert keys.queue_part(prefix, keys.queue_key(prefix, channel)) == head(channel)


@pytest.mark.parametrize(
    "key",
    [
        "asgi:q:jobs",  # the layout before tags
        "asgi:{}q:jobs",  # no tag
        "asgi:{zzz}q:jobs",  # not one of the tags
        "asgi:{0r}q:jobs:x",  # a colon in the name
        "asgi:{0r}qq:jobs",  # a kind of two letters
        "asgi:q:{0r}q:jobs",  # a key of prefix "asgi:q:"
        "asgi:x{0r}q:jobs",  # a key of prefix "asgi:x"
        "asgi:{0r}",  # no kind at all
    ],
)
def test_keys_that_are_not_the_prefixes_own(key: str) -> None:
    assert not keys.is_own_key("asgi:", key.encode())


def test_scan_patterns_cover_every_kind_with_glob_characters_escaped() -> None:
    assert keys.scan_patterns("asgi:") == [f"asgi:{{*}}{kind}:*" for kind in keys.KINDS]
    assert keys.scan_patterns("a*b?[c]\\:", "q") == ["a\\*b\\?\\[c\\]\\\\:{*}q:*"]
