"""max_message_size: a message too large for Redis fails at once, naming itself, writing nothing."""

from __future__ import annotations

import subprocess
import sys

import channels.exceptions
import msgpack
import pytest

from asgi_redis import MessageTooLarge, RedisChannelLayer
from asgi_redis.codec import DEFAULT_MAX_MESSAGE_BYTES
from tests.layer_helpers import keys_with_prefix, make_layer, receive_within

LIMIT_BYTES = 1000
KEY = "k" * 32


def test_the_default_is_16_mib_far_below_redis_512_mb_limit() -> None:
    layer = RedisChannelLayer()
    assert layer.config.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 16 * 1024 * 1024


def test_message_too_large_is_channels_error_and_a_value_error() -> None:
    assert issubclass(MessageTooLarge, channels.exceptions.MessageTooLarge)
    assert issubclass(MessageTooLarge, ValueError)


def test_message_too_large_without_channels_installed() -> None:
    hide_channels = (
        "import sys; sys.modules['channels'] = None; sys.modules['channels.exceptions'] = None; "
        "from asgi_redis import MessageTooLarge; "
        "assert MessageTooLarge.__mro__[2] is ValueError, MessageTooLarge.__mro__"
    )
    subprocess.run([sys.executable, "-c", hide_channels], check=True, timeout=30)


@pytest.mark.parametrize(
    ("value", "error"),
    [("big", TypeError), (True, TypeError), (1.5, TypeError), (0, ValueError), (-5, ValueError)],
)
def test_the_option_is_checked_and_named(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_message_size"):
        RedisChannelLayer(max_message_size=value)


async def test_send_above_the_limit_names_the_channel_and_writes_nothing(redis_url: str) -> None:
    async with make_layer(redis_url, max_message_size=LIMIT_BYTES) as layer:
        message = {"type": "x", "data": b"z" * LIMIT_BYTES}
        with pytest.raises(MessageTooLarge) as raised:
            await layer.send("big.one", message)
        size = len(msgpack.packb(message, use_bin_type=True))
        assert str(raised.value).startswith(
            f"message for channel 'big.one' is {size:,} bytes serialized, "
            "above max_message_size=1,000 bytes"
        )
        assert keys_with_prefix(redis_url, layer.prefix) == set()


async def test_group_send_above_the_limit_names_the_group_and_writes_nothing(
    redis_url: str,
) -> None:
    async with make_layer(redis_url, max_message_size=LIMIT_BYTES) as layer:
        await layer.group_add("crowd", "member.one")
        written = keys_with_prefix(redis_url, layer.prefix)
        with pytest.raises(MessageTooLarge, match="group 'crowd'"):
            await layer.group_send("crowd", {"type": "x", "data": b"z" * LIMIT_BYTES})
        assert keys_with_prefix(redis_url, layer.prefix) == written  # no queue was created


async def test_the_limit_counts_the_encrypted_bytes(redis_url: str) -> None:
    """Encryption adds a header and a tag: a message that fits plain may not fit encrypted."""
    plain = {"type": "x", "data": b"z" * (LIMIT_BYTES - 30)}
    async with make_layer(redis_url, max_message_size=LIMIT_BYTES) as layer:
        await layer.send("fits", plain)
        assert await receive_within(layer, "fits") == plain
    async with make_layer(
        redis_url, max_message_size=LIMIT_BYTES, symmetric_encryption_keys=[KEY]
    ) as layer:
        with pytest.raises(MessageTooLarge, match="serialized and encrypted"):
            await layer.send("fits", plain)
