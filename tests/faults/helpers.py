"""Helpers of the fault scenarios: worker processes, message tallies, the results file.

Timeouts here only stop a broken scenario from hanging; no test asserts how fast anything is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0  # starting an interpreter on a loaded two-core machine takes seconds
POLL_S = 0.05
RESULTS_ENV = "ASGI_REDIS_FAULTS_RESULTS"


def results_path() -> Path:
    """Where the scenario counts go: ``$ASGI_REDIS_FAULTS_RESULTS`` or the temp directory."""
    default = Path(tempfile.gettempdir()) / "asgi-redis-faults.json"
    return Path(os.environ.get(RESULTS_ENV, default))


@dataclass
class Tally:
    """The counts of one scenario: what was sent, acknowledged and delivered how often.

    ``sent`` counts attempts; ``acknowledged`` the sends that returned normally; ``failed``
    the sends that raised. ``lost`` is acknowledged but never delivered; ``late`` is
    delivered although its send raised (the command ran but its reply was lost).
    """

    scenario: str
    bound: str
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    delivered: int = 0
    duplicates: int = 0
    lost: int = 0
    late: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def count(
        self, acked: Iterable[object], failed: Iterable[object], seen: Iterable[object]
    ) -> None:
        """Fill the counts from ids: acknowledged sends, failed sends, ids seen on receive."""
        acked_set, failed_set = set(acked), set(failed)
        seen_counts = Counter(seen)
        self.acknowledged = len(acked_set)
        self.failed = len(failed_set)
        self.sent = self.acknowledged + self.failed
        self.delivered = sum(1 for key in seen_counts if key in acked_set | failed_set)
        self.duplicates = sum(times - 1 for times in seen_counts.values() if times > 1)
        self.lost = len(acked_set - set(seen_counts))
        self.late = len(failed_set & set(seen_counts))
        unknown = set(seen_counts) - acked_set - failed_set
        self.extra["unknown"] = len(unknown)

    def summary(self) -> str:
        """One line for the test log."""
        extra = " ".join(f"{key}={value}" for key, value in sorted(self.extra.items()))
        return (
            f"[faults] {self.scenario}: sent={self.sent} acknowledged={self.acknowledged} "
            f"failed={self.failed} delivered={self.delivered} duplicates={self.duplicates} "
            f"lost={self.lost} late={self.late} bound: {self.bound} {extra}"
        ).rstrip()


def record(tally: Tally) -> None:
    """Print the summary line and merge the counts into the results file."""
    print(tally.summary())
    path = results_path()
    try:
        existing = json.loads(path.read_text())
    except (OSError, ValueError):
        existing = {}
    existing[tally.scenario] = {
        **asdict(tally),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written whole then renamed, so a reader never sees half a file.
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(existing, indent=2, sort_keys=True, default=str))
    os.replace(partial, path)


class Worker:
    """One ``tests.faults.worker`` process and its log file."""

    def __init__(self, url: str, log_dir: Path, name: str, mode: str, *args: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log_path.touch()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.worker", url, str(self.log_path), mode, *args],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(log_dir / f"{name}.stderr").open("wb"),
        )

    def lines(self) -> list[str]:
        """Every complete line logged so far."""
        text = self.log_path.read_text()
        return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]

    def ids(self) -> list[tuple[str, int]]:
        """``(label, id)`` of every message this worker received, in order."""
        found = []
        for line in self.lines():
            label, _, number = line.partition(" ")
            if number:
                found.append((label, int(number)))
        return found

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until the worker logged ``ready``; fail with its stderr if it died first."""
        deadline = time.monotonic() + timeout_s
        while "ready" not in self.lines():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} not ready:\n{self.stderr()}")
            time.sleep(POLL_S)

    def stderr(self) -> str:
        """The worker's stderr so far (tracebacks)."""
        return (self.log_path.parent / f"{self.name}.stderr").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no close, no goodbye; whatever it had popped is gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (the worker closes its layer), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
