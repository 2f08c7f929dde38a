"""``make demo`` cannot rot: every mode of ``python -m asgi_redis.cli.demo`` runs here.

The demo starts its own embedded Redis (a private redis-server, or fakeredis's TCP server),
two daphne servers and a runworker process of ``examples/chat``, exactly as ``make demo`` does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

DEMO_TIMEOUT_S = 90
DEMO = [sys.executable, "-m", "asgi_redis.cli.demo"]


def run_demo(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the demo to its end; assert it succeeded and return its output."""
    result = subprocess.run(
        [*DEMO, *args],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_check_round_trip_across_two_servers() -> None:
    output = run_demo("--check")
    for step in ("chat:", "announce:", "shout:", "Done:"):
        assert step in output, output


def test_plain_demo_without_django() -> None:
    output = run_demo("--plain")
    assert "replied; stopping the workers" in output, output


def test_demo_falls_back_to_fakeredis_without_redis_server(tmp_path: Path) -> None:
    """On a machine with no redis-server binary the demo still runs, on fakeredis's server."""
    (tmp_path / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(tmp_path)}
    output = run_demo("--plain", env=env)
    assert "fakeredis" in output, output
    assert "replied; stopping the workers" in output, output


def accepts_connections(url: str) -> bool:
    """Whether something listens on the host and port of ``url``."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def test_ctrl_c_stops_every_process_and_removes_the_temp_dir() -> None:
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    try:
        while "Press Ctrl-C" not in "".join(lines) and time.monotonic() < deadline:
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        output = "".join(lines)
        urls = re.findall(r"server [AB]: (http://\S+)", output)
        (log_dir,) = re.findall(r"Process output: (\S+)\. Press", output)
        assert len(urls) == 2 and all(map(accepts_connections, urls)), output
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo.stdout.close()
    assert not Path(log_dir).exists()
    assert not any(map(accepts_connections, urls))
