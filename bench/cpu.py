"""CPU per component from /proc: which processes are the broker, PostgreSQL, the workers, the
module runners and the load driver, and how many ms of CPU each spent per order (or input).

The parsing and the arithmetic are pure functions over /proc's text, so the unit tests feed
them strings; ``ComponentCpu`` and ``CpuSampler`` read the live /proc.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat the CPU figures use, in clock ticks."""

    pid: int
    comm: str
    ppid: int
    utime: int
    stime: int
    cutime: int  # of the children it has reaped (waited for)
    cstime: int

    @property
    def own(self) -> int:
        return self.utime + self.stime

    @property
    def with_reaped(self) -> int:
        return self.own + self.cutime + self.cstime


def parse_stat(text: str) -> Stat:
    """One /proc/<pid>/stat line (the command name may hold spaces and parentheses)."""
    head, tail = text.split(" (", 1)
    comm, rest = tail.rsplit(")", 1)
    fields = rest.split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17
    return Stat(
        pid=int(head),
        comm=comm,
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def listening_inodes(net_tcp: str, port: int) -> set[int]:
    """The socket inodes listening on ``port`` in the text of /proc/net/tcp or tcp6."""
    found = set()
    for line in net_tcp.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != LISTEN:
            continue
        if int(parts[1].rsplit(":", 1)[1], 16) == port:
            found.add(int(parts[9]))
    return found


def socket_inode(link: str) -> int | None:
    """The inode of a file descriptor's link text ``socket:[12345]``, else None."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[len("socket:[") : -1])
    return None


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """``root`` and every process below it, given each pid's parent pid."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(sorted(children.get(pid, ())))
    return found


def ms_per(cpu_seconds: float, count: int) -> float | None:
    """Milliseconds of CPU per unit (order, input); None when nothing was done."""
    return cpu_seconds * 1000 / count if count > 0 else None


def per_unit_ms(deltas: Mapping[str, float], count: int) -> dict[str, float | None]:
    """ms of CPU per unit for each component of ``deltas`` (CPU seconds over the window)."""
    return {name: ms_per(seconds, count) for name, seconds in deltas.items()}


def kafka_port(bootstrap_servers: str) -> int:
    """The port of the first broker of a bootstrap list (``host:port,host:port``)."""
    return int(bootstrap_servers.split(",")[0].strip().rsplit(":", 1)[1])


def postgres_port(database_url: str) -> int:
    """The port of a ``postgresql://`` URL (5432 when it names none)."""
    return urlsplit(database_url).port or 5432


def deltas_between(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds spent by each component between two readings."""
    return {name: after[name] - before[name] for name in before if name in after}


# Live /proc


def read_stat(pid: int) -> Stat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_stats() -> dict[int, Stat]:
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                found[stat.pid] = stat
    return found


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (needs to see its file descriptors)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            inodes |= listening_inodes((PROC / "net" / name).read_text(), port)
    if not inodes:
        return None
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if socket_inode(os.readlink(fd)) in inodes:
                        return int(entry.name)
    return None


def kafka_pidfile(repo: Path) -> Path:
    """deploy/kafka/kafka.sh's pid file: the broker's pid when no listener is seen."""
    return Path(os.environ.get("DATA_DIR", repo / ".data")) / "kafka" / "kafka.pid"


def postgres_pidfile(repo: Path) -> Path:
    """deploy/postgres/postgres.sh's cluster's postmaster.pid (its first line is the pid)."""
    return Path(os.environ.get("DATA_DIR", repo / ".data")) / "postgres/cluster/postmaster.pid"


def pid_from_file(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if (PROC / str(pid)).exists() else None


def tree_seconds(root: int | None) -> float:
    """CPU seconds of ``root`` and all its live descendants, each with its reaped children:
    a PostgreSQL backend that exits within the window moves into the postmaster's cutime,
    so the sum keeps it."""
    if root is None:
        return float("nan")
    stats = all_stats()
    if root not in stats:
        return float("nan")
    parents = {pid: s.ppid for pid, s in stats.items()}
    ticks = sum(stats[pid].with_reaped for pid in descendants(root, parents) if pid in stats)
    return ticks / CLOCK_TICKS


def own_seconds(pids: Iterable[int]) -> float:
    """CPU seconds of these processes themselves (all their threads), summed."""
    total = 0
    for pid in pids:
        stat = read_stat(pid)
        if stat is None:
            return float("nan")
        total += stat.own
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every core; /proc/stat counts USER_HZ)."""
    values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


@dataclass
class Components:
    """How to read each component's CPU seconds so far."""

    readers: dict[str, Callable[[], float]] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        now = {name: read() for name, read in self.readers.items()}
        now["machine"] = machine_busy_seconds()
        return now


def components(
    kafka_port: int,
    postgres_port: int | None,
    workers: Sequence[int],
    runners: Sequence[int] = (),
    driver: int | None = None,
    kafka_pidfile: Path | None = None,
    postgres_pidfile: Path | None = None,
) -> Components:
    """The broker (the process listening on ``kafka_port``, else the pid file), PostgreSQL
    (the postmaster on ``postgres_port`` and all its processes), the Faust workers, the
    module runners and the driver (this process unless given). Seeing which process listens
    needs to read the others' file descriptors (root, or the same user); the pid files are the
    fallback."""
    broker = listener_pid(kafka_port)
    if broker is None and kafka_pidfile is not None:
        broker = pid_from_file(kafka_pidfile)
    found = Components()
    found.pids["broker"] = [broker] if broker is not None else []
    found.readers["broker"] = lambda: own_seconds([broker]) if broker is not None else float("nan")
    if postgres_port is not None:
        postmaster = listener_pid(postgres_port)
        if postmaster is None and postgres_pidfile is not None:
            postmaster = pid_from_file(postgres_pidfile)
        found.pids["postgres"] = [postmaster] if postmaster is not None else []
        found.readers["postgres"] = lambda: tree_seconds(postmaster)
    found.pids["worker"] = list(workers)
    found.readers["worker"] = lambda: own_seconds(workers)
    if runners:
        found.pids["module_runner"] = list(runners)
        found.readers["module_runner"] = lambda: own_seconds(runners)
    me = driver if driver is not None else os.getpid()
    found.pids["driver"] = [me]
    found.readers["driver"] = lambda: own_seconds([me])
    return found


def for_system(
    bootstrap_servers: str,
    database_url: str,
    workers: Sequence[int],
    runners: Sequence[int] = (),
    repo: Path | None = None,
) -> Components:
    """Every component of an end-to-end run on this machine's broker and PostgreSQL (the
    deploy scripts' pid files under ``repo`` as the fallback)."""
    return components(
        kafka_port(bootstrap_servers),
        postgres_port(database_url),
        workers,
        runners,
        kafka_pidfile=kafka_pidfile(repo) if repo else None,
        postgres_pidfile=postgres_pidfile(repo) if repo else None,
    )


@dataclass
class ComponentCpu:
    """CPU seconds per component between start() and stop(), and per unit of work."""

    of: Components
    before: dict[str, float] = field(default_factory=dict)
    started: float = 0.0

    def start(self) -> ComponentCpu:
        self.started = time.monotonic()
        self.before = self.of.read()
        return self

    def stop(self, units: int) -> dict[str, Any]:
        return summary(
            deltas_between(self.before, self.of.read()),
            units,
            time.monotonic() - self.started,
            self.of.pids,
        )


def summary(
    deltas: Mapping[str, float], units: int, wall_s: float, pids: Mapping[str, list[int]]
) -> dict[str, Any]:
    """The window's figures: CPU seconds and ms per unit per component, the sum of ours, and
    the rest of the machine (other people's processes on a shared box, the kernel)."""
    ours = {name: seconds for name, seconds in deltas.items() if name != "machine"}
    total = sum(ours.values())
    result: dict[str, Any] = {
        "units": units,
        "wall_s": wall_s,
        "cpu_s": dict(ours),
        "ms_per_unit": per_unit_ms(ours, units),
        "ours_ms_per_unit": ms_per(total, units),
        "pids": {name: list(p) for name, p in pids.items()},
    }
    if "machine" in deltas:
        machine = deltas["machine"]
        result["machine_cpu_s"] = machine
        result["machine_ms_per_unit"] = ms_per(machine, units)
        result["other_ms_per_unit"] = ms_per(machine - total, units)
    return result


@dataclass
class CpuSampler:
    """Readings of some components every ``interval`` s in a thread, with their wall times,
    so that a window known only afterwards (record timestamps) can be cut out of them."""

    of: Components
    interval: float = 0.2
    samples: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.of.read()))
            self._stop.wait(self.interval)


def window_of(
    samples: Sequence[tuple[float, Mapping[str, float]]], first: float, last: float
) -> tuple[float, float, dict[str, float]] | None:
    """The widest pair of samples inside [first, last]: their times and the CPU seconds
    spent between them; None when fewer than two samples fall inside."""
    inside = [(t, values) for t, values in samples if first <= t <= last]
    if len(inside) < 2:
        return None
    (t0, a), (t1, b) = inside[0], inside[-1]
    return t0, t1, deltas_between(a, b)


def count_between(times: Iterable[float], t0: float, t1: float) -> int:
    return sum(1 for t in times if t0 <= t <= t1)
