"""The layer's servers: where each routing unit lives, and a call run on every server or
on every tag of a group.

``hosts`` is either a list of servers (one, shards, or Sentinel-managed masters: a unit's server
is picked by rendezvous hashing) or one Redis Cluster (a route per tag, on whichever primary
owns the tag's slot). Redirections are followed by ``cluster.py``; this module only decides
where calls go and runs them concurrently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis

from . import commands, failures, keys, sharding
from .cluster import AskingRedis, ClusterNodes, did_not_run
from .config import Host
from .connections import Connections, LoopHook, close_each
from .pipelining import run_many
from .routes import Route, ServerRoute, TagRoute
from .scripts import ScriptCall, run

T = TypeVar("T")
# calls_for(tag, asking): the script calls a group operation makes for one tag.
CallsFor = Callable[[str, bool], list[ScriptCall]]


class Servers:
    """The routes of a layer's ``hosts`` and the fan-out over them.

    Args:
        hosts: the parsed ``hosts`` option.
        on_loop_close: run in a loop right before it closes (see ``Connections``).
    """

    def __init__(self, hosts: Sequence[Host], on_loop_close: Callable[[], Awaitable[None]]):
        self.labels = tuple(host.label() for host in hosts)
        self.cluster: ClusterNodes | None = None
        self.routes: list[Route]
        hook = LoopHook(on_loop_close)  # one per layer: it closes every server's clients
        if hosts[0].cluster is not None:
            # A Redis Cluster: one route per tag, on whichever primary owns the tag's slot.
            self.shards: list[Connections] = []
            self.cluster = ClusterNodes(hosts[0], hook)
            self.routes = [TagRoute(self.cluster, index) for index in range(keys.TAG_COUNT)]
        else:
            # One connection set per server; a channel's server is picked by rendezvous hashing.
            self.shards = [Connections(host, hook) for host in hosts]
            self.routes = [
                ServerRoute(shard, label)
                for shard, label in zip(self.shards, self.labels, strict=True)
            ]

    def shard_of(self, channel: str) -> int:
        """The index of the route of ``channel`` (a client's local channels share one): its
        server, or on a cluster its tag."""
        return self.shard_of_unit(keys.split_channel(channel)[0])

    def shard_of_unit(self, unit: str) -> int:
        """The index of the route of a routing unit (a named channel or an ``a.b!`` head)."""
        if self.cluster is not None:
            return keys.tag_index(unit)
        return sharding.shard_for(self.labels, unit)

    def route_of(self, channel: str) -> Route:
        """The route of ``channel``."""
        return self.routes[self.shard_of(channel)]

    async def close(self) -> None:
        """Close the running loop's clients of every server, even when one fails; then raise
        the first failure."""
        closers = [shard.close for shard in self.shards]
        if self.cluster is not None:
            closers.append(self.cluster.close)
        await close_each(closers)

    # -- every server ----------------------------------------------------------------

    async def on_every_server(
        self,
        operation: str,
        call: Callable[[Redis], Awaitable[T]],
        *,
        concurrently: bool = True,
    ) -> list[T]:
        """Run ``call`` with each server's client (on a cluster: each primary's).

        Several run concurrently unless told not to. An error names ``operation`` and the
        server it came from.
        """
        if self.cluster is not None:
            await self.cluster.ready()
            cluster = self.cluster
            clients = [
                (label, cluster.client_at(address))
                for label, address in zip(self.server_labels(), cluster.primaries(), strict=True)
            ]
        else:
            clients = [
                (label, shard.client())
                for shard, label in zip(self.shards, self.labels, strict=True)
            ]
        if len(clients) == 1 or not concurrently:  # no task per call on the hot path
            return [
                await failures.named(operation, label, call(client)) for label, client in clients
            ]
        calls = [failures.named(operation, label, call(client)) for label, client in clients]
        return list(await asyncio.gather(*calls))

    def server_labels(self) -> list[str]:
        """The labels ``on_every_server`` names its servers by, in its order."""
        if self.cluster is None:
            return list(self.labels)
        return [f"{self.cluster.label} (node {address})" for address in self.cluster.primaries()]

    # -- every tag of a group (Redis Cluster) ----------------------------------------

    async def on_every_tag(
        self, prefix: str, group: str, operation: str, calls_for: CallsFor
    ) -> list[Any]:
        """On a cluster: the scripts ``calls_for(tag, asking)`` on every tag ``group``'s
        directory lists; returns their replies, tag after tag.

        Phase one reads the directory; phase two sends each node one pipeline of its tags'
        scripts, the nodes in parallel. A script answered by a redirection did not run: it
        alone is sent again, following the redirection.
        """
        cluster = self.cluster
        if cluster is None:
            raise RuntimeError("on_every_tag is for a Redis Cluster")
        tags = await self.routes[keys.tag_index(group)].run(
            operation, lambda client: commands.group_tags(client, prefix=prefix, group=group)
        )
        by_node: dict[str, list[str]] = {}
        for tag in tags:
            if tag in keys.TAG_INDEX:
                by_node.setdefault(cluster.owner(keys.TAG_INDEX[tag]), []).append(tag)
        parts = await asyncio.gather(
            *(
                self._on_node(cluster, address, node_tags, operation, calls_for)
                for address, node_tags in by_node.items()
            )
        )
        return [reply for part in parts for reply in part]

    async def _on_node(
        self,
        cluster: ClusterNodes,
        address: str,
        tags: list[str],
        operation: str,
        calls_for: CallsFor,
    ) -> list[Any]:
        """``calls_for(tag)`` of several tags one node owns, in one pipeline."""
        label = f"{cluster.label} (node {address})"
        calls = [
            (tag, index, call) for tag in tags for index, call in enumerate(calls_for(tag, False))
        ]
        try:
            replies = await run_many(cluster.client_at(address), [call for _, _, call in calls])
        except Exception as exc:
            cluster.failed(exc)
            if not did_not_run(exc):
                with failures.naming(operation, label):
                    raise
            replies = [exc] * len(calls)  # nothing was sent: each call waits for the new owner
        results = []
        for (tag, index, _), reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception) and did_not_run(reply):
                # This script did not run: it alone follows the redirection (or waits).
                cluster.failed(reply)
                reply = await self.routes[keys.TAG_INDEX[tag]].run(
                    operation,
                    lambda client, tag=tag, index=index: run(  # type: ignore[misc]
                        client, *calls_for(tag, isinstance(client, AskingRedis))[index]
                    ),
                )
            elif isinstance(reply, Exception):
                with failures.naming(operation, label):
                    raise reply
            results.append(reply)
        return results
