"""channels_redis's own behavioural tests, run against asgi_redis (issue 11, drop-in).

The test file is not kept here: it is taken from the channels_redis sdist at test time, put
in a temporary folder next to a stand-in ``channels_redis.core`` that exports asgi_redis's
layer, pointed at the test redis-server, and run by pytest in a subprocess. Their tests of
channels_redis internals are deselected (``INTERNALS``, also listed in
docs/migrating-from-channels_redis.md), and so are the tests of a rule asgi_redis states
differently (``OTHER_RULE``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

VERSION = "4.3.0"
SDIST_ROOT = f"channels_redis-{VERSION}"
THEIR_HOST = "redis://localhost:6379"  # the server their test file hard-codes
RUN_TIMEOUT_S = 900  # the whole subprocess; only stops a hung run, never a timing assertion

# Tests of channels_redis internals, by test name, with the reason each cannot apply.
INTERNALS = {
    "test_default_group_key_format": "reads _group_key(), their private group key format",
    "test_custom_group_key_format": "reads _group_key(), their private group key format",
    "test_receive_buffer_respects_capacity": (
        "fills receive_buffer, their private per-channel asyncio queues"
    ),
    "test_reject_bad_client_prefix": (
        "expects an AssertionError from their one-client-id-per-layer check; asgi_redis has "
        "one client id per event loop and lets any loop receive any process-local channel "
        "(their own test_double_receive needs that), so the receive just waits"
    ),
}

# Tests of a documented difference, by test name, with the rule that differs.
OTHER_RULE = {
    name: (
        "counts group copies to a process-local channel when group_send is called; here the "
        "receiving process checks capacity when it holds them (guarantee 3): a copy handed "
        "to a waiting receive frees its slot, so their fourth message may still arrive"
    )
    for name in ("test_group_send_capacity", "test_group_send_capacity_multiple_channels")
}
DESELECTED = {**INTERNALS, **OTHER_RULE}

SHIM_CORE = '''\
"""Stand-in for channels_redis.core: the names their tests import, from asgi_redis."""

from asgi_redis import ChannelFull, RedisChannelLayer

__all__ = ["ChannelFull", "RedisChannelLayer"]
'''

# Only where the async-timeout package is missing; Python 3.11+ has the same context manager.
SHIM_ASYNC_TIMEOUT = '''\
"""Stand-in for async-timeout: asyncio.timeout is the same context manager."""

from asyncio import timeout

__all__ = ["timeout"]
'''

CONFTEST = '''\
"""Point layers built without hosts at the test server; check the stand-in is in use."""

import os

import asgi_redis
import asgi_redis.config
import channels_redis.core

asgi_redis.config.DEFAULT_HOST = os.environ["ASGI_REDIS_TEST_URL"]


def pytest_configure(config):
    if channels_redis.core.RedisChannelLayer is not asgi_redis.RedisChannelLayer:
        raise RuntimeError("the real channels_redis was imported, not the stand-in")
'''

PYTEST_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = 120
"""


def download_sdist(into: Path) -> Path:
    """The channels_redis sdist, fetched with pip; fails under CI, skips elsewhere."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += [f"channels-redis=={VERSION}", "-d", str(into)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    found = sorted(into.glob(f"{SDIST_ROOT}.tar.gz"))
    if result.returncode or not found:
        reason = f"could not download the channels_redis {VERSION} sdist: {result.stderr[-800:]}"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found[0]


def extract_tests(sdist: Path, into: Path) -> None:
    """Copy ``tests/test_core.py`` (and a ``tests/conftest.py`` if there is one) to ``into``."""
    with tarfile.open(sdist) as archive:
        for name in ("test_core.py", "conftest.py"):
            try:
                member = archive.getmember(f"{SDIST_ROOT}/tests/{name}")
            except KeyError:
                if name == "test_core.py":
                    raise
                continue
            source = archive.extractfile(member)
            assert source is not None
            (into / name).write_bytes(source.read())


def prepare(into: Path, redis_url: str) -> None:
    """Point their hosts at ``redis_url`` and add the stand-in modules and our config."""
    test_file = into / "test_core.py"
    text = test_file.read_text()
    assert THEIR_HOST in text, "their test file no longer names the server we rewrite"
    test_file.write_text(text.replace(THEIR_HOST, redis_url))
    if (into / "conftest.py").exists():
        (into / "conftest.py").rename(into / "their_conftest.py")
        conftest = CONFTEST + "\nfrom their_conftest import *  # noqa: F403\n"
    else:
        conftest = CONFTEST
    (into / "conftest.py").write_text(conftest)
    (into / "channels_redis").mkdir()
    (into / "channels_redis" / "__init__.py").write_text("")
    (into / "channels_redis" / "core.py").write_text(SHIM_CORE)
    if importlib.util.find_spec("async_timeout") is None:
        (into / "async_timeout.py").write_text(SHIM_ASYNC_TIMEOUT)
    (into / "pytest.ini").write_text(PYTEST_INI)


def run_their_tests(folder: Path, redis_url: str) -> subprocess.CompletedProcess[str]:
    """pytest on their test file in a subprocess, internals deselected."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:django"]
    command += ["-q", "-rfEX", "--rootdir", str(folder), "-c", str(folder / "pytest.ini")]
    command += [f"--deselect=test_core.py::{name}" for name in DESELECTED]
    command.append("test_core.py")
    # Their folder first, so the stand-in shadows an installed channels_redis.
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "ASGI_REDIS_TEST_URL": redis_url}
    return subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


@pytest.mark.skipif(
    sys.version_info < (3, 11) and importlib.util.find_spec("async_timeout") is None,
    reason="their tests import async_timeout: pip install async-timeout on Python 3.10",
)
def test_channels_redis_core_tests_pass_on_asgi_redis(tmp_path: Path, redis_url: str) -> None:
    sdist = download_sdist(tmp_path / "sdist")
    folder = tmp_path / "their_tests"
    folder.mkdir()
    extract_tests(sdist, folder)
    prepare(folder, redis_url)
    result = run_their_tests(folder, redis_url)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    # Their file still has the tests we deselect by name (else the list has gone stale).
    assert f"{len(DESELECTED)} deselected" in result.stdout, report
    assert " passed" in result.stdout, report
