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

import pytest

from asgi_redis.cli import demo

DEMO_TIMEOUT_S = 90
DEMO = [sys.executable, "-m", "asgi_redis.cli.demo"]
ASGI_REDIS = [sys.executable, "-m", "asgi_redis"]


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


def test_chat_check_runs_on_fakeredis_without_redis_server(tmp_path: Path) -> None:
    """What ``make demo`` does on macOS or without root: the chat itself, on fakeredis."""
    (tmp_path / "python").symlink_to(sys.executable)
    output = run_demo("--check", env={**os.environ, "PATH": str(tmp_path)})
    assert "fakeredis" in output, output
    for step in ("chat:", "announce:", "shout:", "Done:"):
        assert step in output, output


def accepts_connections(url: str) -> bool:
    """Whether something listens on the host and port of ``url``."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=1):
            return True
    except OSError:
        return False


def answer_ctrl_c() -> None:
    """In the child: SIGINT at its default, as under a terminal, even where the test runner
    was started with SIGINT ignored (a background job of a non-interactive shell)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_every_process_and_removes_the_temp_dir() -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the demo's whole process group."""
    demo = subprocess.Popen(
        DEMO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=answer_ctrl_c,
    )
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
        os.killpg(demo.pid, signal.SIGINT)
        # Ctrl-C is how the serving demo ends: exit 0, so `make demo` reports no error.
        assert demo.wait(timeout=30) == 0
        rest = demo.stdout.read()
    finally:
        if demo.poll() is None:
            # The whole group: servers and workers the demo started must not outlive a failure.
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        demo.stdout.close()
    assert "Done: every process stopped" in rest, output + rest
    assert not Path(log_dir).exists()
    assert not any(map(accepts_connections, urls))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (the demo changes signal handlers)."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_outside_a_checkout_fails_with_a_clear_message(tmp_path: Path) -> None:
    """An installed package has no examples/: --check says so and fails, not a plain demo."""
    done = run_python(
        "import sys\n"
        "from asgi_redis.cli import demo, example\n"
        f"example.EXAMPLE_DIR = __import__('pathlib').Path({str(tmp_path)!r})\n"
        "sys.exit(demo.main(['--check']))\n"
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "source checkout" in done.stderr and "--plain" in done.stderr, done.stderr
    assert "plain demo" not in done.stdout, done.stdout


def test_chat_without_the_demo_extra_says_which_extra_to_install() -> None:
    """After a plain install (no websockets) the demo names the extra, not a traceback."""
    done = run_python(
        "import sys\n"
        "sys.modules['websockets'] = None  # as if not installed\n"
        "from asgi_redis.cli import demo\n"
        "sys.exit(demo.main(['--check']))\n"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs websockets: pip install 'asgi-redis-lua[demo]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_demo_extra_names_the_distribution_in_pyproject() -> None:
    """The hint must name the distribution users can install, with an extra that exists."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert f'name = "{demo.DISTRIBUTION}"' in pyproject
    assert re.search(r"^demo = \[", pyproject, re.MULTILINE)


@pytest.mark.parametrize(
    "command",
    [[*DEMO, "--help"], [*ASGI_REDIS, "--help"], [*ASGI_REDIS, "bench", "--help"]],
    ids=["asgi-redis-demo", "asgi-redis", "asgi-redis bench"],
)
def test_help_texts_show_no_restructuredtext_markup(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    assert "usage:" in done.stdout
    assert "``" not in done.stdout, done.stdout
