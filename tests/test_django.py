"""Django Channels end to end: a real websocket consumer on top of asgi_redis.

Two ``WebsocketCommunicator`` clients talk to a group chat consumer whose channel layer is
``asgi_redis.RedisChannelLayer`` configured the way a Django project would configure it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={},
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator

from tests.django_layers import default_layer, layer_config

BACKEND = "asgi_redis.RedisChannelLayer"
ROOM = "room"
TIMEOUT_S = 3.0
SILENCE_S = 0.5


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Joins ``room`` on connect, relays what a client says to the whole room."""

    groups = [ROOM]  # noqa: RUF012 - the Channels API expects a plain list attribute

    async def connect(self) -> None:
        """Accept, then tell the client its channel name so tests can inspect it."""
        await self.accept()
        await self.send_json({"kind": "welcome", "channel": self.channel_name})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Broadcast the client's text to everyone in the room, the sender included."""
        await self.channel_layer.group_send(
            ROOM,
            {"type": "chat.message", "text": content["text"], "sender": self.channel_name},
        )

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Handle ``chat.message`` events from the group by forwarding them to the client."""
        await self.send_json({"kind": "chat", "text": event["text"], "sender": event["sender"]})


@pytest.fixture
def layer_settings(redis_url: str) -> Iterator[None]:
    """Point the default channel layer at this test's redis-server, with a fresh instance."""
    with layer_config({"hosts": [redis_url]}):
        yield


@pytest.fixture
async def layer(layer_settings: None) -> AsyncIterator[BaseChannelLayer]:
    """The layer instance the consumers use; closed when the test ends."""
    async with default_layer() as instance:
        yield instance


async def connect_client() -> tuple[WebsocketCommunicator, str]:
    """Open one websocket to the chat consumer; return it and its consumer's channel name."""
    communicator = WebsocketCommunicator(ChatConsumer.as_asgi(), "/ws/chat/")
    connected, _ = await communicator.connect(timeout=TIMEOUT_S)
    assert connected
    welcome = await communicator.receive_json_from(timeout=TIMEOUT_S)
    assert welcome["kind"] == "welcome"
    return communicator, welcome["channel"]


async def expect_chat(communicator: WebsocketCommunicator, text: str, sender: str) -> None:
    """Assert the next frame is exactly the given chat message."""
    frame = await communicator.receive_json_from(timeout=TIMEOUT_S)
    assert frame == {"kind": "chat", "text": text, "sender": sender}


async def test_message_from_one_client_reaches_both(layer: BaseChannelLayer) -> None:
    """A message sent by client A is relayed through the group to A and B, once each."""
    alice, alice_channel = await connect_client()
    bob, bob_channel = await connect_client()
    assert alice_channel != bob_channel

    await alice.send_json_to({"text": "hello room"})

    await expect_chat(alice, "hello room", alice_channel)
    await expect_chat(bob, "hello room", alice_channel)
    assert await alice.receive_nothing(timeout=SILENCE_S)
    assert await bob.receive_nothing(timeout=SILENCE_S)
    await alice.disconnect()
    await bob.disconnect()


async def test_disconnect_leaves_the_group(layer: BaseChannelLayer) -> None:
    """After A disconnects, a broadcast reaches B only and nothing is queued for A."""
    alice, alice_channel = await connect_client()
    bob, bob_channel = await connect_client()
    await alice.disconnect()

    await bob.send_json_to({"text": "anyone there?"})
    await expect_chat(bob, "anyone there?", bob_channel)
    assert await bob.receive_nothing(timeout=SILENCE_S)

    # Had A stayed a member, group_send would have queued a copy on A's channel.
    await layer.group_send(ROOM, {"type": "chat.message", "text": "bye", "sender": "test"})
    await expect_chat(bob, "bye", "test")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(alice_channel), timeout=SILENCE_S)
    await bob.disconnect()


def broadcast_from_sync_code(text: str) -> None:
    """What a Django view or management command does: call the layer through async_to_sync."""
    async_to_sync(get_channel_layer().group_send)(
        ROOM, {"type": "chat.message", "text": text, "sender": "sync"}
    )


async def test_broadcast_from_sync_code_in_a_thread(
    layer: BaseChannelLayer, caplog: pytest.LogCaptureFixture, unraisable: list[str]
) -> None:
    """Repeated async_to_sync calls from worker threads (a new event loop each) all arrive."""
    caplog.set_level(logging.WARNING)
    alice, _ = await connect_client()
    for number in range(4):
        await asyncio.to_thread(broadcast_from_sync_code, f"sync {number}")
        await expect_chat(alice, f"sync {number}", "sync")

    # The layer still works on the test's own loop after serving the threads' loops.
    await layer.group_send(ROOM, {"type": "chat.message", "text": "async", "sender": "test"})
    await expect_chat(alice, "async", "test")
    assert await alice.receive_nothing(timeout=SILENCE_S)
    await alice.disconnect()
    gc.collect()

    assert not unraisable
    assert not [
        record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING
    ]
