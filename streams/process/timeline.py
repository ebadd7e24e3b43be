"""One order's timeline, read from the topics: every input with its outcome, up to a point.

It reads the partition the order's key owns (murmur2, ``routing.owner_of``) on each input
topic, from the beginning up to its end, or up to a time (``at``: each topic's records
written until then) or a record (``position``: that record, and the other topics' records
merged before it). It keeps the order's records, merges them by record timestamp with the
other records of the partition, exactly as replay and verify do (``fold.merge``; only the
other orders' records are not decoded, so an undecodable one among them, which those tools
skip, still takes part), and folds them with ``streams.process.fold.trace``: applied (from -> to),
ignored with its reason, duplicate, quarantined, and the commands sent. Records the worker
could not decode (it dead-lettered them) are listed where they were written. Unlike the
record's history, which keeps its latest 200 entries, nothing is left out.

It blocks (confluent-kafka): the web view runs it in an executor, bounded by ``timeout_s``.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from process_manager import REACTS_TO
from streams.kafka.codec import DecodeError, decode
from streams.kafka.consuming import partition_count, read_to_end, reader
from streams.kafka.routing import owner_of
from streams.kafka.topics import ACCEPTED_TYPES, PROCESS_INPUTS
from streams.process.fold import Input, Step, merge, trace
from streams.settings import Settings

NOT_READ = "not a process input"
"""Why a message of a type the process never reacts to is ignored: the worker skips it unread."""


@dataclass(frozen=True)
class Position:
    """A record: ``TOPIC:PARTITION:OFFSET``, the topic by its contract name."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> Position:
        topic, _, rest = text.rpartition(":")
        topic, _, partition = topic.rpartition(":")
        if not topic or not partition.isdigit() or not rest.isdigit():
            raise ValueError(f"{text!r} is not TOPIC:PARTITION:OFFSET")
        name = next((t for t in PROCESS_INPUTS if topic.endswith(t)), None)
        if name is None:
            raise ValueError(f"{topic} is not an input topic: one of {', '.join(PROCESS_INPUTS)}")
        return cls(name, int(partition), int(rest))


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone, UTC."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    """One input of the order and what it did."""

    topic: str
    partition: int
    offset: int
    written_at: datetime
    message_type: str
    message_id: str
    outcome: str
    """applied, ignored, duplicate, quarantined, failed, or undecodable"""
    from_state: str | None = None
    to_state: str | None = None
    reason: str = ""
    commands: tuple[tuple[str, str], ...] = ()

    @property
    def position(self) -> str:
        """``TOPIC:PARTITION:OFFSET``, as ``--offset`` takes it."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def describe(self) -> str:
        """The outcome in words: ``applied: A -> B``, ``ignored: why``, ..."""
        if self.outcome == "applied" and self.reason == "noted":
            return f"applied: noted in {self.to_state}, no move"
        if self.outcome == "applied":
            return f"applied: {self.from_state or '(start)'} -> {self.to_state}"
        return f"{self.outcome}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "written_at": self.written_at.isoformat(),
            "message_type": self.message_type,
            "message_id": self.message_id,
            "outcome": self.outcome,
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
            "commands": [{"type": t, "message_id": i} for t, i in self.commands],
        }


@dataclass
class Timeline:
    order_id: str
    partition: int
    until: str
    """What bounded the read: ``the end``, a time, or a record."""
    entries: list[Entry] = field(default_factory=list)
    state: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "partition": self.partition,
            "until": self.until,
            "state": self.state,
            "entries": [e.as_json() for e in self.entries],
        }


def entry_of(taken: Step, partition: int) -> Entry:
    item = taken.input
    envelope = item.envelope
    moved = taken.kind == "applied"
    reason = NOT_READ if envelope.type not in REACTS_TO else taken.reason
    return Entry(
        PROCESS_INPUTS[item.topic_index],
        partition,
        item.offset,
        _time(item.timestamp),
        envelope.type,
        envelope.message_id,
        taken.kind,
        taken.before if moved else None,
        taken.after if moved else None,
        reason,
        tuple((c.type, c.message_id) for c in taken.commands),
    )


