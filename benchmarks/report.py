"""RESULTS.md and the group_send chart from one benchmark run."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from targets import Verdict

from asgi_redis.cli.bench import OURS, THEIRS
from asgi_redis.cli.main import Results, table_rows

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
CHART_PNG = HERE / "group_send.png"
BROADCAST_PNG = HERE / "broadcast.png"
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


Values = Mapping[str, Mapping[str, Sequence[float]]]  # metric -> layer -> one per repetition


def _spread(values: Values, key: str, layer: str) -> tuple[float, float, float]:
    """Median, lowest and highest finite value of one metric (NaN when none)."""
    finite = sorted(v for v in values.get(key, {}).get(layer, []) if not math.isnan(v))
    if not finite:
        return math.nan, math.nan, math.nan
    middle = len(finite) // 2
    median = finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2
    return median, finite[0], finite[-1]


def _shape_label(shape: str) -> str:
    """'2x2500' -> '2 x 2,500'."""
    processes, members = shape.split("x")
    return f"{processes} x {int(members):,}"


def _bars(axes: Any, values: Values, prefix: str, shapes: Sequence[str], unit: str) -> None:
    """Grouped bars per shape and layer: the median, labelled, with whiskers from the lowest to
    the highest repetition, on a log scale that starts below the smallest bar."""
    styles = ((OURS, "tab:blue", -0.2), (THEIRS, "tab:red", 0.2))
    lowest, highest = math.inf, 0.0
    for layer, color, offset in styles:
        for index, shape in enumerate(shapes):
            median, low, high = _spread(values, f"{prefix}{shape}", layer)
            x = index + offset
            if math.isnan(median):
                axes.text(
                    x,
                    0.03,
                    "did not\nfinish",
                    transform=axes.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=color,
                )
                continue
            lowest, highest = min(lowest, low), max(highest, high)
            label = layer if index == 0 else None
            axes.bar(
                x,
                median,
                width=0.38,
                color=color,
                label=label,
                yerr=[[median - low], [high - median]],
                capsize=3,
                ecolor="black",
            )
            text = f"{median:,.0f}" if median >= 100 else f"{median:.2f}"
            axes.annotate(
                f"{text}{unit}",
                (x, high),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    axes.set_yscale("log")
    if lowest < math.inf:
        axes.set_ylim(lowest / 3, highest * 2.5)
    axes.set_xlim(-0.6, len(shapes) - 0.4)
    axes.set_xticks(range(len(shapes)), [_shape_label(s) for s in shapes])
    axes.set_xlabel("receiving processes x members each")
    axes.grid(True, axis="y", which="both", alpha=0.3)


def write_broadcast_chart(values: Values, shapes: Sequence[str]) -> bool:
    """Broadcast deliveries/s and Redis CPU per delivery per shape, both layers, as bars with
    the range of the repetitions; False without matplotlib or without broadcast results."""
    shapes = [s for s in shapes if f"broadcast_{s}" in values]
    if not shapes:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return False
    figure, (rate, cpu) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    _bars(rate, values, "broadcast_", shapes, "")
    rate.set_ylabel("deliveries/s, end to end (higher is better)")
    rate.set_title("Broadcast throughput")
    _bars(cpu, values, "broadcast_cpu_", shapes, " µs")
    cpu.set_ylabel("Redis CPU µs per delivery (lower is better)")
    cpu.set_title("Redis server cost")
    rate.legend(fontsize=8, loc="upper right")
    figure.suptitle("group_send to process-local members with receive loops (median, range)")
    figure.tight_layout()
    figure.savefig(BROADCAST_PNG)
    plt.close(figure)
    return True


def main() -> None:
    """Redraw the broadcast chart from results saved with ``bench.py --save FILE``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("saved", type=Path, help="the JSON file bench.py --save wrote")
    saved = json.loads(parser.parse_args().saved.read_text())
    keys = [k for k in saved["values"] if k.startswith("broadcast_") and "cpu" not in k]
    write_broadcast_chart(saved["values"], [k.removeprefix("broadcast_") for k in keys])
    print(f"wrote {BROADCAST_PNG}")


if __name__ == "__main__":
    main()
