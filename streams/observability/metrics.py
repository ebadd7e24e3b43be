"""Prometheus metrics of one worker process, served as ``GET /metrics`` on Faust's web server.

Counters (this process since it started; sum them over workers):

    transitions_total{from_state,to_state}       process moves ("none" before CartFinalized)
    messages_total{topic_kind,outcome}           process manager input by contract topic,
                                                 outcome applied|duplicate|ignored
    timeouts_fired_total                         ProcessTimedOut sent by the timeout timer
    dead_letters_total{source_topic}             records sent to dead-letters, by their topic
    commands_decided_total{module,result}        module commands, accepted|rejected|duplicate
    outbox_published_total                       outbox rows published to Kafka

Gauges, computed when scraped and cached for ``CACHE_SECONDS`` (the lag: ``observability.lag``):

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
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from pydantic import BaseModel, ConfigDict

from process_manager import State
from process_manager.table import TRANSITIONS
from streams.kafka import groups
from streams.kafka.topics import COMMAND_TOPICS, MODULES, PROCESS_INPUTS
from streams.observability.lag import CACHE_SECONDS, ConsumerLag
from streams.settings import Settings

START = "none"  # from_state of the transition that creates a process
OUTCOMES = ("applied", "duplicate", "ignored")
RESULTS = ("accepted", "rejected", "duplicate")

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
for _kind in PROCESS_INPUTS:
    for _outcome in OUTCOMES:
        _MESSAGES.labels(_kind, _outcome)
for _module in MODULES:
    for _result in RESULTS:
        _COMMANDS.labels(_module, _result)


# Counting (hot path)


def transition(from_state: str | None, to_state: str) -> None:
    _TRANSITIONS.labels(from_state or START, to_state).inc()


def message(topic_kind: str, outcome: str, count: int = 1) -> None:
    _MESSAGES.labels(topic_kind, outcome).inc(count)


def timeout_fired() -> None:
    _TIMEOUTS.inc()


def dead_letter(source_topic: str, count: int = 1) -> None:
    _DEAD_LETTERS.labels(source_topic).inc(count)


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


# The endpoint


def register_metrics(app: Any, processes: Any | None, settings: Settings) -> None:
    """Add the gauges of ``processes`` (none in saga mode, which has no table) and of consumer
    lag, and ``GET /metrics``, to ``app``."""
    states = None if processes is None else ProcessStates(app, processes)
    lag = ConsumerLag(settings, groups.members(settings))
    if states is not None:
        REGISTRY.register(states)
    REGISTRY.register(lag)
    for kind in PROCESS_INPUTS + COMMAND_TOPICS:
        _DEAD_LETTERS.labels(settings.topic(kind))

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics(web: Any, request: Any) -> Any:
        await asyncio.to_thread(lag.refresh)
        if states is not None:
            states.refresh()
        body = generate_latest(REGISTRY)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
