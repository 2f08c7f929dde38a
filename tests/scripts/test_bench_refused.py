"""benchmarks/bench_refused.py runs end to end at tiny sizes (it asserts its own replies)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_refused.py"


def test_bench_refused_prints_both_cases_side_by_side(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_refused", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--sizes", "5", "300", "--sends", "3", "--url", redis_url])
    lines = capsys.readouterr().out.splitlines()
    assert "capacity 5" in lines[1] and "capacity 300" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["refused:", "expired:"]


def test_bench_refused_starts_its_own_server_without_url(
    redis_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default path (no --url) starts a private redis-server (redis_server: one exists)."""
    spec = importlib.util.spec_from_file_location("bench_refused", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--sizes", "5", "--sends", "2"])
    assert "capacity 5" in capsys.readouterr().out
