"""Calls from short-lived event loops run on the layer's background loop (offload.py)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import warnings
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

from asgi_redis import ChannelFull, RedisChannelLayer, syncpath
from asgi_redis.backgroundloop import gate
from asgi_redis.offload import CHURN_LOOPS, Offload

from .layer_helpers import in_forked_child, make_layer, receive_n, receive_within

THREAD_NAME = "asgi_redis background loop"


@pytest.fixture(autouse=True)
def forwarding_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about forwarding: send and the group calls take it too, instead of
    running as blocking calls (tests/test_syncpath.py)."""
    monkeypatch.setattr(syncpath, "ENABLED", False)


def client_ids(url: str) -> set[int]:
    """Ids of the clients connected to the server, not counting the one asking."""
    admin = redis.Redis.from_url(url)
    try:
        me = admin.client_id()
        return {int(client["id"]) for client in admin.client_list()} - {me}
    finally:
        admin.close()


def churn(layer: RedisChannelLayer) -> None:
    """Make the layer see short-lived loops, as a WSGI view calling async_to_sync does; the
    last call runs on the background loop."""
    for _ in range(CHURN_LOOPS + 1):
        async_to_sync(layer.group_send)("churn", {"type": "churn"})


def background_thread(layer: RedisChannelLayer) -> threading.Thread | None:
    """The layer's background thread, if it runs."""
    background = layer._offload._background
    return None if background is None else background._thread


def test_short_lived_loops_reuse_the_background_loops_connections(redis_url: str) -> None:
    others = client_ids(redis_url)  # left by earlier tests on the shared server
    layer = make_layer(redis_url)
    churn(layer)
    async_to_sync(layer.send)("reuse", {"n": -1})
    before = client_ids(redis_url) - others
    for number in range(10):
        async_to_sync(layer.send)("reuse", {"n": number})
        async_to_sync(layer.group_send)("reuse.group", {"n": number})
    assert client_ids(redis_url) - others == before
    assert len(before) == 1
    thread = background_thread(layer)
    assert thread is not None and thread.name == THREAD_NAME and thread.daemon

    async def drain() -> list[int]:
        try:
            return [message["n"] for message in await receive_n(layer, "reuse", 11)]
        finally:
            await layer.close()

    assert asyncio.run(drain()) == list(range(-1, 10))
    assert not thread.is_alive()
    assert client_ids(redis_url) - others == set()


def test_a_loop_met_before_the_churn_keeps_serving_itself(redis_url: str) -> None:
    layer = make_layer(redis_url)
    choices: list[bool] = []
    started = threading.Event()
    churned = threading.Event()

    async def long_lived() -> None:
        await layer.send("long.lived", {"type": "before"})
        choices.append(layer._offload.forwards())
        started.set()
        await asyncio.to_thread(churned.wait, 30)
        await layer.send("long.lived", {"type": "after"})
        choices.append(layer._offload.forwards())
        assert await receive_within(layer, "long.lived") == {"type": "before"}
        await layer.close()

    thread = threading.Thread(target=asyncio.run, args=(long_lived(),))
    thread.start()
    assert started.wait(30)
    churn(layer)
    async_to_sync(layer.send)("short.lived", {"type": "x"})
    assert background_thread(layer) is not None
    churned.set()
    thread.join(30)
    assert choices == [False, False]
    assert background_thread(layer) is None  # close() from the long-lived loop stopped it


async def test_every_method_works_forwarded(layer_hosts: list[Any]) -> None:
    layer = make_layer(layer_hosts, capacity=2)
    outcomes: dict[str, Any] = {}

    def sync_code() -> None:
        churn(layer)
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)("forwarded", channel)
        async_to_sync(layer.group_add)("forwarded", "named.member")
        async_to_sync(layer.group_send)("forwarded", {"type": "group"})
        async_to_sync(layer.send)(channel, {"type": "direct"})
        outcomes["local"] = [async_to_sync(layer.receive)(channel) for _ in range(2)]
        outcomes["many"] = async_to_sync(layer.receive_many)(["other", "named.member"])
        async_to_sync(layer.group_discard)("forwarded", "named.member")
        async_to_sync(layer.send)("full", {"type": "1"})
        async_to_sync(layer.send)("full", {"type": "2"})
        with pytest.raises(ChannelFull):
            async_to_sync(layer.send)("full", {"type": "3"})
        with pytest.raises(TypeError, match="bad name"):
            async_to_sync(layer.send)("bad name", {"type": "x"})
        outcomes["depth"] = async_to_sync(layer.channel_statistics)("full")["depth"]
        outcomes["members"] = async_to_sync(layer.group_statistics)("forwarded")["members"]
        outcomes["groups"] = async_to_sync(layer.global_statistics)()["groups"]
        async_to_sync(layer.flush)()
        outcomes["forwarded"] = background_thread(layer) is not None
        async_to_sync(layer.close)()

    await asyncio.to_thread(sync_code)
    assert outcomes == {
        "local": [{"type": "group"}, {"type": "direct"}],
        "many": ("named.member", {"type": "group"}),
        "depth": 2,
        "members": 1,
        "groups": 1,
        "forwarded": True,
    }
    assert background_thread(layer) is None
    await layer.close()


