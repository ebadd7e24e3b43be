"""Replay: fold the process manager's inputs offline, and rebuild its table into a new version.

    python -m streams.replay [--to-version N] [--read-model | --read-model-only]

The process manager's table is a fold of its inputs (the four events topics and
``processes.commands``) through the pure ``process_manager.handle``. This module reads those
topics from the beginning (read_committed, every partition to its end), merges the topics of
each partition number by record timestamp, and folds every order through ``handle`` with the
timeouts the workers use. ``streams.verify`` compares that fold with the live table.

Rebuilding, with no side effect:

1. the fold runs here, offline: ``handle``'s commands are dropped, nothing is sent anywhere;
2. each order's resulting ``Process`` is written to the changelog topic of the new app version
   (``<app_id>-v<N>-processes-changelog``, compacted, same partition number as the order's
   events), which is where a Faust worker of that version restores its table from;
3. the new version's consumer group (``<app_id>-v<N>``) gets committed offsets at the input
   topics' ends, where the fold stopped.

A worker started with ``APP_VERSION=N`` then restores the table from the changelog and
consumes only what arrives after the fold: it re-sends no command of the past. Stop the
running workers before replaying: an event they handle after the fold would be handled again
by version N (harmless, its commands keep their deterministic ids, but duplicate records).

``--read-model`` also truncates ``orders_view`` and projects the events topics again in the
same pass; ``--read-model-only`` does only that, without a new version.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from aggregates.messages import Envelope
from process_manager import DEFAULT_TIMEOUTS, Process, State, Timeouts, handle
from streams import read_model
from streams.admin import replication_factor
from streams.codec import DecodeError, decode
from streams.postgres.db import connect
from streams.postgres.migrate import migrate
from streams.producing import produce_waiting
from streams.settings import Settings, get_settings
from streams.topics import ACCEPTED_TYPES, EVENT_TOPICS

INPUT_TOPICS: Final = (*EVENT_TOPICS, "processes.commands")
"""The process manager's inputs, in the order that breaks timestamp ties."""
TABLE: Final = "processes"


# Names, as Faust makes them (faust/types/settings/settings.py, faust/tables/base.py)


def app_id_of(settings: Settings, version: int) -> str:
    """Faust's app id, which is also the consumer group id: ``<id>`` then ``<id>-v<N>``.

    Faust's ``id_format`` default is ``{id}-v{self.version}``, applied for version > 1 only.
    """
    return settings.app_id if version <= 1 else f"{settings.app_id}-v{version}"


def changelog_topic(settings: Settings, version: int) -> str:
    """The process table's changelog topic: ``<app id>-processes-changelog``, no topic prefix."""
    return f"{app_id_of(settings, version)}-{TABLE}-changelog"


def worker_timeouts(settings: Settings) -> Timeouts:
    """The timeouts the workers use: ``settings.timeout_overrides`` over ``DEFAULT_TIMEOUTS``."""
    overrides = settings.timeout_overrides([s.value for s in State])
    return {**DEFAULT_TIMEOUTS, **{State(s): t for s, t in overrides.items()}}


# The fold (pure)


@dataclass(frozen=True)
class Input:
    """One decoded input record, with where and when it was written."""

    timestamp: int
    topic_index: int
    offset: int
    order_id: str
    envelope: Envelope


def merge(per_topic: Sequence[Sequence[Input]]) -> Iterator[Input]:
    """The records of one partition number, merged across topics by record timestamp.

    Each topic's own (offset) order is kept whatever its timestamps; ties go to the topic
    listed first in ``INPUT_TOPICS``.
    """
    return heapq.merge(*per_topic, key=lambda item: (item.timestamp, item.topic_index))


def by_order(inputs: Iterable[Input]) -> dict[str, list[Input]]:
    """``inputs`` grouped per order id, each group in input order."""
    grouped: dict[str, list[Input]] = {}
    for item in inputs:
        grouped.setdefault(item.order_id, []).append(item)
    return grouped


@dataclass(frozen=True)
class Folded:
    """The process one order's inputs fold to (``None``: no finalized cart), or why not."""

    process: Process | None
    error: str | None = None


