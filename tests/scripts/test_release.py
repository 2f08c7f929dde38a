"""Contract tests for release.lua: counts lowered once per numbered batch, never twice."""

from __future__ import annotations

from typing import Any

from asgi_redis import keys
from tests.scripts.helpers import PREFIX, counts, nkey, qkey, run

LOCAL = "specific.client!x"
MARK = keys.release_mark_key(PREFIX, qkey(LOCAL), "p1")


def release(client: Any, batch: int, pairs: list[tuple[int, str]], mark_s: int = 60) -> Any:
    args: list[Any] = [batch, mark_s]
    for index, suffix in pairs:
        args += [index, suffix]
    return run(client, "release", [MARK, nkey(LOCAL)], args)


def test_release_lowers_each_count_and_drops_fields_at_zero(script_client: Any) -> None:
    script_client.hset(nkey(LOCAL), mapping={"x": 3, "y": 1})
    assert release(script_client, 1, [(1, "x"), (1, "x"), (1, "y")]) == 1
    assert counts(script_client, LOCAL) == {"x": 1}


def test_a_batch_retried_after_its_reply_was_lost_changes_nothing(script_client: Any) -> None:
    script_client.hset(nkey(LOCAL), mapping={"x": 3})
    assert release(script_client, 1, [(1, "x")]) == 1
    assert release(script_client, 1, [(1, "x")]) == 0  # the retry of a lost reply
    assert counts(script_client, LOCAL) == {"x": 2}
    assert release(script_client, 2, [(1, "x")]) == 1
    assert counts(script_client, LOCAL) == {"x": 1}


def test_an_older_batch_number_is_a_repeat_too(script_client: Any) -> None:
    script_client.hset(nkey(LOCAL), mapping={"x": 3})
    assert release(script_client, 5, [(1, "x")]) == 1
    assert release(script_client, 4, [(1, "x")]) == 0
    assert counts(script_client, LOCAL) == {"x": 2}


def test_the_mark_lives_for_the_given_time(script_client: Any) -> None:
    script_client.hset(nkey(LOCAL), mapping={"x": 1})
    assert release(script_client, 1, [(1, "x")], mark_s=30) == 1
    assert 29 <= script_client.ttl(MARK) <= 30
    assert keys.tag_of_key(PREFIX, MARK) == keys.tag_of_key(PREFIX, nkey(LOCAL))