def test_a_receive_cancelled_by_its_loop_takes_nothing(redis_url: str) -> None:
    layer = make_layer(redis_url)
    other = make_layer(redis_url)
    churn(layer)
    rounds = 10
    got: list[int] = []

    async def give_up_at_once(number: int) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            got.append((await asyncio.wait_for(layer.receive("cancelled"), 0.01))["n"])
        await other.send("cancelled", {"n": number})

    async def leave_a_receive_behind() -> None:
        asyncio.get_running_loop().create_task(layer.receive("cancelled"))
        await asyncio.sleep(0.05)  # asyncio.run cancels it when this returns

    asyncio.run(leave_a_receive_behind())
    asyncio.run(other.send("cancelled", {"n": rounds}))
    for number in range(rounds):
        asyncio.run(give_up_at_once(number))

    async def drain() -> None:
        try:
            # Another process gets what the cancelled receives left: none is held back.
            while len(got) < rounds + 1:
                got.append((await receive_within(other, "cancelled"))["n"])
        finally:
            await other.close()
            await layer.close()

    try:
        asyncio.run(drain())
    finally:
        assert sorted(got) == list(range(rounds + 1))


def test_a_message_taken_for_a_caller_cancelled_meanwhile_is_returned() -> None:
    async def close_part() -> None:
        pass

    offload = Offload(close_part)
    release = threading.Event()

    async def take_then_linger() -> str:
        call = gate.get()
        assert call is not None
        taken = call.take(str, "message")
        await asyncio.to_thread(release.wait, 10)  # the caller is cancelled meanwhile
        return str(taken)

    async def caller() -> str:
        forwarded = asyncio.ensure_future(offload.run(take_then_linger()))
        await asyncio.sleep(0.2)
        forwarded.cancel()
        release.set()
        return await forwarded

    try:
        assert asyncio.run(caller()) == "message"
    finally:
        offload.stop_at_exit()


def test_close_returns_what_the_background_loop_buffered(redis_url: str) -> None:
    layer = make_layer(redis_url)
    churn(layer)
    channel = async_to_sync(layer.new_channel)()
    for number in range(3):
        async_to_sync(layer.send)(channel, {"n": number})

    async def receive_one() -> int:
        # The reader pops the whole client queue; two messages stay in the buffer.
        return int((await receive_within(layer, channel))["n"])

    assert async_to_sync(receive_one)() == 0
    thread = background_thread(layer)
    async_to_sync(layer.close)()
    assert thread is not None and not thread.is_alive()
    assert async_to_sync(receive_one)() == 1
    assert async_to_sync(receive_one)() == 2
    async_to_sync(layer.close)()


def test_a_forked_child_starts_its_own_thread_and_connections(redis_url: str) -> None:
    others = client_ids(redis_url)  # left by earlier tests on the shared server
    layer = make_layer(redis_url)
    churn(layer)
    parent_thread = background_thread(layer)
    parent_clients = client_ids(redis_url)
    assert parent_thread is not None and len(parent_clients - others) == 1

    def child() -> bool:
        inherited = background_thread(layer)
        for number in range(10):
            async_to_sync(layer.send)("forked", {"from": "child", "n": number})
        own = background_thread(layer)
        fresh = own is not None and own is not inherited and own.is_alive()
        mine = client_ids(redis_url) - parent_clients
        async_to_sync(layer.close)()
        return inherited is None and fresh and len(mine) == 1

    def parent() -> None:
        for number in range(10):
            async_to_sync(layer.send)("forked", {"from": "parent", "n": number})

    assert in_forked_child(child, parent)
    assert background_thread(layer) is parent_thread

    async def drain() -> list[dict[str, Any]]:
        try:
            return await receive_n(layer, "forked", 20)
        finally:
            await layer.close()

    messages = asyncio.run(drain())
    for sender in ("parent", "child"):
        assert [m["n"] for m in messages if m["from"] == sender] == list(range(10))


