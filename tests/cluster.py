"""A real Redis Cluster for tests, and the faults Cluster tests need.

`RedisClusterServers` starts ``redis-server --cluster-enabled yes`` processes on free ports of
127.0.0.1 (each a `tests.servers.RedisServer` in its own temporary directory), joins them with
``redis-cli --cluster create`` and waits until every node agrees on the slot map. It then
offers what a test needs to hurt the cluster on purpose: kill a primary (its replica takes
over), move a slot live the way ``redis-cli --cluster reshard`` does (with a hook between
batches of keys), or stop half way so a test sees MIGRATING/IMPORTING and ASK redirections.

Every wait is bounded and fails with a `ClusterError` that says what was last seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.servers import HOST, RedisServer, RedisServerError, find_binary

if TYPE_CHECKING:
    from tests.tls import TlsFiles

SLOTS = 16384
# Redis listens for the cluster bus on the client port + 10000.
BUS_PORT_OFFSET = 10000
NODE_TIMEOUT_MS = 2000
CREATE_TIMEOUT_S = 30.0
STABLE_TIMEOUT_S = 30.0
FAILOVER_TIMEOUT_S = 30.0
MIGRATE_TIMEOUT_MS = 5000
MIGRATE_BATCH = 10
_POLL_S = 0.05
_PORT_ATTEMPTS = 200
_START_ATTEMPTS = 3
_OUTPUT_TAIL_CHARS = 2000


class ClusterError(RedisServerError):
    """The test cluster could not be created, or did not reach the state a test waits for."""


@dataclass(frozen=True)
class NodeEntry:
    """One line of ``CLUSTER NODES``: a node as some node of the cluster sees it."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        """Whether the node is flagged ``master``."""
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Whether the node is failed, suspected, unreachable or not yet met."""
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})


