"""Which server holds a channel: rendezvous hashing over the hosts (pure functions, no I/O).

Every host scores every key; the highest score wins. Adding a host moves only the keys the
new host now wins (about 1/N of them), and removing one moves only the keys it held.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache


def _score(label: str, key: str) -> int:
    """A stable 64-bit score of ``key`` on the host named ``label``."""
    digest = hashlib.blake2b(f"{label}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@lru_cache(maxsize=65536)
def shard_for(labels: tuple[str, ...], key: str) -> int:
    """The index in ``labels`` of the host that holds ``key``."""
    if len(labels) == 1:
        return 0
    return max(range(len(labels)), key=lambda index: _score(labels[index], key))
