"""The process manager's history, read offline: scan its input topics and fold each order.

Replay, verify and check use it. It reads the four events topics and ``processes.commands``
from the beginning with confluent-kafka (read_committed, every partition to its end), merges
the topics of each partition number by record timestamp, and folds every order through the
pure ``process_manager.step`` with the workers' timeouts (``Settings.timeouts``); the commands
``step`` decides are dropped. It also reads a table's changelog (last record per key).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from aggregates.messages import Envelope
from process_manager import Process, Timeouts, as_logged, step
from streams.kafka import groups
from streams.kafka.codec import DecodeError, decode
from streams.kafka.consuming import read_to_end
from streams.kafka.topics import ACCEPTED_TYPES, PROCESS_INPUTS
from streams.settings import Settings
from streams.tools.progress import Progress

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
    listed first in ``PROCESS_INPUTS``.
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
    """The process one order's inputs fold to (``None``: no finalized cart)."""

    process: Process | None


def fold_order(inputs: Iterable[Input], timeouts: Timeouts) -> Folded:
    """Fold one order's inputs through ``step``, as a worker would; commands are dropped.

    A message that broke the live process quarantines it here too (``as_logged``: the
    operator's ``ResumeProcess`` or ``SkipMessage`` in ``processes.commands`` names it), and
    the action releases it the same way.
    """
    items = list(inputs)
    decide = as_logged(item.envelope for item in items)
    process: Process | None = None
    for item in items:
        outcome = step(process, item.envelope, timeouts=timeouts, decide=decide)
        if outcome.process is not None:  # ignored messages are taken in too
            process = outcome.process
    return Folded(process)


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
                "group.id": groups.history_reader(settings),
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
    topics: Sequence[str] = PROCESS_INPUTS,
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
    found = PartitionScan(partition, [[] for _ in names], {})
    ends: dict[tuple[str, int], int] = {}
    assigned = [TopicPartition(name, partition, OFFSET_BEGINNING) for name in names]
    try:
        for records in read_to_end(consumer, assigned, ends):
            for record in records:
                i = index[record.topic() or ""]
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
                progress.advance(len(records))
    finally:
        consumer.unassign()
    found.ends = {name: end for (name, _), end in ends.items()}
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
    assigned = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
    try:
        for records in read_to_end(consumer, assigned, {}):
            for record in records:
                key = (record.key() or b"").decode(errors="replace")
                table[key] = TableRecord(record.partition() or 0, record.value())
    finally:
        consumer.close()
    return table
