"""The Django Channels channel layer API: validate, serialize, then call one script."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from . import codec, commands, config, keys, keyspace, names
from .buffers import now_ms
from .compat import ChannelsRedisCompatMixin, channels_redis_options
from .crypto import Encryptor
from .errors import ChannelFull
from .groupkinds import GroupKinds
from .groups import GroupsMixin
from .liveness import Liveness
from .loopstate import LoopState
from .metrics import Counters
from .offload import Offload, blockable, forwardable
from .pipelining import run_batched
from .receiver import Receiver, receive_from
from .scripts import ScriptCall
from .servers import Servers
from .statistics import StatisticsMixin
from .syncpath import SyncServers, blocking

logger = logging.getLogger(__name__)

OPTIONS = (
    "hosts",
    "prefix",
    "expiry",
    "group_expiry",
    "capacity",
    "channel_capacity",
    "symmetric_encryption_keys",
    "serializer",
    "heartbeat",
    "max_message_size",
    "client_queue_capacity",
)
T = TypeVar("T")


class RedisChannelLayer(GroupsMixin, StatisticsMixin, ChannelsRedisCompatMixin):
    """A channel layer on Redis where each atomic step is one Lua script.

    Args:
        hosts: Redis servers: URIs (``redis://``, ``rediss://``, ``unix://``), ``(host, port)``
            pairs, or dicts of redis-py connection options (``address`` holds the URI).
        prefix: start of every key this layer writes; a ``:`` is appended unless it ends
            in one (``"myapp"`` means ``"myapp:"``).
        expiry: seconds a message waits to be received before it is dropped.
        group_expiry: seconds a group membership lasts after the latest ``group_add``.
        capacity: messages a channel may hold before ``send`` raises ``ChannelFull``.
        channel_capacity: per-channel capacities: glob strings or compiled regexes to ints;
            the first match in the dict's order wins.
        symmetric_encryption_keys: secrets (strings, ideally 32+ characters); messages are
            encrypted with AES-256-GCM under the first and decrypted with any of them. Needs
            the ``cryptography`` extra.
        serializer: ``"msgpack"`` (default), ``"json"``, or an object with
            ``dumps(dict) -> bytes`` and ``loads(bytes) -> dict``.
        heartbeat: seconds (int or float above 0) between the liveness marks of a client
            that owns process-local channels; a client unseen for 3 heartbeats is dead.
        max_message_size: bytes a message may take once serialized (and encrypted); a larger
            one raises ``MessageTooLarge`` before anything is written (default 16 MiB).
        client_queue_capacity: entries a process's queue (shared by its process-local
            channels) may hold; a group_send finding it that long writes no group entry there
            and counts its members as ``channel_full``.
        serializer_format, random_prefix_length: channels_redis's options, accepted so its
            CONFIG moves over unchanged: the first is another name for ``serializer``
            (``"msgpack"`` or ``"json"``), the second is not needed here and ignored.

    Raises:
        TypeError: an unknown option or a value of the wrong type (the message names it).
        ValueError: a value out of range.
        ImportError: encryption keys given but the ``cryptography`` package is missing.

    ``dropped_undecodable`` counts messages received but dropped because they could not be
    decrypted or deserialized (summed over event loops).
    """

    extensions: ClassVar[list[str]] = ["groups", "flush", "receive_many", "statistics"]

    def __init__(
        self,
        hosts: object = None,
        prefix: object = "asgi:",
        expiry: object = 60,
        group_expiry: object = 86400,
        capacity: object = 100,
        channel_capacity: object = None,
        symmetric_encryption_keys: object = None,
        serializer: object = codec.DEFAULT_SERIALIZER,
        heartbeat: object = config.DEFAULT_HEARTBEAT_S,
        max_message_size: object = codec.DEFAULT_MAX_MESSAGE_BYTES,
        client_queue_capacity: object = config.DEFAULT_CLIENT_QUEUE_CAPACITY,
        **unknown: object,
    ) -> None:
        serializer, unknown = channels_redis_options(serializer, unknown)
        if unknown:
            raise TypeError(
                f"RedisChannelLayer got unknown option(s) {', '.join(sorted(unknown))}; "
                f"known options: {', '.join(OPTIONS)}"
            )
        self.config = config.parse(
            hosts,
            prefix,
            expiry,
            group_expiry,
            capacity,
            channel_capacity,
            symmetric_encryption_keys,
            serializer,
            heartbeat,
            max_message_size,
            client_queue_capacity,
        )
        enc_keys = self.config.encryption_keys
        self._codec = codec.Codec(
            self.config.serializer,
            Encryptor(enc_keys) if enc_keys else None,
            self.config.max_message_bytes,
        )
        self._dropped_closed = 0  # drops counted by receivers of loops that are gone
        # In-process message counts (metrics.py); shared by every loop's receivers.
        self.counters = Counters()
        self.prefix = self.config.prefix
        self.expiry = self.config.expiry_s
        self.group_expiry = self.config.group_expiry_s
        self.capacity = self.config.capacity
        self.heartbeat = self.config.heartbeat_s
        self.client_queue_capacity = self.config.client_queue_capacity
        self._servers = Servers(self.config.hosts, self._close_with_loop)
        self._loops: dict[asyncio.AbstractEventLoop, LoopState] = {}
        # Process-local channels of this process, and their memberships, to rejoin groups.
        self._liveness = Liveness(
            self._servers,
            self.prefix,
            self.heartbeat,
            self.group_expiry,
            self._add_member,
            self.counters,
        )
        # The kinds of members each group had, so a group_send sends the payload only to the
        # script of a kind the group holds (groupkinds.py).
        self._group_kinds = GroupKinds()
        # Calls from short-lived loops (async_to_sync) run on a loop of our own (offload.py),
        # or for send and the group calls, as blocking calls of sync clients (syncpath.py).
        self._sync = SyncServers(self.config.hosts, self._servers.labels)
        self._offload = Offload(self._close_loop, can_block=self._sync.usable)

    # -- channels --------------------------------------------------------------------

    @blockable
    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` on ``channel``.

        Raises:
            ChannelFull: the channel holds ``capacity`` messages already.
            TypeError: invalid channel name, or a message that is not a serializable dict.
            MessageTooLarge: the serialized message is above ``max_message_size``.
        """
        names.check_channel(channel)
        payload = self._codec.dumps(message, f"channel {channel!r}")
        now = now_ms()
        suffix = keys.split_channel(channel)[1]
        entry = keys.make_entry(now + self.expiry * 1000, suffix, payload)
        call = commands.send_call(
            queue=keys.queue_key(self.prefix, channel),
            counts=keys.counts_key(self.prefix, channel),
            now_ms=now,
            entry=entry,
            capacity=self.config.capacity_for(channel),
            ttl_s=self.expiry,
            suffix=suffix,
        )
        reply = await self._script(channel, f"send to channel {channel!r}", call)
        if not commands.send_queued(reply):
            self.counters.channel_full += 1
            raise ChannelFull(f"channel {channel!r} is full")
        self.counters.sent += 1

    @forwardable
    async def receive(self, channel: str) -> dict[str, Any]:
        """Wait for the next message on ``channel``; safe to cancel."""
        names.check_channel(channel)
        # The busiest call of a Channels app: split the name and find the loop's state once.
        head = keys.split_channel(channel)[0]
        state = self._loop_state()
        if head != channel:  # process-local: its client must be seen alive
            state.keep_alive(head)
        receiver = state.receiver(self._servers.shard_of_unit(head))
        return (await receiver.receive_many([channel]))[1]

    @forwardable
    async def receive_many(self, channels: Sequence[str]) -> tuple[str, dict[str, Any]]:
        """Wait for the next message on any of ``channels``; returns (channel, message)."""
        if isinstance(channels, str) or not channels:
            raise TypeError(f"receive_many takes a non-empty list of channels, got {channels!r}")
        for channel in channels:
            names.check_channel(channel)
        for channel in channels:
            self._keep_alive(channel)
        by_shard: dict[int, list[str]] = {}
        for channel in dict.fromkeys(channels):
            by_shard.setdefault(self._servers.shard_of(channel), []).append(channel)
        return await receive_from(
            [(self._receiver(shard), shard_channels) for shard, shard_channels in by_shard.items()]
        )

    @forwardable
    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new process-local channel name: ``prefix`` + client id + ``!`` + random.

        A ``prefix`` without a trailing ``.`` gets one (``"specific"`` is channels_redis's
        default), so both spellings give ``specific.<client id>!<random>``.
        """
        names.check_channel_prefix(prefix)
        dot = "" if prefix.endswith(".") else "."
        channel = f"{prefix}{dot}{self._client_id()}!{secrets.token_hex(8)}"
        self._keep_alive(channel)
        return channel

    async def _script(self, channel: str, operation: str, call: ScriptCall) -> Any:
        """One script on ``channel``'s server (or tag): inside a ``blockable`` method's blocking
        run a blocking call of its sync client, else with the running loop's client."""
        shard = self._servers.shard_of(channel)
        if blocking.get():
            return self._sync.run(shard, operation, call)
        route = self._servers.routes[shard]
        return await route.run(operation, lambda client: run_batched(client, *call))

    @property
    def dropped_undecodable(self) -> int:
        """Messages dropped on receive because they failed to decrypt or deserialize."""
        live = sum(state.dropped_undecodable for state in self._loops.values())
        return self._dropped_closed + live

    # -- lifecycle -------------------------------------------------------------------

    @forwardable
    async def flush(self) -> None:
        """Delete every key under this layer's prefix (and nothing else), on every server."""
        await self._servers.on_every_server(
            f"flush of prefix {self.prefix!r}",
            lambda client: keyspace.delete_own_keys(client, self.prefix),
            concurrently=False,
        )
        self._group_kinds.clear()
        for state in self._loops.values():
            for receiver in state.receivers():
                receiver.clear()

    async def close(self) -> None:
        """Stop reading, return unreceived messages to Redis, close this loop's connections
        and those of the layer's background loop (which then stops; see offload.py).

        Every server is dealt with even when one fails; then the first failure is raised.
        Messages that could not be returned stay in this process, and calling ``close``
        again retries (the connections are only closed once nothing is left to return).
        """
        await self._offload.stop()
        self._sync.close()
        await self._close_loop()

    async def _close_loop(self) -> None:
        """``close`` for the running loop only; also run by a loop about to close."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is not None:
            await state.close()
            del self._loops[loop]
            self._dropped_closed += state.dropped_undecodable
            self._liveness.forget(state.client_id)
        await self._servers.close()

    async def _close_with_loop(self) -> None:
        """``close`` for an event loop about to close: nothing can retry after it, so what
        could not be handed back is lost; counted (``lost_at_close``) and logged."""
        try:
            await self._close_loop()
        except Exception:
            state = self._loops.pop(asyncio.get_running_loop(), None)
            if state is not None and state.held:
                self.counters.lost_at_close += state.held
                logger.error(
                    "Lost %d popped messages: their event loop closed while Redis refused to "
                    "take them back",
                    state.held,
                )
            raise

    async def __aenter__(self) -> RedisChannelLayer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _keep_alive(self, channel: str) -> None:
        """Keep the liveness mark of a process-local channel's client fresh from this loop."""
        if "!" in channel:
            head = keys.split_channel(channel)[0]
            self._liveness.own_heads.add(head)
            self._loop_state().keep_alive(head)

    def _loop_state(self) -> LoopState:
        """The running loop's part of the layer (made on first use)."""
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            for closed in [other for other in self._loops if other.is_closed()]:
                gone = self._loops.pop(closed)
                self._dropped_closed += gone.dropped_undecodable
                self._liveness.forget(gone.client_id)
            state = self._loops[loop] = LoopState(
                self._make_receiver, self._liveness.beat, self.heartbeat
            )
        return state

    def _client_id(self) -> str:
        """The running loop's client id, the unique part of its process-local channel names."""
        return self._loop_state().client_id

    def _receiver(self, shard: int) -> Receiver:
        """The running loop's receiver for one server (created on first use)."""
        return self._loop_state().receiver(shard)

    def _make_receiver(self, shard: int, client_id: str) -> Receiver:
        """A new receiver for server ``shard`` in the running loop."""
        return Receiver(
            self._servers.routes[shard],
            self.prefix,
            client_id,
            self.expiry,
            self._codec,
            self.counters,
            self.config.capacity_for,
        )