def parse_cluster_nodes(text: str) -> list[NodeEntry]:
    """Parse the reply of ``CLUSTER NODES`` into one `NodeEntry` per line."""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0].split("@")[0]
        entries.append(
            NodeEntry(
                id=fields[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(fields[2].split(",")),
                primary_id=None if fields[3] == "-" else fields[3],
                slots=tuple(fields[8:]),
            )
        )
    return entries


# One range of CLUSTER SLOTS: first slot, last slot, primary id, sorted replica ids.
SlotRange = tuple[int, int, str, tuple[str, ...]]


def _text(value: Any) -> str:
    """A reply that should be a string, as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _slot_map(reply: Iterable[Any]) -> list[SlotRange]:
    """Normalise a ``CLUSTER SLOTS`` reply so two nodes' views compare equal."""
    ranges = []
    for start, end, primary, *replicas in reply:
        replica_ids = tuple(sorted(_text(replica[2]) for replica in replicas))
        ranges.append((int(start), int(end), _text(primary[2]), replica_ids))
    return sorted(ranges)


def _bindable(port: int) -> bool:
    """Whether a TCP port of 127.0.0.1 can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free too.

    Both are picked below the kernel's range for outgoing connections, so a client socket
    cannot grab the bus port between this check and the server's start.

    Args:
        taken: ports already handed out (client and bus); they are avoided and the new pair
            is added.
    """
    high = _ephemeral_low() - BUS_PORT_OFFSET
    low = 10000 if high > 11000 else 1024
    if high <= low:
        high = 65535 - BUS_PORT_OFFSET
    for _ in range(_PORT_ATTEMPTS):
        port = random.randrange(low, high)
        bus = port + BUS_PORT_OFFSET
        if port in taken or bus in taken or not (_bindable(port) and _bindable(bus)):
            continue
        taken.update((port, bus))
        return port
    raise ClusterError(f"no free port pair (port, port+{BUS_PORT_OFFSET}) in {low}..{high}")


@dataclass
class Migration:
    """A slot being moved from ``source`` to ``target`` (see `RedisClusterServers`)."""

    slot: int
    source: RedisServer
    target: RedisServer
    source_id: str
    target_id: str
    moved: list[bytes] = field(default_factory=list)


class RedisClusterServers:
    """A Redis Cluster of real redis-server processes, with fault helpers for tests.

    Args:
        primaries: how many primaries share the 16384 slots (``redis-cli`` wants >= 3).
        replicas_per_primary: replicas of each primary.
        tls: certificates; nodes then serve TLS only, also on the cluster bus and for
            replication, and URLs are ``rediss://``.
        node_timeout_ms: ``cluster-node-timeout``; a failover takes a few times this.

    Raises:
        RedisServerError: redis-server or redis-cli is missing or a node did not start.
        ClusterError: the cluster did not form in time.
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        tls: TlsFiles | None = None,
        *,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ) -> None:
        if primaries < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        self.tls = tls
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []
        self._clients: dict[int, redis.Redis] = {}
        self._taken_ports: set[int] = set()
        try:
            self._cli = find_binary("redis-cli")
            for _ in range(primaries * (1 + replicas_per_primary)):
                self.nodes.append(self._start_node())
            self._create(replicas_per_primary)
            self.wait_until_stable(replicas=primaries * replicas_per_primary)
        except BaseException:
            self.close()
            raise

    # -- start-up -------------------------------------------------------------------------

    def _node_args(self, directory: Path) -> list[str]:
        """The cluster options of one node whose files live in ``directory``."""
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica may always take over, however long its primary has been gone.
            "--cluster-replica-validity-factor", "0",
            # Replicas stay where they were put, so tests see the topology they expect.
            "--cluster-allow-replica-migration", "no",
            # A new replica syncs at once instead of waiting 5 s for more replicas to come.
            "--repl-diskless-sync-delay", "0",
            # CLUSTER SLOTS lists a replica only once its replication offset is not 0, which
            # without writes takes one replication ping (10 s by default).
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip
        if self.tls is not None:
            # The bus always asks the connecting node for a certificate; the client
            # certificate it shows comes with the TLS options (TlsFiles.server_options).
            args += ["--tls-cluster", "yes"]
        return args

    def _start_node(self) -> RedisServer:
        """Start one cluster-enabled node; retry on another port if the port was taken."""
        error: RedisServerError | None = None
        for _ in range(_START_ATTEMPTS):
            port = cluster_port(self._taken_ports)
            node = RedisServer(port=port, tls=self.tls, start=False)
            node.extra_args = self._node_args(node.dir)
            try:
                return node.start()
            except RedisServerError as exc:
                node.close()
                error = exc
        assert error is not None
        raise error

    def cli_args(self) -> list[str]:
        """``redis-cli`` and the options it needs to reach the nodes (TLS)."""
        args = [self._cli]
        if self.tls is not None:
            args += ["--tls", "--cacert", str(self.tls.ca_cert)]
        return args

    def _create(self, replicas_per_primary: int) -> None:
        """Join the nodes with ``redis-cli --cluster create``."""
        addresses = [f"{node.host}:{node.port}" for node in self.nodes]
        command = [
            *self.cli_args(),
            "--cluster", "create", *addresses,
            "--cluster-replicas", str(replicas_per_primary),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CREATE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"") + (exc.stderr or b"")
            what = f"took over {CREATE_TIMEOUT_S} s"
            raise ClusterError(self._create_failure(command, what, output)) from exc
        output = done.stdout + done.stderr
        if done.returncode != 0 or b"[ERR]" in output:
            what = f"failed (exit code {done.returncode})"
            raise ClusterError(self._create_failure(command, what, output))

    def _create_failure(self, command: list[str], what: str, output: bytes) -> str:
        """The message of a failed ``--cluster create``: its output and the nodes' logs."""
        logs = "\n".join(f"node {node.port}:\n{node.log_tail(5)}" for node in self.nodes)
        text = output.decode(errors="replace")[-_OUTPUT_TAIL_CHARS:]
        return (
            f"redis-cli --cluster create {what}\ncommand: {' '.join(command)}\n"
            f"output:\n{text}\nnode logs:\n{logs}"
        )

    # -- clients and queries --------------------------------------------------------------

    def client(self, node: RedisServer) -> redis.Redis:
        """A plain (non-cluster) client of one node, bytes replies, no retries.

        It is cached and closed with the cluster; redirections (MOVED, ASK) raise
        `redis.exceptions.MovedError` / `redis.exceptions.AskError`.
        """
        client = self._clients.get(node.port)
        if client is None:
            options: dict[str, Any] = {}
            if self.tls is not None:
                options = {"ssl": True, **self.tls.client_options()}
            client = redis.Redis(
                host=node.host,
                port=node.port,
                socket_connect_timeout=2.0,
                socket_timeout=10.0,
                retry=Retry(NoBackoff(), 0),
                **options,
            )
            self._clients[node.port] = client
        return client

    def cluster_client(self, **options: Any) -> redis.cluster.RedisCluster:
        """A redis-py `RedisCluster` started from the current primaries (TLS set up)."""
        if self.tls is not None:
            options = {"ssl": True, **self.tls.client_options(), **options}
        startup = [
            redis.cluster.ClusterNode(node.host, node.port)  # type: ignore[no-untyped-call]
            for node in self.primaries()
        ]
        return redis.cluster.RedisCluster(startup_nodes=startup, **options)

    def call(self, node: RedisServer, *args: Any) -> Any:
        """Send one command to one node and return the raw reply."""
        return self.client(node).execute_command(*args)  # type: ignore[no-untyped-call]

    def node_id(self, node: RedisServer) -> str:
        """The cluster node id of ``node`` (``CLUSTER MYID``)."""
        return _text(self.call(node, "CLUSTER", "MYID"))

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        """``CLUSTER INFO`` of one node as a dict."""
        text = _text(self.call(node, "CLUSTER", "INFO"))
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {name: value.strip() for name, value in pairs}

    def slot_map(self, node: RedisServer) -> list[SlotRange]:
        """``CLUSTER SLOTS`` of one node: (first, last, primary id, replica ids) ranges."""
        return _slot_map(self.call(node, "CLUSTER", "SLOTS"))

    def cluster_nodes(self, node: RedisServer | None = None) -> list[NodeEntry]:
        """``CLUSTER NODES`` as seen by ``node`` (by default the first running node)."""
        via = node if node is not None else self._any_running()
        return parse_cluster_nodes(_text(self.call(via, "CLUSTER", "NODES")))

    def _any_running(self) -> RedisServer:
        """A running node to ask about the cluster."""
        for node in self.nodes:
            if node.running:
                return node
        raise ClusterError("no node of the cluster is running")

    def server(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of this cluster listens on port {port}")

    def _live(self, primary: bool) -> list[RedisServer]:
        """Running nodes the cluster sees as healthy primaries (or replicas), by port."""
        found = [
            self.server(entry.port)
            for entry in self.cluster_nodes()
            if entry.is_primary == primary and not entry.failing
        ]
        return sorted((node for node in found if node.running), key=lambda node: node.port)

    def primaries(self) -> list[RedisServer]:
        """The running primaries, as the cluster sees them now (failovers change them)."""
        return self._live(primary=True)

    def replicas(self) -> list[RedisServer]:
        """The running replicas, as the cluster sees them now."""
        return self._live(primary=False)

    @property
    def startup_urls(self) -> list[str]:
        """The URLs of the current primaries (``redis://``, or ``rediss://`` with TLS)."""
        return [node.url for node in self.primaries()]

    def node_for_slot(self, slot: int) -> RedisServer:
        """The primary that owns ``slot`` now (while a slot moves: still the source)."""
        for entry in self.cluster_nodes():
            if entry.is_primary and not entry.failing and _owns(entry, slot):
                return self.server(entry.port)
        raise ClusterError(f"no live primary owns slot {slot}")

    def other_primary(self, slot: int) -> RedisServer:
        """A primary that does not own ``slot`` now (a target to move it to)."""
        owner = self.node_for_slot(slot)
        return next(node for node in self.primaries() if node is not owner)

    @staticmethod
    def slot_of(key: str | bytes) -> int:
        """The hash slot of ``key`` (hash tags respected), by redis-py's own function."""
        return key_slot(key.encode() if isinstance(key, str) else key)

    # -- waiting --------------------------------------------------------------------------

    def _wait(self, what: str, problem: Callable[[], str | None], timeout_s: float) -> None:
        """Poll ``problem`` until it returns None; raise `ClusterError` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = problem()
            except redis.RedisError as exc:
                found = f"{type(exc).__name__}: {exc}"
            if found is None:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"{what}: not reached within {timeout_s} s; last seen: {found}")
            time.sleep(_POLL_S)

    def _stability_problem(self, replicas: int | None) -> str | None:
        """What keeps the cluster from being settled, or None when it is."""
        running = [node for node in self.nodes if node.running]
        if not running:
            return "no node is running"
        maps: dict[int, list[SlotRange]] = {}
        for node in running:
            problem = self._node_state_problem(node)
            if problem is not None:
                return problem
            maps[node.port] = self.slot_map(node)
        first_port, first = next(iter(maps.items()))
        for port, slot_map in maps.items():
            if slot_map != first:
                return f"slot maps differ: node {first_port} {first}, node {port} {slot_map}"
        covered = sum(end - start + 1 for start, end, _, _ in first)
        if covered != SLOTS:
            return f"{covered} of {SLOTS} slots covered"
        attached = sum(len(replica_ids) for _, _, _, replica_ids in first)
        if replicas is not None and attached != replicas:
            return f"{attached} of {replicas} replicas serve slots"
        return None

    def _node_state_problem(self, node: RedisServer) -> str | None:
        """What is wrong with one node's own view (state, members, replication link)."""
        info = self.cluster_info(node)
        state = info.get("cluster_state")
        if state != "ok":
            return f"node {node.port} reports cluster_state:{state}"
        known = int(info.get("cluster_known_nodes", "0"))
        if known != len(self.nodes):
            return f"node {node.port} knows {known} of {len(self.nodes)} nodes"
        replication = self.client(node).info("replication")
        link = replication.get("master_link_status")
        if replication.get("role") == "slave" and link != "up":
            return f"replica {node.port} has master_link_status:{link}"
        return None

    def wait_until_stable(
        self, replicas: int | None = None, timeout_s: float = STABLE_TIMEOUT_S
    ) -> None:
        """Wait until every running node reports ``cluster_state:ok``, knows every node,
        all agree on a slot map covering all slots, and every replica's link is up.

        Args:
            replicas: also wait until this many replicas serve slots.
            timeout_s: the bound; `ClusterError` names what was last missing.
        """
        self._wait("cluster stable", lambda: self._stability_problem(replicas), timeout_s)

    # -- maintenance between tests --------------------------------------------------------

    def restart_stopped(self) -> None:
        """Start again every node a test stopped or killed, and wait for a stable cluster."""
        stopped = [node for node in self.nodes if not node.running]
        for node in stopped:
            node.start()
        if stopped:
            self.wait_until_stable()

    def close_open_migrations(self) -> None:
        """``CLUSTER SETSLOT slot STABLE`` for every slot left MIGRATING or IMPORTING."""
        for node in self.primaries():
            for entry in self.cluster_nodes(node):
                if "myself" not in entry.flags:
                    continue
                for item in entry.slots:
                    if item.startswith("[") and "-" in item:
                        slot = int(item[1:].split("-", 1)[0])
                        self.call(node, "CLUSTER", "SETSLOT", slot, "STABLE")

    def script_flush_all(self) -> None:
        """``SCRIPT FLUSH`` on every running node, replicas too."""
        for node in self.nodes:
            if node.running:
                self.call(node, "SCRIPT", "FLUSH")

    def flush(self) -> None:
        """Empty the cluster: close half-done migrations, FLUSHALL every primary, drop the
        cached scripts everywhere."""
        self.close_open_migrations()
        for node in self.primaries():
            self.call(node, "FLUSHALL")
        self.script_flush_all()

    # -- faults ---------------------------------------------------------------------------

    def kill_primary(self, node: RedisServer, timeout_s: float = FAILOVER_TIMEOUT_S) -> RedisServer:
        """SIGKILL the primary ``node``, wait until one of its replicas is promoted and the
        rest of the cluster is stable again, and return the new primary.

        Raises:
            ValueError: ``node`` is not a primary or has no running replica.
            ClusterError: no replica took over within ``timeout_s``.
        """
        entries = self.cluster_nodes(node)
        own = next(entry for entry in entries if "myself" in entry.flags)
        if not own.is_primary:
            raise ValueError(f"node {node.port} is not a primary")
        candidates = {
            entry.id: self.server(entry.port)
            for entry in entries
            if entry.primary_id == own.id and not entry.failing
        }
        if not any(replica.running for replica in candidates.values()):
            raise ValueError(f"primary {node.port} has no running replica to take over")
        node.kill()
        promoted: list[RedisServer] = []

        def problem() -> str | None:
            for entry in self.cluster_nodes():
                if entry.id in candidates and entry.is_primary and not entry.failing:
                    promoted[:] = [candidates[entry.id]]
                    return self._stability_problem(None)
            return f"no replica of {node.port} promoted yet"

        self._wait(f"failover of primary {node.port}", problem, timeout_s)
        return promoted[0]

    def begin_migration(self, slot: int, to_node: RedisServer) -> Migration:
        """Open a live move of ``slot`` to the primary ``to_node``: IMPORTING on the target,
        then MIGRATING on the source (the order ``redis-cli`` uses). No key moves yet."""
        source = self.node_for_slot(slot)
        if source is to_node:
            raise ValueError(f"slot {slot} is already served by node {to_node.port}")
        migration = Migration(slot, source, to_node, self.node_id(source), self.node_id(to_node))
        self.call(to_node, "CLUSTER", "SETSLOT", slot, "IMPORTING", migration.source_id)
        self.call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", migration.target_id)
        return migration

    def move_keys(self, migration: Migration, count: int = MIGRATE_BATCH) -> int:
        """Move up to ``count`` keys of the slot with one MIGRATE; return how many moved
        (0 once the source has no key of the slot left)."""
        source, target = migration.source, migration.target
        keys = self.call(source, "CLUSTER", "GETKEYSINSLOT", migration.slot, count)
        if not keys:
            return 0
        self.call(
            source, "MIGRATE", target.host, target.port, "", 0, MIGRATE_TIMEOUT_MS, "KEYS", *keys
        )
        migration.moved.extend(keys)
        return len(keys)

    def finish_migration(self, migration: Migration, batch: int = MIGRATE_BATCH) -> None:
        """Move the keys still on the source, hand the slot to the target (SETSLOT NODE on
        the target, the source, then every other primary) and wait until all nodes agree."""
        while self.move_keys(migration, batch):
            pass
        self._assign(migration)

    def _assign(self, migration: Migration) -> None:
        """End a migration whose keys have all moved, and wait for the new slot map."""
        slot, target_id = migration.slot, migration.target_id
        others = [
            node
            for node in self.primaries()
            if node is not migration.source and node is not migration.target
        ]
        for node in [migration.target, migration.source, *others]:
            self.call(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)

        def problem() -> str | None:
            found = self._stability_problem(None)
            if found is None and self.node_for_slot(slot) is not migration.target:
                return f"slot {slot} not yet on node {migration.target.port}"
            return found

        self._wait(f"slot {slot} moved to node {migration.target.port}", problem, STABLE_TIMEOUT_S)

    def half_migrate(self, slot: int, to_node: RedisServer, keys: int | None = None) -> Migration:
        """Start moving ``slot`` to ``to_node`` and stop half way: the slot stays MIGRATING
        on the source and IMPORTING on the target, with ``keys`` keys moved (by default half
        of them, rounded down). Finish with `finish_migration`."""
        migration = self.begin_migration(slot, to_node)
        if keys is None:
            keys = int(self.call(migration.source, "CLUSTER", "COUNTKEYSINSLOT", slot)) // 2
        while len(migration.moved) < keys:
            if not self.move_keys(migration, min(MIGRATE_BATCH, keys - len(migration.moved))):
                break
        return migration

    def migrate_slot(
        self,
        slot: int,
        to_node: RedisServer,
        batch: int = MIGRATE_BATCH,
        between_batches: Callable[[], object] | None = None,
    ) -> Migration:
        """Move ``slot`` live to the primary ``to_node``, ``batch`` keys per MIGRATE, calling
        ``between_batches()`` after each batch so a test can run traffic mid-move."""
        migration = self.begin_migration(slot, to_node)
        while self.move_keys(migration, batch):
            if between_batches is not None:
                between_batches()
        self._assign(migration)
        return migration

    async def amigrate_slot(
        self,
        slot: int,
        to_node: RedisServer,
        batch: int = MIGRATE_BATCH,
        between_batches: Callable[[], Awaitable[object]] | None = None,
        pause_s: float = 0.0,
    ) -> Migration:
        """`migrate_slot` for async tests: the Redis calls run in a thread, and between
        batches the loop runs (``asyncio.sleep(pause_s)``, then ``await between_batches()``)."""
        migration = await asyncio.to_thread(self.begin_migration, slot, to_node)
        while await asyncio.to_thread(self.move_keys, migration, batch):
            await asyncio.sleep(pause_s)
            if between_batches is not None:
                await between_batches()
        await asyncio.to_thread(self._assign, migration)
        return migration

    # -- shutdown -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients, stop every node and delete their directories."""
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports = ", ".join(str(node.port) for node in self.nodes)
        return f"<RedisClusterServers {ports}>"


def _owns(entry: NodeEntry, slot: int) -> bool:
    """Whether ``slot`` is among the slot ranges of a ``CLUSTER NODES`` entry."""
    for item in entry.slots:
        if item.startswith("["):
            continue
        first, _, last = item.partition("-")
        if int(first) <= slot <= int(last or first):
            return True
    return False
