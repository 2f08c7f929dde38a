"""asgi_redis: a Redis channel layer for Django Channels built on atomic Lua scripts."""

from __future__ import annotations

from .errors import ChannelFull, MessageTooLarge
from .layer import RedisChannelLayer

__version__ = "0.1.0"

__all__ = ["ChannelFull", "MessageTooLarge", "RedisChannelLayer", "__version__"]
