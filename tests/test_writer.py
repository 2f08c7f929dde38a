"""The dedicated connection of lone callers (``writer``): replies in order, stale and lost
connections, cancelled callers, and the redis-py internals it relies on."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from asgi_redis import pipelining, writer
from asgi_redis.config import Host
from asgi_redis.connections import close_client, make_client
from tests.layer_helpers import make_layer, receive_within, sync_client


def writer_of(client: aioredis.Redis) -> writer.Writer:
    """The client's writer (made on first use)."""
    found = writer.writer_for(client)
    assert found is not None
    return found


@pytest.fixture
async def own(redis_url: str) -> AsyncIterator[writer.Writer]:
    """The writer of a client of its own, closed with the client after the test."""
    client = make_client(Host(redis_url))
    try:
        yield writer_of(client)
    finally:
        await close_client(client)


def test_the_redis_py_internals_the_writer_uses_are_there() -> None:
    # If this fails, redis-py changed what asgi_redis/writer.py reaches into: adapt it there.
    parameters = inspect.signature(Connection.read_response).parameters
    assert "disable_decoding" in parameters
    assert "disconnect_on_error" in parameters
    assert callable(Connection.pack_command)
    assert "nowait" in inspect.signature(Connection.disconnect).parameters
    connection = Connection()
    assert connection._writer is None
    assert connection._reader is None
    assert callable(aioredis.BlockingConnectionPool().make_connection)


async def test_internals_after_connecting(redis_url: str) -> None:
    client = make_client(Host(redis_url))
    try:
        assert await writer_of(client).call("PING") in (b"PONG", True)
        connection = writer_of(client)._connection
        assert connection is not None
        assert isinstance(connection._writer, asyncio.StreamWriter)
        assert isinstance(connection._reader, asyncio.StreamReader)
        assert connection._writer.transport.get_write_buffer_size() == 0
    finally:
        await close_client(client)


async def test_replies_reach_their_callers_in_order_past_a_cancelled_one(
    own: writer.Writer,
) -> None:
    slow = asyncio.ensure_future(own.call("BLPOP", "writer:never", 1))
    await asyncio.sleep(0.05)  # written; its reply comes in about 1 s
    after = asyncio.ensure_future(own.call("ECHO", "after"))
    await asyncio.sleep(0.05)
    slow.cancel()
    assert await asyncio.wait_for(after, 5) == b"after"  # not the BLPOP's nil
    assert await own.call("ECHO", "next") == b"next"
    with pytest.raises(ResponseError, match="wrong number"):
        await own.call("GET")
    assert await own.call("ECHO", "still in step") == b"still in step"


async def test_a_lost_connection_fails_pending_callers_and_the_next_call_reconnects(
    redis_url: str,
    own: writer.Writer,
) -> None:
    await own.call("CLIENT", "SETNAME", "writer-under-test")
    pending = asyncio.ensure_future(own.call("BLPOP", "writer:never", 5))
    await asyncio.sleep(0.05)
    with sync_client(redis_url) as admin:
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pending, 5)
    assert await own.call("ECHO", "again") == b"again"


async def test_a_connection_killed_while_idle_is_replaced_before_writing(
    redis_url: str, own: writer.Writer
) -> None:
    assert await own.call("ECHO", "one") == b"one"
    first = own._connection
    with sync_client(redis_url) as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(2 * writer.PEEK_AFTER_IDLE_S)  # idle, and the loop has not seen the close
    assert await own.call("ECHO", "two") == b"two"  # no error: nothing was written to it
    assert own._connection is not first


