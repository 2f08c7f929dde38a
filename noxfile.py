"""The supported version range, tested: ``make test-matrix`` runs these sessions with nox.

- ``locked``: exactly what ``make test`` runs (scripts/test.sh: ruff, mypy, pytest on the
  versions pinned in requirements/lock.txt).
- ``lowest``: the whole pytest suite on the lowest supported version of every runtime
  dependency (requirements/lowest.txt, pyproject.toml's lower bounds).
- ``newest``: the whole pytest suite on the newest releases pyproject.toml admits, no lock.

Sessions use the Python that runs nox (.venv's); ``make test-matrix ARGS="--force-python 3.10"``
runs them on another one found on PATH.

Run one with ``make test-matrix ARGS="-s lowest"``; arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["locked", "lowest", "newest"]
nox.options.reuse_existing_virtualenvs = True
# A session whose Python is missing fails instead of being skipped: a skip would look green.
nox.options.error_on_missing_interpreters = True

# Every extra the test suite imports (the dev extra's ruff and mypy run only in `locked`).
EXTRAS = ".[test,bench,cryptography,demo]"
# The bench extra pins channels_redis 4.3.0, which needs channels >= 4.2.2: not installable
# with channels 4.0, so `lowest` leaves it out.
LOWEST_EXTRAS = ".[test,cryptography,demo]"
# The benchmark CLI tests that run channels_redis itself (their ids name it);
# tests/test_channels_redis_suite.py only reads its sdist, so it runs everywhere.
NEEDS_CHANNELS_REDIS = "not (test_bench_cli and channels_redis)"
# As under make test: a test that needs a Redis server it cannot start fails, never skips.
ENV = {"ASGI_REDIS_REQUIRE_REDIS": "1"}


def pytest(session: nox.Session, *args: str) -> None:
    """Print the versions under test, then run pytest with ``args`` and the session's own."""
    session.run("python", "-m", "pip", "list", "--disable-pip-version-check")
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", *args, *session.posargs, env=ENV
    )


@nox.session(python=False)
def locked(session: nox.Session) -> None:
    """``make test``: .venv at the locked versions; ruff, mypy and pytest."""
    session.run("scripts/test.sh", *session.posargs, external=True)


@nox.session
def lowest(session: nox.Session) -> None:
    """The pytest suite on the lowest supported versions (requirements/lowest.txt)."""
    session.install("-c", "requirements/lowest.txt", "-e", LOWEST_EXTRAS)
    pytest(session, "-k", NEEDS_CHANNELS_REDIS)


@nox.session
def newest(session: nox.Session) -> None:
    """The pytest suite on the newest releases of everything (no lock, no constraints)."""
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", EXTRAS)
    pytest(session)
