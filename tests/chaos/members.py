"""The processes of a chaos run: Faust workers and module runners, each a subprocess whose
every generation (each start) logs to a file of its own, ``<name>.<generation>.log``, so the
log of a killed process survives its restarts.

Nothing here waits: ``spawn`` starts a process and returns, ``poll`` says whether it is ready
or has exited. The chaos driver's conductor calls them from one thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.harness import REPO, faust_worker


@dataclass
class Member:
    """One supervised process of the run."""

    name: str
    kind: str  # "worker" or "runner"
    argv: list[str]
    env: dict[str, str]
    data_dir: Path
    ready_marker: bytes
    generation: int = 0
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    started_at: float = 0.0
    logs: list[Path] = field(default_factory=list)
    _read: int = 0
    _tail: bytes = b""

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.{self.generation}.log"

    def spawn(self) -> None:
        """Start the next generation; ``poll`` tells when it is ready."""
        assert not self.running(), f"{self.name} is running already"
        self.generation += 1
        self.ready, self._read, self._tail = False, 0, b""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "DATA_DIR": str(self.data_dir), "PYTHONPATH": str(REPO)}
        self.logs.append(self.log_path)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.argv], cwd=REPO, env=env, stdout=log, stderr=log
            )
        self.started_at = time.monotonic()

    def poll(self) -> bool:
        """Whether this generation is ready (its marker is in its log); reads only what is new."""
        if not self.ready and self.process is not None:
            with self.log_path.open("rb") as log:
                log.seek(self._read)
                chunk = log.read()
            self._read += len(chunk)
            seen = self._tail + chunk
            self.ready = self.ready_marker in seen
            self._tail = seen[-len(self.ready_marker) :]
        return self.ready

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.ready = False

    def terminate(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def worker(n: int, env: dict[str, str], data: Path, port: int) -> Member:
    """Faust worker ``w<n>`` on web port ``port`` (also its stable worker id)."""
    service = faust_worker("streams.process.worker", env, data / f"w{n}", port)
    return Member(f"w{n}", "worker", service.argv, service.env, service.data_dir, b"Ready")


def runner(n: int, env: dict[str, str], data: Path, port: int) -> Member:
    """Module runner ``m<n>`` (every module handler, the outbox relay, the read model), as
    ``deploy/workers.sh`` runs one beside each worker: its ``WEB_PORT`` makes its static
    group member ids, so each runner needs its own."""
    argv = ["-m", "streams.modules.runner"]
    env = {**env, "WEB_PORT": str(port)}
    return Member(f"m{n}", "runner", argv, env, data / f"m{n}", b"modules running")
