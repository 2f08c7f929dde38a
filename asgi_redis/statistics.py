"""The ``statistics`` extension: how full channels are, who is in a group, totals."""

from __future__ import annotations

from typing import Any, TypeVar

from . import keyspace, names
from .buffers import now_ms
from .config import Config
from .metrics import Counters
from .offload import Offload, forwardable
from .scripts import ScriptCall, run
from .servers import Servers

T = TypeVar("T")


class StatisticsMixin:
    """Statistics methods of ``RedisChannelLayer``; payloads never leave the server."""

    config: Config
    prefix: str
    expiry: int
    group_expiry: int
    heartbeat: float
    _servers: Servers
    counters: Counters
    _offload: Offload

    @property
    def dropped_undecodable(self) -> int:
        """Messages dropped on receive because they failed to decrypt or deserialize."""
        raise NotImplementedError

    @forwardable
    async def channel_statistics(self, channel: str) -> dict[str, Any]:
        """How full one channel is.

        Returns:
            ``depth``: unexpired messages waiting in Redis; ``counted``: what counts against
            ``capacity`` (for a process-local channel it includes messages a process has popped
            but not yet delivered); ``capacity``; ``oldest_age_s``: age of the oldest waiting
            message in seconds, or None.
        """
        names.check_channel(channel)
        stats = await self._servers.route_of(channel).run(
            f"channel_statistics of {channel!r}",
            lambda client: keyspace.channel_statistics(
                client,
                prefix=self.prefix,
                channel=channel,
                now_ms=now_ms(),
                expiry_s=self.expiry,
            ),
        )
        return {"channel": channel, "capacity": self.config.capacity_for(channel), **stats}

    @forwardable
    async def group_statistics(self, group: str) -> dict[str, Any]:
        """Who is in ``group``, summed over the servers; reads only.

        Returns:
            ``members`` (live memberships), ``named`` and ``local`` (process-local) members,
            ``local_dead`` (process-local members of clients unseen for 3 heartbeats of their
            server's uptime: the next
            ``group_send`` drops them), ``clients`` and ``dead_clients``.
        """
        names.check_group(group)
        now = now_ms()
        operation = f"group_statistics of {group!r}"

        def calls_for(tag: str, asking: bool = False) -> list[ScriptCall]:
            return [
                keyspace.group_statistics_call(
                    prefix=self.prefix,
                    group=group,
                    now_ms=now,
                    group_ttl_s=self.group_expiry,
                    beat_ms=int(self.heartbeat * 1000),
                    tag=tag,
                )
            ]

        if self._servers.cluster is None:
            call = calls_for("")[0]
            replies = await self._servers.on_every_server(
                operation, lambda client: run(client, *call)
            )
        else:
            replies = await self._servers.on_every_tag(self.prefix, group, operation, calls_for)
        per_server = [keyspace.group_statistics_counts(reply) for reply in replies]
        totals = {name: sum(stats[name] for stats in per_server) for name in keyspace.GROUP_FIELDS}
        return {"group": group, **totals}

    @forwardable
    async def global_statistics(self) -> dict[str, Any]:
        """Totals for this prefix: queues, messages, groups, memberships, per server.

        Messages include expired ones that no receive or send has removed yet.
        ``dropped_undecodable`` is this instance's count of undecryptable messages.
        ``counters`` holds this instance's message counts since it was created (``sent``,
        ``delivered``, ``channel_full``, ``expired``, ``dropped``; see ``metrics.Counters``).
        """
        per_server = await self._servers.on_every_server(
            "global_statistics",
            lambda client: keyspace.server_statistics(client, self.prefix),
        )
        totals = {name: sum(stats[name] for stats in per_server) for name in per_server[0]}
        return {
            **totals,
            "dropped_undecodable": self.dropped_undecodable,
            "counters": self.counters.snapshot(),
            "shards": [
                {"host": label, **stats}
                for label, stats in zip(self._servers.server_labels(), per_server, strict=True)
            ],
        }
