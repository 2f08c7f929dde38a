"""What ``asgi-redis inspect`` reports about one server, and how it prints it.

The report is plain data (the ``--json`` schema, version ``SCHEMA_VERSION``); the table is
drawn from it. No payload is ever read into it, and hosts appear by their config label,
which leaves passwords out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from asgi_redis import keyspace
from asgi_redis.heartbeat import MARK_BEATS

SCHEMA_VERSION = 1
DROPS_NOTE = (
    "drops are not recorded in Redis: each process counts its own, see "
    "global_statistics()['counters'] or the Prometheus metrics"
)
CAPACITY_NOTE = "capacity is per process configuration: pass --capacity to show it"


@dataclass(frozen=True)
class Settings:
    """The layer options the report needs (a CLI cannot read them from the processes)."""

    prefix: str
    expiry_s: int
    group_expiry_s: int
    heartbeat_s: float
    capacity: int | None
    limit: int


async def server_report(
    client: Redis,
    label: str,
    settings: Settings,
    now_ms: int,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Everything ``inspect`` shows about one server (see docs/operations.md for the schema)."""
    prefix = settings.prefix
    found = await keyspace.keys_by_kind(client, prefix, on_progress)
    queues = await keyspace.queue_summaries(client, prefix, found["q"])
    groups = await keyspace.group_summaries(
        client,
        prefix,
        found["g"] + found["l"],
        now_ms,
        settings.group_expiry_s,
        int(settings.heartbeat_s * 1000),
    )
    marks = await keyspace.liveness_ttls_ms(client, prefix, found["h"])
    depth_of = {queue["queue"]: queue["depth"] for queue in queues}
    queue_rows = [_queue_row(queue, settings, now_ms) for queue in queues]
    queue_rows.sort(key=lambda row: (-row["counted"], -row["depth"], row["queue"]))
    groups.sort(key=lambda row: (-row["members"], row["group"]))
    client_rows = [_client_row(head, ttl_ms, settings, depth_of) for head, ttl_ms in marks]
    client_rows.sort(key=lambda row: (-(row["last_heartbeat_age_s"] or 0.0), row["client"]))
    return {
        "host": label,
        "keys": {kind: len(found_keys) for kind, found_keys in found.items()},
        "queues": _section(queue_rows, settings.limit),
        "groups": _section(groups, settings.limit),
        "clients": _section(client_rows, settings.limit),
        "drops": None,
    }


def _section(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """``total`` rows and the first ``limit`` of them."""
    return {"total": len(rows), "rows": rows[:limit]}


def _queue_row(queue: dict[str, Any], settings: Settings, now_ms: int) -> dict[str, Any]:
    """A queue summary with capacity and the age of its oldest entry."""
    deadline_ms = queue.pop("head_deadline_ms")
    oldest_age_s = None
    if deadline_ms is not None:  # an entry is written with deadline = now + expiry
        oldest_age_s = round(max(0.0, settings.expiry_s - (deadline_ms - now_ms) / 1000), 3)
    return {**queue, "capacity": settings.capacity, "oldest_age_s": oldest_age_s}


def _client_row(
    head: str, ttl_ms: int, settings: Settings, depth_of: dict[str, int]
) -> dict[str, Any]:
    """A liveness mark: when its process last beat, estimated from the remaining TTL.

    Every heartbeat (and group_add for a new client) sets the mark with a lifetime of
    ``MARK_BEATS`` heartbeats, so the time since then is that lifetime minus what is left.
    """
    lifetime_ms = settings.heartbeat_s * MARK_BEATS * 1000
    age_s = None if ttl_ms < 0 else round(max(0.0, (lifetime_ms - ttl_ms) / 1000), 3)
    expires_in_s = None if ttl_ms < 0 else round(ttl_ms / 1000, 3)
    return {
        "client": head,
        "last_heartbeat_age_s": age_s,
        "expires_in_s": expires_in_s,
        "queue_depth": depth_of.get(head, 0),
    }


# -- the table -------------------------------------------------------------------------

QUEUE_COLUMNS = (
    ("queue", "QUEUE"),
    ("depth", "DEPTH"),
    ("counted", "COUNTED"),
    ("capacity", "CAPACITY"),
    ("oldest_age_s", "OLDEST s"),
)
GROUP_COLUMNS = (
    ("group", "GROUP"),
    ("members", "MEMBERS"),
    ("named", "NAMED"),
    ("local", "LOCAL"),
    ("local_dead", "OF DEAD"),
    ("dead_clients", "DEAD CLIENTS"),
)
CLIENT_COLUMNS = (
    ("client", "CLIENT"),
    ("last_heartbeat_age_s", "LAST BEAT s ago"),
    ("expires_in_s", "DEAD IN s"),
    ("queue_depth", "QUEUED"),
)


def render_table(report: dict[str, Any]) -> str:
    """The whole report as readable text, one block per server."""
    lines = [f"prefix {report['prefix']!r}"]
    for server in report["servers"]:
        counts = ", ".join(f"{kind}:{count}" for kind, count in server["keys"].items() if count)
        lines += ["", f"== {server['host']}  (keys {counts or 'none'})"]
        for title, section, columns in (
            ("Queues, busiest first", server["queues"], QUEUE_COLUMNS),
            ("Groups, largest first", server["groups"], GROUP_COLUMNS),
            ("Clients (liveness marks), stalest first", server["clients"], CLIENT_COLUMNS),
        ):
            lines += ["", _title(title, section), *_rows(section["rows"], columns)]
    lines += ["", f"Note: {DROPS_NOTE}."]
    if report["capacity_note"]:
        lines.append(f"Note: {report['capacity_note']}.")
    return "\n".join(lines) + "\n"


def _title(title: str, section: dict[str, Any]) -> str:
    """A section title with how many rows it has and how many are shown."""
    shown, total = len(section["rows"]), section["total"]
    if shown < total:
        return f"{title}: {total} (first {shown} shown, see --limit)"
    return f"{title}: {total}"


def _rows(rows: list[dict[str, Any]], columns: tuple[tuple[str, str], ...]) -> list[str]:
    """Aligned text rows under a header; the first column left-aligned, numbers right."""
    if not rows:
        return ["  (none)"]
    cells = [[header for _, header in columns]]
    cells += [[_cell(row[field]) for field, _ in columns] for row in rows]
    widths = [max(len(line[col]) for line in cells) for col in range(len(columns))]
    return [
        "  "
        + "  ".join(
            text.ljust(width) if col == 0 else text.rjust(width)
            for col, (text, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]


def _cell(value: object) -> str:
    """One value as table text ('-' for unknown)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
