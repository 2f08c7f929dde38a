"""The one place that turns message dicts into payload bytes and back.

``dumps`` serializes then encrypts (when keys are configured); ``loads`` decrypts then
deserializes. Serializers: ``"msgpack"`` (default, bytes stay bytes), ``"json"``, or any object
with ``dumps(dict) -> bytes`` and ``loads(bytes) -> dict``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, cast

import msgpack

from .crypto import Encryptor
from .errors import MessageTooLarge

DEFAULT_SERIALIZER = "msgpack"
# The default ``max_message_size``: 16 times the 1 MB that Channels' spec asks a layer to
# carry, and far below the 512 MB Redis accepts in one bulk string (``proto-max-bulk-len``);
# README's options table explains the choice.
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class Serializer(Protocol):
    """What a custom ``serializer`` object must provide."""

    def dumps(self, message: dict[str, Any]) -> bytes:
        """Turn a message dict into bytes."""

    def loads(self, payload: bytes) -> dict[str, Any]:
        """Turn bytes written by ``dumps`` back into a dict."""


class MsgpackSerializer:
    """msgpack with the bin type: bytes stay bytes, str stays str."""

    def dumps(self, message: dict[str, Any]) -> bytes:
        """Pack a dict; ValueError for one that could not be unpacked again.

        msgpack packs a tuple used as a dict key as an array, which no receiver can turn back
        into a key: refuse it here rather than lose the message on the other side. (Tuples as
        values come back as lists, as with channels_redis.)
        """
        packed: bytes = msgpack.packb(message, use_bin_type=True)
        try:
            self.loads(packed)
        except (TypeError, ValueError) as exc:
            hint = "use str, bytes or number keys"
            raise ValueError(f"it would not unpack again ({exc}); {hint}") from exc
        return packed

    def loads(self, payload: bytes) -> dict[str, Any]:
        """Unpack a dict."""
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


class JsonSerializer:
    """Compact UTF-8 JSON; values JSON cannot represent (bytes, sets, NaN) are refused."""

    def dumps(self, message: dict[str, Any]) -> bytes:
        """Encode a dict."""
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def loads(self, payload: bytes) -> dict[str, Any]:
        """Decode a dict."""
        return json.loads(payload.decode("utf-8"))  # type: ignore[no-any-return]


BUILTIN: dict[str, type[MsgpackSerializer] | type[JsonSerializer]] = {
    "msgpack": MsgpackSerializer,
    "json": JsonSerializer,
}


def parse_serializer(value: object) -> Serializer:
    """Validate the ``serializer`` option; TypeError for anything unusable."""
    if isinstance(value, str):
        if value not in BUILTIN:
            raise TypeError(
                f"serializer must be one of {', '.join(map(repr, BUILTIN))} or an object with "
                f"dumps() and loads(), got {value!r}"
            )
        return BUILTIN[value]()
    if not (callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None))):
        raise TypeError(
            f"serializer must be 'msgpack', 'json' or an object with callable dumps(dict) -> "
            f"bytes and loads(bytes) -> dict, got {value!r}"
        )
    return cast(Serializer, value)


class Codec:
    """Serializer plus optional encryption, shared by send, group_send and the receiver."""

    def __init__(
        self,
        serializer: Serializer,
        encryptor: Encryptor | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.serializer = serializer
        self.encryptor = encryptor
        self.max_message_bytes = max_message_bytes

    def dumps(self, message: object, target: str) -> bytes:
        """Serialize (then encrypt) a message dict, the payload every write carries.

        Raises:
            TypeError: not a dict, or not serializable; the message names ``target``.
            MessageTooLarge: the payload is above ``max_message_bytes``.
        """
        if not isinstance(message, dict):
            raise TypeError(f"message for {target} must be a dict, got {type(message).__name__}")
        try:
            data = self.serializer.dumps(message)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(f"message for {target} cannot be serialized: {exc}") from exc
        if not isinstance(data, bytes):
            raise TypeError(
                f"message for {target}: serializer.dumps returned {type(data).__name__}, not bytes"
            )
        payload = data if self.encryptor is None else self.encryptor.encrypt(data)
        self._check_size(payload, target)
        return payload

    def _check_size(self, payload: bytes, target: str) -> None:
        """MessageTooLarge naming ``target`` and the size when ``payload`` is over the limit."""
        if len(payload) <= self.max_message_bytes:
            return
        how = "serialized" if self.encryptor is None else "serialized and encrypted"
        raise MessageTooLarge(
            f"message for {target} is {len(payload):,} bytes {how}, above max_message_size="
            f"{self.max_message_bytes:,} bytes; nothing was written. Send less, or raise "
            f"max_message_size (Redis refuses more than its proto-max-bulk-len, 512 MB by "
            f"default)"
        )

    def loads(self, payload: bytes) -> dict[str, Any]:
        """Decrypt (when encrypting) then deserialize; raises on anything unreadable."""
        data = payload if self.encryptor is None else self.encryptor.decrypt(payload)
        message = self.serializer.loads(data)
        if not isinstance(message, dict):
            raise ValueError("payload is not a serialized dict")
        return message
