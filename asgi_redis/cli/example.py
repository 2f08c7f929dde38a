"""What both demos share, importable without the chat's packages (websockets, daphne).

The chat example lives only in a source checkout: wheels do not ship examples/.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "chat"


class DemoError(Exception):
    """The demo could not run: a message for the user, printed without a traceback."""


def example_available() -> bool:
    """Whether the example project is here (a source checkout, not an installed wheel)."""
    return (EXAMPLE_DIR / "manage.py").is_file()
