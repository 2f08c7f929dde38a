"""Demo (``make demo``, ``asgi-redis-demo``, ``python -m asgi_redis.cli.demo``).

By default it runs the Django Channels chat example (``examples/chat``) on an embedded Redis:
two daphne servers on two ports behind one layer and a ``runworker`` process, until Ctrl-C.
``--check`` starts the same, verifies a websocket round trip across the servers, and exits.
``--plain`` runs the layer without Django: a private Redis, two worker processes with two
consumers each, a group broadcast, replies on a named channel and one direct message.

The chat needs a source checkout (examples/ is not in the wheel) and the ``demo`` extra; the
plain demo needs only the layer plus ``redis-server`` or ``fakeredis[lua]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from asgi_redis import RedisChannelLayer
from asgi_redis.cli.example import EXAMPLE_DIR, DemoError, example_available

GROUP = "lobby"
REPLIES = "demo.replies"
WORKERS = 2
CONSUMERS_PER_WORKER = 2
TIMEOUT_S = 10.0
DISTRIBUTION = "asgi-redis-lua"
INSTALL_DEMO_EXTRA = f"pip install '{DISTRIBUTION}[demo]'"
# Imported by the chat demo or by the processes it starts (daphne, manage.py runworker).
CHAT_PACKAGES = ("websockets", "channels", "daphne")
DESCRIPTION = """\
Run the asgi_redis demo. By default: the Django Channels chat example of a source
checkout (examples/chat) on two daphne servers and a runworker process, all behind one
channel layer on a private redis-server (fakeredis's TCP server when redis-server is not
installed), until Ctrl-C. Outside a checkout the plain demo runs instead.
"""


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start a private Redis and yield its URL; stop it and remove its files on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        with fake_redis() as url:
            yield url
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="asgi-redis-demo-") as data_dir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir]
        args += ["--save", "", "--appendonly", "no"]
        # Own session, so Ctrl-C reaches only us and we stop the server after the workers.
        server = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while server.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.05)
            else:
                raise DemoError(f"{binary} did not start on port {port}")
            print(f"Using a private redis-server ({binary}) on port {port}")
            yield f"redis://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=TIMEOUT_S)


@contextlib.contextmanager
def fake_redis() -> Iterator[str]:
    """Serve fakeredis over TCP in a thread (it needs lupa for Lua) and yield its URL."""
    try:
        import lupa  # noqa: F401
        from fakeredis import TcpFakeServer
    except ImportError as exc:
        hint = f"install redis-server, or {INSTALL_DEMO_EXTRA} (it brings fakeredis[lua])"
        raise DemoError(f"no redis-server on PATH and no fakeredis[lua]; {hint}") from exc
    server = TcpFakeServer(("127.0.0.1", 0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("No redis-server on PATH: using fakeredis's TCP server (in this process)")
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def consume(layer: RedisChannelLayer, name: str, ready: Any) -> None:
    """One consumer: a new channel in the group; print what arrives, reply to the parent."""
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    ready.put((name, channel))
    while (message := await layer.receive(channel))["type"] != "demo.stop":
        print(f"  [{name} pid {os.getpid()} {channel}] got {message['text']!r}", flush=True)
        await layer.send(REPLIES, {"type": "demo.reply", "channel": channel, "name": name})
    await layer.group_discard(GROUP, channel)


async def run_worker(url: str, index: int, ready: Any) -> None:
    """Run this process's consumers until each one is told to stop."""
    async with RedisChannelLayer(hosts=[url]) as layer:
        names = [f"w{index}c{number}" for number in range(CONSUMERS_PER_WORKER)]
        await asyncio.gather(*(consume(layer, name, ready) for name in names))


