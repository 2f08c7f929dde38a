"""Where a channel's keys live: one server (or shard), or one tag of a Redis Cluster.

A route runs a call with the running loop's client for its keys, naming the operation in
any error (and on a cluster following redirections). Receivers (one per route and event
loop) hold a route, not a client, because on a cluster the node owning a tag can change (a
migration, a failover).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import failures, keys
from .cluster import ClusterNodes
from .connections import BLOCKING_POOL_SIZE, Connections

T = TypeVar("T")

# A server's reader may split its queues over as many blocking pops as its blocking pool has
# connections: one reader per event loop and server uses that pool alone. (Half of it, lanes
# grown to 313 queues at 10,000 waiting channels made a burst to them 2x slower.)
SERVER_LANES = BLOCKING_POOL_SIZE


class Route(Protocol):
    """What receivers and the layer need of a place keys live."""

    label: str
    # The tag of the wake list this route's reader blocks on (None: the client id's own).
    wake_tag: str | None
    # How many blocking pops (lanes, see lanes.py) one reader may run at once on this route.
    max_lanes: int

    async def run(
        self,
        operation: str,
        call: Callable[[Redis], Awaitable[T]],
        *,
        wait_split: bool = True,
        blocking_pops: bool = False,
    ) -> T:
        """``call`` with this route's client; errors name ``operation``.

        On a cluster, ``wait_split=False`` raises a TRYAGAIN at once instead of waiting for a
        slot migration to end. ``blocking_pops`` runs ``call`` on the client kept for the
        readers' blocking pops, whose pool sends never use (see ``Connections``).
        """


class ServerRoute:
    """One server of ``hosts`` (a single server, a shard, or a Sentinel-managed master)."""

    def __init__(self, connections: Connections, label: str) -> None:
        self._connections = connections
        self.label = label
        self.wake_tag: str | None = None
        self.max_lanes = SERVER_LANES

    async def run(
        self,
        operation: str,
        call: Callable[[Redis], Awaitable[T]],
        *,
        wait_split: bool = True,
        blocking_pops: bool = False,
    ) -> T:
        # As failures.naming, without a context manager's cost on the hot path.
        try:
            return await call(self._connections.client(blocking_pops=blocking_pops))
        except RedisError as exc:
            described = failures.describe(exc, operation, self.label)
            if described is None:
                raise
            raise described from exc


class TagRoute:
    """The keys of one tag on a Redis Cluster: on whichever primary owns the tag's slot."""

    def __init__(self, nodes: ClusterNodes, tag_index: int) -> None:
        self._nodes = nodes
        self._tag_index = tag_index
        self.label = nodes.label
        self.wake_tag: str | None = keys.TAGS[tag_index]
        # Each tag has its own reader already, and a node's readers share its blocking pool.
        self.max_lanes = 1

    async def run(
        self,
        operation: str,
        call: Callable[[Redis], Awaitable[T]],
        *,
        wait_split: bool = True,
        blocking_pops: bool = False,
    ) -> T:
        return await self._nodes.run(
            self._tag_index, operation, call, wait_split=wait_split, blocking_pops=blocking_pops
        )
