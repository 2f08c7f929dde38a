"""requirements/lock.txt pins everything ``make test`` installs, within pyproject.toml's ranges."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def locked_versions() -> dict[str, str]:
    """Package name -> pinned version, from the ``name==version`` lines of the lock."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#", "-")):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def declared_requirements() -> list[Requirement]:
    """The runtime dependencies and every extra's, as pyproject.toml states them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared.extend(extra)
    return [Requirement(text) for text in declared]


def test_every_declared_requirement_is_pinned_inside_its_range() -> None:
    pins = locked_versions()
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {requirement.name}=={pins[name]}, outside {requirement}"
        )


def test_lock_names_no_machine_paths_or_indexes() -> None:
    text = LOCK.read_text()
    for marker in ("--find-links", "--index-url", "--extra-index-url", "file://"):
        assert marker not in text, f"the lock carries {marker}: refresh it with make lock"


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
    reason="checks the .venv that make test installs (other environments test other versions)",
)
def test_make_test_venv_has_the_locked_versions() -> None:
    pins = locked_versions()
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        installed = metadata.version(requirement.name)
        locked = pins[name]
        assert installed == locked, f"{requirement.name}: {installed} installed, {locked} locked"
