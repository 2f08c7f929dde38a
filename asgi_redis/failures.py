"""Redis errors re-raised with the operation and the server they concern.

redis-py's messages ("Connection closed by server.", "command not allowed when used memory >
'maxmemory'") name neither the call nor the server, and a layer may talk to several. Every
public call that reaches Redis runs inside ``naming``: the error it re-raises is of the same
redis-py class (or a subclass from ``errors``), so ``except redis.exceptions.ConnectionError``
keeps working, and it is chained to the original.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import (
    ConnectionError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from .errors import RedisOutOfMemoryError

if TYPE_CHECKING:
    pass

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)


def _is_out_of_memory(exc: RedisError) -> bool:
    """Whether Redis refused a write because ``maxmemory`` is reached."""
    if isinstance(exc, OutOfMemoryError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith("OOM ")


def _cause(exc: RedisError) -> str:
    """What the failure means for the user, in words redis-py does not give."""
    if _is_out_of_memory(exc):
        return "Redis is out of memory (maxmemory reached and its policy evicts nothing)"
    if isinstance(exc, ReadOnlyError):
        return "the server is a read-only replica (is hosts pointing at the master?)"
    if isinstance(exc, NoPermissionError):
        return "the Redis user lacks a permission the layer needs (ACL)"
    if isinstance(exc, TimeoutError):
        return "Redis did not answer in time"
    if isinstance(exc, ConnectionError):
        return "cannot reach Redis"
    return "Redis refused it"


def describe(exc: RedisError, operation: str, server: str) -> RedisError | None:
    """A copy of ``exc`` whose message names ``operation`` and ``server``.

    Returns None when the exception's class cannot be built from a message (the caller
    then re-raises the original unchanged).
    """
    message = f"{operation} failed on {server}: {_cause(exc)}: {exc}"
    error_class: type[RedisError] = type(exc)
    if _is_out_of_memory(exc):
        error_class = RedisOutOfMemoryError  # a subclass of both redis-py classes it can come as
    try:
        return error_class(message)
    except Exception:
        pass
    try:  # a class that parses its message (ASK, MOVED): keep its fields, change the text
        own = copy.copy(exc)
        own.args = (message,)
        if hasattr(own, "message"):
            own.message = message
        return own
    except Exception:
        return None


@contextmanager
def naming(operation: str, server: str) -> Iterator[None]:
    """Re-raise a redis-py error from the block, naming ``operation`` and ``server``.

    Args:
        operation: what the caller was doing, e.g. ``send to channel 'chat'``.
        server: the server's label (never holds a password).
    """
    try:
        yield
    except RedisError as exc:
        described = describe(exc, operation, server)
        if described is None:
            raise
        raise described from exc


async def named(operation: str, server: str, call: Awaitable[T]) -> T:
    """Await ``call`` inside ``naming(operation, server)``."""
    with naming(operation, server):
        return await call


def own_copy(exc: E) -> E:
    """A copy of ``exc`` per caller, chained to it: one instance raised in many tasks would
    share a traceback (the batch and connection failures every caller of a write gets)."""
    try:
        own = copy.copy(exc)
    except Exception:
        return exc
    own.__cause__ = exc
    return own
