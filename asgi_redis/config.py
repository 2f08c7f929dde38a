"""Option parsing and validation: everything is checked before Redis is touched."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import codec, crypto, redis_options

DEFAULT_HOST = "redis://localhost:6379"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_HEARTBEAT_S = 5
# Entries a client queue may hold before group_send writes no more group entries to it.
DEFAULT_CLIENT_QUEUE_CAPACITY = 1000
SENTINEL_KEYS = ("sentinels", "master_name", "sentinel_kwargs")
# Keys that make no sense next to ``sentinels``: the sentinels say where the master is.
_NOT_WITH_SENTINELS = ("address", "host", "port", "path", "unix_socket_path")
_SENTINEL_SCHEMES = ("redis", "sentinel")


def _format_address(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class SentinelService:
    """A master found through Redis Sentinel: the sentinels to ask and the service's name."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    # Not in repr: it may hold the sentinels' password.
    sentinel_options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def label(self) -> str:
        """``sentinel://host:port[,host:port...]/master_name``, without any password."""
        addresses = ",".join(_format_address(host, port) for host, port in self.sentinels)
        return f"sentinel://{addresses}/{self.master_name}"


@dataclass(frozen=True)
class ClusterService:
    """A Redis Cluster, found through some of its nodes (the others are discovered)."""

    startup: tuple[tuple[str, int], ...]
    tls: bool = False

    def label(self) -> str:
        """``cluster://host:port[,host:port...]`` (``clusters://`` with TLS), no password."""
        addresses = ",".join(_format_address(host, port) for host, port in self.startup)
        return f"cluster{'s' if self.tls else ''}://{addresses}"


@dataclass(frozen=True)
class Host:
    """One Redis server: a URL for ``from_url`` or plain keyword options, plus extra options.

    With ``sentinel`` set, the server is the master that service's sentinels name, and
    ``options`` are the connection options for that master. With ``cluster`` set, the host is
    a whole Redis Cluster and ``options`` are the connection options of every node.
    """

    url: str | None
    options: Mapping[str, Any] = field(default_factory=dict)
    sentinel: SentinelService | None = None
    cluster: ClusterService | None = None

    def __repr__(self) -> str:
        # The label and the options' names only: the URL or an option may hold a password.
        return f"Host({self.label()!r}, options={sorted(self.options)!r})"

    def label(self) -> str:
        """The server's canonical address, its identity for sharding; never a password.

        ``redis://h``, ``redis://h:6379/0``, ``("h", 6379)`` and ``{"host": "h"}`` all give
        ``redis://h:6379/0``, so processes that spell one server differently shard alike.
        """
        if self.sentinel is not None:
            return self.sentinel.label()
        if self.cluster is not None:
            return self.cluster.label()
        return redis_options.identity(redis_options.effective_options(self.url, self.options))


@dataclass(frozen=True)
class Config:
    """The validated options of one layer."""

    hosts: tuple[Host, ...]
    prefix: str
    expiry_s: int
    group_expiry_s: int
    capacity: int
    capacity_rules: tuple[tuple[re.Pattern[str], int], ...]
    serializer: codec.Serializer = field(default_factory=codec.MsgpackSerializer)
    encryption_keys: tuple[str, ...] | None = field(default=None, repr=False)  # secrets
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    max_message_bytes: int = codec.DEFAULT_MAX_MESSAGE_BYTES
    client_queue_capacity: int = DEFAULT_CLIENT_QUEUE_CAPACITY

    def capacity_for(self, channel: str) -> int:
        """The capacity of ``channel``: the first matching rule, else the default."""
        for pattern, capacity in self.capacity_rules:
            if pattern.match(channel):
                return capacity
        return self.capacity


def _positive_int(name: str, value: object) -> int:
    """Accept a positive whole number (not a bool) or raise naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(f"{name} must be a whole number, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value!r}")
    return int(value)


def _positive_seconds(name: str, value: object) -> float:
    """Accept a finite number of seconds above 0 (not a bool) or raise naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return float(value)


def _parse_host(host: object) -> Host:
    """Turn one ``hosts`` item (URI, (host, port) or dict) into a Host."""
    if isinstance(host, str):
        if "://" not in host:
            raise ValueError(f"host {host!r} must be a URI such as 'redis://localhost:6379'")
        return Host(host)
    if isinstance(host, Sequence) and len(host) == 2:
        name, port = host
        if isinstance(name, str) and isinstance(port, int) and not isinstance(port, bool):
            return Host(f"redis://{name}:{port}")
    if isinstance(host, Mapping):
        options = dict(host)
        if any(key in options for key in SENTINEL_KEYS):
            return _parse_sentinel_host(options)
        if "cluster" in options:
            return _parse_cluster_host(options)
        if "address" not in options:
            return Host(None, options)
        address = _parse_host(options.pop("address"))
        return Host(address.url, options)
    raise TypeError(f"host {host!r} must be a URI string, a (host, port) pair or a dict")


