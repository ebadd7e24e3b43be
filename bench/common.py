"""Shared pieces: isolated scenarios with their own workers, offsets, the changelog, a driver."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    OffsetSpec,
)

from bench.cpu import ComponentCpu, for_system
from process_manager import TERMINAL_STATES
from streams.kafka.admin import ensure_topics
from streams.kafka.producing import produce_waiting
from streams.kafka.topics import commands_of
from streams.settings import Settings
from streams.tools.demo import Kind, cart_records

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
WORKERS_SH = REPO / "deploy" / "workers.sh"
TERMINAL_MARKERS = tuple(f'"state":"{state.value}"'.encode() for state in TERMINAL_STATES)


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Ports:
    """Web ports from 16200 upward, a fresh range per scenario (no reuse within a run)."""

    def __init__(self, base: int = 16200) -> None:
        self.next = base

    def take(self, count: int) -> int:
        first = self.next
        self.next += max(count, 1) + 2
        return first


@dataclass
class Scenario:
    """Fresh topics (unique TOPIC_PREFIX and APP_ID) and ``workers`` background workers.

    Use as a context manager: the workers are stopped on the way out, always; the scenario's
    topics are deleted afterwards unless ``keep_topics``.
    """

    name: str
    base: Settings
    run_dir: Path
    ports: Ports
    workers: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    keep_topics: bool = False
    settings: Settings = field(init=False)
    env: dict[str, str] = field(init=False)
    data_dir: Path = field(init=False)
    web_port: int = field(init=False)
    started: bool = False

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        prefix, app_id = f"bench-{self.name}-{tag}.", f"bench-{self.name}-{tag}"
        self.settings = self.base.model_copy(update={"topic_prefix": prefix, "app_id": app_id})
        self.data_dir = self.run_dir / self.name
        self.web_port = self.ports.take(self.workers)
        self.env = {
            **os.environ,
            "TOPIC_PREFIX": prefix,
            "APP_ID": app_id,
            "DATA_DIR": str(self.data_dir),
            "WEB_PORT": str(self.web_port),
            "WEB_BIND": "127.0.0.1",
            "KAFKA_BOOTSTRAP_SERVERS": self.base.kafka_bootstrap_servers,
            "PYTHONPATH": str(REPO),
            "PROCESS_TIMEOUTS": "{}",
            **self.extra_env,
        }
        self.env.pop("PROCESS_TIMEOUT_ALL_S", None)

    def __enter__(self) -> Scenario:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_topics(self.settings)
        try:
            self.start_workers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop_workers()
        finally:
            if not self.keep_topics:
                self.delete_topics()

    def start_workers(self) -> None:
        log(f"{self.name}: starting {self.workers} worker(s) on ports {self.web_port}+")
        self.started = True
        result = subprocess.run(
            ["bash", str(WORKERS_SH), "start", str(self.workers)],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"workers did not start: {result.stderr[-2000:]}")

    def stop_workers(self) -> None:
        if not self.started:
            return
        subprocess.run(
            ["bash", str(WORKERS_SH), "stop"],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            timeout=120,
        )
        self.started = False
        log(f"{self.name}: workers stopped")

    def pids(self, kind: str = "w") -> list[int]:
        """The worker processes (kind w), or their module runners (kind m); not their
        supervisors, whose pids are in <kind><n>.pid."""
        found = []
        for pidfile in sorted((self.data_dir / "workers").glob(f"{kind}*.worker.pid")):
            try:
                found.append(int(pidfile.read_text().strip()))
            except (OSError, ValueError):
                continue
        return found

    def rss_mib(self) -> list[float]:
        return [rss_mib(pid) for pid in self.pids()]

    def cpu_by_component(self) -> ComponentCpu:
        """CPU per component of this scenario (broker, PostgreSQL, its workers and module
        runners, this process), counted from now."""
        return ComponentCpu(
            for_system(
                self.settings.kafka_bootstrap_servers,
                self.settings.database_url,
                self.pids(),
                self.pids("m"),
                repo=REPO,
            )
        ).start()

    def topics(self) -> list[str]:
        return scenario_topics(self.settings)

    def delete_topics(self) -> None:
        names = self.topics()
        if not names:
            return
        admin = AdminClient(self.settings.confluent_config())
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()
        groups = [self.settings.faust_app_id(1), self.settings.faust_app_id(2)]
        with contextlib.suppress(Exception):
            admin.delete_consumer_groups(groups, request_timeout=10)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return float(sum(values) - idle), float(sum(values))


@dataclass
class CpuWindow:
    """CPU use of some processes and of the machine between start() and stop()."""

    pids: list[int]
    started: float = 0.0
    cpu0: list[float] = field(default_factory=list)
    busy0: tuple[float, float] = (0.0, 0.0)

    def start(self) -> CpuWindow:
        self.started = time.monotonic()
        self.cpu0 = [cpu_seconds(p) for p in self.pids]
        self.busy0 = machine_busy()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started
        now = [cpu_seconds(p) for p in self.pids]
        per_worker = [(b - a) / wall for a, b in zip(self.cpu0, now, strict=True)]
        busy, total = machine_busy()
        return {
            "worker_cpu_share_of_one_core": per_worker,
            "machine_busy_share": (busy - self.busy0[0]) / max(1.0, total - self.busy0[1]),
            "wall_s": wall,
        }


def scenario_topics(settings: Settings) -> list[str]:
    """Every topic of the scenario: its contract topics, changelogs and Faust's own."""
    admin = AdminClient(settings.confluent_config())
    names = admin.list_topics(timeout=10).topics
    return sorted(
        n for n in names if n.startswith(settings.topic_prefix) or n.startswith(settings.app_id)
    )


