"""``make demo`` and ``make test`` on machines without root, apt-get, Redis or chromium.

The scripts run with a PATH that holds only the tools they need (links to this machine's),
an ``id`` that reports a normal user, and the ``.venv`` that ``make test`` set up, so nothing
is installed here: each test checks what the script decides and says.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import redis_required
from tests.test_demo import answer_ctrl_c

ROOT = Path(__file__).resolve().parents[1]
TEST_EXTRAS = "test,bench,cryptography,dev,demo"
BASIC_TOOLS = ("bash", "cat", "dirname", "cmp", "cp", "rm", "env")
REDIS_TOOLS = ("redis-server", "redis-sentinel", "redis-cli")
RUN_TIMEOUT_S = 240

pytestmark = pytest.mark.timeout(RUN_TIMEOUT_S + 10)


@pytest.fixture(autouse=True)
def venv_set_up() -> None:
    """These tests reuse the .venv of ``make test``; without it they cannot run offline."""
    stamp = ROOT / ".venv" / f".installed-{TEST_EXTRAS.replace(',', '-')}"
    inputs = (ROOT / "pyproject.toml").read_bytes() + (ROOT / "requirements/lock.txt").read_bytes()
    old_redis = ROOT / ".venv" / "redis-6.2"
    old_redis_current = (old_redis / ".installed").is_file() and (
        (old_redis / ".installed").read_bytes()
        == (ROOT / "requirements" / "redis-6.2.txt").read_bytes()
    )
    if stamp.is_file() and stamp.read_bytes() == inputs and old_redis_current:
        return
    reason = (
        "needs the .venv of scripts/test.sh (and its redis-6.2), up to date with "
        "pyproject.toml and the lock"
    )
    if redis_required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def shim_path(directory: Path, tools: tuple[str, ...], uid: int = 1000) -> str:
    """A PATH holding links to ``tools`` and an ``id`` that reports ``uid``."""
    directory.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run this test"
        (directory / tool).symlink_to(found)
    fake_id = directory / "id"
    fake_id.write_text(f"#!/bin/sh\necho {uid}\n")
    fake_id.chmod(0o755)
    return str(directory)


def run_script(args: list[str], path: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run a script of scripts/ with ``path`` as PATH and no CI variables of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_REDIS_") and k != "CI"}
    env.update(PATH=path, **extra_env)
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def test_make_demo_needs_neither_redis_nor_root(tmp_path: Path) -> None:
    """No redis-server, no apt-get, not root: the demo's set-up still gets to the demo."""
    path = shim_path(tmp_path / "bin", BASIC_TOOLS)
    done = run_script(["scripts/demo.sh", "--help"], path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: asgi-redis-demo" in done.stdout
    assert "apt-get" not in done.stderr


def test_make_test_without_root_skips_only_the_browser_test(tmp_path: Path) -> None:
    path = shim_path(tmp_path / "bin", BASIC_TOOLS + REDIS_TOOLS)
    done = run_script(["scripts/test.sh", "tests/test_browser.py", "-rs"], path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 skipped" in done.stdout, output
    assert "apt-get install -y --no-install-recommends chromium" in done.stdout, output
    assert "skipped tests/test_browser.py" in done.stderr, output


@pytest.mark.parametrize("variable", ["CI", "ASGI_REDIS_REQUIRE_REDIS"])
def test_make_test_under_ci_never_skips_the_browser_test(tmp_path: Path, variable: str) -> None:
    path = shim_path(tmp_path / "bin", BASIC_TOOLS + REDIS_TOOLS)
    done = run_script(["scripts/test.sh", "tests/test_browser.py"], path, **{variable: "1"})
    assert done.returncode != 0, done.stdout + done.stderr
    assert "missing: chromium" in done.stderr, done.stderr
    assert "==> pytest" not in done.stderr


def test_make_test_installs_chromium_without_recommended_packages(tmp_path: Path) -> None:
    """As root with apt-get, chromium is installed with --no-install-recommends."""
    path = shim_path(tmp_path / "bin", BASIC_TOOLS + REDIS_TOOLS, uid=0)
    calls = tmp_path / "apt-get-calls"
    fake_apt = tmp_path / "bin" / "apt-get"
    fake_apt.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')  # installs nothing
    fake_apt.chmod(0o755)
    done = run_script(["scripts/test.sh", "tests/test_browser.py"], path)
    assert "still missing after apt-get: chromium" in done.stderr, done.stderr
    assert calls.read_text().splitlines() == [
        "update -q",
        "install -y --no-install-recommends -q chromium",
    ]


def test_make_demo_ends_without_a_make_error_on_ctrl_c() -> None:
    """Ctrl-C (SIGINT to the terminal's process group) stops the served chat demo cleanly:
    the demo exits 0, so make prints no ``make: *** [...] Error 130``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # Not the caller's make variables: under `make test-matrix ARGS=...` they would reach the demo.
    drop = ("CI", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASGI_REDIS_") and k not in drop}
    make = subprocess.Popen(
        ["make", "demo", "ARGS="],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=answer_ctrl_c,
    )
    assert make.stdout is not None
    lines: list[str] = []
    try:
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = make.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        os.killpg(make.pid, signal.SIGINT)
        rest = make.stdout.read()
        make.wait(timeout=30)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        make.stdout.close()
    output = "".join(lines) + rest
    assert "Done: every process stopped" in rest, output
    assert "make: ***" not in output and "Error 130" not in output, output
