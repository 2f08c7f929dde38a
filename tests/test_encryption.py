"""Symmetric encryption: nothing readable in Redis, key rotation, tampering, bad options.

Every layer test runs against the real redis-server of the session (``redis_url``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import redis

from asgi_redis import RedisChannelLayer, crypto, keys
from tests.layer_helpers import make_layer

OLD = "old-secret-" + "o" * 40
NEW = "new-secret-" + "n" * 40
OTHER = "other-secret-" + "x" * 40
MARKER = "MARKER-7d1f0c"
RECEIVE_TIMEOUT_S = 10.0
ROOT = Path(__file__).resolve().parent.parent
LOGGER = "asgi_redis.receiver"


async def receive(layer: RedisChannelLayer, channel: str) -> dict[str, Any]:
    """Receive with a bound so that a broken layer fails the test instead of hanging."""
    return await asyncio.wait_for(layer.receive(channel), RECEIVE_TIMEOUT_S)


def everything_in_redis(url: str) -> bytes:
    """Every key name and every stored value on the server, concatenated."""
    client = redis.Redis.from_url(url)
    parts: list[bytes] = []
    try:
        for key in client.scan_iter(count=500):
            parts.append(key)
            kind = client.type(key)
            if kind == b"list":
                parts += client.lrange(key, 0, -1)
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind == b"zset":
                parts += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"set":
                parts += list(client.smembers(key))
            elif kind == b"string":
                parts.append(client.get(key) or b"")
            else:
                raise AssertionError(f"unexpected key type {kind!r} of {key!r}")
    finally:
        client.close()
    return b"\n".join(parts)


async def fill(layer: RedisChannelLayer) -> tuple[str, list[str]]:
    """Send and group_send messages carrying MARKER; return (local channel, members)."""
    local = await layer.new_channel()
    members = ["enc.member.a", "enc.member.b", local]
    for member in members:
        await layer.group_add("enc-group", member)
    message = {"type": "secret", "text": MARKER, MARKER: MARKER.encode()}
    await layer.send("enc.named", message)
    await layer.send(local, message)
    await layer.group_send("enc-group", message)
    return local, members


async def test_marker_never_appears_in_redis(redis_url: str) -> None:
    async with make_layer(redis_url, symmetric_encryption_keys=[NEW]) as layer:
        local, members = await fill(layer)
        stored = everything_in_redis(redis_url)
        assert stored  # the queues and the group really are there
        assert MARKER.encode() not in stored
        expected = {"type": "secret", "text": MARKER, MARKER: MARKER.encode()}
        assert await receive(layer, "enc.named") == expected
        assert await receive(layer, local) == expected  # from send
        assert await receive(layer, local) == expected  # from group_send
        for member in members[:2]:
            assert await receive(layer, member) == expected


async def test_marker_is_visible_without_encryption(redis_url: str) -> None:
    # The control for the test above: the scan does find the marker in plain messages.
    async with make_layer(redis_url) as layer:
        await fill(layer)
        assert MARKER.encode() in everything_in_redis(redis_url)


async def test_new_and_old_keys_read_what_old_key_wrote(layer_hosts: list[Any]) -> None:
    async with (
        make_layer(layer_hosts, symmetric_encryption_keys=[OLD]) as old,
        make_layer(layer_hosts, symmetric_encryption_keys=[NEW, OLD]) as rotated,
    ):
        await old.send("rotate.named", {"type": "from.old", "n": 1})
        await old.group_add("rotate-group", "rotate.member")
        await old.group_send("rotate-group", {"type": "from.old", "n": 2})
        assert await receive(rotated, "rotate.named") == {"type": "from.old", "n": 1}
        assert await receive(rotated, "rotate.member") == {"type": "from.old", "n": 2}
        # And the rotated layer writes with the new key, which it reads too.
        await rotated.send("rotate.named", {"type": "from.new"})
        assert await receive(rotated, "rotate.named") == {"type": "from.new"}


async def test_old_key_cannot_read_new_only_messages(
    layer_hosts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with (
        make_layer(layer_hosts, symmetric_encryption_keys=[NEW, OLD]) as rotated,
        make_layer(layer_hosts, symmetric_encryption_keys=[OLD]) as old,
    ):
        await rotated.send("rotate.drop", {"type": "unreadable", "text": MARKER})
        await old.send("rotate.drop", {"type": "readable"})
        assert await receive(old, "rotate.drop") == {"type": "readable"}
        assert old.dropped_undecodable == 1
        assert rotated.dropped_undecodable == 0
    assert_one_drop_logged(caplog, "rotate.drop")


def assert_one_drop_logged(caplog: pytest.LogCaptureFixture, channel: str) -> None:
    """Exactly one drop warning, naming the channel and neither the payload nor a key."""
    drops = [r for r in caplog.records if r.name == LOGGER and "Dropped" in r.getMessage()]
    assert len(drops) == 1, [r.getMessage() for r in caplog.records]
    text = drops[0].getMessage()
    assert drops[0].levelno == logging.WARNING
    assert channel in text
    for secret in (MARKER, OLD, NEW, OTHER):
        assert secret not in text


async def test_wrong_key_cannot_read(
    layer_hosts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with (
        make_layer(layer_hosts, symmetric_encryption_keys=[NEW]) as writer,
        make_layer(layer_hosts, symmetric_encryption_keys=[OTHER]) as reader,
    ):
        await writer.send("wrong.key", {"type": "secret", "text": MARKER})
        await writer.send("wrong.key", {"type": "secret", "text": MARKER})
        receiving = asyncio.ensure_future(reader.receive("wrong.key"))
        done, _ = await asyncio.wait([receiving], timeout=0.5)
        assert not done  # both dropped: nothing to deliver
        await reader.send("wrong.key", {"type": "own"})
        assert await asyncio.wait_for(receiving, RECEIVE_TIMEOUT_S) == {"type": "own"}
        assert reader.dropped_undecodable == 2


async def test_plain_and_encrypted_layers_do_not_read_each_other(layer_hosts: list[Any]) -> None:
    async with (
        make_layer(layer_hosts) as plain,
        make_layer(layer_hosts, symmetric_encryption_keys=[NEW]) as encrypted,
    ):
        await plain.send("mixed", {"type": "plain"})
        await encrypted.send("mixed", {"type": "encrypted.ok"})
        assert await receive(encrypted, "mixed") == {"type": "encrypted.ok"}
        assert encrypted.dropped_undecodable == 1
        await encrypted.send("mixed", {"type": "encrypted"})
        await plain.send("mixed", {"type": "plain.ok"})
        assert await receive(plain, "mixed") == {"type": "plain.ok"}
        assert plain.dropped_undecodable == 1


@pytest.mark.parametrize("channel", ["tamper.named", "specific.local"])
async def test_flipped_byte_drops_only_that_message(
    redis_url: str, caplog: pytest.LogCaptureFixture, channel: str
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with make_layer(redis_url, symmetric_encryption_keys=[NEW]) as layer:
        if channel.startswith("specific."):
            channel = await layer.new_channel()
        await layer.send(channel, {"type": "first", "text": MARKER})
        await layer.send(channel, {"type": "second"})
        client = redis.Redis.from_url(redis_url)
        try:
            queue = keys.queue_key(layer.prefix, channel)
            entry = client.lindex(queue, 0)
            assert entry is not None
            middle = len(entry) - 20  # inside the ciphertext, past the header and nonce
            tampered = entry[:middle] + bytes([entry[middle] ^ 0x01]) + entry[middle + 1 :]
            client.lset(queue, 0, tampered)
        finally:
            client.close()
        assert await receive(layer, channel) == {"type": "second"}
        assert layer.dropped_undecodable == 1
        # The reader is still alive: later messages keep arriving.
        await layer.send(channel, {"type": "third"})
        assert await receive(layer, channel) == {"type": "third"}
    assert_one_drop_logged(caplog, channel)


async def test_garbage_payload_is_dropped(redis_url: str) -> None:
    async with make_layer(redis_url, symmetric_encryption_keys=[NEW]) as layer:
        client = redis.Redis.from_url(redis_url)
        try:
            queue = keys.queue_key(layer.prefix, "garbage")
            deadline = int((__import__("time").time() + 60) * 1000)
            for payload in (b"", b"\x01", b"\x01" + b"\x00" * 40, b"not encrypted at all"):
                client.rpush(queue, keys.make_entry(deadline, "", payload))
        finally:
            client.close()
        await layer.send("garbage", {"type": "good"})
        assert await receive(layer, "garbage") == {"type": "good"}
        assert layer.dropped_undecodable == 4


async def test_dropped_counter_survives_close_and_other_loops(layer_hosts: list[Any]) -> None:
    layer = make_layer(layer_hosts, symmetric_encryption_keys=[NEW])
    writer = make_layer(layer_hosts, symmetric_encryption_keys=[OTHER])
    async with writer:
        await writer.send("count.drops", {"type": "unreadable"})
    await layer.send("count.drops", {"type": "good"})
    assert await receive(layer, "count.drops") == {"type": "good"}
    await layer.close()
    assert layer.dropped_undecodable == 1


async def test_rotation_across_processes(redis_url: str) -> None:
    # A child process that only knows the old key sends; this one holds [new, old].
    code = (
        "import asyncio, os\n"
        "from asgi_redis import RedisChannelLayer\n"
        "async def main():\n"
        "    layer = RedisChannelLayer(hosts=[os.environ['URL']],\n"
        "                              symmetric_encryption_keys=[os.environ['KEY']])\n"
        "    async with layer:\n"
        "        await layer.send('rotate.process', {'type': 'child', 'text': 'hi'})\n"
        "        await layer.group_add('rotate-procs', 'rotate.process.member')\n"
        "        await layer.group_send('rotate-procs', {'type': 'child.group'})\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "URL": redis_url, "KEY": OLD}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert MARKER.encode() not in everything_in_redis(redis_url)
    async with make_layer(redis_url, symmetric_encryption_keys=[NEW, OLD]) as layer:
        assert await receive(layer, "rotate.process") == {"type": "child", "text": "hi"}
        assert await receive(layer, "rotate.process.member") == {"type": "child.group"}
    async with make_layer(redis_url, symmetric_encryption_keys=[NEW]) as new_only:
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stderr.decode()
        await new_only.send("rotate.process", {"type": "parent"})
        assert await receive(new_only, "rotate.process") == {"type": "parent"}
        assert new_only.dropped_undecodable == 1


async def test_encrypts_once_per_send_and_group_send(
    layer_hosts: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = crypto.Encryptor.encrypt

    def counting(self: crypto.Encryptor, data: bytes) -> bytes:
        calls.append(len(data))
        return original(self, data)

    monkeypatch.setattr(crypto.Encryptor, "encrypt", counting)
    async with make_layer(layer_hosts, symmetric_encryption_keys=[NEW]) as layer:
        for index in range(50):
            await layer.group_add("once", f"once.member.{index}")
        await layer.group_send("once", {"type": "fan.out"})
        assert len(calls) == 1
        await layer.send("once.member.0", {"type": "direct"})
        assert len(calls) == 2
        assert await receive(layer, "once.member.49") == {"type": "fan.out"}


# -- the envelope ----------------------------------------------------------------------


def test_envelope_layout_and_fresh_nonces() -> None:
    encryptor = crypto.Encryptor((NEW, OLD))
    first, second = encryptor.encrypt(b"hello"), encryptor.encrypt(b"hello")
    assert len(first) == 1 + 4 + 12 + len(b"hello") + 16
    assert first[:1] == crypto.VERSION
    import hashlib

    derived = hashlib.sha256(NEW.encode()).digest()
    assert first[1:5] == hashlib.sha256(b"asgi_redis key id" + derived).digest()[:4]
    assert first[5:17] != second[5:17]  # a random nonce per message
    assert first != second
    assert encryptor.decrypt(first) == encryptor.decrypt(second) == b"hello"


def test_decrypt_rejects_unknown_key_id_and_bad_version() -> None:
    encryptor = crypto.Encryptor((NEW,))
    envelope = encryptor.encrypt(b"data")
    with pytest.raises(crypto.DecryptionError, match="key"):
        crypto.Encryptor((OTHER,)).decrypt(envelope)
    with pytest.raises(crypto.DecryptionError):
        encryptor.decrypt(b"\x02" + envelope[1:])
    with pytest.raises(crypto.DecryptionError):
        encryptor.decrypt(envelope[:-1] + bytes([envelope[-1] ^ 0x80]))


# -- options -----------------------------------------------------------------------------


def test_short_key_warns() -> None:
    with pytest.warns(UserWarning, match=r"symmetric_encryption_keys\[1\] is shorter than 32"):
        RedisChannelLayer(symmetric_encryption_keys=[NEW, "short"])


def test_long_keys_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RedisChannelLayer(symmetric_encryption_keys=["k" * 32, NEW])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([], "must not be empty"),
        (NEW, "must be a list of strings, got str"),
        ({"key": NEW}, "must be a list of strings, got dict"),
        ([NEW.encode()], r"symmetric_encryption_keys\[0\] must be a string, got bytes"),
        ([NEW, 12345], r"symmetric_encryption_keys\[1\] must be a string, got int"),
    ],
)
def test_bad_keys_raise_type_error(value: object, problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        RedisChannelLayer(symmetric_encryption_keys=value)


def test_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes that import raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ImportError, match=r'pip install "asgi-redis-lua\[cryptography\]"'):
        RedisChannelLayer(symmetric_encryption_keys=[NEW])
    RedisChannelLayer()  # without keys the package is not needed
