"""Consuming: the consumed-record type, taking batches without adding latency, or to the end,
the reader of the process manager's history (replay, verify, check, the timeline), and the
reader of a group's committed offsets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka import groups, routing
from streams.settings import Settings


@dataclass(frozen=True)
class Consumed:
    """One consumed Kafka record, detached from its client (so tests can build one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: routing.Headers | None = None

    @classmethod
    def of(cls, message: Message) -> Consumed:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None
        key, value = message.key(), message.value()
        return cls(
            topic,
            partition,
            offset,
            key.encode() if isinstance(key, str) else key,
            value.encode() if isinstance(value, str) else value,
            routing.as_headers(message.headers()),
        )


def take(consumer: Consumer, max_records: int, timeout: float) -> list[Message]:
    """Up to ``max_records``: wait at most ``timeout`` for the first, then only take what is
    already fetched.

    ``Consumer.consume(n, timeout)`` waits the whole timeout unless n records arrive, so at low
    load it holds every record back by ``timeout`` (measured: 500 ms for one record with
    ``consume(500, timeout=0.5)``, 0.2 ms this way).
    """
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_records - 1, timeout=0)]


def next_offsets(consumed: Iterable[tuple[str, int, int]]) -> list[TopicPartition]:
    """The offsets to commit for ``consumed`` records (topic, partition, offset): one past the
    last of each partition."""
    last: dict[tuple[str, int], int] = {}
    for topic, partition, offset in consumed:
        last[(topic, partition)] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(topic, p, offset + 1) for (topic, p), offset in last.items()]


def read_to_end(
    consumer: Consumer,
    partitions: Sequence[TopicPartition],
    ends: dict[tuple[str, int], int],
    *,
    batch: int = 1000,
    timeout: float = 0.05,
) -> Iterator[list[Message]]:
    """Assign ``partitions`` and yield their records in batches until each reported its end.

    The consumer must set ``enable.partition.eof``. ``ends`` receives the next offset of each
    partition when its end was reported (control records included: where a fold stopped);
    records that arrive on a partition after that are not yielded. Errors other than the end
    of a partition raise ``KafkaException``. The caller unassigns or closes the consumer.
    """
    wanted = {(tp.topic, tp.partition) for tp in partitions}
    consumer.assign(list(partitions))
    while not wanted <= ends.keys():
        records = []
        for record in consumer.consume(batch, timeout=timeout):
            where = (record.topic() or "", record.partition() or 0)
            error = record.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                ends.setdefault(where, record.offset() or 0)
            elif where not in ends:
                records.append(record)
        yield records


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


def offsets_reader(settings: Settings, group: str, *, stable: bool) -> Consumer:
    """A client that reads ``group``'s committed offsets (``committed``) and never joins it.

    Not ``AdminClient.list_consumer_group_offsets``: librdkafka (2.16) dereferences the admin
    client's missing consumer group when that request is answered NOT_COORDINATOR, which a
    broker does while it loads its groups after a start (librdkafka#5040); the process died of
    SIGSEGV. A consumer has a group to ask for the coordinator again. ``stable``: wait while a
    transaction's offsets are pending (``require_stable``) rather than read those before them.
    """
    return Consumer(
        settings.confluent_config(
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if stable else "read_uncommitted",
            }
        )
    )


def committed(
    reader: Consumer, partitions: Sequence[TopicPartition], timeout: float
) -> dict[tuple[str, int], int]:
    """The committed offset per (topic, partition) of ``reader``'s group (negative: none)."""
    found = reader.committed(list(partitions), timeout=timeout)
    for tp in found:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return {(tp.topic, tp.partition): tp.offset for tp in found}


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
