"""Real redis-server processes for tests, each on a free port of 127.0.0.1.

Tests never talk to a system Redis: every server here is started by the test run, in its
own temporary directory, and stopped at the end. ``extra_args`` lets cluster and sentinel
fixtures reuse the same machinery (``--cluster-enabled yes``, a sentinel config file, ...).
With ``tls`` a server listens on TLS only (``--port 0 --tls-port``), with certificates made by
`tests.tls.make_tls_files`, and the links it opens itself (a replica's to its master, a
sentinel's to the servers it watches) use TLS too.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from tests.tls import TlsFiles

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.02
_LOG_TAIL_LINES = 20

_DEBIAN_PACKAGES = {
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "redis-cli": "redis-tools",
}


class RedisServerError(RuntimeError):
    """A test redis-server could not be found, started or reached."""


def find_binary(name: str) -> str:
    """Return the absolute path of a Redis binary on PATH.

    Args:
        name: ``redis-server``, ``redis-sentinel`` or ``redis-cli``.

    Raises:
        RedisServerError: the binary is not installed; the message names the Debian package.
    """
    path = shutil.which(name)
    if path is None:
        package = _DEBIAN_PACKAGES.get(name, "redis-server")
        raise RedisServerError(
            f"{name} not found on PATH; install it with "
            f"`apt-get install -y {package}` (Debian/Ubuntu) or run `make test`, "
            "which installs it"
        )
    return path


def redis_server_binary() -> str:
    """Return the path of ``redis-server`` or raise a clear `RedisServerError`."""
    return find_binary("redis-server")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(host: str, port: int, timeout_s: float = 0.5, tls: ssl.SSLContext | None = None) -> bool:
    """Send an inline PING and report whether the server answers (+PONG, or -NOAUTH when
    it wants a password first: it is up either way)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            sock = raw if tls is None else tls.wrap_socket(raw, server_hostname=host)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1, restartable on the same port.

    Args:
        extra_args: more command-line arguments, e.g. ``["--cluster-enabled", "yes"]``.
        port: the port to use; a free one is picked when omitted.
        binary: the executable; ``redis-server`` from PATH when omitted.
        config_file: an optional config file passed as the first argument
            (``redis-sentinel`` needs one).
        start: start immediately (default) or wait for an explicit `start`.
        tls: certificates to serve TLS with; the server then has no plain-text port, and
            talks TLS to its master or, as a sentinel, to the servers it watches.
        tls_auth_clients: with ``tls``, whether clients must show a certificate the CA signed.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        port: int | None = None,
        binary: str | None = None,
        config_file: str | Path | None = None,
        start: bool = True,
        tls: TlsFiles | None = None,
        tls_auth_clients: bool = False,
    ) -> None:
        self.host = HOST
        self.tls = tls
        self.tls_auth_clients = tls_auth_clients
        self.port = port if port is not None else free_port()
        self.binary = binary if binary is not None else redis_server_binary()
        self.extra_args = list(extra_args)
        self.config_file = Path(config_file) if config_file is not None else None
        self._tmp = tempfile.TemporaryDirectory(prefix=f"asgi-redis-test-{self.port}-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server (``rediss://`` with TLS)."""
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def client_url(self) -> str:
        """`url` for the tests' own clients: with TLS, the CA and the client certificate are
        in its query string (redis-py reads ``ssl_*`` options there)."""
        if self.tls is None:
            return self.url
        return f"{self.url}?{urlencode(self.tls.client_options(with_cert=True))}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The full command line used to start the server."""
        args = [self.binary]
        if self.config_file is not None:
            args.append(str(self.config_file))
        options = {
            "bind": self.host,
            "port": str(self.port),
            "dir": str(self.dir),
            "logfile": str(self.log_path),
            "save": "",
            "appendonly": "no",
            "daemonize": "no",
        }
        if self.tls is not None:
            options.update(self.tls.server_options(auth_clients=self.tls_auth_clients))
            options["tls-port"], options["port"] = options["port"], "0"
        for name, value in options.items():
            args += [f"--{name}", value]
        return args + self.extra_args

    def start(self) -> RedisServer:
        """Start the server (again) on the same port and wait until it answers PING.

        Raises:
            RedisServerError: the process exited or did not answer within the timeout;
                the message carries the tail of the server log.
        """
        if self.running:
            return self
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        """Poll with PING until the server answers, it dies, or time runs out."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            tls = None if self.tls is None else self.tls.client_context()
            if _ping(self.host, self.port, tls=tls):
                return
            if not self.running:
                raise RedisServerError(self._failure("exited during start-up"))
            time.sleep(_POLL_INTERVAL_S)
        self.stop()
        raise RedisServerError(self._failure(f"did not answer PING within {START_TIMEOUT_S} s"))

    def _failure(self, what: str) -> str:
        """Build an error message with the exit code, stderr and the log tail."""
        stderr = ""
        code = None
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            if self._process.stderr is not None:
                stderr = self._process.stderr.read().decode(errors="replace").strip()
        return (
            f"redis-server on {self.host}:{self.port} {what} (exit code {code})\n"
            f"command: {' '.join(self.command())}\n"
            f"stderr: {stderr or '(empty)'}\n"
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log, or a note that there is none."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """Terminate the server and wait for it; kill it if it does not exit in time."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def kill(self) -> None:
        """Kill the server with SIGKILL, as in a crash: no shutdown, no goodbye to replicas."""
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def close(self) -> None:
        """Stop the server and delete its temporary directory."""
        self.stop()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"


def start_sentinel(
    master_name: str,
    master_port: int,
    *,
    quorum: int = 1,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    tls: TlsFiles | None = None,
    tls_auth_clients: bool = False,
) -> RedisServer:
    """Start a ``redis-sentinel`` on a free port that monitors the master on ``master_port``.

    Sentinel rewrites its config file, so each one gets its own, in its own temporary
    directory. With ``tls`` the sentinel serves TLS only and talks TLS to the servers it
    watches (see `RedisServer`). Raises `RedisServerError` when ``redis-sentinel`` is missing
    or does not start.
    """
    sentinel = RedisServer(
        binary=find_binary("redis-sentinel"),
        start=False,
        tls=tls,
        tls_auth_clients=tls_auth_clients,
    )
    config = sentinel.dir / "sentinel.conf"
    config.write_text(
        f"sentinel monitor {master_name} {HOST} {master_port} {quorum}\n"
        f"sentinel down-after-milliseconds {master_name} {down_after_ms}\n"
        f"sentinel failover-timeout {master_name} {failover_timeout_ms}\n"
    )
    sentinel.config_file = config
    try:
        return sentinel.start()
    except BaseException:
        sentinel.close()
        raise
