"""A host's redis-py options, read with redis-py's own rules: URL, accepted keys, identity.

Checked when the layer is built, so a typo fails there and names the option, not at the
first command. Nothing here copies redis-py's rules: the URL goes through its ``parse_url``
and the accepted keys are the parameters of the classes that will receive them.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection
from redis.retry import Retry as SyncRetry

# The longest a blocking pop waits before the reader looks around again.
BLOCK_TIMEOUT_S = 5
# redis-py 8 gives sockets a 5 s timeout; a blocking pop must never hit it while idle.
SOCKET_TIMEOUT_S = BLOCK_TIMEOUT_S + 10
# Taken by SentinelConnectionPool itself (it picks the SSL connection class from it).
SENTINEL_POOL_KEYS = frozenset({"ssl", "is_master", "check_connection"})


def _parameters(classes: Iterable[type]) -> dict[str, inspect.Parameter]:
    """Named ``__init__`` parameters of ``classes`` and their bases (``**kwargs`` followed)."""
    found: dict[str, inspect.Parameter] = {}
    for cls in classes:
        for base in reversed(cls.__mro__):
            init = base.__dict__.get("__init__")
            if init is None or base is object:
                continue
            for name, parameter in inspect.signature(init).parameters.items():
                if name != "self" and parameter.kind not in (
                    parameter.VAR_KEYWORD,
                    parameter.VAR_POSITIONAL,
                ):
                    found[name] = parameter
    return found


def accepted(*classes: type) -> frozenset[str]:
    """Every keyword the pool or its connections take."""
    return frozenset(_parameters(classes))


def _default(name: str, connection_class: type) -> Any:
    """redis-py's default for one connection parameter (``port`` 6379, ``db`` 0, ...)."""
    return _parameters([connection_class])[name].default


