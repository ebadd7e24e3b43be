"""Prometheus metrics of one worker process, served as ``GET /metrics`` on Faust's web server.

Counters (this process since it started; sum them over workers):

    transitions_total{from_state,to_state}       process moves ("none" before CartFinalized)
    messages_total{topic_kind,outcome}           process manager input by contract topic,
                                                 outcome applied|duplicate|ignored
    timeouts_fired_total                         ProcessTimedOut sent by the timeout timer
    dead_letters_total{source_topic}             records sent to dead-letters, by their topic
    commands_decided_total{module,result}        module commands, accepted|rejected|duplicate
    outbox_published_total                       outbox rows published to Kafka

Gauges, computed when scraped and cached for ``CACHE_SECONDS``:

    processes{state}                             processes in this worker's active partitions
                                                 (sum over workers)
    consumer_lag{group,topic}                    committed records not yet consumed by the
                                                 group (the same on every worker: take max)

Counting is an ``inc()`` on the hot path; nothing here does I/O per message. The gauges do
their I/O at scrape time: the lag off the event loop, the table count on it (like the stats
view), and both at most once per ``CACHE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import prometheus_client
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from pydantic import BaseModel, ConfigDict

from process_manager import State
from process_manager.table import TRANSITIONS
from streams.kafka.topics import COMMAND_TOPICS, EVENT_TOPICS
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)

CACHE_SECONDS = 3.0
# Partitions whose raw lag is at most this are read to the end to count real records: a
# transaction leaves a commit marker behind its records, which no consumer ever commits past.
PROBE_LIMIT = 50
START = "none"  # from_state of the transition that creates a process
OUTCOMES = ("applied", "duplicate", "ignored")
RESULTS = ("accepted", "rejected", "duplicate")
MODULES = ("carts", "orders", "payments", "shipments")
PROCESS_MANAGER_INPUTS = (*EVENT_TOPICS, "processes.commands")

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
"""The registry of this process; every metric of the project is on it."""

_TRANSITIONS = Counter(
    "transitions", "Process state transitions.", ["from_state", "to_state"], registry=REGISTRY
)
_MESSAGES = Counter(
    "messages",
    "Messages handled by the process manager, by contract topic and outcome.",
    ["topic_kind", "outcome"],
    registry=REGISTRY,
)
_TIMEOUTS = Counter(
    "timeouts_fired", "ProcessTimedOut commands sent by the timeout timer.", registry=REGISTRY
)
_DEAD_LETTERS = Counter(
    "dead_letters", "Records sent to dead-letters, by source topic.", ["source_topic"],
    registry=REGISTRY,
)  # fmt: skip
_COMMANDS = Counter(
    "commands_decided",
    "Module commands decided, by module and result.",
    ["module", "result"],
    registry=REGISTRY,
)
_OUTBOX = Counter("outbox_published", "Outbox rows published to Kafka.", registry=REGISTRY)
_FORWARDED = Counter(
    "misrouted_forwarded",
    "Records that arrived on another partition than their key hashes to, forwarded there.",
    ["topic"],
    registry=REGISTRY,
)

for (_from, _trigger), _row in TRANSITIONS.items():
    _TRANSITIONS.labels(_from.value if _from else START, _row.next.value)
for _kind in PROCESS_MANAGER_INPUTS:
    for _outcome in OUTCOMES:
        _MESSAGES.labels(_kind, _outcome)
for _module in MODULES:
    for _result in RESULTS:
        _COMMANDS.labels(_module, _result)


# Counting (hot path)


def transition(from_state: str | None, to_state: str) -> None:
    _TRANSITIONS.labels(from_state or START, to_state).inc()


def message(topic_kind: str, outcome: str) -> None:
    _MESSAGES.labels(topic_kind, outcome).inc()


def timeout_fired() -> None:
    _TIMEOUTS.inc()


def dead_letter(source_topic: str) -> None:
    _DEAD_LETTERS.labels(source_topic).inc()


def command_decided(module: str, result: str, count: int = 1) -> None:
    _COMMANDS.labels(module, result).inc(count)


def outbox_published(count: int) -> None:
    _OUTBOX.inc(count)


def forwarded(topic: str) -> None:
    _FORWARDED.labels(topic).inc()


# Gauges (scrape time)


class _StateOnly(BaseModel):
    """The fields of a process record the gauges need (parsing skips the rest)."""

    model_config = ConfigDict(extra="ignore")
    state: State
    quarantine: dict[str, Any] | None = None


class ProcessStates:
    """``processes{state}``: the processes of this worker's active partitions, per state, and
    ``processes_quarantined``: how many of them wait for an operator's resume or skip.

    ``refresh`` runs on the event loop (the table is the agent's); while the worker rebalances
    it keeps the last count.
    """

    def __init__(self, app: Any, table: Any, ttl: float = CACHE_SECONDS) -> None:
        self.app = app
        self.table = table
        self.ttl = ttl
        self._counts: dict[State, int] = dict.fromkeys(State, 0)
        self._quarantined = 0
        self._at = float("-inf")

    def refresh(self) -> None:
        if time.monotonic() - self._at < self.ttl:
            return
        if self.app.rebalancing or not self.app.tables.actives_ready:
            return
        counts, quarantined = dict.fromkeys(State, 0), 0
        for raw in self.table.values():
            record = _StateOnly.model_validate_json(raw)
            counts[record.state] += 1
            quarantined += record.quarantine is not None
        self._counts, self._quarantined, self._at = counts, quarantined, time.monotonic()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "processes", "Processes in this worker's active partitions, by state.", labels=["state"]
        )
        for state, count in self._counts.items():
            gauge.add_metric([state.value], count)
        yield gauge
        yield GaugeMetricFamily(
            "processes_quarantined",
            "Quarantined processes in this worker's active partitions.",
            value=self._quarantined,
        )


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    """The project's consumer groups and the topics each consumes (full names)."""
    groups = {settings.faust_app_id(): [settings.topic(t) for t in PROCESS_MANAGER_INPUTS]}
    for module in MODULES:
        groups[f"{settings.app_id}-{module}"] = [settings.topic(f"{module}.commands")]
    groups[f"{settings.app_id}-read-model"] = [settings.topic(t) for t in EVENT_TOPICS]
    return groups


class ConsumerLag:
    """``consumer_lag{group,topic}``: records a group has yet to consume, summed over partitions.

    Per partition: the last stable offset (read_committed end) minus the group's committed
    offset, or minus the start of the log when the group has committed nothing there yet. A
    small difference is checked by reading those records read_committed: transaction markers
    and aborted records are not lag. ``refresh`` blocks (Kafka requests): call it off the loop.
    """

    def __init__(
        self,
        settings: Settings,
        groups: dict[str, list[str]],
        ttl: float = CACHE_SECONDS,
        timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.groups = groups
        self.ttl = ttl
        self.timeout = timeout
        self._lag: dict[tuple[str, str], int] = {}
        self._at = float("-inf")
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None

    def refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return
            try:
                self._lag = self.measure()
            except Exception as error:  # a scrape must not fail because Kafka is slow
                log.warning("consumer lag not measured", error=repr(error))
                self._admin = None
            self._at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "consumer_lag",
            "Records not yet consumed by a consumer group, summed over partitions.",
            labels=["group", "topic"],
        )
        for (group, topic), lag in sorted(self._lag.items()):
            gauge.add_metric([group, topic], lag)
        yield gauge

    def measure(self) -> dict[tuple[str, str], int]:
        """The lag per (group, topic) now (blocking Kafka requests; no cache)."""
        admin = self._admin = self._admin or AdminClient(self.settings.confluent_config())
        partitions = range(self.settings.topic_partitions)
        topics = sorted({t for ts in self.groups.values() for t in ts})
        every = [TopicPartition(t, p) for t in topics for p in partitions]
        ends = self._offsets(admin, every, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        starts = self._offsets(admin, every, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        positions: dict[tuple[str, str, int], int] = {}
        for group, group_topics in self.groups.items():
            asked = [TopicPartition(t, p) for t in group_topics for p in partitions]
            request = [ConsumerGroupTopicPartitions(group, asked)]
            future = admin.list_consumer_group_offsets(request, request_timeout=self.timeout)
            answer = future[group].result(timeout=self.timeout)
            committed = {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions}
            for t in group_topics:
                for p in partitions:
                    offset = committed.get((t, p), -1)
                    positions[(group, t, p)] = offset if offset >= 0 else starts[(t, p)]
        raw = {k: max(0, ends[(k[1], k[2])] - at) for k, at in positions.items()}
        probed = self._records_ahead(
            {k: positions[k] for k, lag in raw.items() if 0 < lag <= PROBE_LIMIT}, ends
        )
        lag: dict[tuple[str, str], int] = {}
        for (group, t, p), n in raw.items():
            lag[(group, t)] = lag.get((group, t), 0) + probed.get((group, t, p), n)
        return lag

    def _offsets(
        self, admin: AdminClient, partitions: list[TopicPartition], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        futures = admin.list_offsets(
            dict.fromkeys(partitions, spec),
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=self.timeout,
        )
        return {
            (tp.topic, tp.partition): future.result(timeout=self.timeout).offset
            for tp, future in futures.items()
        }

    def _records_ahead(
        self, positions: dict[tuple[str, str, int], int], ends: dict[tuple[str, int], int]
    ) -> dict[tuple[str, str, int], int]:
        """The committed records between each position and the end, read read_committed."""
        if not positions:
            return {}
        # Groups that share a partition at the same position share one read.
        starts: dict[tuple[str, int], set[int]] = {}
        for (_, t, p), at in positions.items():
            starts.setdefault((t, p), set()).add(at)
        reads = sorted({(t, p, at) for (t, p), ats in starts.items() for at in ats})
        counted: dict[tuple[str, int, int], int] = {}
        for batch in _unique_partitions(reads):
            counted |= self._count(batch, ends)
        return {k: counted[(k[1], k[2], at)] for k, at in positions.items()}

    def _count(
        self, reads: list[tuple[str, int, int]], ends: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int, int], int]:
        reader = Consumer(
            self.settings.confluent_config(
                **{
                    "group.id": f"{self.settings.app_id}-lag-probe",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        counts = {(t, p, at): 0 for t, p, at in reads}
        started = {(t, p): at for t, p, at in reads}
        open_partitions = set(started)
        deadline = time.monotonic() + self.timeout
        try:
            reader.assign([TopicPartition(t, p, at) for t, p, at in reads])
            while open_partitions and time.monotonic() < deadline:
                for record in reader.consume(500, timeout=0.2):
                    where = (record.topic() or "", record.partition() or 0)
                    error = record.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        continue
                    if error is None and (record.offset() or 0) < ends[where]:
                        counts[(*where, started[where])] += 1
                    if error is not None or (record.offset() or 0) + 1 >= ends[where]:
                        open_partitions.discard(where)
        finally:
            reader.close()
        if open_partitions:
            raise TimeoutError(f"lag probe did not reach the end of {sorted(open_partitions)}")
        return counts


def _unique_partitions(
    reads: list[tuple[str, int, int]],
) -> Iterable[list[tuple[str, int, int]]]:
    """Split reads so that no batch assigns one partition twice."""
    pending = list(reads)
    while pending:
        batch: list[tuple[str, int, int]] = []
        seen: set[tuple[str, int]] = set()
        rest: list[tuple[str, int, int]] = []
        for read in pending:
            (rest if read[:2] in seen else batch).append(read)
            seen.add(read[:2])
        yield batch
        pending = rest


# The endpoint


def register_metrics(app: Any, processes: Any, settings: Settings) -> None:
    """Add the gauges of ``processes`` and of consumer lag, and ``GET /metrics``, to ``app``."""
    states = ProcessStates(app, processes)
    lag = ConsumerLag(settings, consumer_groups(settings))
    REGISTRY.register(states)
    REGISTRY.register(lag)
    for kind in PROCESS_MANAGER_INPUTS + COMMAND_TOPICS:
        _DEAD_LETTERS.labels(settings.topic(kind))

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        await asyncio.to_thread(lag.refresh)
        states.refresh()
        body = generate_latest(REGISTRY)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