def test_interpreter_exit_with_a_forwarded_receive_waiting(redis_url: str) -> None:
    script = f"""
import threading
from asgiref.sync import async_to_sync
from asgi_redis import RedisChannelLayer

layer = RedisChannelLayer(hosts=[{redis_url!r}])
for _ in range(3):
    async_to_sync(layer.send)("exit.churn", {{"type": "x"}})
waiting = threading.Thread(target=async_to_sync(layer.receive), args=("never",), daemon=True)
waiting.start()
waiting.join(0.5)
print("leaving")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "leaving"


def test_cancelled_receives_on_a_process_local_channel_lose_nothing(redis_url: str) -> None:
    layer = make_layer(redis_url)
    churn(layer)
    channel = async_to_sync(layer.new_channel)()
    got: list[int] = []

    async def give_up_at_once(number: int) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            got.append((await asyncio.wait_for(layer.receive(channel), 0.01))["n"])
        await layer.send(channel, {"n": number})

    for number in range(20):
        asyncio.run(give_up_at_once(number))

    async def drain() -> None:
        while len(got) < 20:
            got.append((await receive_within(layer, channel))["n"])

    async_to_sync(drain)()
    async_to_sync(layer.close)()
    assert got == list(range(20))  # in order: the buffer keeps what a cancelled receive left


def test_close_ends_a_forwarded_receive_with_an_error(redis_url: str) -> None:
    layer = make_layer(redis_url)
    churn(layer)
    errors: list[BaseException] = []

    def wait_forever() -> None:
        try:
            async_to_sync(layer.receive)("never.sent")
        except BaseException as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait_forever)
    waiting.start()
    waiting.join(0.5)
    async_to_sync(layer.close)()
    waiting.join(10)
    assert not waiting.is_alive()
    assert len(errors) == 1 and "closed while receiving on never.sent" in str(errors[0])
    # A call after close() starts a new background loop.
    async_to_sync(layer.send)("after.close", {"type": "x"})
    assert background_thread(layer) is not None
    async_to_sync(layer.close)()


def test_sync_receivers_in_threads_get_each_message_once(redis_url: str) -> None:
    layer = make_layer(redis_url, capacity=1000)
    churn(layer)
    total = 200
    got: list[int] = []
    done = threading.Event()

    async def receive_or_give_up() -> None:
        # Short timeouts: many receives are cancelled while messages arrive.
        with contextlib.suppress(asyncio.TimeoutError):
            got.append((await asyncio.wait_for(layer.receive("shared"), 0.005))["n"])

    def receiver() -> None:
        while not done.is_set():
            async_to_sync(receive_or_give_up)()

    threads = [threading.Thread(target=receiver) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for number in range(total):
            async_to_sync(layer.send)("shared", {"n": number})
        for _ in range(1000):
            if len(got) >= total:
                break
            threading.Event().wait(0.01)
    finally:
        done.set()
        for thread in threads:
            thread.join(30)
    async_to_sync(layer.close)()
    assert sorted(got) == list(range(total))


def test_a_loop_closed_with_a_forwarded_receive_pending_gives_it_up(redis_url: str) -> None:
    layer = make_layer(redis_url)
    other = make_layer(redis_url)
    churn(layer)
    loop = asyncio.new_event_loop()
    pending = loop.create_task(layer.receive("abandoned"))
    loop.run_until_complete(asyncio.sleep(0.2))  # the receive now waits on the background loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Task was destroyed but it is pending": on purpose
        loop.close()  # no cancellation: the loop just ends
        del pending

    async def check() -> dict[str, Any]:
        try:
            await other.send("abandoned", {"type": "for.another"})
            # The abandoned receive takes nothing: another process gets the message.
            return await receive_within(other, "abandoned", 5)
        finally:
            await other.close()

    assert asyncio.run(check()) == {"type": "for.another"}
    async_to_sync(layer.close)()
