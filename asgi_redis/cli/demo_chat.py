"""The chat demo: the Django Channels example in ``examples/chat`` on two servers and a worker.

`chat_stack` starts daphne processes and ``manage.py runworker chat.shout`` processes of the
example project against one Redis URL; `check` drives a websocket round trip across them. The
browser test and the worker tests reuse `chat_stack`, so what ``make demo`` runs is what the
tests run.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect as ws_connect
from websockets.typing import Origin

from .example import EXAMPLE_DIR, DemoError, example_available

HOST = "127.0.0.1"
WORKER_CHANNEL = "chat.shout"
ROOM = "lobby"
START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 10.0
MESSAGE_TIMEOUT_S = 10.0
WORKER_READY = "Running worker for channels"
SERVER_NAMES = "AB"


class ChatDemoError(DemoError):
    """A process of the chat demo did not start, died, or a message did not arrive."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Child:
    """One process of the stack, its role and its log file."""

    role: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def log_tail(self, lines: int = 15) -> str:
        """The end of the process's output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


@dataclass
class ChatStack:
    """The running processes; ``urls`` are the room pages, one per server."""

    redis_url: str
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    @property
    def servers(self) -> list[Child]:
        """The daphne processes, in start order."""
        return [child for child in self.children if child.port is not None]

    @property
    def urls(self) -> list[str]:
        """The room page of each server."""
        return [f"http://{HOST}:{child.port}/rooms/{ROOM}/" for child in self.servers]

    def dead(self) -> list[Child]:
        """The processes that have exited."""
        return [child for child in self.children if child.process.poll() is not None]

    def failure(self, what: str, children: list[Child] | None = None) -> ChatDemoError:
        """An error naming ``what`` went wrong, with the output of the relevant processes."""
        parts = [what]
        for child in children if children is not None else self.children:
            code = child.process.poll()
            state = "running" if code is None else f"exit code {code}"
            parts.append(f"--- {child.role} ({state}), last output:\n{child.log_tail()}")
        return ChatDemoError("\n".join(parts))


def child_env(redis_url: str, server_name: str | None) -> dict[str, str]:
    """Environment of a child: the layer's Redis, the server's name, asgi_redis importable."""
    env = dict(os.environ, CHAT_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    repo = str(EXAMPLE_DIR.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    if server_name is not None:
        env["CHAT_SERVER_NAME"] = server_name
    return env


def spawn(stack: ChatStack, role: str, args: list[str], port: int | None = None) -> Child:
    """Start one process of the example project with its output in the log directory."""
    log_path = stack.log_dir / f"{role.replace(' ', '-')}.log"
    name = role if port is None else f"{role} (port {port})"
    with log_path.open("wb") as log:
        # Own session: Ctrl-C in the terminal reaches the demo only, which stops us in order.
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=EXAMPLE_DIR,
            env=child_env(stack.redis_url, name if port is not None else None),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    child = Child(role, process, log_path, port)
    stack.children.append(child)
    return child


def http_ready(port: int) -> bool:
    """Whether the server on ``port`` answers the room page."""
    url = f"http://{HOST}:{port}/rooms/{ROOM}/"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_ready(stack: ChatStack) -> None:
    """Wait until every server serves pages and every worker listens, or raise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(stack.children)
    while pending:
        if stack.dead():
            raise stack.failure("a process of the chat demo exited during start-up")
        if time.monotonic() > deadline:
            raise stack.failure(f"not ready within {START_TIMEOUT_S:.0f} s", pending)
        pending = [child for child in pending if not child_ready(child)]
        if pending:
            time.sleep(0.1)


def child_ready(child: Child) -> bool:
    """Whether a server answers HTTP, or a worker has logged that it listens."""
    if child.port is not None:
        return http_ready(child.port)
    with contextlib.suppress(OSError):
        return WORKER_READY in child.log_path.read_text(errors="replace")
    return False


