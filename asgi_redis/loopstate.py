"""What a layer keeps for each event loop: client id, receivers per server, heartbeat.

``async_to_sync`` runs calls on fresh loops, and redis-py connections and asyncio tasks
belong to the loop that made them, so none of this is shared between loops.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from .heartbeat import Heartbeat
from .receiver import Receiver

logger = logging.getLogger(__name__)


class LoopState:
    """One event loop's part of a layer.

    Args:
        make_receiver: builds the receiver of one server index for a client id.
        beat: writes liveness marks of the given heads, see ``Heartbeat``.
        heartbeat_s: seconds between beats.
    """

    def __init__(
        self,
        make_receiver: Callable[[int, str], Receiver],
        beat: Callable[[list[str]], Awaitable[None]],
        heartbeat_s: float,
    ) -> None:
        self.client_id = secrets.token_hex(6)
        self._make_receiver = make_receiver
        self._receivers: dict[int, Receiver] = {}
        self._dropped_closed = 0  # drops counted by receivers already closed
        self._heartbeat = Heartbeat(beat, heartbeat_s)

    @property
    def dropped_undecodable(self) -> int:
        """Messages this loop's receivers dropped as undecryptable or undecodable."""
        live = sum(receiver.dropped_undecodable for receiver in self._receivers.values())
        return self._dropped_closed + live

    def receivers(self) -> list[Receiver]:
        """The receivers made so far."""
        return list(self._receivers.values())

    def receiver(self, shard: int) -> Receiver:
        """The receiver of server ``shard`` (made on first use)."""
        receiver = self._receivers.get(shard)
        if receiver is None:
            receiver = self._receivers[shard] = self._make_receiver(shard, self.client_id)
        return receiver

    @property
    def held(self) -> int:
        """Popped messages still in this loop's receivers (buffered or on their way back)."""
        return sum(receiver.held for receiver in self._receivers.values())

    def keep_alive(self, head: str) -> None:
        """Refresh the liveness mark of the client queue ``head`` from now on."""
        self._heartbeat.add(head)

    async def close(self) -> None:
        """Close every receiver, then the heartbeat.

        Raises the first receiver's error after trying them all; receivers that failed stay,
        so a later ``close`` tries them again.
        """
        errors: list[Exception] = []
        for shard, receiver in list(self._receivers.items()):
            try:
                await receiver.close()
            except Exception as exc:
                logger.error(
                    "Could not return %d buffered messages to Redis (%r): they stay in this "
                    "process, and are lost if it ends before close() succeeds",
                    receiver.held,
                    exc,
                )
                errors.append(exc)
                continue
            del self._receivers[shard]
            self._dropped_closed += receiver.dropped_undecodable
        if errors:
            raise errors[0]
        await self._heartbeat.close()
