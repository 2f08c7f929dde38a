"""Message serialization: msgpack, bytes stay bytes."""

from __future__ import annotations

from typing import Any

import msgpack


def dumps(message: object, target: str) -> bytes:
    """Serialize a message dict; raises TypeError naming ``target`` when it cannot."""
    if not isinstance(message, dict):
        raise TypeError(f"message for {target} must be a dict, got {type(message).__name__}")
    try:
        return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"message for {target} cannot be serialized: {exc}") from exc


def loads(payload: bytes) -> dict[str, Any]:
    """Deserialize a payload written by ``dumps``."""
    message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(message, dict):
        raise ValueError("payload is not a serialized dict")
    return message
