"""The command processor's aggregates, folded from their events topics when it is given partitions.

The events topics are the aggregates' source of truth: on assignment the processor folds the
assigned partitions of every module it serves from the beginning to the last stable offset
(read_committed), through each module's ``evolve``, in one pass with one reader, and loads the
result into the module's ``AggregateStore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage

from aggregates.messages import order_id_of
from streams.kafka import groups
from streams.kafka.codec import DecodeError, decode, partition_of
from streams.modules.definitions import AggregateModule
from streams.modules.store import Aggregate
from streams.observability import liveness
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)

Folded = dict[int, dict[str, Aggregate[Any]]]
"""A module's aggregates per partition: partition -> aggregate id -> aggregate."""


def rebuild(
    settings: Settings, wanted: Sequence[tuple[AggregateModule, Sequence[int]]]
) -> dict[str, Folded]:
    """Fold each module's events partitions from the beginning to the last stable offset;
    the result per module name."""
    reader = Consumer(
        settings.confluent_config(
            **{
                "group.id": groups.rebuild(settings),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    by_topic = {settings.topic(module.events_topic): module for module, _ in wanted}
    folded: dict[str, Folded] = {module.name: {p: {} for p in ps} for module, ps in wanted}
    open_partitions = {
        (settings.topic(module.events_topic), p) for module, ps in wanted for p in ps
    }
    reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in open_partitions])
    try:
        while open_partitions:
            liveness.beat()
            # consume() waits its whole timeout unless the batch fills, so keep it short: the
            # last batch of every fold is a partial one.
            for message in reader.consume(1000, timeout=0.05):
                topic, partition = message.topic() or "", partition_of(message)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard((topic, partition))
                        continue
                    raise KafkaException(error)
                module = by_topic[topic]
                _fold(module, folded[module.name][partition], message)
    finally:
        reader.close()
    return folded


def _fold(
    module: AggregateModule, records: dict[str, Aggregate[Any]], message: KafkaMessage
) -> None:
    try:
        envelope = decode(message.key(), message.value(), module.event_types)
    except DecodeError as error:
        log.error(
            "undecodable event skipped",
            topic=message.topic(),
            offset=message.offset(),
            reason=error.reason,
        )
        return
    aggregate_id = order_id_of(envelope)
    record = records.get(aggregate_id, Aggregate(module.initial_state))
    records[aggregate_id] = record.after(
        module.evolve(record.state, envelope.data), envelope.causation_id
    )
