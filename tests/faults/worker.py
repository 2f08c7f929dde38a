"""A worker process for the fault scenarios: receive, and log every message id at once.

Run as ``python -m tests.faults.worker URL LOG MODE [ARG]``:

- ``named CHANNEL``: one ``receive`` loop on a named channel (so at most one receive waits).
- ``group GROUP MEMBERS``: MEMBERS process-local channels join GROUP, one loop each.

Each line of LOG is ``ready``, or ``CHANNEL ID`` for a message as soon as ``receive`` returned
it; the line is written with one unbuffered ``write`` so a kill -9 cannot tear it. A message of
type ``stop`` ends its loop. SIGTERM closes the layer (buffered messages go back to Redis).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from asgi_redis import RedisChannelLayer

# High enough that no fault scenario ever meets ChannelFull.
CAPACITY = 100_000


class Log:
    """Append-only log lines, one ``os.write`` each (no Python buffer to lose)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def line(self, text: str) -> None:
        """Write one line."""
        os.write(self._fd, f"{text}\n".encode())


async def _loop(layer: RedisChannelLayer, channel: str, label: str, log: Log) -> None:
    """Receive on ``channel`` until a stop message; log ``label id`` per message."""
    while True:
        message: dict[str, Any] = await layer.receive(channel)
        if message.get("type") == "stop":
            return
        log.line(f"{label} {message['id']}")


async def _main(url: str, log_path: str, mode: str, args: list[str]) -> None:
    """Run the loops of ``mode`` until they stop or SIGTERM arrives."""
    log = Log(log_path)
    layer = RedisChannelLayer(hosts=[url], capacity=CAPACITY)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    try:
        if mode == "named":
            loops = [_loop(layer, args[0], args[0], log)]
        else:
            group, members = args[0], int(args[1])
            loops = []
            for number in range(members):
                channel = await layer.new_channel("member.")
                await layer.group_add(group, channel)
                loops.append(_loop(layer, channel, f"m{number}", log))
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        log.line("ready")
        stop_task = asyncio.ensure_future(stopped.wait())
        await asyncio.wait([*tasks, stop_task], return_when=asyncio.FIRST_COMPLETED)
        if stopped.is_set():
            for task in tasks:
                task.cancel()
        else:
            await asyncio.gather(*tasks)
        stop_task.cancel()
        await asyncio.gather(*tasks, stop_task, return_exceptions=True)
    finally:
        await layer.close()
        log.line("closed")


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
