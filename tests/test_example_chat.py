"""The chat example (``examples/chat``) on asgi_redis: its consumers through
``WebsocketCommunicator``, its sync view through ``async_to_sync``, and its worker as two real
``manage.py runworker`` processes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.test import RequestFactory

from asgi_redis.cli import demo_chat

if not settings.configured:
    # The same minimal settings as test_django.py: whichever module is imported first wins.
    settings.configure(INSTALLED_APPS=["channels"], CHANNEL_LAYERS={}, DATABASES={}, USE_TZ=True)
    django.setup()

sys.path.insert(0, str(demo_chat.EXAMPLE_DIR))

from channels.layers import BaseChannelLayer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from chat import views
from chat.routing import websocket_urlpatterns

from tests.django_layers import default_layer, layer_config

PREFIX = "chat:"  # the example project's prefix, so the runworker processes share our keys
TIMEOUT_S = 5.0
SILENCE_S = 0.5
JOBS = 40


@pytest.fixture
def layer_settings(redis_url: str) -> Iterator[None]:
    """The example's layer configuration, pointed at this test's redis-server."""
    with layer_config({"hosts": [redis_url], "prefix": PREFIX}, CHAT_SERVER_NAME="test server"):
        yield


@pytest.fixture
async def layer(layer_settings: None) -> AsyncIterator[BaseChannelLayer]:
    """The layer instance the consumers use; closed when the test ends."""
    async with default_layer() as instance:
        yield instance


async def join(room: str = "lobby") -> tuple[WebsocketCommunicator, str]:
    """Open a websocket to a room through the example's URL routing; return it and its channel."""
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/chat/{room}/")
    connected, _ = await communicator.connect(timeout=TIMEOUT_S)
    assert connected
    welcome = await communicator.receive_json_from(timeout=TIMEOUT_S)
    assert welcome["kind"] == "welcome"
    assert welcome["server"] == "test server"
    return communicator, welcome["channel"]


def event(kind: str, text: str) -> dict[str, Any]:
    """A room event as the example's consumers, view and worker send it."""
    return {"type": "chat.message", "kind": kind, "author": "t", "text": text, "origin": "t"}


def frame(kind: str, text: str) -> dict[str, Any]:
    """The websocket frame a page receives for ``event(kind, text)``."""
    return {"kind": kind, "author": "t", "text": text, "origin": "t"}


async def test_connect_joins_the_room_group(layer: BaseChannelLayer) -> None:
    """A group_send to a room reaches its sockets and no socket of another room."""
    alice, _ = await join("lobby")
    other, _ = await join("elsewhere")
    await layer.group_send("chat.lobby", event("announce", "to the lobby"))
    assert await alice.receive_json_from(timeout=TIMEOUT_S) == frame("announce", "to the lobby")
    assert await other.receive_nothing(timeout=SILENCE_S)

    await alice.send_json_to({"name": "alice", "text": "hi"})
    chat = await alice.receive_json_from(timeout=TIMEOUT_S)
    assert chat == {"kind": "chat", "author": "alice", "text": "hi", "origin": "test server"}
    await alice.disconnect()
    await other.disconnect()


async def test_shout_goes_to_the_worker_channel(layer: BaseChannelLayer) -> None:
    """``/shout text`` is sent to the named worker channel instead of the room."""
    alice, _ = await join()
    await alice.send_json_to({"name": "alice", "text": "/shout hey"})
    shout = await asyncio.wait_for(layer.receive(demo_chat.WORKER_CHANNEL), TIMEOUT_S)
    assert shout == {
        "type": "shout",
        "room": "lobby",
        "author": "alice",
        "text": "hey",
        "origin": "test server",
    }
    assert await alice.receive_nothing(timeout=SILENCE_S)
    await alice.disconnect()


async def test_disconnect_discards_from_the_group(layer: BaseChannelLayer) -> None:
    """After a socket closes, broadcasts reach the others and nothing is queued for it."""
    alice, alice_channel = await join()
    bob, _ = await join()
    await alice.disconnect()

    for number in range(3):
        await layer.group_send("chat.lobby", event("announce", f"after {number}"))
        assert await bob.receive_json_from(timeout=TIMEOUT_S) == frame(
            "announce", f"after {number}"
        )
    # Had the consumer stayed a member, group_send would have queued copies on its channel.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(alice_channel), timeout=SILENCE_S)
    await bob.disconnect()


def post_announcement(text: str) -> int:
    """Call the example's sync view the way Django would, outside any event loop."""
    request = RequestFactory().post("/rooms/lobby/announce", {"text": text})
    request._dont_enforce_csrf_checks = True  # the test client's way past CSRF
    return int(views.announce(request, room="lobby").status_code)


async def test_sync_view_broadcasts_repeatedly(
    layer: BaseChannelLayer, caplog: pytest.LogCaptureFixture, unraisable: list[str]
) -> None:
    """Each view call runs async_to_sync on a new event loop; all arrive, nothing is logged."""
    # Garbage of earlier tests is collected first, so only what these calls leave is judged.
    gc.collect()
    caplog.clear()
    caplog.set_level(logging.WARNING)
    alice, _ = await join()
    for number in range(5):
        assert await asyncio.to_thread(post_announcement, f"news {number}") == 200
        received = await alice.receive_json_from(timeout=TIMEOUT_S)
        assert received["kind"] == "announce"
        assert received["text"] == f"news {number}"
    await alice.disconnect()
    gc.collect()
    assert not unraisable
    warnings = [
        record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
    ]
    assert not warnings


async def collect_shouts(layer: BaseChannelLayer, channel: str) -> list[dict[str, Any]]:
    """Receive JOBS room events, then make sure no extra copy follows."""
    events = [await asyncio.wait_for(layer.receive(channel), TIMEOUT_S) for _ in range(JOBS)]
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), timeout=SILENCE_S)
    return events


async def test_two_runworker_processes_handle_each_message_once(
    layer: BaseChannelLayer, redis_url: str, tmp_path: Path
) -> None:
    """Two ``manage.py runworker chat.shout`` processes share the jobs; none is done twice."""
    listener = await layer.new_channel()
    await layer.group_add("chat.jobs", listener)
    with demo_chat.chat_stack(redis_url, tmp_path, servers=0, workers=2) as stack:
        for number in range(JOBS):
            shout = {"type": "shout", "room": "jobs", "author": "t", "text": f"job {number}"}
            await layer.send(demo_chat.WORKER_CHANNEL, {**shout, "origin": "t"})
        events = await collect_shouts(layer, listener)
        assert not stack.dead()

    texts = Counter(event["text"] for event in events)
    assert texts == Counter(f"t: JOB {number}" for number in range(JOBS))
    by_worker = Counter(event["author"] for event in events)
    assert len(by_worker) == 2, by_worker