def read_timeline(
    settings: Settings,
    order_id: str,
    *,
    at: datetime | None = None,
    position: Position | None = None,
    timeout_s: float = 30.0,
) -> Timeline:
    """The timeline of ``order_id`` (see the module docstring); ``TimeoutError`` when reading
    takes longer than ``timeout_s``, ``ValueError`` for a position off the order's partition."""
    names = [settings.topic(t) for t in PROCESS_INPUTS]
    partition = owner_of(order_id.encode(), partition_count(settings, names))
    if position is not None and position.partition != partition:
        raise ValueError(f"order {order_id} is on partition {partition}, not {position.partition}")
    deadline = time.monotonic() + timeout_s
    per_topic, undecodable, bound = _read(settings, names, order_id, partition, position, deadline)
    cut = _Cut(None if at is None else int(at.timestamp() * 1000), position, bound)
    if position is not None and bound is None:
        raise ValueError(f"no record at {position.topic}:{partition}:{position.offset}")
    merged_inputs = merge([cut.keep(items) for items in per_topic])
    mine = (item for item in merged_inputs if isinstance(item, Input))
    steps = list(trace(mine, settings.timeouts()))
    shown = [(s.input.timestamp, s.input.topic_index, entry_of(s, partition)) for s in steps]
    kept = [u for u in undecodable if cut.admits(u[0], u[1], u[2].offset)]
    merged = heapq.merge(shown, kept, key=lambda t: (t[0], t[1]))
    until = "the end"
    if position is not None:
        until = f"{position.topic}:{partition}:{position.offset}"
    elif at is not None:
        until = at.isoformat()
    return Timeline(
        order_id,
        partition,
        until,
        [entry for _, _, entry in merged],
        None if not steps else steps[-1].after,
    )


@dataclass(frozen=True)
class Other:
    """A record of another order: only where it was written, for the merge."""

    timestamp: int
    topic_index: int
    offset: int


@dataclass(frozen=True)
class _Cut:
    """Which records are before the point asked for: by time, or by a record's position."""

    at_ms: int | None
    position: Position | None
    bound_ms: int | None
    """The timestamp of the record at ``position``."""

    def admits(self, timestamp: int, topic_index: int, offset: int) -> bool:
        if self.at_ms is not None and timestamp > self.at_ms:
            return False
        if self.position is None or self.bound_ms is None:
            return True
        index = PROCESS_INPUTS.index(self.position.topic)
        if topic_index == index:
            return offset <= self.position.offset
        return (timestamp, topic_index) < (self.bound_ms, index)

    def keep(self, items: list[Input | Other]) -> list[Input | Other]:
        """The records of one topic before the point: a prefix, in the topic's own order."""
        kept = []
        for item in items:
            if not self.admits(item.timestamp, item.topic_index, item.offset):
                break
            kept.append(item)
        return kept


def _read(
    settings: Settings,
    names: list[str],
    order_id: str,
    partition: int,
    position: Position | None,
    deadline: float,
) -> tuple[list[list[Input | Other]], list[tuple[int, int, Entry]], int | None]:
    """The records on ``partition`` of every input topic, read to the end, per topic: the
    order's decoded, the others' where they were written; the order's undecodable ones (as
    entries); and the timestamp of ``position``."""
    key = order_id.encode()
    index = {name: i for i, name in enumerate(names)}
    per_topic: list[list[Input | Other]] = [[] for _ in names]
    undecodable: list[tuple[int, int, Entry]] = []
    bound: int | None = None
    consumer = reader(settings)
    try:
        assigned = [TopicPartition(name, partition, OFFSET_BEGINNING) for name in names]
        for records in read_to_end(consumer, assigned, {}):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading partition {partition} took too long")
            for record in records:
                i = index[record.topic() or ""]
                offset, timestamp = record.offset() or 0, record.timestamp()[1]
                if position is not None and (PROCESS_INPUTS[i], offset) == (
                    position.topic,
                    position.offset,
                ):
                    bound = timestamp
                if record.key() != key:
                    per_topic[i].append(Other(timestamp, i, offset))
                    continue
                try:
                    envelope = decode(
                        record.key(), record.value(), ACCEPTED_TYPES[PROCESS_INPUTS[i]]
                    )
                except DecodeError as error:
                    bad = Entry(
                        PROCESS_INPUTS[i],
                        partition,
                        offset,
                        _time(timestamp),
                        "?",
                        "?",
                        "undecodable",
                        reason=f"dead-lettered: {error.reason}",
                    )
                    undecodable.append((timestamp, i, bad))
                    continue
                per_topic[i].append(Input(timestamp, i, offset, order_id, envelope))
    finally:
        consumer.close()
    return per_topic, undecodable, bound


def _time(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