def fold_order(inputs: Iterable[Input], timeouts: Timeouts) -> Folded:
    """Fold one order's inputs through ``handle``, as a worker would; commands are dropped."""
    process: Process | None = None
    for item in inputs:
        try:
            outcome = handle(process, item.envelope, timeouts=timeouts)
        except ValueError as error:
            return Folded(process, f"{item.envelope.type} {item.envelope.message_id}: {error}")
        if outcome.process is not None:  # ignored messages are taken in too
            process = outcome.process
    return Folded(process)


# Progress


def render_bar(label: str, done: int, total: int, elapsed: float, width: int = 30) -> str:
    """``label [#####-----]  50%  500/1000 events  250 events/s``."""
    fraction = 1.0 if total <= 0 else min(done / total, 1.0)
    filled = int(round(fraction * width))
    rate = done / elapsed if elapsed > 0 else 0.0
    return (
        f"{label} [{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}  "
        f"{done:,}/{total:,} events  {rate:,.0f} events/s"
    )


@dataclass
class Progress:
    """A carriage-return progress bar on a stream (stderr), redrawn at most every 0.1 s."""

    label: str
    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _drawn: float = 0.0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def finish(self) -> float:
        """Draw the final bar and end its line; return the elapsed seconds."""
        now = time.monotonic()
        self.total = max(self.total, self.done)
        self._draw(now)
        self.stream.write("\n")
        self.stream.flush()
        return now - self.started

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _draw(self, now: float) -> None:
        self.stream.write("\r" + render_bar(self.label, self.done, self.total, now - self.started))
        self.stream.flush()


# Reading Kafka


@dataclass
class PartitionScan:
    """Every decodable record of one partition number of the scanned topics, read to the end."""

    partition: int
    per_topic: list[list[Input]]
    ends: dict[str, int]
    """Next offset per full topic name: where the fold stopped (control records included)."""
    undecodable: int = 0

    def merged(self) -> Iterator[Input]:
        return merge(self.per_topic)


def reader(settings: Settings) -> Consumer:
    """A consumer that reads committed records only, reports partition ends, commits nothing."""
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": f"{settings.app_id}-replay-reader",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # An empty partition's end is known once a fetch comes back empty: don't wait.
                "fetch.wait.max.ms": 10,
            }
        )
    )


def partition_count(settings: Settings, topics: Sequence[str]) -> int:
    """The partition count shared by ``topics`` (full names); they must be co-partitioned."""
    admin = AdminClient(settings.confluent_config())
    metadata = admin.list_topics(timeout=10).topics
    counts = {}
    for name in topics:
        if name not in metadata or metadata[name].error is not None:
            raise LookupError(f"topic {name} does not exist")
        counts[name] = len(metadata[name].partitions)
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"topics are not co-partitioned: {counts}")
    return next(iter(counts.values()))


def watermarks(
    settings: Settings, topics: Sequence[str], partitions: int
) -> dict[tuple[str, int], tuple[int, int]]:
    """The low and high watermark of every partition of ``topics`` (full names)."""
    consumer = reader(settings)
    try:
        return {
            (name, p): consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            for name in topics
            for p in range(partitions)
        }
    finally:
        consumer.close()


def count_records(settings: Settings, topics: Sequence[str], partitions: int) -> int:
    """How many records ``topics`` hold now (low to high watermark), for the progress bar."""
    return sum(high - low for low, high in watermarks(settings, topics, partitions).values())


def truncated_topics(settings: Settings, topics: Sequence[str], partitions: int) -> list[str]:
    """Those of ``topics`` whose oldest records were deleted: a fold of them is incomplete.

    The events topics keep everything; ``processes.commands`` (timeouts, operators' cancels)
    is kept for a week only, after which such cancellations cannot be folded again.
    """
    marks = watermarks(settings, topics, partitions)
    return sorted({name for (name, _), (low, _) in marks.items() if low > 0})


def scan(
    settings: Settings,
    topics: Sequence[str] = INPUT_TOPICS,
    *,
    progress: Progress | None = None,
) -> Iterator[PartitionScan]:
    """Read ``topics`` (contract names) one partition number at a time, each to its end.

    Records are decoded with the codec, as the worker does; undecodable ones (which the worker
    dead-letters) are counted and skipped.
    """
    names = [settings.topic(t) for t in topics]
    index = {name: i for i, name in enumerate(names)}
    partitions = partition_count(settings, names)
    consumer = reader(settings)
    try:
        for partition in range(partitions):
            yield _read_partition(consumer, topics, names, index, partition, progress)
    finally:
        consumer.close()


