"""benchmarks/client_queue.py and the broadcast chart at tiny sizes, so they cannot rot.

No timing is asserted: only what does not depend on the machine's speed (an entry's size grows
with the members it lists; with nobody reading, the queue holds exactly what the bound let in).
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import pytest

from benchmarks import client_queue
from benchmarks.client_queue import Plan

pytestmark = pytest.mark.timeout(120)

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def cells(row: str) -> list[str]:
    """The cells of one markdown table row."""
    return [cell.strip() for cell in row.strip("|").split("|")]


def number(cell: str) -> float:
    """'20,521 B' -> 20521.0."""
    return float(cell.split()[0].replace(",", ""))


def test_a_group_entry_costs_about_its_listed_suffixes(redis_url: str) -> None:
    small = cells(asyncio.run(client_queue.entry_costs(redis_url, 1, 5)))
    large = cells(asyncio.run(client_queue.entry_costs(redis_url, 200, 5)))
    assert (small[1], large[1]) == ("1", "1")  # one entry per group_send below 5,000 members
    # 16 hex digits and a separator per member; a direct entry lists no members.
    assert number(large[2]) - number(small[2]) >= 199 * 17
    assert max(number(large[3]), number(small[3])) < number(large[2]) / 5


def test_with_nobody_reading_the_queue_holds_exactly_what_the_bound_let_in(
    redis_url: str,
) -> None:
    members = 3
    result = asyncio.run(client_queue.depth(redis_url, members, 0, Plan(0, 0.5), bound=20))
    assert result.sent > 0
    assert result.deepest == min(result.sent, 20)
    assert result.refused == members * max(0, result.sent - 20)


def test_the_broadcast_chart_is_drawn_from_saved_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bench extra draws charts; the lowest matrix session installs the suite without it.
    pytest.importorskip("matplotlib", reason="the bench extra (matplotlib) is not installed")
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # report.py imports its siblings by name
    import report

    monkeypatch.setattr(report, "BROADCAST_PNG", tmp_path / "broadcast.png")
    values = {
        "broadcast_4x250": {"asgi_redis": [1e5, 2e5], "channels_redis": [2e4, math.nan]},
        "broadcast_cpu_4x250": {"asgi_redis": [0.5, 0.6], "channels_redis": [1.3, math.nan]},
        "broadcast_1x10000": {"asgi_redis": [7e4], "channels_redis": [math.nan]},
        "broadcast_cpu_1x10000": {"asgi_redis": [0.2], "channels_redis": [math.nan]},
    }
    assert report.write_broadcast_chart(values, ["4x250", "1x10000", "8x25"])
    assert (tmp_path / "broadcast.png").read_bytes().startswith(b"\x89PNG")
    assert not report.write_broadcast_chart(values, ["8x25"])  # nothing measured: no chart
    sys.modules.pop("report", None)
