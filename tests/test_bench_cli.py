"""Smoke test of the ``asgi-redis bench`` command at tiny sizes (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def test_bench_command_prints_the_table(redis_url: str) -> None:
    """The command runs every short workload against the given server and exits 0."""
    command = [sys.executable, "-m", "asgi_redis.cli.main", "bench", "--hosts", redis_url]
    done = subprocess.run(
        [*command, "--scale", "0.01"], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("workload"))
    assert "asgi_redis" in header
    for row in ("send_receive named", "ping_pong p50", "group_send 1,000 named", "many_channels"):
        assert any(line.startswith(row) for line in lines), done.stdout
    assert "done" in done.stderr  # the progress bar reached its end


def test_bench_help_lists_the_options() -> None:
    """``asgi-redis bench --help`` documents --hosts and --scale."""
    done = subprocess.run(
        [sys.executable, "-m", "asgi_redis.cli.main", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--hosts" in done.stdout
    assert "--scale" in done.stdout
