"""Consumers: one ``ChatConsumer`` per open websocket, and the ``ShoutWorker``.

Every event sent to a room group has the type ``chat.message`` and the fields ``kind``
(``chat`` from a user, ``announce`` from the Django view, ``shout`` from the worker),
``author``, ``text`` and ``origin`` (the server process the event started in).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from channels.consumer import AsyncConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_TEXT = 500
MAX_NAME = 30
SHOUT_COMMAND = "/shout "


def room_group(room: str) -> str:
    """The channel-layer group of a room (room names are already safe group names)."""
    return f"chat.{room}"


def chat_event(kind: str, author: str, text: str, origin: str) -> dict[str, Any]:
    """Build the group event every consumer in a room turns into a websocket frame."""
    return {"type": "chat.message", "kind": kind, "author": author, "text": text, "origin": origin}


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """A browser tab in a room: joins the room's group on connect, leaves it on disconnect."""

    async def connect(self) -> None:
        """Join the room group, accept, and tell the page which server it talks to."""
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = room_group(self.room)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(
            {
                "kind": "welcome",
                "room": self.room,
                "server": settings.CHAT_SERVER_NAME,
                "channel": self.channel_name,
            }
        )

    async def disconnect(self, code: int) -> None:
        """Leave the room group, so no more messages are queued for this channel."""
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Relay a chat line to the room, or hand ``/shout text`` to the worker."""
        if not isinstance(content, dict):
            return
        text, name = content.get("text"), content.get("name") or "anonymous"
        if not isinstance(text, str) or not isinstance(name, str) or not text.strip():
            return
        text, name = text[:MAX_TEXT], name[:MAX_NAME]
        origin = settings.CHAT_SERVER_NAME
        if text.startswith(SHOUT_COMMAND):
            shout = {"type": "shout", "room": self.room, "author": name, "origin": origin}
            shout["text"] = text[len(SHOUT_COMMAND) :]
            await self.channel_layer.send(ShoutWorker.channel, shout)
            return
        await self.channel_layer.group_send(self.group, chat_event("chat", name, text, origin))

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Forward a room event to the browser."""
        fields = ("kind", "author", "text", "origin")
        await self.send_json({field: event[field] for field in fields})


class ShoutWorker(AsyncConsumer):
    """Background worker on the named channel ``chat.shout`` (``manage.py runworker``).

    Any number of worker processes may listen; each message is handled by exactly one.
    """

    channel = "chat.shout"

    async def shout(self, message: dict[str, Any]) -> None:
        """Upper-case the text and post it to the room, signed with this process's pid."""
        author = f"shout worker (pid {os.getpid()})"
        text = f"{message['author']}: {message['text'].upper()}"
        logger.info("shouting into room %s", message["room"])
        await self.channel_layer.group_send(
            room_group(message["room"]), chat_event("shout", author, text, message["origin"])
        )