def _read_partition(
    consumer: Consumer,
    topics: Sequence[str],
    names: list[str],
    index: dict[str, int],
    partition: int,
    progress: Progress | None,
) -> PartitionScan:
    consumer.assign([TopicPartition(name, partition, OFFSET_BEGINNING) for name in names])
    found = PartitionScan(partition, [[] for _ in names], {})
    try:
        while len(found.ends) < len(names):
            records = consumer.consume(1000, timeout=0.05)
            for record in records:
                topic = record.topic() or ""
                error = record.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    found.ends.setdefault(topic, record.offset() or 0)
                    continue
                if topic in found.ends:  # arrived after the end we stop at
                    continue
                i = index[topic]
                try:
                    envelope = decode(record.key(), record.value(), ACCEPTED_TYPES[topics[i]])
                except DecodeError:
                    found.undecodable += 1
                    continue
                offset = record.offset() or 0
                order_id = (record.key() or b"").decode()
                timestamp = record.timestamp()[1]
                found.per_topic[i].append(Input(timestamp, i, offset, order_id, envelope))
            if progress is not None:
                progress.advance(sum(1 for r in records if r.error() is None))
    finally:
        consumer.unassign()
    return found


@dataclass(frozen=True)
class TableRecord:
    """The last changelog record of one key: its partition and value (``None``: deleted)."""

    partition: int
    value: bytes | None


def read_table(settings: Settings, topic: str) -> dict[str, TableRecord]:
    """The live table in ``topic`` (a compacted changelog): the last value of every key."""
    partitions = partition_count(settings, [topic])
    consumer = reader(settings)
    table: dict[str, TableRecord] = {}
    ends: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        while len(ends) < partitions:
            for record in consumer.consume(1000, timeout=0.05):
                error = record.error()
                partition = record.partition() or 0
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    ends.add(partition)
                    continue
                if partition in ends:
                    continue
                key = (record.key() or b"").decode(errors="replace")
                table[key] = TableRecord(partition, record.value())
    finally:
        consumer.close()
    return table


# Rebuilding


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
    fold_errors: dict[str, str] = field(default_factory=dict)
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
) -> ReplayReport:
    """Fold the inputs into ``to_version``'s changelog and commit its group at the ends."""
    if to_version == settings.app_version:
        raise ReplayRefused(f"version {to_version} is the running version; pick a new one")
    report = ReplayReport(
        to_version, app_id_of(settings, to_version), changelog_topic(settings, to_version)
    )
    names = [settings.topic(t) for t in INPUT_TOPICS]
    partitions = partition_count(settings, names)
    _check_unused(settings, report, names, partitions)
    report.old_version_running = _group_has_members(
        settings, app_id_of(settings, settings.app_version)
    )
    report.truncated = truncated_topics(settings, names, partitions)
    _create_changelog(settings, report.changelog, partitions)
    if with_read_model:
        _reset_read_model(settings)
    timeouts = worker_timeouts(settings)
    progress = Progress(
        f"replay v{to_version}", count_records(settings, names, partitions), stream or sys.stderr
    )
    writer = ChangelogWriter(settings, report.changelog)
    for part in scan(settings, INPUT_TOPICS, progress=progress):
        inputs = list(part.merged())
        report.events += len(inputs)
        report.undecodable += part.undecodable
        for order_id, items in by_order(inputs).items():
            folded = fold_order(items, timeouts)
            if folded.error is not None:
                report.fold_errors[order_id] = folded.error
            if folded.process is not None:
                writer.write(part.partition, order_id, folded.process)
                report.processes += 1
        for name, end in part.ends.items():
            report.ends.setdefault(name, {})[part.partition] = end
        if with_read_model:
            _project(settings, part, inputs)
    writer.close()
    _commit_group(settings, report.app_id, report.ends)
    if with_read_model:
        report.read_model_rows = _count_rows(settings)
    report.elapsed_s = progress.finish()
    return report