async def test_a_connection_closed_behind_an_unread_reply_hands_it_over_then_is_replaced(
    redis_url: str,
    own: writer.Writer,
) -> None:
    assert await own.call("ECHO", "warm") == b"warm"
    first = own._connection
    pending = asyncio.ensure_future(own.call("ECHO", "unread"))
    await asyncio.sleep(0)  # written
    time.sleep(0.05)  # its reply reaches the socket; the loop does not read it
    with sync_client(redis_url) as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(2 * writer.PEEK_AFTER_IDLE_S)
    # A look at the socket sees the reply, not the close behind it: not written there.
    assert await asyncio.wait_for(own.call("ECHO", "after"), 5) == b"after"
    assert await pending == b"unread"
    assert own._connection is not first


async def test_only_a_connection_idle_past_the_threshold_is_looked_at(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked: list[object] = []

    def peer_closed(connection: object) -> bool:
        looked.append(connection)
        return False

    monkeypatch.setattr(writer, "peer_closed", peer_closed)
    monkeypatch.setattr(writer, "PEEK_AFTER_IDLE_S", 60.0)
    client = make_client(Host(redis_url))
    try:
        own = writer_of(client)
        for _ in range(5):
            assert await own.call("PING")
        assert looked == []  # no syscall per command while the connection is in use
        monkeypatch.setattr(writer, "PEEK_AFTER_IDLE_S", 0.01)
        await asyncio.sleep(0.02)
        assert await own.call("PING")
        assert looked == [own._connection]
    finally:
        await close_client(client)


async def test_calls_after_the_reply_task_was_cancelled_still_get_their_replies(
    own: writer.Writer,
) -> None:
    assert await own.call("ECHO", "one") == b"one"
    task = own._task
    assert task is not None
    task.cancel()  # as asyncio.run cancels the tasks left before it closes its loop
    await asyncio.gather(task, return_exceptions=True)
    assert await asyncio.wait_for(own.call("ECHO", "two"), 5) == b"two"


async def test_a_batch_is_one_write_with_its_replies_in_order(own: writer.Writer) -> None:
    replies = await own.call_many([("ECHO", "a"), ("GET",), ("ECHO", "c")])
    assert replies[0] == b"a" and replies[2] == b"c"
    assert isinstance(replies[1], ResponseError)  # an error reply, returned in its place
    assert await own.call("ECHO", "next") == b"next"


async def test_writes_wait_for_the_socket_above_the_high_water_mark(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "HIGH_WATER_B", 0)
    drained = 0
    original = asyncio.StreamWriter.drain

    async def counted(self: asyncio.StreamWriter) -> None:
        nonlocal drained
        drained += 1
        await original(self)

    monkeypatch.setattr(asyncio.StreamWriter, "drain", counted)
    client = make_client(Host(redis_url))
    try:
        big = "x" * (4 << 20)
        assert await writer_of(client).call("ECHO", big) == big.encode()
    finally:
        await close_client(client)
    assert drained >= 1


async def test_lone_sends_use_the_writer_and_close_with_the_layer(redis_url: str) -> None:
    before = set(map(id, writer._writers.values()))
    async with make_layer(redis_url) as layer:
        await layer.send("writer.lone", {"type": "one"})
        ours = [w for w in writer._writers.values() if id(w) not in before]
        assert [w._connection is not None for w in ours] == [True]
        assert await receive_within(layer, "writer.lone") == {"type": "one"}
    assert ours[0]._closed
    assert ours[0]._connection is None


async def test_without_the_writer_lone_calls_use_the_pool(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "ENABLED", False)
    before = len(writer._writers)
    async with make_layer(redis_url) as layer:
        await layer.send("writer.off", {"type": "pool"})
        assert len(writer._writers) == before
        assert await receive_within(layer, "writer.off") == {"type": "pool"}
    assert pipelining.ENABLED


async def test_a_writer_closed_while_a_caller_connects_starts_no_reply_task(
    own: writer.Writer,
) -> None:
    calling = asyncio.create_task(own.call("PING"))
    await asyncio.sleep(0)  # the caller now waits for its connection to connect
    await own.close()
    with pytest.raises(RedisConnectionError, match="closed"):
        await calling
    assert own._connection is None
    assert own._task is None
