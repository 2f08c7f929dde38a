"""The README's Quick start script runs as written (only the Redis URL is changed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from asgi_redis import RedisChannelLayer

README = Path(__file__).resolve().parents[1] / "README.md"
README_URL = "redis://localhost:6379"

pytestmark = pytest.mark.timeout(60)


def quick_start_script() -> str:
    """The Python code block of the Quick start section that runs on its own."""
    text = README.read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (script,) = [block for block in blocks if "asyncio.run(" in block]
    return script


async def test_quick_start_script_runs_against_redis(redis_url: str, tmp_path: Path) -> None:
    script = quick_start_script()
    assert README_URL in script
    path = tmp_path / "quick_start.py"
    path.write_text(script.replace(README_URL, redis_url))
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "{'type': 'chat.message', 'text': 'hello'}" in done.stdout, done.stdout
    async with RedisChannelLayer(hosts=[redis_url]) as layer:
        stats = await layer.global_statistics()
    assert (stats["groups"], stats["memberships"]) == (0, 0)  # it left no lobby membership


def test_quick_start_says_how_to_get_a_redis() -> None:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    for way in ("docker run", "apt-get install -y redis-server", "redis-server --daemonize yes"):
        assert way in section
    assert "`make demo` needs none of them" in section


def test_readme_says_how_to_install_from_a_clone() -> None:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "install from a clone" in section