def effective_options(url: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """What the pool receives: ``options`` with the URL's parts on top (``from_url``'s order).

    Raises:
        ValueError: the URL's scheme or query is not one redis-py accepts (without the URL,
            which may hold a password).
    """
    if url is None:
        return dict(options)
    try:
        from_url = parse_url(url)
    except ValueError as exc:
        scheme = urlsplit(url).scheme
        raise ValueError(f"hosts item with scheme {scheme + '://'!r}: {exc}") from None
    return {**options, **from_url}


def connection_class(options: Mapping[str, Any]) -> type[AbstractConnection]:
    """The connection class the pool will build, as ``ConnectionPool`` decides it."""
    chosen = options.get("connection_class")
    if isinstance(chosen, type) and issubclass(chosen, AbstractConnection):
        return chosen
    if chosen is not None:
        raise TypeError("hosts item: connection_class must be a redis.asyncio Connection class")
    return UnixDomainSocketConnection if "path" in options else Connection


def check_keys(options: Mapping[str, Any], *, sentinel: bool = False) -> None:
    """Refuse keys that neither the pool nor its connections take.

    Raises:
        TypeError: names the first unknown key (never its value: it may be a password).
    """
    if sentinel:
        pool_class: type = SentinelConnectionPool
        conn_class: type = SentinelManagedConnection
        # Our Sentinel pool also waits for a free connection: BlockingConnectionPool's keys.
        allowed = accepted(pool_class, BlockingConnectionPool, conn_class) | SENTINEL_POOL_KEYS
        allowed |= accepted(SSLConnection) if options.get("ssl") else frozenset()
    else:
        pool_class = BlockingConnectionPool
        conn_class = connection_class(options)
        allowed = accepted(pool_class, conn_class)
    allowed -= {"service_name", "sentinel_manager", "connection_kwargs"}
    unknown = [key for key in options if key not in allowed]
    if unknown:
        hint = _hint(unknown[0])
        if sentinel and unknown[0].startswith("ssl"):
            hint = " (for TLS to the master add 'ssl': True; ssl_* options then apply)"
        raise TypeError(
            f"hosts item has unknown option {unknown[0]!r}: neither {pool_class.__name__} nor "
            f"{conn_class.__name__} takes it{hint}"
        )


def _hint(key: str) -> str:
    """How to say what a ``redis.Redis()``-only argument means in a ``hosts`` item."""
    if key not in _parameters([Redis]):
        return ""
    if key.startswith("ssl"):
        return " (for TLS use a rediss:// address; ssl_* options then apply)"
    if key == "unix_socket_path":
        return " (use a unix:// address, or 'path')"
    return " (a redis.Redis() argument, which the layer does not pass on)"


def check_sentinel_kwargs(options: Mapping[str, Any]) -> None:
    """Refuse ``sentinel_kwargs`` keys that the sentinels' client, ``Redis()``, lacks."""
    allowed = _parameters([Redis])
    for key in options:
        if key not in allowed:
            raise TypeError(f"sentinel_kwargs has unknown option {key!r}: Redis() does not take it")
    if not options.get("ssl"):
        for key in options:
            if key.startswith("ssl_"):
                # redis-py would ignore it and talk plain text to the sentinels.
                raise TypeError(
                    f"sentinel_kwargs has {key!r} without 'ssl': True; add it for TLS to the "
                    "sentinels"
                )


def check_guarantees(options: Mapping[str, Any]) -> None:
    """Refuse options that would break a guarantee of the layer (refused, not overridden).

    Raises:
        ValueError: ``socket_timeout`` at or below the blocking pop's wait (idle receives
            would fail), or any retry of commands (a retried script could run twice).
        TypeError: ``retry`` is not a redis-py ``Retry``.
    """
    timeout_s = options.get("socket_timeout")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float)
    ):
        raise TypeError(f"socket_timeout must be a number of seconds or None, got {timeout_s!r}")
    if timeout_s is not None and timeout_s <= BLOCK_TIMEOUT_S:
        raise ValueError(
            f"socket_timeout={timeout_s!r} would make idle receives fail: it must be above "
            f"{BLOCK_TIMEOUT_S} s, the blocking pop's wait (or None for no timeout)"
        )
    retry = options.get("retry")
    if retry is not None:
        # Both classes, as redis-py < 6 has no common base (AbstractRetry) for them.
        if not isinstance(retry, SyncRetry | AsyncRetry):
            raise TypeError(f"retry must be a redis-py Retry, got a {type(retry).__name__}")
        if retry_count(retry) != 0:
            raise ValueError(
                "retry must not re-run commands (a retried script could run twice): "
                "leave it out, or use Retry(NoBackoff(), 0)"
            )
    for name in ("retry_on_timeout", "retry_on_error"):
        if options.get(name):
            raise ValueError(
                f"{name} would re-run commands, and a retried script could run twice: "
                "leave it out (the layer retries only connections that never sent a command)"
            )


def retry_count(retry: SyncRetry | AsyncRetry) -> int:
    """How many times ``retry`` re-runs a failed command (redis-py < 6 has no get_retries)."""
    getter = getattr(retry, "get_retries", None)
    count: int = getter() if getter is not None else retry._retries
    return count


def uses_tls(options: Mapping[str, Any]) -> bool:
    """Whether the pool will build TLS connections (a ``rediss://`` URL, or ``ssl=True``)."""
    return issubclass(connection_class(options), SSLConnection)


def identity(options: Mapping[str, Any]) -> str:
    """The server's canonical address: ``redis://host:port/db``, ``rediss://...`` for TLS,
    ``unix:///path?db=N``; host lowercased, redis-py's defaults filled in, never credentials.

    Every spelling of one server gives one identity, so processes shard alike.
    """
    conn_class = connection_class(options)
    db = options.get("db", _default("db", conn_class))
    if issubclass(conn_class, UnixDomainSocketConnection):
        return f"unix://{options.get('path', '')}?db={db}"
    scheme = "rediss" if uses_tls(options) else "redis"
    host = str(options.get("host", _default("host", conn_class))).lower()
    port = options.get("port", _default("port", conn_class))
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{scheme}://{host}:{port}/{db}"
