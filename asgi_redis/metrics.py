"""Per-layer counters for dashboards, kept in this process (never written to Redis).

Counting costs one integer increment on the path it counts, so it stays on in production.
The counters are shared by every event loop and receiver of one layer instance; they only
ever grow (a restart resets them, which is what Prometheus counters expect).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# What each counter means, also the help text of the Prometheus metrics.
DESCRIPTIONS = {
    "sent": (
        "Messages queued in Redis: one per send, one per member a group_send reached "
        "(named, or listed in a group entry written to its process)"
    ),
    "delivered": "Messages handed to a receive",
    "channel_full": (
        "Messages refused because the channel was full: send, named group_send members, "
        "members of a process whose queue was full, group copies this process dropped"
    ),
    "expired": "Messages this process popped or buffered but dropped because they expired",
    "dropped": "Messages dropped because they were undecodable or their entry malformed",
    "lost_at_close": "Popped messages an event loop closed with, which Redis refused to take back",
    "rejoins": "Times a client of this process, judged dead while cut off, rejoined its groups",
}


@dataclass
class Counters:
    """Message counts of one layer instance since it was created."""

    sent: int = 0
    delivered: int = 0
    channel_full: int = 0
    expired: int = 0
    dropped: int = 0
    lost_at_close: int = 0
    rejoins: int = 0

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict (a copy: later counting does not change it)."""
        return asdict(self)
