"""Connections are closed by close() and with the event loops that async_to_sync makes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from redis.asyncio import Redis

from asgi_redis import RedisChannelLayer, writer
from asgi_redis.config import Host
from asgi_redis.connections import Connections, LoopHook
from tests.servers import RedisServer


def client_count(url: str) -> int:
    """Clients connected to the server, not counting the one asking."""
    admin = redis.Redis.from_url(url)
    try:
        return len(admin.client_list()) - 1
    finally:
        admin.close()


@pytest.fixture
def own_url(private_redis: RedisServer) -> str:
    """A server only this test connects to, so layers other tests left open are not counted."""
    return private_redis.url


async def test_close_disconnects_every_socket(own_url: str) -> None:
    layer = RedisChannelLayer(hosts=[own_url])
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    assert await layer.receive(channel) == {"type": "a"}
    await asyncio.gather(*(layer.send("named", {"n": n}) for n in range(5)))
    assert client_count(own_url) >= 1
    await layer.close()
    assert client_count(own_url) == 0


def test_async_to_sync_loops_share_connections_that_close_closes(own_url: str) -> None:
    # Calls from short-lived loops run on the layer's background loop (offload.py), whose
    # connections persist across calls until close().
    layer = RedisChannelLayer(hosts=[own_url])
    errors: list[BaseException] = []

    def sync_code() -> None:
        try:
            for number in range(5):
                async_to_sync(layer.send)("sync.channel", {"n": number})
                async_to_sync(layer.group_send)("nobody", {"n": number})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sync_code)
    thread.start()
    thread.join()
    assert errors == []
    assert client_count(own_url) == 1

    async def drain() -> list[int]:
        try:
            return [(await layer.receive("sync.channel"))["n"] for _ in range(5)]
        finally:
            await layer.close()

    assert asyncio.run(drain()) == [0, 1, 2, 3, 4]
    assert client_count(own_url) == 0


async def test_close_ends_waiting_receives_with_an_error(redis_url: str) -> None:
    layer = RedisChannelLayer(hosts=[redis_url])
    waiting = asyncio.create_task(layer.receive("never.sent"))
    await asyncio.sleep(0.1)
    await asyncio.wait_for(layer.close(), 10)
    with pytest.raises(RuntimeError, match=r"closed while receiving on never\.sent"):
        await asyncio.wait_for(waiting, 5)
    # The layer is usable again afterwards.
    await layer.send("after.close", {"type": "x"})
    assert await asyncio.wait_for(layer.receive("after.close"), 10) == {"type": "x"}
    await layer.close()


async def test_host_given_as_redis_py_options(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1])
    async with RedisChannelLayer(hosts=[{"host": "127.0.0.1", "port": port}]) as layer:
        await layer.send("options.host", {"type": "x"})
        assert await asyncio.wait_for(layer.receive("options.host"), 5) == {"type": "x"}
    async with RedisChannelLayer(hosts=[("127.0.0.1", port)]) as layer:
        await layer.send("pair.host", {"type": "y"})
        assert await asyncio.wait_for(layer.receive("pair.host"), 5) == {"type": "y"}


def reply_tasks(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    """The writers' reply tasks not finished on ``loop`` (``writer.Writer._read_replies``)."""
    return [
        task
        for task in asyncio.all_tasks(loop)
        if getattr(task.get_coro(), "__qualname__", "") == "Writer._read_replies"
    ]


async def ping_on_writer(client: Redis) -> None:
    """A PING on ``client``'s dedicated connection (which starts its reply task)."""
    own = writer.writer_for(client)
    assert own is not None
    assert await own.call("PING") in (b"PONG", True)


def test_a_client_made_while_its_loop_closes_is_closed_with_it(redis_url: str) -> None:
    # A step of the close hook that needs a client after the loop's clients were closed
    # makes a new one (with a writer and its reply task): it is closed before the loop is.
    made: list[Redis] = []

    async def close_then_use_a_client() -> None:
        await connections.close()
        if not made:
            made.append(connections.client())
            await ping_on_writer(made[0])

    async def use_a_client() -> None:
        await ping_on_writer(connections.client())

    connections = Connections(Host(redis_url), LoopHook(close_then_use_a_client))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(use_a_client())
    finally:
        loop.close()
    assert made
    assert reply_tasks(loop) == []


async def test_calls_holding_a_client_across_close_leave_no_reply_task(redis_url: str) -> None:
    # Sends that took the loop's client before close() and write after it (a batch waiting
    # for its flush) must not give the closed client a new dedicated connection.
    layer = RedisChannelLayer(hosts=[redis_url])
    await layer.send("across.close", {"type": "warm"})  # the client and its writer exist
    sends = [asyncio.create_task(layer.send("across.close", {"n": n})) for n in range(3)]
    await asyncio.sleep(0)  # the first is written; the others wait for their batch's flush
    await layer.close()
    await asyncio.gather(*sends, return_exceptions=True)
    await layer.close()  # closes whatever the layer still holds for this loop
    assert reply_tasks(asyncio.get_running_loop()) == []
