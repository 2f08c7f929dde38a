"""send and the group calls from short-lived loops run as blocking calls (syncpath.py).

The behaviour tests run each scenario twice: from a long-lived event loop (the async path)
and from plain threads through ``async_to_sync`` after the layer has seen short-lived loops
(the blocking path), and assert the same outcome.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

from asgi_redis import ChannelFull, MessageTooLarge, RedisChannelLayer, keys, offload
from asgi_redis.offload import CHURN_LOOPS

from .layer_helpers import in_forked_child, keyspace, make_layer, sync_client
from .servers import free_port
from .test_offload import background_thread, client_ids

PATHS = ["async", "blocking"]


def churn(layer: RedisChannelLayer) -> None:
    """Let the layer see short-lived loops (as a WSGI view calling async_to_sync does)."""
    for _ in range(CHURN_LOOPS):
        async_to_sync(layer.group_send)("churn", {"type": "churn"})


def count_blocking_calls(layer: RedisChannelLayer) -> list[str]:
    """Record the operation of every script run on the layer's sync clients."""
    seen: list[str] = []
    run_many = layer._sync.run_many

    def counted(index: int, operation: str, calls: list[Any]) -> list[Any]:
        seen.append(operation)
        return run_many(index, operation, calls)

    layer._sync.run_many = counted  # type: ignore[method-assign]
    return seen


class Caller:
    """Calls a layer's methods from sync code, one way or the other (``path``)."""

    def __init__(self, layer: RedisChannelLayer, path: str) -> None:
        self.layer = layer
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self.blocking_calls: list[str] = []
        if path == "blocking":
            churn(layer)
            self.blocking_calls = count_blocking_calls(layer)
        else:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def __call__(self, method: str, *args: Any) -> Any:
        """``layer.<method>(*args)``: through async_to_sync, or on the long-lived loop."""
        bound = getattr(self.layer, method)
        if self._loop is None:
            return async_to_sync(bound)(*args)
        return asyncio.run_coroutine_threadsafe(bound(*args), self._loop).result(10)

    def close(self) -> None:
        """Close the layer (from its long-lived loop, if it has one) and stop that loop."""
        if self._loop is None:
            async_to_sync(self.layer.close)()
            return
        asyncio.run_coroutine_threadsafe(self.layer.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """Which way the calls go."""
    return str(request.param)


@pytest.fixture
def calling(path: str, redis_url: str) -> Iterator[Callable[..., Caller]]:
    """``calling(**options)``: a Caller of a new layer on the test server."""
    made: list[Caller] = []

    def make(**options: Any) -> Caller:
        caller = Caller(make_layer(redis_url, **options), path)
        made.append(caller)
        return caller

    yield make
    for caller in made:
        caller.close()


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def queue_length(url: str, channel: str) -> int:
    """Entries in ``channel``'s queue."""
    with sync_client(url) as client:
        return int(client.llen(keys.queue_key("asgi:", channel)))


def exercise_blocking(hosts: list[Any], **options: Any) -> None:
    """Each blocking call (send, group_add, group_send, group_discard) from sync code on a
    layer on ``hosts``, checked through the layer's receive; the layer is closed after."""
    layer = RedisChannelLayer(hosts=hosts, **options)
    churn(layer)
    blocking_calls = count_blocking_calls(layer)
    try:
        async_to_sync(layer.group_add)("room", "blocking.member")
        async_to_sync(layer.group_send)("room", {"type": "group"})
        async_to_sync(layer.send)("blocking.member", {"type": "direct"})
        async_to_sync(layer.group_discard)("room", "blocking.member")
        async_to_sync(layer.group_send)("room", {"type": "nobody"})
        receive = async_to_sync(layer.receive)
        assert [receive("blocking.member"), receive("blocking.member")] == [
            {"type": "group"},
            {"type": "direct"},
        ]
        assert len(blocking_calls) == 5
    finally:
        async_to_sync(layer.close)()


# -- the same behaviour on both paths -------------------------------------------------------


def test_a_full_channel_raises_channel_full(calling: Any, redis_url: str) -> None:
    call = calling(capacity=2)
    call("send", "full", {"n": 1})
    call("send", "full", {"n": 2})
    with pytest.raises(ChannelFull, match="'full'"):
        call("send", "full", {"n": 3})
    assert queue_length(redis_url, "full") == 2
    assert call.layer.counters.channel_full == 1
    blocking = call.path == "blocking"
    assert call.blocking_calls == (["send to channel 'full'"] * 3 if blocking else [])


def test_group_send_skips_full_members(calling: Any, redis_url: str) -> None:
    call = calling(capacity=1)
    call("group_add", "room", "full.member")
    call("group_add", "room", "free.member")
    call("send", "full.member", {"type": "first"})
    call("group_send", "room", {"type": "everyone"})
    assert queue_length(redis_url, "full.member") == 1
    assert call("receive", "free.member") == {"type": "everyone"}
    assert call("receive", "full.member") == {"type": "first"}
    call("group_discard", "room", "free.member")
    call("group_send", "room", {"type": "again"})
    assert queue_length(redis_url, "free.member") == 0
    assert call("receive", "full.member") == {"type": "again"}
    if call.path == "blocking":
        assert len(call.blocking_calls) == 6


def test_encrypted_messages(calling: Any, redis_url: str) -> None:
    call = calling(symmetric_encryption_keys=["a secret of at least 32 characters!"])
    call("send", "secret", {"type": "plain words"})
    call("group_add", "room", "secret")
    call("group_send", "room", {"type": "more plain words"})
    with sync_client(redis_url) as client:
        stored = b"".join(client.lrange(keys.queue_key("asgi:", "secret"), 0, -1))
    assert b"plain words" not in stored
    assert call("receive", "secret") == {"type": "plain words"}
    assert call("receive", "secret") == {"type": "more plain words"}


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("send", ("bad name", {"type": "x"}), TypeError),
        ("send", ("good.name", ["not", "a", "dict"]), TypeError),
        ("send", ("good.name", {"type": object()}), TypeError),
        ("send", ("good.name", {"type": "x" * 2000}), MessageTooLarge),
        ("group_send", ("bad group!", {"type": "x"}), TypeError),
        ("group_send", ("room", {"type": b"x" * 2000}), MessageTooLarge),
        ("group_add", ("room", "bad name"), TypeError),
        ("group_discard", ("bad group!", "good.name"), TypeError),
    ],
)
def test_bad_input_fails_before_anything_is_written(
    calling: Any, redis_url: str, method: str, args: tuple[Any, ...], error: type[Exception]
) -> None:
    call = calling(max_message_size=1000)
    before = keyspace(redis_url)
    with pytest.raises(error):
        call(method, *args)
    assert keyspace(redis_url) == before
    assert call.blocking_calls == []