def stop(children: list[Child]) -> None:
    """Terminate the processes (newest first), killing any that do not exit in time."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    for child in reversed(children):
        try:
            child.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


@contextlib.contextmanager
def chat_stack(
    redis_url: str, log_dir: Path, *, servers: int = 2, workers: int = 1
) -> Iterator[ChatStack]:
    """Run ``servers`` daphne processes and ``workers`` runworker processes; stop them on exit.

    Args:
        redis_url: the Redis every process's channel layer uses.
        log_dir: an existing directory for the processes' output.
        servers: daphne processes, each on a free port (at most two: A and B).
        workers: ``manage.py runworker chat.shout`` processes.

    Raises:
        ChatDemoError: the example project is missing, or a process did not start.
    """
    if not example_available():
        raise ChatDemoError(f"the example project is missing ({EXAMPLE_DIR}); use a checkout")
    stack = ChatStack(redis_url, log_dir)
    try:
        for index in range(servers):
            port = free_port()
            daphne = ["-m", "daphne", "-b", HOST, "-p", str(port), "chatsite.asgi:application"]
            spawn(stack, f"server {SERVER_NAMES[index]}", daphne, port)
        for index in range(workers):
            spawn(stack, f"worker {index + 1}", ["manage.py", "runworker", WORKER_CHANNEL])
        wait_ready(stack)
        yield stack
    finally:
        stop(stack.children)


class WebSocketClient:
    """A blocking websocket client (the ``websockets`` package) speaking JSON, for `check`."""

    def __init__(self, url: str, origin: str) -> None:
        # Entered as a context manager: websockets >= 17.1 warns about a bare connect().
        self.exit_stack = contextlib.ExitStack()
        try:
            self.connection = self.exit_stack.enter_context(
                ws_connect(url, origin=Origin(origin), open_timeout=MESSAGE_TIMEOUT_S, proxy=None)
            )
        except (OSError, InvalidHandshake) as exc:
            raise ChatDemoError(f"websocket {url} refused: {exc}") from exc

    def send_json(self, data: dict[str, Any]) -> None:
        """Send ``data`` as one JSON text frame."""
        self.connection.send(json.dumps(data))

    def expect(self, who: str, **fields: str) -> dict[str, Any]:
        """Read frames until one carries ``fields``; raise when none does in time."""
        deadline = time.monotonic() + MESSAGE_TIMEOUT_S
        try:
            while (left_s := deadline - time.monotonic()) > 0:
                frame: dict[str, Any] = json.loads(self.connection.recv(timeout=left_s))
                if all(frame.get(key) == value for key, value in fields.items()):
                    return frame
        except TimeoutError:
            pass
        except (OSError, ValueError, ConnectionClosed) as exc:
            raise ChatDemoError(f"{who} did not get {fields}: {exc}") from exc
        raise ChatDemoError(f"{who} did not get {fields} within {MESSAGE_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        """Close the connection."""
        self.exit_stack.close()


def announce(page_url: str, text: str) -> None:
    """Post an announcement through the room's Django view, as the page's form does."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(page_url, timeout=MESSAGE_TIMEOUT_S):
        pass
    token = next((cookie.value for cookie in jar if cookie.name == "csrftoken"), None)
    if token is None:
        raise ChatDemoError(f"{page_url} set no csrftoken cookie")
    body = urllib.parse.urlencode({"text": text, "csrfmiddlewaretoken": token})
    with opener.open(page_url + "announce", body.encode(), timeout=MESSAGE_TIMEOUT_S) as reply:
        if reply.status != 200:
            raise ChatDemoError(f"announce view answered {reply.status}")


def connect(page_url: str, who: str) -> WebSocketClient:
    """Open the room's websocket the way the page does, and read the welcome frame."""
    parsed = urllib.parse.urlsplit(page_url)
    origin = f"http://{parsed.netloc}"
    client = WebSocketClient(f"ws://{parsed.netloc}/ws/chat/{ROOM}/", origin)
    client.expect(who, kind="welcome")
    return client


def check(stack: ChatStack) -> None:
    """Chat from server A to B, announce through B's view to both, shout through the worker.

    Raises:
        ChatDemoError: naming the step that failed, with the processes' output.
    """
    url_a, url_b = stack.urls[:2]
    alice, bob = connect(url_a, "page on A"), connect(url_b, "page on B")
    try:
        alice.send_json({"name": "alice", "text": "hello from A"})
        bob.expect("page on B", kind="chat", author="alice", text="hello from A")
        print("  chat: a message typed on server A arrived on server B")
        announce(url_b, "view broadcast")
        for client, who in ((alice, "page on A"), (bob, "page on B")):
            client.expect(who, kind="announce", text="view broadcast")
        print("  announce: a sync Django view on B reached both pages")
        bob.send_json({"name": "bob", "text": "/shout quiet please"})
        alice.expect("page on A", kind="shout", text="bob: QUIET PLEASE")
        print("  shout: the runworker process answered into the room")
    except ChatDemoError as exc:
        raise stack.failure(str(exc)) from None
    finally:
        alice.close()
        bob.close()


def serve(stack: ChatStack) -> None:
    """Print the URLs and wait until Ctrl-C (returns), or until a process dies (an error)."""
    try:  # from the first line on: a Ctrl-C right after the prompt must not escape as 130
        print("\nOpen the two servers in two browser tabs and chat across processes:")
        for child, url in zip(stack.servers, stack.urls, strict=True):
            print(f"  {child.role}: {url}")
        print(f"Type '/shout text' to go through the worker on {WORKER_CHANNEL!r}.")
        print(f"Process output: {stack.log_dir}. Press Ctrl-C to stop everything.", flush=True)
        while not (dead := stack.dead()):
            time.sleep(0.5)
    except KeyboardInterrupt:  # the way this mode ends: stop everything, exit 0 (not 130)
        print("\nCtrl-C: stopping every process of the demo ...")
        return
    raise stack.failure("a process of the chat demo stopped", dead)