def _parse_sentinel_host(options: dict[str, Any]) -> Host:
    """A channels_redis-style Sentinel dict; the keys left over are the master's options."""
    if "sentinels" not in options:
        raise TypeError("a Sentinel host needs 'sentinels': a list of (host, port) pairs")
    if "master_name" not in options:
        raise TypeError("a Sentinel host needs 'master_name': the name the sentinels monitor")
    clashing = sorted(key for key in _NOT_WITH_SENTINELS if key in options)
    if clashing:
        raise ValueError(
            f"a Sentinel host takes no {', '.join(map(repr, clashing))}: "
            "the sentinels name the master's address"
        )
    sentinels = _parse_sentinels(options.pop("sentinels"))
    master_name = options.pop("master_name")
    if not isinstance(master_name, str):
        raise TypeError(f"master_name must be a string, got {master_name!r}")
    if not master_name.strip():
        raise ValueError(f"master_name must be a non-empty string, got {master_name!r}")
    sentinel_kwargs = options.pop("sentinel_kwargs", None)
    if sentinel_kwargs is None:
        sentinel_kwargs = {}
    if not isinstance(sentinel_kwargs, Mapping):
        # Not echoed: a misplaced password would end up in logs.
        kind = type(sentinel_kwargs).__name__
        raise TypeError(f"sentinel_kwargs must be a dict or None, got a {kind}")
    service = SentinelService(sentinels, master_name, dict(sentinel_kwargs))
    return Host(None, options, service)


def _parse_cluster_host(options: dict[str, Any]) -> Host:
    """``{"cluster": [startup addresses], ...options}``; the options apply to every node.

    Addresses are URIs (``redis://`` or ``rediss://`` for TLS; credentials in the first one
    apply to all) or ``(host, port)`` pairs.
    """
    startup = options.pop("cluster")
    if isinstance(startup, str | bytes) or not isinstance(startup, Sequence) or not startup:
        raise TypeError(
            "cluster must be a non-empty list of node addresses such as 'redis://host:7000'"
        )
    clashing = sorted(key for key in _NOT_WITH_SENTINELS if key in options)
    if clashing:
        raise ValueError(
            f"a cluster host takes no {', '.join(map(repr, clashing))}: list the nodes in 'cluster'"
        )
    parsed = [_cluster_node(item, options) for item in startup]
    merged = parsed[0][1]
    if any(redis_options.uses_tls(node) != redis_options.uses_tls(merged) for _, node in parsed):
        raise ValueError("cluster addresses must all use redis:// or all rediss://")
    if merged.pop("db", 0) != 0:
        raise ValueError("Redis Cluster has only database 0: leave the /db out of the addresses")
    nodes = tuple(address for address, _ in parsed)
    tls = redis_options.uses_tls(merged)
    return Host(None, merged, cluster=ClusterService(nodes, tls))


def _cluster_node(item: object, options: dict[str, Any]) -> tuple[tuple[str, int], dict[str, Any]]:
    """One startup node: its (host, port), and its connection options without them."""
    url = _parse_host(item).url
    if url is None or url.startswith("unix://"):
        raise ValueError(f"cluster item {item!r} must be a redis:// or rediss:// address")
    node = redis_options.effective_options(url, options)
    return (str(node.pop("host", "localhost")), int(node.pop("port", 6379))), node


def _parse_sentinels(sentinels: object) -> tuple[tuple[str, int], ...]:
    """Validate ``sentinels``: a non-empty list of (host, port), "host:port" or URIs."""
    if isinstance(sentinels, str | bytes) or not isinstance(sentinels, Sequence):
        raise TypeError(
            f"sentinels must be a list of (host, port) pairs or 'host:port' strings, "
            f"got {sentinels!r}"
        )
    if not sentinels:
        raise ValueError("sentinels must list at least one sentinel")
    return tuple(_parse_sentinel(sentinel) for sentinel in sentinels)


def _parse_sentinel(sentinel: object) -> tuple[str, int]:
    """One item of ``sentinels`` as a (host, port) pair."""
    if isinstance(sentinel, str):
        return _parse_sentinel_string(sentinel)
    if isinstance(sentinel, Sequence) and not isinstance(sentinel, bytes) and len(sentinel) == 2:
        host, port = sentinel
        if isinstance(host, str) and host and isinstance(port, int):
            return host, _sentinel_port(sentinel, port)
    raise TypeError(
        f"sentinels item {sentinel!r} must be a (host, port) pair, 'host:port' "
        "or 'redis://host:port'"
    )


def _parse_sentinel_string(sentinel: str) -> tuple[str, int]:
    """``host:port`` or ``redis://host[:port]`` (port 26379 when a URI has none)."""
    is_uri = "://" in sentinel
    parts = urlsplit(sentinel if is_uri else f"//{sentinel}")
    if is_uri and parts.scheme not in _SENTINEL_SCHEMES:
        raise ValueError(
            f"sentinels item {sentinel!r}: the scheme must be redis:// or sentinel:// "
            "(for TLS to the sentinels pass sentinel_kwargs={'ssl': True})"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"sentinels item for {parts.hostname!r}: put the sentinels' credentials in "
            "sentinel_kwargs, not in the address"
        )
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1 or (port is None and not is_uri):
        raise ValueError(f"sentinels item {sentinel!r} must look like 'host:port'")
    return parts.hostname, _sentinel_port(sentinel, DEFAULT_SENTINEL_PORT if port is None else port)


