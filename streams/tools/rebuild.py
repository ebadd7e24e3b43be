"""Rebuild the process table into a new app version, and the read model, from the history.

The process manager's table is a fold of its inputs (``streams.tools.history``). Rebuilding,
with no side effect:

1. the fold runs here, offline: ``step``'s commands are dropped, nothing is sent anywhere;
2. each order's resulting ``Process`` is written to the changelog topic of the new app version
   (``<app_id>-v<N>-processes-changelog``, compacted, same partition number as the order's
   events), which is where a Faust worker of that version restores its table from;
3. the new version's consumer group (``<app_id>-v<N>``) gets committed offsets at the input
   topics' ends, where the fold stopped.

``rebuild_read_model`` truncates ``orders_view`` and projects the events topics again; a
replay ``with_read_model`` does both in the same pass.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from process_manager import REACTS_TO
from streams.kafka import groups
from streams.kafka.admin import replication_factor
from streams.kafka.producing import produce_waiting
from streams.kafka.topics import PROCESS_INPUTS, READ_MODEL_INPUTS
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.read_model import store as read_model
from streams.settings import Settings
from streams.tools.history import (
    Advances,
    Input,
    PartitionScan,
    count_records,
    fold_order,
    partition_count,
    scan,
    truncated_topics,
)
from streams.tools.jobs import Jobs, Work
from streams.tools.progress import Progress


class ReplayRefused(RuntimeError):
    """The target version is in use already: replaying into it would mix two histories."""


@dataclass
class ReplayReport:
    version: int
    app_id: str
    changelog: str
    events: int = 0
    undecodable: int = 0
    processes: int = 0
    quarantined: list[str] = field(default_factory=list)
    ends: dict[str, dict[int, int]] = field(default_factory=dict)
    read_model_rows: int | None = None
    elapsed_s: float = 0.0
    old_version_running: bool = False
    truncated: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def replay(
    settings: Settings,
    to_version: int,
    *,
    with_read_model: bool = False,
    stream: TextIO | None = None,
    jobs: int = 1,
) -> ReplayReport:
    """Fold the inputs into ``to_version``'s changelog and commit its group at the ends.

    ``jobs``: processes that read and fold the partitions (``streams.tools.jobs``).
    """
    if to_version == settings.app_version:
        raise ReplayRefused(f"version {to_version} is the running version; pick a new one")
    report = ReplayReport(
        to_version,
        groups.process_manager(settings, to_version),
        settings.process_changelog_topic(to_version),
    )
    names = [settings.topic(t) for t in PROCESS_INPUTS]
    partitions = partition_count(settings, names)
    _check_unused(settings, report, names, partitions)
    report.old_version_running = _group_has_members(settings, groups.process_manager(settings))
    report.truncated = truncated_topics(settings, names, partitions)
    _create_changelog(settings, report.changelog, partitions)
    if with_read_model:
        _reset_read_model(settings)
    total = count_records(settings, names, partitions)
    running = Jobs(_folding(settings, with_read_model), partitions, jobs)
    try:
        progress = Progress(f"replay v{to_version}", total, stream or sys.stderr)
        writer = ChangelogWriter(settings, report.changelog)
        done: dict[int, FoldedPartition] = {}
        for part in running.results(progress):
            for order_id, value, _ in part.processes:
                writer.write(part.partition, order_id, value)
            done[part.partition] = part
    finally:
        running.close()
    writer.close()
    for partition in sorted(done):
        part = done[partition]
        report.events += part.events
        report.undecodable += part.undecodable
        report.processes += len(part.processes)
        report.quarantined += [order_id for order_id, _, parked in part.processes if parked]
        for name, end in part.ends.items():
            report.ends.setdefault(name, {})[partition] = end
    _commit_group(settings, report.app_id, report.ends)
    if with_read_model:
        report.read_model_rows = _count_rows(settings)
    report.elapsed_s = progress.finish()
    return report


@dataclass
class FoldedPartition:
    """What one partition number of the inputs folds to: per order with a process, its id,
    its changelog value and whether it is quarantined."""

    partition: int
    events: int
    undecodable: int
    ends: dict[str, int]
    processes: list[tuple[str, bytes, bool]]


def _folding(settings: Settings, with_read_model: bool) -> Work[FoldedPartition]:
    """A job's work: read its partitions, fold every order (and project the read model)."""
    timeouts = settings.timeouts()
    # The read model projects every event; the fold alone needs those the process reacts to.
    reacting = None if with_read_model else REACTS_TO

    def work(partitions: Sequence[int], progress: Advances) -> Iterator[FoldedPartition]:
        for part in scan(
            settings, PROCESS_INPUTS, progress=progress, partitions=partitions, reacting=reacting
        ):
            processes = []
            for order_id, items in part.orders().items():
                process = fold_order(items, timeouts).process
                if process is not None:
                    value = process.model_dump_json().encode()
                    processes.append((order_id, value, process.quarantine is not None))
            if with_read_model:
                _project(settings, part, list(part.merged()))
            yield FoldedPartition(
                part.partition, part.events, part.undecodable, part.ends, processes
            )

    return work


