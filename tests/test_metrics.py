"""The per-layer counters (metrics.py) and their place in global_statistics()."""

from __future__ import annotations

import pytest

from asgi_redis import ChannelFull, keys
from asgi_redis.buffers import Buffers, Item, now_ms
from asgi_redis.config import Host
from asgi_redis.connections import Connections, LoopHook
from asgi_redis.metrics import Counters
from asgi_redis.receiver import Receiver
from asgi_redis.routes import ServerRoute
from tests.layer_helpers import make_layer, receive_within, sync_client

ZERO = {
    "sent": 0,
    "delivered": 0,
    "channel_full": 0,
    "expired": 0,
    "dropped": 0,
    "lost_at_close": 0,
    "rejoins": 0,
}


async def test_send_receive_full_and_group_send_move_the_counters(redis_url: str) -> None:
    async with make_layer(redis_url, capacity=2) as layer:
        assert layer.counters.snapshot() == ZERO
        await layer.send("jobs", {"n": 1})
        await layer.send("jobs", {"n": 2})
        with pytest.raises(ChannelFull):
            await layer.send("jobs", {"n": 3})
        assert await receive_within(layer, "jobs") == {"n": 1}
        local = await layer.new_channel()
        await layer.group_add("room", local)
        await layer.group_add("room", "jobs")  # holds one message: room for one more
        await layer.group_send("room", {"n": 4})
        await layer.group_send("room", {"n": 5})  # "jobs" is full now
        assert layer.counters.snapshot() == {
            "sent": 5,
            "delivered": 1,
            "channel_full": 2,
            "expired": 0,
            "dropped": 0,
            "lost_at_close": 0,
            "rejoins": 0,
        }
        stats = await layer.global_statistics()
        assert stats["counters"] == layer.counters.snapshot()


async def test_a_malformed_entry_counts_as_dropped(redis_url: str) -> None:
    async with make_layer(redis_url) as layer:
        channel = await layer.new_channel()
        with sync_client(redis_url) as client:
            client.rpush(keys.queue_key("asgi:", channel), b"garbage that is no entry")
        await layer.send(channel, {"type": "after"})
        assert await receive_within(layer, channel) == {"type": "after"}
        assert layer.counters.dropped == 1
        assert layer.counters.delivered == 1


def test_buffered_messages_that_expire_are_counted() -> None:
    counters = Counters()
    buffers = Buffers(lambda item: None, counters)
    past_ms, future_ms = now_ms() - 1, now_ms() + 60_000
    buffers.add("a", Item(past_ms, "", b"x", keys.queue_key("asgi:", "a")))
    buffers.add("a", Item(future_ms, "", b"y", keys.queue_key("asgi:", "a")))
    buffers.add("b", Item(past_ms, "", b"z", keys.queue_key("asgi:", "b")))
    taken = buffers.take("a")
    assert taken is not None and taken.payload == b"y"
    assert counters.expired == 1
    buffers.drop_expired()
    assert counters.expired == 2


async def close_nothing() -> None:
    """Connections' loop-close hook, unused here (no client is made)."""


def test_receiver_counts_expired_and_undecodable_entries() -> None:
    counters = Counters()
    connections = Connections(Host("redis://localhost:6379"), LoopHook(close_nothing))
    route = ServerRoute(connections, "test")
    receiver = Receiver(route, "asgi:", "client", 60, counters=counters)
    queue = keys.queue_key("asgi:", "jobs")
    receiver._dispatch(queue, keys.make_entry(now_ms() - 1, "", b"old"))
    assert counters.expired == 1
    receiver._buffers.add("jobs", Item(now_ms() + 60_000, "", b"\xc1 not msgpack", queue))
    assert receiver.take_any(["jobs"]) is None
    assert (counters.dropped, counters.delivered) == (1, 0)


def test_the_prometheus_collector_exposes_the_counters(redis_url: str) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from asgi_redis import prometheus

    layer = make_layer(redis_url, prefix="shop:")
    layer.counters.sent = 7
    layer.counters.expired = 2
    registry = prometheus_client.CollectorRegistry()
    prometheus.register(layer, registry=registry)
    text = prometheus_client.generate_latest(registry).decode()
    assert 'asgi_redis_sent_total{layer="shop:"} 7.0' in text
    assert 'asgi_redis_expired_total{layer="shop:"} 2.0' in text
    for name in ("delivered", "channel_full", "dropped"):
        assert f'asgi_redis_{name}_total{{layer="shop:"}} 0.0' in text


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    monkeypatch.delitem(sys.modules, "asgi_redis.prometheus", raising=False)
    with pytest.raises(ImportError, match=r"asgi-redis-lua\[prometheus\]"):
        import asgi_redis.prometheus  # noqa: F401
