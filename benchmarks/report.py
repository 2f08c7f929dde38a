"""RESULTS.md and the group_send chart from one benchmark run."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from targets import Verdict

from asgi_redis.cli.bench import OURS, THEIRS
from asgi_redis.cli.main import Results, table_rows

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
CHART_PNG = HERE / "group_send.png"
# Hand-written analysis kept across runs: everything from this heading on.
NOTES_HEADING = "## Where the time goes"


def machine() -> str:
    """CPU count and model, memory and OS of this machine."""
    model = "unknown CPU"
    meminfo = ""
    with_proc = Path("/proc/cpuinfo")
    if with_proc.exists():
        for line in with_proc.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                meminfo = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} CPUs ({model}){meminfo}, {platform.system()} {platform.release()}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def kept_notes() -> list[str]:
    """The hand-written notes of the previous RESULTS.md, if any."""
    if not RESULTS_MD.exists():
        return [NOTES_HEADING, "", "(no profile notes yet)"]
    lines = RESULTS_MD.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() == NOTES_HEADING:
            return lines[index:]
    return [NOTES_HEADING, "", "(no profile notes yet)"]


def write_results(
    header_lines: Sequence[str],
    results: Results,
    keys: Sequence[str],
    items: Sequence[Verdict],
    extra_sections: Sequence[str],
) -> None:
    """Write RESULTS.md: machine, versions, targets, the full table, notes."""
    lines = ["# Benchmark results", "", "Latest full run of `python benchmarks/bench.py`.", ""]
    lines += [f"- {line}" for line in header_lines]
    lines += [f"- machine: {machine()}", "", "## Targets", ""]
    lines += markdown_table(
        ["target", "status", "measured"],
        [[item.target, f"**{item.status}**", item.measured] for item in items],
    )
    lines += ["", "## All workloads (medians of the repetitions)", ""]
    header = ["workload", "unit", OURS, THEIRS, "ratio per repetition", "ratio"]
    lines += markdown_table(header, table_rows(results, keys))
    lines += [
        "",
        "ratio > 1 means asgi_redis is better (asgi_redis/channels_redis for rates, "
        "channels_redis/asgi_redis for ms and bytes).",
    ]
    if results.errors:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {error}" for error in results.errors]
    lines += ["", "![group_send calls/s vs group size](group_send.png)", ""]
    for section in extra_sections:
        lines += [section, ""]
    lines += kept_notes()
    RESULTS_MD.write_text("\n".join(lines).rstrip() + "\n")


def write_chart(results: Results, sizes: Sequence[int]) -> bool:
    """group_send calls/s vs group size, both layers, log-log; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return False
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = {OURS: ("tab:blue", "asgi_redis"), THEIRS: ("tab:red", "channels_redis")}
    for kind, marker, dash in (("named", "o", "-"), ("local", "s", "--")):
        for layer, (color, name) in styles.items():
            values = [results.median(f"group_send_{kind}_{size}", layer) for size in sizes]
            points = [(s, v) for s, v in zip(sizes, values, strict=True) if not math.isnan(v)]
            if points:
                xs, ys = zip(*points, strict=True)
                label = f"{name}, {'named' if kind == 'named' else 'process-local'} members"
                axes.plot(xs, ys, dash, marker=marker, color=color, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("group size (members)")
    axes.set_ylabel("group_send calls/s (one sender)")
    axes.set_title("group_send throughput vs group size (higher is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(CHART_PNG)
    plt.close(figure)
    return True