def worker_main(url: str, index: int, ready: Any) -> None:
    """Child process entry point (module level, so the spawn start method can import it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    asyncio.run(run_worker(url, index, ready))


async def expect(layer: RedisChannelLayer, count: int, what: str) -> list[dict[str, Any]]:
    """Receive ``count`` replies, or raise a DemoError saying what is missing."""
    replies: list[dict[str, Any]] = []
    try:
        while len(replies) < count:
            replies.append(await asyncio.wait_for(layer.receive(REPLIES), TIMEOUT_S))
    except asyncio.TimeoutError:
        raise DemoError(f"only {len(replies)}/{count} {what} within {TIMEOUT_S:.0f} s") from None
    return replies


async def drive(url: str, channels: dict[str, str]) -> None:
    """The parent's part: broadcast, collect replies, send one direct message, stop all."""
    async with RedisChannelLayer(hosts=[url]) as layer:
        print(f"Parent: group_send to {GROUP!r}")
        await layer.group_send(GROUP, {"type": "demo.broadcast", "text": "hello, lobby"})
        replies = await expect(layer, len(channels), "replies to the broadcast")
        print(f"Parent: {REPLIES!r} received from {', '.join(r['name'] for r in replies)}")
        name, target = sorted(channels.items())[-1]
        print(f"Parent: send to {name}'s channel only")
        await layer.send(target, {"type": "demo.direct", "text": f"just for {name}"})
        (reply,) = await expect(layer, 1, "replies to the direct message")
        if reply["channel"] != target:
            raise DemoError(f"the direct message reached {reply['name']}, not {name}")
        print(f"Parent: {name} replied; stopping the workers")
        for channel in channels.values():
            await layer.send(channel, {"type": "demo.stop"})


def run_plain() -> None:
    """Start the server and the workers, drive the demo, and always clean up."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    with embedded_redis() as url:
        workers = [
            context.Process(target=worker_main, args=(url, i, ready)) for i in range(WORKERS)
        ]
        try:
            for worker in workers:
                worker.start()
            try:
                count = WORKERS * CONSUMERS_PER_WORKER
                channels = dict(ready.get(timeout=TIMEOUT_S) for _ in range(count))
            except Exception as exc:  # queue.Empty; a crashed worker has printed why
                raise DemoError(f"workers not ready within {TIMEOUT_S:.0f} s") from exc
            asyncio.run(drive(url, channels))
            for worker in workers:
                worker.join(TIMEOUT_S)
            if any(worker.exitcode != 0 for worker in workers):
                raise DemoError("a worker did not exit cleanly")
        finally:
            for worker in workers:
                if worker.is_alive():
                    worker.terminate()
                    worker.join()


def load_chat() -> ModuleType:
    """The chat demo's module, once every package the chat needs imports.

    Raises:
        DemoError: a package is missing; the message says which extra installs it.
    """
    missing = []
    for name in CHAT_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise DemoError(f"the chat demo needs {', '.join(missing)}: {INSTALL_DEMO_EXTRA}")
    return importlib.import_module("asgi_redis.cli.demo_chat")


def run_chat(check: bool) -> None:
    """Run the chat example on an embedded Redis: serve until Ctrl-C, or check and return."""
    demo_chat = load_chat()
    with (
        embedded_redis() as url,
        tempfile.TemporaryDirectory(prefix="asgi-redis-chat-") as log_dir,
    ):
        print("Starting two daphne servers and a runworker process of examples/chat ...")
        with demo_chat.chat_stack(url, Path(log_dir)) as stack:
            if check:
                print("Checking a websocket round trip across the two servers:")
                demo_chat.check(stack)
            else:
                demo_chat.serve(stack)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: ``--plain`` or ``--check``."""
    parser = argparse.ArgumentParser(prog="asgi-redis-demo", description=DESCRIPTION)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plain", action="store_true", help="run the layer-only demo (no Django)")
    mode.add_argument(
        "--check",
        action="store_true",
        help="start the chat demo, verify it end to end, exit (needs a source checkout)",
    )
    return parser.parse_args(argv)


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the clean-up of every started process runs."""

    def handler(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: run the demo and return the process exit code."""
    args = parse_args(argv)
    stop_on_sigterm()
    if args.check and not example_available():
        print(
            f"Demo failed: --check runs the chat example of a source checkout, and "
            f"{EXAMPLE_DIR} is not there (an installed package has no examples/). Clone the "
            "repository and run `make demo ARGS=--check` there, or run asgi-redis-demo --plain.",
            file=sys.stderr,
        )
        return 2
    plain = args.plain or not example_available()
    if plain and not args.plain:
        print("examples/chat is not here (installed package?): running the plain demo")
    try:
        run_plain() if plain else run_chat(args.check)
    except DemoError as exc:  # the chat's ChatDemoError included
        print(f"Demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before the chat serves, or in --check or --plain: unfinished
        print("\nInterrupted: every process stopped, temp dirs removed.", file=sys.stderr)
        return 130
    print("Done: every process stopped, server stopped, temp dirs removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
