"""benchmarks/bench_refused.py runs end to end at tiny sizes (it asserts its own replies)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_refused.py"


def load_bench() -> ModuleType:
    """benchmarks/bench_refused.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_refused", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_refused_prints_both_cases_side_by_side(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_bench()
    module.main(["--sizes", "5", "300", "--sends", "3", "--url", redis_url])
    lines = capsys.readouterr().out.splitlines()
    assert "capacity 5" in lines[1] and "capacity 300" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["refused:", "expired:"]


def test_bench_refused_starts_its_own_server_without_url(
    redis_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default path (no --url) starts a private redis-server (redis_server: one exists)."""
    module = load_bench()
    module.main(["--sizes", "5", "--sends", "2"])
    assert "capacity 5" in capsys.readouterr().out
