"""Exceptions raised by the layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    _Base = Exception
else:
    try:
        from channels.exceptions import ChannelFull as _Base
    except ImportError:  # Django Channels is optional
        _Base = Exception


class ChannelFull(_Base):
    """The channel already holds ``capacity`` messages; the message was not queued.

    A subclass of ``channels.exceptions.ChannelFull`` when Django Channels is installed, so
    ``except ChannelFull`` written for other layers keeps working.
    """


# Return codes of lua/send.lua (checked against the script header by the tests).
SEND_QUEUED = 1
SEND_FULL = 0
