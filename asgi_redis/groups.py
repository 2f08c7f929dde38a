"""The groups extension of ``RedisChannelLayer``: group_add, group_discard, group_send.

A mixin of the layer (as ``statistics.py``), kept apart so ``layer.py`` stays the channels'
API and the layer's lifecycle.
"""

from __future__ import annotations

from typing import Any

from . import commands, keys, names
from .buffers import now_ms
from .codec import Codec
from .config import Config
from .groupkinds import GroupKinds, Kinds
from .liveness import Liveness
from .metrics import Counters
from .offload import Offload, blockable
from .pipelining import run_all
from .scripts import ScriptCall
from .servers import Servers
from .syncpath import SyncServers, blocking


class GroupsMixin:
    """Group methods of ``RedisChannelLayer``; memberships and fan-out live in Lua scripts."""

    config: Config
    prefix: str
    expiry: int
    group_expiry: int
    capacity: int
    heartbeat: float
    client_queue_capacity: int
    counters: Counters
    _codec: Codec
    _servers: Servers
    _liveness: Liveness
    _group_kinds: GroupKinds
    _sync: SyncServers
    _offload: Offload

    async def _script(self, channel: str, operation: str, call: ScriptCall) -> Any:
        raise NotImplementedError

    @blockable
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (or refresh it); idempotent."""
        names.check_group(group)
        names.check_channel(channel)
        added_ms = now_ms()
        await self._add_member(group, channel, added_ms)
        self._liveness.added(group, channel, added_ms)

    async def _add_member(self, group: str, channel: str, added_ms: int) -> None:
        """Store the membership (``added_ms``: the time group_expiry counts from)."""
        capacity = self.config.capacity_for(channel)
        operation = f"group_add of {channel!r} to {group!r}"
        on_cluster = self._servers.cluster is not None
        if on_cluster:
            # The directory is in another slot: list the member's tag there first, so a member
            # is never stored where group_send would not look.
            tag = keys.tag_of(keys.split_channel(channel)[0])
            await self._servers.routes[keys.tag_index(group)].run(
                operation,
                lambda client: commands.add_group_tag(
                    client, prefix=self.prefix, group=group, tag=tag, ttl_s=self.group_expiry
                ),
            )
        call = commands.group_add_call(
            prefix=self.prefix,
            group=group,
            channel=channel,
            now_ms=added_ms,
            ttl_s=self.group_expiry,
            capacity=None if capacity == self.capacity else capacity,
            beat_ms=int(self.heartbeat * 1000),
            with_directory=not on_cluster,
        )
        await self._script(channel, operation, call)

    @blockable
    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a no-op for non-members."""
        names.check_group(group)
        names.check_channel(channel)
        self._liveness.discarded(group, channel)
        call = commands.group_discard_call(prefix=self.prefix, group=group, channel=channel)
        await self._script(channel, f"group_discard of {channel!r} from {group!r}", call)

    @blockable
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on every live member of ``group``; full members are skipped.

        Members are stored on the server of their channel, so this is one pipeline of two
        scripts (named members, client queues) per server, run concurrently. On a Redis Cluster
        it reads the group's directory of tags, then runs the scripts per tag listed,
        pipelined per node, the nodes concurrently. The payload goes only to the script of a
        kind of member the group held last time; should the other find members, they get the
        message in a second round trip (groupkinds.py).
        """
        names.check_group(group)
        payload = self._codec.dumps(message, f"group {group!r}")
        payload_to = self._group_kinds.payload_to(group)
        replies = await self._group_send_scripts(group, payload, payload_to)
        found = commands.group_send_kinds(replies)
        missed = found.without(payload_to)
        if missed.named or missed.local:  # a kind that joined since last time
            replies += await self._group_send_scripts(group, payload, missed)
        self._group_kinds.seen(group, found)
        queued, refused, _ = commands.group_send_counts(replies)
        self.counters.sent += queued
        self.counters.channel_full += refused

    async def _group_send_scripts(self, group: str, payload: bytes, payload_to: Kinds) -> list[Any]:
        """Run the group_send scripts on every server (or tag); their replies, in order."""
        now = now_ms()
        operation = f"group_send to group {group!r}"

        def calls_for(tag: str, asking: bool = False) -> list[ScriptCall]:
            return commands.group_send_calls(
                prefix=self.prefix,
                group=group,
                now_ms=now,
                group_ttl_s=self.group_expiry,
                deadline_ms=now + self.expiry * 1000,
                payload=payload,
                capacity=self.capacity,
                ttl_s=self.expiry,
                queue_max=self.client_queue_capacity,
                beat_ms=int(self.heartbeat * 1000),
                tag=tag,
                asking=asking,
                payload_to=payload_to,
            )

        if self._servers.cluster is not None:
            return await self._servers.on_every_tag(self.prefix, group, operation, calls_for)
        calls = calls_for("")
        if blocking.get():
            return self._sync.run_everywhere(operation, calls)
        per_server = await self._servers.on_every_server(
            operation, lambda client: run_all(client, calls)
        )
        return [reply for replies in per_server for reply in replies]