def rebuild_read_model(settings: Settings, stream: TextIO | None = None) -> ReplayReport:
    """Truncate the read model and project the events topics again, from the beginning."""
    report = ReplayReport(settings.app_version, groups.process_manager(settings), "")
    names = [settings.topic(t) for t in READ_MODEL_INPUTS]
    partitions = partition_count(settings, names)
    _reset_read_model(settings)
    progress = Progress(
        "read model", count_records(settings, names, partitions), stream or sys.stderr
    )
    for part in scan(settings, READ_MODEL_INPUTS, progress=progress):
        inputs = list(part.merged())
        report.events += len(inputs)
        report.undecodable += part.undecodable
        _project(settings, part, inputs)
    report.read_model_rows = _count_rows(settings)
    report.elapsed_s = progress.finish()
    return report


class ChangelogWriter:
    """Writes ``Process`` records as Faust's table does: raw key, JSON value, given partition."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.failures: list[str] = []
        # murmur2 partitioner (producer_config) agrees with Faust; the partition is given anyway:
        # the order's events partition, which is where Faust writes the changelog record.
        self.producer = Producer(
            settings.producer_config(**{"enable.idempotence": True, "linger.ms": 20})
        )

    def write(self, partition: int, order_id: str, value: bytes) -> None:
        """``value``: the process as Faust's table writes it, ``Process.model_dump_json``."""
        produce_waiting(
            self.producer,
            self.topic,
            poll_s=0.5,
            key=order_id.encode(),
            value=value,
            partition=partition,
            on_delivery=self._delivered,
        )
        self.producer.poll(0)

    def close(self) -> None:
        if self.producer.flush(60) != 0:
            raise RuntimeError(f"records to {self.topic} not delivered in time")
        if self.failures:
            raise RuntimeError(f"{len(self.failures)} records failed: {self.failures[:3]}")

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failures.append(str(error))


def _check_unused(
    settings: Settings, report: ReplayReport, inputs: list[str], partitions: int
) -> None:
    admin = AdminClient(settings.confluent_config())
    topics = admin.list_topics(timeout=10).topics
    changelog = topics.get(report.changelog)
    if changelog is not None and changelog.error is None:
        if len(changelog.partitions) != partitions:
            raise ReplayRefused(
                f"{report.changelog} has {len(changelog.partitions)} partitions, not {partitions}"
            )
        if count_records(settings, [report.changelog], partitions) > 0:
            raise ReplayRefused(f"{report.changelog} holds records already; pick a new version")
    consumer = Consumer(settings.confluent_config(**{"group.id": report.app_id}))
    try:
        committed = consumer.committed(
            [TopicPartition(name, p) for name in inputs for p in range(partitions)], timeout=10
        )
    finally:
        consumer.close()
    if any(tp.offset >= 0 for tp in committed):
        raise ReplayRefused(f"consumer group {report.app_id} has committed offsets already")


def _group_has_members(settings: Settings, group: str) -> bool:
    admin = AdminClient(settings.confluent_config())
    try:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except KafkaException:
        return False
    return bool(described.members)


def _create_changelog(settings: Settings, topic: str, partitions: int) -> None:
    """Create the changelog as Faust declares it: compacted, the table's partition count."""
    admin = AdminClient(settings.confluent_config())
    new = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=replication_factor(settings),
        config={"cleanup.policy": "compact"},
    )
    for future in admin.create_topics([new], operation_timeout=30).values():
        try:
            future.result()
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def _commit_group(settings: Settings, group: str, ends: dict[str, dict[int, int]]) -> None:
    """Commit ``group``'s offsets at ``ends``, so its workers start where the fold stopped."""
    offsets = [
        TopicPartition(topic, partition, offset)
        for topic, by_partition in ends.items()
        for partition, offset in by_partition.items()
    ]
    consumer = Consumer(settings.confluent_config(**{"group.id": group}))
    try:
        for tp in consumer.commit(offsets=offsets, asynchronous=False) or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
    finally:
        consumer.close()


def _reset_read_model(settings: Settings) -> None:
    migrate(settings.database_url)
    with connect(settings.database_url) as conn:
        read_model.reset(conn)


def _project(settings: Settings, part: PartitionScan, inputs: list[Input]) -> None:
    # The read model's topics come first in both scans (PROCESS_INPUTS starts with them).
    events = {settings.topic(t): t for t in READ_MODEL_INPUTS}
    names = list(events)
    records = [
        read_model.Projected(names[i.topic_index], part.partition, i.offset, i.envelope)
        for i in inputs
        if i.topic_index < len(READ_MODEL_INPUTS)
    ]
    ends = {(name, part.partition): end for name, end in part.ends.items() if name in events}
    with connect(settings.database_url) as conn:
        for start in range(0, max(len(records), 1), 1000):
            chunk = records[start : start + 1000]
            last = start + 1000 >= len(records)
            read_model.apply_batch(conn, chunk, ends if last else None)


def _count_rows(settings: Settings) -> int:
    with connect(settings.database_url) as conn:
        return read_model.count_rows(conn)
