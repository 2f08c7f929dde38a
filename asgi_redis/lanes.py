"""The readers of one event loop and server: wanted queues split into lanes of bounded size.

A blocking pop costs time in proportion to the keys it carries (redis-py packs each one,
Redis registers the client on each, and unregisters it from each when one has data). With one
pop over every wanted queue, one message to one of N waiting channels cost O(N). So the
wanted queues are split into lanes of at most ``LANE_QUEUES`` queues, each with its own
reader (``reader.Reader``): its own blocking pop, on a connection of its own, and its own
wake list. A message wakes only the lane holding its queue, and that lane's next pop carries
at most ``LANE_QUEUES`` keys, whatever N is.

A queue joins a lane when a receive starts waiting on it, and leaves when its lane finds that
nobody wants it any more; the queues of one ``receive_many`` join one lane, so one blocking
pop never takes more than that receive asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from functools import partial

from . import keys
from .reader import Reader, ServerState
from .routes import Route

# Queues per lane: a pop over this many keys costs about what one over a hundred does, and
# it stays below reader.SWEEP_MIN_QUEUES, so a trickle costs no sweep after each pop.
LANE_QUEUES = 128


class Lanes:
    """Blocking pops on one server for the queues that waiting receives want.

    Args:
        route: where the queues live (a server, or a tag of a cluster).
        prefix: the layer's key prefix.
        wake_key: this process's wake list on that server (lane ``i`` > 0 adds ``/i``).
        wanted: for the queue keys given, how many entries the waiting receives want now
            (queues nobody wants are left out).
        dispatch: called with (queue key, entry) for every popped entry.
        on_unreachable: as for ``Reader``.
        max_lanes: at most this many lanes (blocking connections); past
            ``max_lanes * LANE_QUEUES`` queues, lanes grow beyond ``LANE_QUEUES``.
    """

    def __init__(
        self,
        route: Route,
        prefix: str,
        wake_key: str,
        wanted: Callable[[Collection[str]], dict[str, int]],
        dispatch: Callable[[str, bytes], None],
        on_unreachable: Callable[[Exception], None],
        max_lanes: int,
    ) -> None:
        self._route = route
        self._prefix = prefix
        self._wake_key = wake_key
        self._wanted = wanted
        self._dispatch = dispatch
        self._on_unreachable = on_unreachable
        self._max_lanes = max(1, max_lanes)
        self._readers: list[Reader] = []
        self._queues: list[set[str]] = []  # per lane, the queues it pops from
        self._lane_of: dict[str, int] = {}
        self._server = ServerState()

    @property
    def running(self) -> bool:
        """Whether a lane's reader task is alive."""
        return any(reader.running for reader in self._readers)

    def ensure(self, queues: list[str]) -> None:
        """Give each of ``queues`` a lane, and start or wake the lanes that lack one of them."""
        missing = [queue for queue in queues if queue not in self._lane_of]
        if missing:
            lane = next((self._lane_of[q] for q in queues if q in self._lane_of), None)
            if lane is None or not self._has_room(lane, len(missing)):
                lane = self._lane_with_room(len(missing))
            self._queues[lane].update(missing)
            for queue in missing:
                self._lane_of[queue] = lane
        for queue in queues:
            self._readers[self._lane_of[queue]].ensure([queue])

    def reconsider(self, unwanted: list[str]) -> None:
        """Wake the lanes that block on one of these queues that nobody wants any more."""
        for queue in unwanted:
            lane = self._lane_of.get(queue)
            if lane is not None:
                self._readers[lane].reconsider([queue])

    async def stop(self) -> None:
        """Stop every lane (see ``Reader.stop``)."""
        await asyncio.gather(*(reader.stop() for reader in self._readers))

    def _has_room(self, lane: int, adding: int) -> bool:
        """Whether ``lane`` can take ``adding`` more queues and stay within ``LANE_QUEUES``."""
        return len(self._queues[lane]) + adding <= LANE_QUEUES

    def _lane_with_room(self, adding: int) -> int:
        """The first lane with room, a new one, or (at ``max_lanes``) the least full one."""
        for lane in range(len(self._readers)):
            if self._has_room(lane, adding):
                return lane
        if len(self._readers) < self._max_lanes:
            return self._add_lane()
        return min(range(len(self._readers)), key=lambda lane: len(self._queues[lane]))

    def _add_lane(self) -> int:
        """A new, empty lane (its reader starts on its first ``ensure``)."""
        lane = len(self._readers)
        wake_key = keys.lane_wake_key(self._wake_key, lane)
        self._queues.append(set())
        self._readers.append(
            Reader(
                self._route,
                self._prefix,
                wake_key,
                self._route.label,
                partial(self._demand, lane),
                self._dispatch,
                self._on_unreachable,
                self._server,
            )
        )
        return lane

    def _demand(self, lane: int) -> dict[str, int]:
        """What the waiting receives want from ``lane``'s queues; the others leave the lane."""
        queues = self._queues[lane]
        wanted = self._wanted(queues)
        if len(wanted) < len(queues):
            for queue in [queue for queue in queues if queue not in wanted]:
                queues.discard(queue)
                del self._lane_of[queue]
        return wanted
