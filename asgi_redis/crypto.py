"""Symmetric encryption of payloads: AES-256-GCM with key rotation and a key id.

Envelope (all binary)::

    VERSION (1 byte, 0x01) | KEY_ID (4) | NONCE (12) | CIPHERTEXT + TAG (16)

Each configured key string is passed through SHA-256 to make a 32-byte AES key. The first key
encrypts; every key decrypts. ``KEY_ID`` is the first 4 bytes of
SHA-256(b"asgi_redis key id" + key), so decryption picks its key without trying them all.
The AESGCM class comes from the optional ``cryptography`` package.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable
from typing import Any

VERSION = b"\x01"
KEY_ID_LEN = 4
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = len(VERSION) + KEY_ID_LEN + NONCE_LEN
MIN_KEY_CHARS = 32
KEY_ID_CONTEXT = b"asgi_redis key id"
INSTALL_HINT = 'pip install "asgi-redis-lua[cryptography]"'


class DecryptionError(ValueError):
    """A payload that is not an envelope this layer can open (never names key or payload)."""


def _aesgcm_class() -> Callable[[bytes], Any]:
    """The AESGCM class, or ImportError naming the extra to install."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as exc:
        raise ImportError(
            f"symmetric_encryption_keys needs the cryptography package: {INSTALL_HINT}"
        ) from exc
    return AESGCM


def parse_keys(value: object) -> tuple[str, ...] | None:
    """Validate ``symmetric_encryption_keys``: None, or a non-empty list of strings.

    Raises TypeError naming the problem; warns (UserWarning) about keys shorter than
    32 characters, which are easier to guess.
    """
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise TypeError(
            f"symmetric_encryption_keys must be a list of strings, got {type(value).__name__}"
        )
    if not value:
        raise TypeError("symmetric_encryption_keys must not be empty (omit it to disable)")
    for index, key in enumerate(value):
        if not isinstance(key, str):
            raise TypeError(
                f"symmetric_encryption_keys[{index}] must be a string, got {type(key).__name__}"
            )
        if len(key) < MIN_KEY_CHARS:
            warnings.warn(
                f"symmetric_encryption_keys[{index}] is shorter than {MIN_KEY_CHARS} "
                "characters; use a long random secret",
                UserWarning,
                stacklevel=4,
            )
    return tuple(value)


def key_id(key: bytes) -> bytes:
    """The 4-byte id written into envelopes made with ``key`` (a derived AES key)."""
    return hashlib.sha256(KEY_ID_CONTEXT + key).digest()[:KEY_ID_LEN]


class Encryptor:
    """Encrypts with the first key, decrypts with whichever key the envelope names."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        aesgcm = _aesgcm_class()
        derived = [hashlib.sha256(key.encode("utf-8")).digest() for key in keys]
        self._ciphers = {key_id(key): aesgcm(key) for key in reversed(derived)}
        self._encrypt_id = key_id(derived[0])
        self._encrypt_cipher = self._ciphers[self._encrypt_id]

    def encrypt(self, data: bytes) -> bytes:
        """Seal ``data`` in an envelope with a fresh random nonce."""
        nonce = os.urandom(NONCE_LEN)
        sealed: bytes = self._encrypt_cipher.encrypt(nonce, data, None)
        return VERSION + self._encrypt_id + nonce + sealed

    def decrypt(self, envelope: bytes) -> bytes:
        """Open an envelope; raises DecryptionError when it cannot be authenticated."""
        if len(envelope) < HEADER_LEN + TAG_LEN or envelope[:1] != VERSION:
            raise DecryptionError("not an encrypted envelope")
        cipher = self._ciphers.get(envelope[1 : 1 + KEY_ID_LEN])
        if cipher is None:
            raise DecryptionError("encrypted with a key this layer does not have")
        nonce = envelope[1 + KEY_ID_LEN : HEADER_LEN]
        try:
            data: bytes = cipher.decrypt(nonce, envelope[HEADER_LEN:], None)
        except Exception:  # cryptography's InvalidTag: tampered bytes or a wrong key
            raise DecryptionError("payload failed authentication") from None
        return data
