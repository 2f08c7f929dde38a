"""The public names of channels_redis 4.x's ``RedisChannelLayer`` that mean something here.

Code written for channels_redis (test fixtures calling ``close_pools()``, shutdown hooks,
helpers reading ``layer.hosts``) keeps working when the backend is switched. Each name maps
to what asgi_redis does; docs/migrating-from-channels_redis.md lists them, and the names that
are left out with the reason.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from redis.asyncio import Redis

from . import keys, names, sharding
from .codec import DEFAULT_SERIALIZER, Codec
from .config import Config
from .servers import Servers


class ChannelsRedisCompatMixin:
    """channels_redis 4.x names on ``RedisChannelLayer``; see the migration guide."""

    config: Config
    _codec: Codec
    _servers: Servers

    async def close(self) -> None:
        raise NotImplementedError

    def _client_id(self) -> str:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------

    async def close_pools(self) -> None:
        """channels_redis's name for ``close()``: hand buffered messages back to Redis, then
        close the running event loop's connections."""
        await self.close()

    async def wait_received(self) -> None:
        """Return at once: a ``receive`` that has returned leaves no clean-up task behind.

        channels_redis waits here for the tasks that delete its in-flight backups.
        """

    # -- configuration -------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        """The servers, as canonical addresses without passwords, in sharding order."""
        return list(self._servers.labels)

    @property
    def ring_size(self) -> int:
        """How many servers the layer shards over."""
        return len(self._servers.labels)

    @property
    def channel_capacity(self) -> list[tuple[re.Pattern[str], int]]:
        """The compiled ``channel_capacity`` rules: (pattern, capacity), first match wins."""
        return list(self.config.capacity_rules)

    def get_capacity(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching rule, else ``capacity``."""
        return self.config.capacity_for(channel)

    @property
    def client_prefix(self) -> str:
        """The running event loop's client id: the part before ``!`` in its new channels.

        channels_redis has one per layer; asgi_redis has one per event loop (and layer), so
        this needs a running loop.

        Raises:
            RuntimeError: no event loop is running.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "client_prefix needs a running event loop: asgi_redis gives each event loop "
                "its own client id"
            ) from None
        return self._client_id()

    # -- servers -------------------------------------------------------------------------

    def consistent_hash(self, channel: str) -> int:
        """The index in ``hosts`` of the server that holds ``channel``'s queue.

        A process-local channel lives with the other channels of its client. Groups have no
        single server (each member is stored on its channel's server), so a group name gives
        no useful answer here.
        """
        return sharding.shard_for(self._servers.labels, keys.split_channel(channel)[0])

    def connection(self, index: int) -> Redis:
        """The running event loop's redis-py client for server ``index`` of ``hosts``.

        Raises:
            ValueError: there is no server with that index.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"server index must be an int, got {index!r}")
        shards = self._servers.shards
        if not shards:
            raise ValueError("connection() has no single server to give on a Redis Cluster")
        if not 0 <= index < len(shards):
            raise ValueError(f"There are only {len(shards)} hosts - you asked for {index}!")
        return shards[index].client()

    # -- names and payloads --------------------------------------------------------------

    def non_local_name(self, name: str) -> str:
        """The part of a process-local channel name up to and including ``!``."""
        return keys.split_channel(name)[0]

    def valid_channel_name(self, name: str, receive: bool = False) -> bool:
        """True for a valid channel name; raises TypeError (naming it) otherwise.

        ``receive=True`` also accepts a name ending in ``!`` (a client's shared queue).
        """
        if receive and isinstance(name, str) and name.endswith("!") and name.count("!") == 1:
            names.check_group(name[:-1])  # the same characters, and no '!'
            return True
        names.check_channel(name)
        return True

    def valid_group_name(self, name: str) -> bool:
        """True for a valid group name; raises TypeError (naming it) otherwise."""
        names.check_group(name)
        return True

    require_valid_channel_name = valid_channel_name
    require_valid_group_name = valid_group_name

    def serialize(self, message: dict[str, Any]) -> bytes:
        """A message as the payload bytes this layer stores (serialized, then encrypted).

        Raises:
            TypeError: not a dict, or not serializable.
        """
        return self._codec.dumps(message, "serialize()")

    def deserialize(self, payload: bytes) -> dict[str, Any]:
        """The message in payload bytes made by ``serialize``."""
        return self._codec.loads(payload)


def channels_redis_options(
    serializer: object, options: dict[str, object]
) -> tuple[object, dict[str, object]]:
    """Take channels_redis's own constructor options out of ``options``.

    ``serializer_format`` (``"msgpack"``/``"json"``) becomes ``serializer``;
    ``random_prefix_length`` is checked and dropped (it made channels_redis's sorted-set
    members unique; queue entries here are list items and need no such prefix).

    Returns:
        (the serializer to use, the options left over).

    Raises:
        TypeError: a value asgi_redis cannot honour, with a hint naming its own option.
    """
    left = dict(options)
    if "random_prefix_length" in left:
        length = left.pop("random_prefix_length")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise TypeError(
                f"random_prefix_length (a channels_redis option, not needed here) must be a "
                f"whole number >= 0 if given, got {length!r}; you can remove it"
            )
    if "serializer_format" not in left:
        return serializer, left
    wanted = left.pop("serializer_format")
    if wanted not in ("msgpack", "json"):
        raise TypeError(
            f"serializer_format={wanted!r}: asgi_redis knows 'msgpack' and 'json'; for another "
            "format pass serializer=<an object with dumps(dict) -> bytes and loads(bytes) -> dict>"
        )
    if serializer not in (DEFAULT_SERIALIZER, wanted):
        raise TypeError(
            f"serializer_format={wanted!r} and serializer={serializer!r} disagree; "
            "serializer_format is channels_redis's name for serializer: give only serializer"
        )
    return wanted, left
