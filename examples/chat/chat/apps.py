"""App config for the chat app."""

from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The chat app (no models)."""

    name = "chat"