def end_offsets(settings: Settings, topics: Iterable[str] | None = None) -> dict[str, int]:
    """The sum of the partitions' end offsets of each topic (read_uncommitted high watermarks)."""
    admin = AdminClient(settings.confluent_config())
    metadata = admin.list_topics(timeout=10).topics
    names = list(topics) if topics is not None else scenario_topics(settings)
    request = {
        TopicPartition(name, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for name in names
        if name in metadata
        for p in metadata[name].partitions
    }
    if not request:
        return {}
    totals: dict[str, int] = dict.fromkeys(names, 0)
    for tp, future in admin.list_offsets(request, request_timeout=15).items():
        totals[tp.topic] += future.result().offset
    return totals


def wait_quiet(settings: Settings, settle: float = 3.0, limit: float = 60.0) -> dict[str, int]:
    """End offsets once nothing was produced for ``settle`` seconds (or ``limit`` passed)."""
    deadline = time.monotonic() + limit
    last = end_offsets(settings)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = end_offsets(settings)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            break
    return last


def partitions_of(client: Any, topic: str, timeout: float = 60.0) -> list[int]:
    """The partitions of ``topic``, waiting until its metadata shows them (a topic just
    created is unknown to metadata requests for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.list_topics(topic, timeout=10).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{topic}: no partitions in the metadata after {timeout:.0f} s")
        time.sleep(0.2)


def reader_at_end(settings: Settings, topic: str) -> Consumer:
    """A consumer of every partition of ``topic`` from its current end (explicit offsets)."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
    )
    assignment = []
    for p in partitions_of(consumer, topic):
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        assignment.append(TopicPartition(topic, p, high))
    consumer.assign(assignment)
    return consumer


def wire_commands(order_id: str, index: int, kind: Kind) -> list[tuple[bytes, bytes]]:
    """The (key, value) records of one cart, as the demo sends them."""
    return cart_records(order_id, index, kind)


@dataclass
class Drive:
    """One batch of carts through the system, followed on the process table's changelog.

    ``done(value)`` says when a changelog record ends an order's part in the batch (terminal
    state by default; e.g. AwaitingPayment when creating live processes). Feeding keeps at most
    ``window`` orders in flight, and at most ``rate`` orders/s when a rate is given.
    """

    settings: Settings
    orders: list[tuple[str, int, Kind]]
    window: int = 1000
    rate: float | None = None
    markers: tuple[bytes, ...] = TERMINAL_MARKERS
    timeout: float = 600.0
    feed_budget: float | None = None  # stop sending new orders after this many seconds
    on_record: Callable[[bytes, bytes, int], None] | None = None
    sent_at: dict[str, float] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)
    feed_started: float = 0.0
    feed_ended: float = 0.0

    def run(self, reader: Consumer, label: str) -> Drive:
        producer = Producer(
            self.settings.producer_config(
                **{
                    "client.id": f"{self.settings.app_id}-bench-driver",
                    "linger.ms": 5,
                    "enable.idempotence": True,
                }
            )
        )
        topic = self.settings.topic(commands_of("carts"))
        total = len(self.orders)
        self.feed_started = time.time()
        started = time.monotonic()
        last_report = started
        sent = 0
        deadline = started + self.timeout
        while len(self.done_at) < total and time.monotonic() < deadline:
            if (
                self.feed_budget is not None
                and sent < total
                and time.monotonic() - started > self.feed_budget
            ):
                log(f"{label}: feeding stopped after {self.feed_budget:.0f} s at {sent}/{total}")
                total = sent
                producer.flush(30)
                self.feed_ended = time.time()
                continue
            in_flight = sent - len(self.done_at)
            paced_ok = self.rate is None or sent < (time.monotonic() - started) * self.rate + 1
            if sent < total and in_flight < self.window and paced_ok:
                order_id, index, kind = self.orders[sent]
                for key, value in wire_commands(order_id, index, kind):
                    produce_waiting(producer, topic, key=key, value=value)
                self.sent_at[order_id] = time.time()
                sent += 1
                producer.poll(0)
                if sent == total:
                    producer.flush(30)
                    self.feed_ended = time.time()
                if sent % 20:
                    continue
                self._drain(reader, 0)
            else:
                producer.poll(0)
                self._drain(reader, 0.02)
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                rate = len(self.done_at) / (time.monotonic() - started)
                log(f"{label}: sent {sent}/{total}, done {len(self.done_at)} ({rate:.0f}/s)")
        producer.flush(30)
        if len(self.done_at) < total:
            log(f"{label}: only {len(self.done_at)}/{total} done within {self.timeout:.0f} s")
        return self

    def _drain(self, reader: Consumer, timeout: float) -> None:
        for message in reader.consume(2000, timeout=timeout):
            key, value = message.key(), message.value()
            if message.error() is not None or key is None or value is None:
                continue
            if self.on_record is not None:
                self.on_record(key, value, message.timestamp()[1])
            if any(marker in value for marker in self.markers):
                order_id = key.decode()
                if order_id in self.sent_at and order_id not in self.done_at:
                    self.done_at[order_id] = message.timestamp()[1] / 1000

    # Figures

    def steady_rate(self, low: float = 0.1, high: float = 0.9) -> float:
        """Completions/s between the ``low`` and ``high`` quantiles of the completion times."""
        times = sorted(self.done_at.values())
        if len(times) < 10:
            return float("nan")
        a, b = int(low * (len(times) - 1)), int(high * (len(times) - 1))
        span = times[b] - times[a]
        return (b - a) / span if span > 0 else float("nan")

    def latencies_ms(self) -> list[float]:
        return [(self.done_at[o] - self.sent_at[o]) * 1000 for o in self.done_at]

    def last_done(self) -> float:
        return max(self.done_at.values(), default=self.feed_started)
