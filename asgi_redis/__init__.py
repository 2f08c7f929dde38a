"""asgi_redis: a Redis channel layer for Django Channels built on atomic Lua scripts."""

from __future__ import annotations

from .errors import ChannelFull
from .layer import RedisChannelLayer

__version__ = "0.1.0"

__all__ = ["ChannelFull", "RedisChannelLayer", "__version__"]
