"""The process manager's history, read offline: scan its input topics and fold each order.

Replay, verify and check use it. It reads the four events topics and ``processes.commands``
from the beginning with confluent-kafka (read_committed, every partition to its end), merges
the topics of each partition number by record timestamp, and folds every order through the
pure ``process_manager.step`` with the workers' timeouts (``Settings.timeouts``); the commands
``step`` decides are dropped (the fold is ``streams.process.fold``). It also reads a table's
changelog (last record per key).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from aggregates.messages import Envelope
from streams.kafka.codec import DecodeError, decode, decode_if_reacting
from streams.kafka.consuming import partition_count, read_to_end, reader
from streams.kafka.topics import ACCEPTED_TYPES, PROCESS_INPUTS
from streams.process.fold import Folded, Input, by_order, fold_order, merge
from streams.settings import Settings

__all__ = [
    "Advances",
    "Folded",
    "Input",
    "PartitionScan",
    "Skipped",
    "TableRecord",
    "by_order",
    "count_records",
    "fold_order",
    "merge",
    "partition_count",
    "read_table",
    "reader",
    "scan",
    "truncated_topics",
    "watermarks",
]

# Reading Kafka


class Advances(Protocol):
    """What a scan reports its progress to: ``Progress``, or a job's messenger."""

    def advance(self, count: int) -> None: ...


@dataclass(frozen=True)
class Skipped:
    """A record of a type the process never reacts to, read on the lean path: where and when
    it was written and its order, not its message (the fold would not change a thing)."""

    timestamp: int
    topic_index: int
    offset: int
    order_id: str


@dataclass
class PartitionScan:
    """Every decodable record of one partition number of the scanned topics, read to the end."""

    partition: int
    per_topic: list[list[Input]]
    ends: dict[str, int]
    """Next offset per full topic name: where the fold stopped (control records included)."""
    undecodable: int = 0
    skipped: list[list[Skipped]] = field(default_factory=list)
    """Per topic, the records a lean scan did not decode (empty for a full scan)."""

    def merged(self) -> Iterator[Input]:
        return merge(self.per_topic)

    @property
    def events(self) -> int:
        """Decodable records read, skipped ones included."""
        return sum(map(len, self.per_topic)) + sum(map(len, self.skipped))

    def orders(self) -> dict[str, list[Input]]:
        """``by_order(merged())``, for a lean scan too: each order's inputs, the orders in the
        order of their first record, skipped records included (they fold to nothing)."""
        skipped = self.skipped or [[] for _ in self.per_topic]
        topics = [_by_offset(i, s) for i, s in zip(self.per_topic, skipped, strict=True)]
        grouped: dict[str, list[Input]] = {}
        for item in merge(topics):
            items = grouped.setdefault(item.order_id, [])
            if isinstance(item, Input):
                items.append(item)
        return grouped


def _by_offset(inputs: list[Input], skipped: list[Skipped]) -> list[Input | Skipped]:
    both: list[Input | Skipped] = [*inputs, *skipped]
    if skipped:
        both.sort(key=lambda record: record.offset)  # two sorted runs: one merge
    return both


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
    progress: Advances | None = None,
    partitions: Sequence[int] | None = None,
    reacting: frozenset[str] | None = None,
) -> Iterator[PartitionScan]:
    """Read ``topics`` (contract names) one partition number at a time, each to its end.

    Records are decoded with the codec, as the worker does; undecodable ones (which the worker
    dead-letters) are counted and skipped. ``partitions``: only those partition numbers (default
    all). ``reacting``: the lean path, for a fold: records of other types are not decoded but
    kept as ``Skipped`` (``codec.decode_if_reacting``).
    """
    names = [settings.topic(t) for t in topics]
    index = {name: i for i, name in enumerate(names)}
    if partitions is None:
        partitions = range(partition_count(settings, names))
    consumer = reader(settings)
    try:
        for partition in partitions:
            yield _read_partition(consumer, topics, names, index, partition, progress, reacting)
    finally:
        consumer.close()


def _read_partition(
    consumer: Consumer,
    topics: Sequence[str],
    names: list[str],
    index: dict[str, int],
    partition: int,
    progress: Advances | None,
    reacting: frozenset[str] | None,
) -> PartitionScan:
    found = PartitionScan(partition, [[] for _ in names], {})
    if reacting is not None:
        found.skipped = [[] for _ in names]
    ends: dict[tuple[str, int], int] = {}
    assigned = [TopicPartition(name, partition, OFFSET_BEGINNING) for name in names]
    try:
        for records in read_to_end(consumer, assigned, ends):
            for record in records:
                i = index[record.topic() or ""]
                key, accepted = record.key(), ACCEPTED_TYPES[topics[i]]
                envelope: Envelope | None
                try:
                    if reacting is None:
                        envelope = decode(key, record.value(), accepted)
                    else:
                        envelope = decode_if_reacting(key, record.value(), accepted, reacting)
                except DecodeError:
                    found.undecodable += 1
                    continue
                offset = record.offset() or 0
                order_id = (key or b"").decode()
                timestamp = record.timestamp()[1]
                if envelope is None:
                    found.skipped[i].append(Skipped(timestamp, i, offset, order_id))
                else:
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
