"""Rendezvous hashing (pure): balanced, stable, and adding a server moves few channels."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from asgi_redis.sharding import shard_for

THREE = ("redis://a:6379", "redis://b:6379", "redis://c:6379")
FOUR = (*THREE, "redis://d:6379")
KEYS = [f"chat.room{n}" for n in range(3000)]
names = st.from_regex(r"[A-Za-z0-9_.\-]{1,40}!?", fullmatch=True)


def test_one_server_holds_everything() -> None:
    assert {shard_for(("redis://only",), key) for key in KEYS} == {0}


def test_keys_spread_over_all_servers() -> None:
    counts = Counter(shard_for(THREE, key) for key in KEYS)
    assert set(counts) == {0, 1, 2}
    assert min(counts.values()) > len(KEYS) * 0.25  # about a third each


def test_adding_a_server_moves_about_a_quarter_and_only_to_it() -> None:
    moved = [key for key in KEYS if shard_for(THREE, key) != shard_for(FOUR, key)]
    assert all(shard_for(FOUR, key) == 3 for key in moved)
    assert len(KEYS) * 0.15 < len(moved) < len(KEYS) * 0.35


@given(names)
def test_a_key_moves_only_to_a_new_server(key: str) -> None:
    before, after = shard_for(THREE, key), shard_for(FOUR, key)
    assert after in (before, 3)


@given(names, st.permutations(THREE))
def test_the_order_of_hosts_does_not_matter(key: str, shuffled: list[str]) -> None:
    assert THREE[shard_for(THREE, key)] == shuffled[shard_for(tuple(shuffled), key)]
