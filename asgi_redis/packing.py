"""The bytes of our commands, packed by hiredis in one call per command when it is installed.

redis-py's connections encode every argument in Python (a chain of type checks each) before
they hand the command to hiredis: about 6 us per script call, against 1 us for hiredis alone.
Our commands' arguments are str (ASCII names and keys), bytes and int only, which hiredis
encodes to the same bytes (``tests/test_packing.py`` compares the two). Without hiredis the
connection packs them as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis is optional: redis-py packs in Python then
    _hiredis_pack = None

__all__ = ["pack"]


class Packer(Protocol):
    """What is used of a redis-py connection, sync or asyncio."""

    def pack_commands(self, commands: Any) -> list[bytes]: ...


def pack(connection: Packer, commands: Sequence[Sequence[Any]]) -> list[bytes]:
    """``commands`` as bytes to write on ``connection``, one command after the other."""
    if _hiredis_pack is None:
        return connection.pack_commands(commands)
    return [_hiredis_pack(tuple(command)) for command in commands]  # same tuple if one
