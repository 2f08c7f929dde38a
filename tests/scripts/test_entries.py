"""The queue entry format: keys.parse_entry against make_entry, random bytes and garbage.

parse_entry and the Lua helpers apply one rule: an entry either parses or is malformed, and
a malformed one raises ValueError (and nothing else) so the reader can skip it and go on.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from asgi_redis import keys
from tests.conftest import fake_client
from tests.scripts.helpers import GARBAGE, LIVE_MS, NOW_MS, qkey, receive

SUFFIX_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
deadlines = st.integers(min_value=0, max_value=10**keys.DEADLINE_DIGITS - 1)
suffixes = st.text(alphabet=SUFFIX_CHARS, min_size=1, max_size=keys.MULTI - 1)


def multi_entry(deadline_ms: int, names: list[str], payload: bytes) -> bytes:
    """A group entry for several channels of one client (the counted form of earlier versions)."""
    listed = ",".join(names).encode()
    return b"%013d%02d%06d" % (deadline_ms, keys.MULTI, len(listed)) + listed + payload


@given(deadlines, st.one_of(st.just(""), suffixes), st.binary())
def test_every_made_entry_round_trips(deadline_ms: int, suffix: str, payload: bytes) -> None:
    parsed = keys.parse_entry(keys.make_entry(deadline_ms, suffix, payload))
    assert parsed == (deadline_ms, [suffix] if suffix else [], payload)


@given(deadlines, st.lists(suffixes, min_size=1, max_size=20), st.binary())
def test_every_group_entry_round_trips(deadline_ms: int, names: list[str], payload: bytes) -> None:
    assert keys.parse_entry(multi_entry(deadline_ms, names, payload)) == (
        deadline_ms,
        names,
        payload,
    )


@given(st.binary(max_size=64))
@example(b"")
@example(b"0000000000000")
@example(b"000000000000099")
@example(b"0000000000000990000")
@example("\u0661".encode() * 13 + b"00x")  # digits, but not ASCII ones
def test_random_bytes_parse_or_raise_value_error(raw: bytes) -> None:
    try:
        deadline_ms, names, payload = keys.parse_entry(raw)
    except ValueError as exc:
        assert type(exc) is ValueError  # not UnicodeDecodeError, IndexError, ...
        return
    assert 0 <= deadline_ms < 10**keys.DEADLINE_DIGITS
    assert all(names) and payload in raw


# A valid deadline and suffix length, then anything: reaches the suffix and list checks.
near_misses = st.builds(
    lambda suffix_len, rest: b"%013d%02d" % (LIVE_MS, suffix_len) + rest,
    st.sampled_from([0, 1, 2, 5, keys.MULTI]),
    st.binary(max_size=40) | st.text(SUFFIX_CHARS + ",0", max_size=40).map(str.encode),
)


@given(near_misses)
def test_bytes_after_a_valid_header_parse_or_raise_value_error(raw: bytes) -> None:
    try:
        keys.parse_entry(raw)
    except ValueError as exc:
        assert type(exc) is ValueError


@settings(max_examples=60, deadline=None)
@given(st.lists(near_misses | st.binary(max_size=30), min_size=1, max_size=8))
@example([b"%013d00named" % LIVE_MS, GARBAGE["list-empty-suffix"], b"%013d02abx" % LIVE_MS])
@example([b"%013d99000003a,bx" % LIVE_MS, b"%013d99000003a,bx" % NOW_MS, b"%013d00" % LIVE_MS])
def test_lua_and_python_agree_on_what_is_malformed(raws: list[bytes]) -> None:
    # receive.lua returns exactly the live entries parse_entry accepts, in order.
    client = fake_client()
    client.flushall()
    client.rpush(qkey("chat.x"), *raws)
    reply = [raw for _, raw in receive(client, [("chat.x", 100)], now_ms=NOW_MS)]
    assert reply == [raw for raw in raws if parses_live(raw)]
    assert not client.exists(qkey("chat.x"))


def parses_live(raw: bytes) -> bool:
    """Whether parse_entry accepts ``raw`` and its deadline is after NOW_MS."""
    try:
        return keys.parse_entry(raw)[0] > NOW_MS
    except ValueError:
        return False


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_each_kind_of_garbage_raises_value_error(kind: str) -> None:
    with pytest.raises(ValueError, match="malformed queue entry") as caught:
        keys.parse_entry(GARBAGE[kind])
    assert caught.type is ValueError
