"""A look at a kept connection's socket without reading from it: whether the server already
closed it (the pools' checkout in ``connections``, and the connections ``writer`` and ``held``
keep outside their pools)."""

from __future__ import annotations

import socket

from redis.asyncio.connection import AbstractConnection

__all__ = ["peer_closed"]


def peer_closed(connection: AbstractConnection) -> bool:
    """Whether the server already closed this idle connection (EOF or reset on its socket).

    Looks without reading: the transport's state, then a non-blocking ``MSG_PEEK`` on the
    socket, which sees a FIN the event loop has not processed yet (a ``CLIENT KILL`` just
    before the next command). Pending data is not EOF: redis-py deals with that itself.
    """
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    if reader is None or writer is None:
        return False  # not connected: redis-py connects before writing anyway
    if reader.at_eof() or writer.transport.is_closing():
        return True
    transport_socket = writer.get_extra_info("socket")
    if transport_socket is None:
        return False  # no socket to look at (a test double): leave it to redis-py
    if transport_socket.fileno() < 0:
        return True
    # asyncio hands out a wrapper without recv(). Its own non-blocking socket is the cheap
    # way in (a few microseconds); else borrow the descriptor, never closing it.
    own = getattr(transport_socket, "_sock", None)
    if isinstance(own, socket.socket) and own.gettimeout() == 0:
        return _peek_eof(own)
    borrowed = socket.socket(
        transport_socket.family,
        transport_socket.type,
        transport_socket.proto,
        transport_socket.fileno(),
    )
    try:
        borrowed.settimeout(0)  # never wait, whatever socket.setdefaulttimeout() says
        return _peek_eof(borrowed)
    finally:
        borrowed.detach()


def _peek_eof(sock: socket.socket) -> bool:
    """Whether a non-blocking socket's peer closed it: EOF or an error, without reading."""
    try:
        return sock.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)) == b""
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the connection is open and idle
    except OSError:
        return True  # reset, or another socket error: the connection is unusable