def rebuild_read_model(settings: Settings, stream: TextIO | None = None) -> ReplayReport:
    """Truncate the read model and project the four events topics again, from the beginning."""
    report = ReplayReport(settings.app_version, app_id_of(settings, settings.app_version), "")
    names = [settings.topic(t) for t in EVENT_TOPICS]
    partitions = partition_count(settings, names)
    _reset_read_model(settings)
    progress = Progress(
        "read model", count_records(settings, names, partitions), stream or sys.stderr
    )
    for part in scan(settings, EVENT_TOPICS, progress=progress):
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

    def write(self, partition: int, order_id: str, process: Process) -> None:
        value = process.model_dump_json().encode()
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
    events = {settings.topic(t): t for t in EVENT_TOPICS}
    names = list(events)
    records = [
        read_model.Projected(names[i.topic_index], part.partition, i.offset, i.envelope)
        for i in inputs
        if i.topic_index < len(EVENT_TOPICS)
    ]
    ends = {(name, part.partition): end for name, end in part.ends.items() if name in events}
    with connect(settings.database_url) as conn:
        for start in range(0, max(len(records), 1), 1000):
            chunk = records[start : start + 1000]
            last = start + 1000 >= len(records)
            read_model.apply_batch(conn, chunk, ends if last else None)


def _count_rows(settings: Settings) -> int:
    with connect(settings.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM orders_view").fetchone()
    return int(row[0]) if row else 0


def switch_over(settings: Settings, report: ReplayReport) -> str:
    """The operator's steps from the running version to the replayed one."""
    lines = [
        f"The process table of version {report.version} is ready:",
        f"  changelog {report.changelog}, consumer group {report.app_id}",
        "To switch over:",
        f"  1. stop every worker of version {settings.app_version} (faust -A streams.worker ...)",
        f"  2. start them again with APP_VERSION={report.version}, e.g.",
        f"       APP_VERSION={report.version} faust -A streams.worker worker -l info",
        f"     they restore the table from {report.changelog} and consume from where the",
        "     replay stopped; the timers then resume the deadlines of unfinished processes.",
        f"  3. keep APP_VERSION={report.version} in the workers' configuration from now on.",
    ]
    if report.old_version_running:
        lines += [
            f"Note: workers of version {settings.app_version} were running during the replay.",
            "  Events they handle before they stop are handled again by the new version: its",
            "  commands carry the same deterministic ids, which every receiver drops. To avoid",
            "  even those duplicate records, stop the workers first and replay again into a",
            "  new version.",
        ]
    return "\n".join(lines)


def _summary(report: ReplayReport) -> str:
    lines = [
        f"events: {report.events:,} ({report.undecodable} undecodable, skipped)",
        f"processes written: {report.processes:,}",
        f"elapsed: {report.elapsed_s:.2f}s, {report.events_per_s:,.0f} events/s",
    ]
    if report.read_model_rows is not None:
        lines.append(f"read model rows: {report.read_model_rows:,}")
    lines += [f"fold error in {o}: {e}" for o, e in report.fold_errors.items()]
    lines += [f"warning: {t} lost its oldest records to retention" for t in report.truncated]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.replay", description=__doc__)
    parser.add_argument("--to-version", type=int, help="the new app version (default: current+1)")
    parser.add_argument("--read-model", action="store_true", help="also rebuild the read model")
    parser.add_argument(
        "--read-model-only", action="store_true", help="rebuild only the read model"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        if args.read_model_only:
            report = rebuild_read_model(settings)
        else:
            to_version = args.to_version or settings.app_version + 1
            report = replay(settings, to_version, with_read_model=args.read_model)
    except (ReplayRefused, LookupError) as error:
        print(f"replay refused: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        print(_summary(report))
        if not args.read_model_only:
            print(switch_over(settings, report))
    return 0


def _as_json(report: ReplayReport) -> dict[str, Any]:
    return {
        "version": report.version,
        "app_id": report.app_id,
        "changelog": report.changelog,
        "events": report.events,
        "undecodable": report.undecodable,
        "processes": report.processes,
        "fold_errors": report.fold_errors,
        "read_model_rows": report.read_model_rows,
        "elapsed_s": round(report.elapsed_s, 3),
        "events_per_s": round(report.events_per_s, 1),
        "old_version_running": report.old_version_running,
        "truncated": report.truncated,
        "ends": report.ends,
    }


if __name__ == "__main__":
    sys.exit(main())