# -- the blocking path itself ---------------------------------------------------------------


def test_calls_reuse_connections_across_calls_and_threads(redis_url: str) -> None:
    others = client_ids(redis_url)
    layer = make_layer(redis_url, capacity=1000)
    churn(layer)
    blocking_calls = count_blocking_calls(layer)

    def calls(thread: int) -> None:
        for number in range(20):
            async_to_sync(layer.send)("reuse", {"thread": thread, "n": number})
            async_to_sync(layer.group_send)("reuse.group", {"n": number})

    workers = [threading.Thread(target=calls, args=(thread,)) for thread in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(blocking_calls) == 160
    assert background_thread(layer) is None  # nothing was forwarded
    assert 1 <= len(client_ids(redis_url) - others) <= 4
    assert queue_length(redis_url, "reuse") == 80
    async_to_sync(layer.close)()
    assert client_ids(redis_url) - others == set()


def test_errors_name_the_call_and_the_server() -> None:
    layer = make_layer(f"redis://127.0.0.1:{free_port()}")
    for _ in range(CHURN_LOOPS):
        with pytest.raises(redis.exceptions.ConnectionError):
            async_to_sync(layer.group_send)("churn", {"type": "churn"})
    blocking_calls = count_blocking_calls(layer)
    with pytest.raises(redis.exceptions.ConnectionError) as raised:
        async_to_sync(layer.send)("nowhere", {"type": "x"})
    assert "send to channel 'nowhere' failed on redis://127.0.0.1:" in str(raised.value)
    assert "cannot reach Redis" in str(raised.value)
    assert blocking_calls == ["send to channel 'nowhere'"]


def test_a_forked_child_makes_its_own_connections(redis_url: str) -> None:
    others = client_ids(redis_url)
    layer = make_layer(redis_url)
    churn(layer)
    async_to_sync(layer.send)("forked", {"from": "parent", "n": -1})
    parent_clients = client_ids(redis_url) - others

    def child() -> bool:
        blocking_calls = count_blocking_calls(layer)
        for number in range(10):
            async_to_sync(layer.send)("forked", {"from": "child", "n": number})
        mine = client_ids(redis_url) - others - parent_clients
        layer._sync.close()
        return len(blocking_calls) == 10 and len(mine) == 1

    def parent() -> None:
        for number in range(10):
            async_to_sync(layer.send)("forked", {"from": "parent", "n": number})

    assert in_forked_child(child, parent)
    # The parent's connection is untouched; the child's went with it.
    assert wait_for(lambda: client_ids(redis_url) - others == parent_clients)
    assert queue_length(redis_url, "forked") == 21
    async_to_sync(layer.close)()


def test_a_loop_is_blocked_only_while_young(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(offload, "YOUNG_S", 0.3)
    layer = make_layer(redis_url)
    churn(layer)
    blocking_calls = count_blocking_calls(layer)

    async def long_lived() -> None:
        await layer.send("aging", {"n": 1})
        await asyncio.sleep(0.5)
        await layer.send("aging", {"n": 2})  # now forwarded: its loop may be doing more

    async_to_sync(long_lived)()
    assert blocking_calls == ["send to channel 'aging'"]
    assert background_thread(layer) is not None
    assert queue_length(redis_url, "aging") == 2
    async_to_sync(layer.close)()
