"""Exceptions raised by the layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import OutOfMemoryError, ResponseError

if TYPE_CHECKING:
    _Base = Exception

    class _TooLargeError(Exception):
        """Stands for ``channels.exceptions.MessageTooLarge``."""

else:
    try:
        from channels.exceptions import ChannelFull as _Base
        from channels.exceptions import MessageTooLarge as _TooLargeError
    except ImportError:  # Django Channels is optional
        _Base = Exception

        class _TooLargeError(Exception):
            """Stands for ``channels.exceptions.MessageTooLarge``."""


class ChannelFull(_Base):
    """The channel already holds ``capacity`` messages; the message was not queued.

    A subclass of ``channels.exceptions.ChannelFull`` when Django Channels is installed, so
    ``except ChannelFull`` written for other layers keeps working.
    """


class MessageTooLarge(_TooLargeError, ValueError):  # noqa: N818 (Channels names it so)
    """A message is larger than ``max_message_size`` once serialized (and encrypted).

    Raised by ``send`` and ``group_send`` before anything is written to Redis; the message
    names the channel or group and the size. A ``ValueError``, and a subclass of
    ``channels.exceptions.MessageTooLarge`` when Django Channels is installed.
    """


# Return codes of lua/send.lua (checked against the script header by the tests).
SEND_QUEUED = 1
SEND_FULL = 0


class RedisOutOfMemoryError(OutOfMemoryError):
    """Redis refused a write: ``maxmemory`` is reached and its policy evicts nothing.

    Raised by ``send``, ``group_add`` and the other calls that write; a subclass of
    redis-py's ``OutOfMemoryError`` (a ``ResponseError``), never ``ChannelFull``: the
    channel may have room, the server has none. Writes work again once memory is freed.
    """


class PopUnblockedError(ResponseError):
    """Redis ended a reader's blocking pop without popping anything (a ``-UNBLOCKED`` reply).

    Redis says so after ``CLIENT UNBLOCK <id> ERROR``, or when the primary a reader blocks on
    turns into a replica (a failover). Nothing was taken, so nothing is lost: the reader pops
    again at once (on a cluster after reading the slot map again). Callers never see it.
    """
