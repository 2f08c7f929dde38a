"""Option parsing and validation: everything is checked before Redis is touched."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import codec, crypto

DEFAULT_HOST = "redis://localhost:6379"


@dataclass(frozen=True)
class Host:
    """One Redis server: a URL for ``from_url`` or plain keyword options, plus extra options."""

    url: str | None
    options: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """The server's address for display, without any password."""
        if self.url is None:
            return f"{self.options.get('host', 'localhost')}:{self.options.get('port', 6379)}"
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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
    encryption_keys: tuple[str, ...] | None = None

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
        if "address" not in options:
            return Host(None, options)
        address = _parse_host(options.pop("address"))
        return Host(address.url, options)
    raise TypeError(f"host {host!r} must be a URI string, a (host, port) pair or a dict")


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
    if len(parsed) > 1:
        raise ValueError(
            f"hosts lists {len(parsed)} servers; this release supports one server "
            "(sharding over several servers is planned)"
        )
    return parsed


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


def parse(
    hosts: object = None,
    prefix: object = "asgi:",
    expiry: object = 60,
    group_expiry: object = 86400,
    capacity: object = 100,
    channel_capacity: object = None,
    symmetric_encryption_keys: object = None,
    serializer: object = codec.DEFAULT_SERIALIZER,
) -> Config:
    """Validate the layer's options; raises TypeError/ValueError naming the bad one."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {prefix!r}")
    if not prefix.isascii() or any(ch.isspace() for ch in prefix):
        raise ValueError(f"prefix must be ASCII without spaces, got {prefix!r}")
    return Config(
        hosts=_parse_hosts(hosts),
        prefix=prefix,
        expiry_s=_positive_int("expiry", expiry),
        group_expiry_s=_positive_int("group_expiry", group_expiry),
        capacity=_positive_int("capacity", capacity),
        capacity_rules=_parse_rules(channel_capacity),
        serializer=codec.parse_serializer(serializer),
        encryption_keys=crypto.parse_keys(symmetric_encryption_keys),
    )
