"""A TCP proxy in the test's event loop that can stall: it keeps connections open but holds
every byte until it resumes, like a network path that stops passing packets for a while.

It can also lose replies: with ``cut_replies``, each chunk the server sends is, at random,
dropped and the client's connection reset, so the command ran but its caller never hears."""

from __future__ import annotations

import asyncio
import contextlib
import random

from tests.servers import HOST

CHUNK_BYTES = 65536


class StallProxy:
    """Forward 127.0.0.1:``port`` to a server; `stall` holds traffic, `resume` lets it go.

    Bytes read during a stall are forwarded after `resume`, in order, even when the side that
    sent them has closed meanwhile: a command whose client gave up can still run late.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self._cut_probability = 0.0
        self._random = random.Random(0)
        self.cuts = 0  # replies dropped with their connection

    async def start(self) -> StallProxy:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """The ``redis://`` URL that goes through the proxy."""
        return f"redis://{HOST}:{self.port}"

    def stall(self) -> None:
        """Stop forwarding in both directions (connections stay open)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with what was held."""
        self._flowing.set()

    def cut_replies(self, probability: float, seed: int = 0) -> None:
        """From now on drop each chunk of server replies with ``probability``, resetting the
        client's connection instead (after the server ran the command); 0 stops it."""
        self._cut_probability = probability
        self._random = random.Random(seed)

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        self.resume()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        """One client connection: open the upstream one and pipe both ways until either ends."""
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_in, server_out = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_out.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(
                self._pipe(client_in, server_out),
                self._pipe(server_in, client_out, replies=True),
            )
        finally:
            for writer in (client_out, server_out):
                writer.close()
            self._tasks.discard(task)

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, replies: bool = False
    ) -> None:
        """Copy bytes, waiting while stalled; close the sink when the source ends. For the
        server's replies, maybe lose a chunk and reset the client's connection instead."""
        with contextlib.suppress(OSError):
            while data := await source.read(CHUNK_BYTES):
                await self._flowing.wait()
                if replies and self._random.random() < self._cut_probability:
                    self.cuts += 1
                    sink.transport.abort()
                    return
                sink.write(data)
                await sink.drain()
        await self._flowing.wait()
        sink.close()
