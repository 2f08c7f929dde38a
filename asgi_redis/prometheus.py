"""A Prometheus collector for a layer's counters (needs the ``prometheus`` extra).

In a Django project, one line once the layer exists (for example in an ``AppConfig.ready``)::

    asgi_redis.prometheus.register(channels.layers.get_channel_layer())

Each counter of ``metrics.Counters`` becomes ``asgi_redis_<name>_total`` with a ``layer``
label (the layer's prefix unless given). Values are read when Prometheus scrapes, so the hot
path pays nothing beyond its integer increments.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .metrics import DESCRIPTIONS, Counters

try:
    from prometheus_client.core import REGISTRY, CounterMetricFamily
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector as _Base
    from prometheus_client.registry import CollectorRegistry
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "asgi_redis.prometheus needs prometheus_client: pip install 'asgi-redis-lua[prometheus]'"
    ) from exc

METRIC_PREFIX = "asgi_redis_"


class HasCounters(Protocol):
    """Anything with a layer's counters (``RedisChannelLayer`` has them)."""

    counters: Counters
    prefix: str


class Collector(_Base):
    """Exposes one or more layers' counters to a ``prometheus_client`` registry.

    Args:
        layers: the layers to expose; each is labelled with its prefix.
        labels: optional ``layer`` label values, one per layer, instead of the prefixes.
    """

    def __init__(self, layers: list[HasCounters], labels: list[str] | None = None) -> None:
        if labels is not None and len(labels) != len(layers):
            raise ValueError("give one label per layer")
        self._layers = list(layers)
        self._labels = labels or [layer.prefix for layer in layers]

    def collect(self) -> Iterator[Metric]:
        """One counter family per counter, one sample per layer."""
        snapshots = [layer.counters.snapshot() for layer in self._layers]
        for name, description in DESCRIPTIONS.items():
            family = CounterMetricFamily(METRIC_PREFIX + name, description, labels=["layer"])
            for label, snapshot in zip(self._labels, snapshots, strict=True):
                family.add_metric([label], snapshot[name])
            yield family


def register(
    layer: HasCounters, *, label: str | None = None, registry: CollectorRegistry | None = None
) -> Collector:
    """Expose ``layer``'s counters on ``registry`` (the default one unless given).

    Returns:
        The registered collector (``registry.unregister(collector)`` removes it).

    Raises:
        ValueError: the registry already has these metric names (register each layer once,
            or one ``Collector`` for several layers with distinct labels).
    """
    collector = Collector([layer], None if label is None else [label])
    (registry or REGISTRY).register(collector)
    return collector
