"""Pointing Django Channels' default layer at a test's redis-server (shared by the Django tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from channels.layers import BaseChannelLayer, channel_layers, get_channel_layer
from django.test.utils import override_settings


@contextmanager
def layer_config(config: dict[str, Any], **settings: Any) -> Iterator[None]:
    """CHANNEL_LAYERS with asgi_redis and ``config``, fresh layer instances before and after."""
    layers = {"default": {"BACKEND": "asgi_redis.RedisChannelLayer", "CONFIG": config}}
    channel_layers.backends = {}
    with override_settings(CHANNEL_LAYERS=layers, **settings):
        yield
    channel_layers.backends = {}


@asynccontextmanager
async def default_layer() -> AsyncIterator[BaseChannelLayer]:
    """The layer instance the consumers use, closed at the end."""
    instance = get_channel_layer()
    assert type(instance).__module__.startswith("asgi_redis"), type(instance)
    try:
        yield instance
    finally:
        await instance.close()