def _sentinel_port(sentinel: object, port: int) -> int:
    """Check a sentinel's TCP port."""
    if isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"sentinels item {sentinel!r}: port must be 1-65535")
    return port


def _parse_hosts(hosts: object) -> tuple[Host, ...]:
    """Validate the ``hosts`` option."""
    if hosts is None:
        return (Host(DEFAULT_HOST),)
    if isinstance(hosts, str | Mapping):
        hosts = [hosts]
    if not isinstance(hosts, Sequence) or not hosts:
        raise TypeError(f"hosts must be a non-empty list, got {hosts!r}")
    if isinstance(hosts, tuple) and len(hosts) == 2 and isinstance(hosts[1], int):
        hosts = [hosts]
    parsed = tuple(_parse_host(host) for host in hosts)
    if len(parsed) > 1 and any(host.cluster is not None for host in parsed):
        raise ValueError(
            "a Redis Cluster must be the only item of hosts (the cluster spreads the keys itself)"
        )
    for host in parsed:
        _check_options(host)
    labels = [host.label() for host in parsed]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        # A server's label is its identity for sharding: two entries must not share one.
        raise ValueError(f"hosts lists the same server more than once: {', '.join(repeated)}")
    return parsed


def _check_options(host: Host) -> None:
    """Check a host's options with redis-py's own rules and against the layer's guarantees."""
    if host.sentinel is not None:
        redis_options.check_keys(host.options, sentinel=True)
        redis_options.check_sentinel_kwargs(host.sentinel.sentinel_options)
        redis_options.check_guarantees(host.options)
        return
    if host.cluster is not None:
        redis_options.check_keys({**host.options, "host": "x", "port": 1})
        redis_options.check_guarantees(host.options)
        return
    options = redis_options.effective_options(host.url, host.options)
    redis_options.check_keys(options)
    redis_options.check_guarantees(options)


def _parse_rules(rules: object) -> tuple[tuple[re.Pattern[str], int], ...]:
    """Compile ``channel_capacity``: str keys are globs, compiled patterns are regexes."""
    if rules is None:
        return ()
    if not isinstance(rules, Mapping):
        raise TypeError(f"channel_capacity must be a dict, got {rules!r}")
    compiled = []
    for key, value in rules.items():
        if isinstance(key, str):
            pattern = re.compile(fnmatch.translate(key))
        elif isinstance(key, re.Pattern):
            pattern = key
        else:
            raise TypeError(f"channel_capacity key {key!r} must be a glob string or a re.Pattern")
        compiled.append((pattern, _positive_int(f"channel_capacity[{key!r}]", value)))
    return tuple(compiled)


def normalize_prefix(prefix: str) -> str:
    """The key prefix a ``prefix`` option means: one ending in ``:`` (or the empty one).

    channels_redis's prefixes have no colon (default ``"asgi"``); appending one keeps a
    moved-over ``prefix="myapp"`` from writing keys like ``myappq:chan``, and means
    ``"myapp"`` and ``"myapp:"`` are the same layer.
    """
    return prefix if not prefix or prefix.endswith(":") else prefix + ":"


def parse(
    hosts: object = None,
    prefix: object = "asgi:",
    expiry: object = 60,
    group_expiry: object = 86400,
    capacity: object = 100,
    channel_capacity: object = None,
    symmetric_encryption_keys: object = None,
    serializer: object = codec.DEFAULT_SERIALIZER,
    heartbeat: object = DEFAULT_HEARTBEAT_S,
    max_message_size: object = codec.DEFAULT_MAX_MESSAGE_BYTES,
    client_queue_capacity: object = DEFAULT_CLIENT_QUEUE_CAPACITY,
) -> Config:
    """Validate the layer's options; raises TypeError/ValueError naming the bad one."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {prefix!r}")
    if not prefix.isascii() or any(ch.isspace() for ch in prefix):
        raise ValueError(f"prefix must be ASCII without spaces, got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise ValueError(
            f"prefix must not contain '{{' or '}}' (keys carry a Redis Cluster hash tag "
            f"right after the prefix), got {prefix!r}"
        )
    return Config(
        hosts=_parse_hosts(hosts),
        prefix=normalize_prefix(prefix),
        expiry_s=_positive_int("expiry", expiry),
        group_expiry_s=_positive_int("group_expiry", group_expiry),
        capacity=_positive_int("capacity", capacity),
        capacity_rules=_parse_rules(channel_capacity),
        serializer=codec.parse_serializer(serializer),
        encryption_keys=crypto.parse_keys(symmetric_encryption_keys),
        heartbeat_s=_positive_seconds("heartbeat", heartbeat),
        max_message_bytes=_positive_int("max_message_size", max_message_size),
        client_queue_capacity=_positive_int("client_queue_capacity", client_queue_capacity),
    )
