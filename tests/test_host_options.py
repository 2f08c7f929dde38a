"""Hosts are checked with redis-py's own rules when the layer is built (issue 8 points 5, 8).

One server has one identity however it is spelled, so every process shards alike; a bad
scheme, an unknown key or an option that would break a guarantee fails at construction,
naming the option and never echoing a password.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from asgi_redis import RedisChannelLayer
from asgi_redis.sharding import shard_for

SECRET = "not-a-real-secret"
SPELLINGS: list[object] = [
    "redis://cache",
    "redis://CACHE",
    "redis://cache:6379",
    "redis://cache:6379/0",
    "redis://cache/0",
    "redis://cache?db=0",
    f"redis://:{SECRET}@cache:6379",
    ("cache", 6379),
    {"host": "cache"},
    {"host": "cache", "port": 6379, "db": 0},
    {"address": "redis://cache", "socket_connect_timeout": 1},
]


def label_of(host: object) -> str:
    """The label the layer gives its only host."""
    return RedisChannelLayer(hosts=[host])._servers.labels[0]


@pytest.mark.parametrize("spelling", SPELLINGS, ids=repr)
def test_every_spelling_of_one_server_has_one_label(spelling: object) -> None:
    assert label_of(spelling) == "redis://cache:6379/0"


def test_every_spelling_picks_the_same_shard() -> None:
    others = ("redis://other-a:6379/0", "redis://other-b:6379/0")
    keys = [f"channel.{number}" for number in range(200)]
    picks = set()
    for spelling in SPELLINGS:
        layer = RedisChannelLayer(hosts=[spelling, *others])
        labels = layer._servers.labels
        picks.add(tuple(labels[shard_for(labels, key)] for key in keys))
    assert len(picks) == 1


@pytest.mark.parametrize(
    ("host", "label"),
    [
        (f"rediss://user:{SECRET}@Cache.Example:6380/3", "rediss://cache.example:6380/3"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        (f"unix://user:{SECRET}@/run/redis.sock", "unix:///run/redis.sock?db=0"),
        ({"path": "/run/redis.sock"}, "unix:///run/redis.sock?db=0"),
        ("redis://[::1]:7000", "redis://[::1]:7000/0"),
        ({"host": "cache", "db": 4}, "redis://cache:6379/4"),
    ],
    ids=repr,
)
def test_labels_are_canonical_and_hold_no_password(host: object, label: str) -> None:
    assert label_of(host) == label
    assert SECRET not in label


def test_two_spellings_of_one_server_are_refused() -> None:
    with pytest.raises(ValueError, match=r"more than once: redis://cache:6379/0"):
        RedisChannelLayer(hosts=["redis://cache", {"host": "cache", "port": 6379}])
    RedisChannelLayer(hosts=["redis://cache/0", "redis://cache/1"])  # two databases: two


def construction_error(host: object) -> Exception:
    """What building a layer with ``host`` raises (the test fails if nothing is raised)."""
    with pytest.raises((TypeError, ValueError)) as caught:
        RedisChannelLayer(hosts=[host])
    assert SECRET not in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("host", "named"),
    [
        (f"http://user:{SECRET}@cache:6379", "http://"),
        (f"redis+ssl://:{SECRET}@cache", "redis+ssl://"),
        ({"address": f"http://:{SECRET}@cache"}, "http://"),
    ],
    ids=repr,
)
def test_a_scheme_redis_py_cannot_use_fails_at_construction(host: object, named: str) -> None:
    error = construction_error(host)
    assert isinstance(error, ValueError)
    assert named in str(error) and "hosts" in str(error)


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ({"address": f"redis://:{SECRET}@cache", "bogus": 1}, "bogus"),
        ({"host": "cache", "password": SECRET, "adress": "x"}, "adress"),
        (f"redis://:{SECRET}@cache?bogus=1", "bogus"),
        ({"host": "cache", "ssl": True}, "ssl"),
        ({"host": "cache", "ssl_certfile": "x"}, "ssl_certfile"),
        ({"path": "/run/redis.sock", "port": 1}, "port"),
        (
            {"sentinels": [("127.0.0.1", 1)], "master_name": "m", "password": SECRET, "bog": 1},
            "bog",
        ),
        ({"sentinels": [("127.0.0.1", 1)], "master_name": "m", "sentinel_kwargs": {"x": 1}}, "x"),
    ],
    ids=repr,
)
def test_an_unknown_host_key_fails_at_construction(host: object, key: str) -> None:
    error = construction_error(host)
    assert isinstance(error, TypeError)
    assert repr(key) in str(error)


@pytest.mark.parametrize(
    "host",
    [
        f"rediss://:{SECRET}@cache?ssl_cert_reqs=none",
        {"address": "rediss://cache", "ssl_certfile": "cert.pem"},
        {"path": "/run/redis.sock", "password": SECRET},
        {"host": "cache", "max_connections": 5, "timeout": 2, "client_name": "worker"},
        {"sentinels": [("127.0.0.1", 1)], "master_name": "m", "ssl": True, "ssl_ca_certs": "x"},
        {"sentinels": [("127.0.0.1", 1)], "master_name": "m", "sentinel_kwargs": {"ssl": True}},
    ],
    ids=repr,
)
def test_options_redis_py_takes_are_accepted(host: object) -> None:
    RedisChannelLayer(hosts=[host])


# -- options that would break a guarantee ----------------------------------------------------

BREAKING: list[tuple[dict[str, Any], str]] = [
    ({"socket_timeout": 5}, "socket_timeout"),
    ({"socket_timeout": 1.5}, "socket_timeout"),
    ({"socket_timeout": 0}, "socket_timeout"),
    ({"retry": Retry(NoBackoff(), 1)}, "retry"),
    ({"retry": Retry(ExponentialBackoff(), -1)}, "retry"),
    ({"retry_on_timeout": True}, "retry_on_timeout"),
    ({"retry_on_error": [RedisTimeoutError]}, "retry_on_error"),
]


@pytest.mark.parametrize(("options", "named"), BREAKING, ids=repr)
@pytest.mark.parametrize("form", ["dict", "sentinel"])
def test_options_that_break_a_guarantee_are_refused(
    options: dict[str, Any], named: str, form: str
) -> None:
    host: dict[str, Any] = {"address": f"redis://:{SECRET}@cache", **options}
    if form == "sentinel":
        host = {"sentinels": [("127.0.0.1", 1)], "master_name": "m", **options}
    error = construction_error(host)
    assert isinstance(error, ValueError)
    assert named in str(error)


@pytest.mark.parametrize(
    "url", ["redis://cache?socket_timeout=2", "redis://cache?retry_on_timeout=yes"]
)
def test_breaking_options_in_the_url_are_refused(url: str) -> None:
    assert isinstance(construction_error(url), ValueError)


def test_socket_timeout_must_be_a_number() -> None:
    assert isinstance(construction_error({"host": "cache", "socket_timeout": "20"}), TypeError)


@pytest.mark.parametrize(
    "options",
    [
        {"socket_timeout": None},
        {"socket_timeout": 5.5},
        {"retry": Retry(NoBackoff(), 0)},
        {"retry_on_timeout": False},
        {"retry_on_error": []},
    ],
    ids=repr,
)
def test_options_that_keep_the_guarantees_are_accepted(options: dict[str, Any]) -> None:
    RedisChannelLayer(hosts=[{"host": "cache", **options}])
