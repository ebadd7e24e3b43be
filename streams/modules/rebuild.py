"""A command processor's aggregates, folded from its events topic when it is given partitions.

The events topic is the aggregates' source of truth: on assignment the processor folds the
assigned partitions from the beginning to the last stable offset (read_committed), through
the module's ``evolve``, and loads the result into its ``AggregateStore``.
"""

from __future__ import annotations

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


def rebuild(
    settings: Settings, module: AggregateModule, partitions: list[int]
) -> dict[int, dict[str, Aggregate[Any]]]:
    """Fold ``module``'s events partitions from the beginning to the last stable offset."""
    reader = Consumer(
        settings.confluent_config(
            **{
                "group.id": groups.rebuild(settings, module.name),
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
    )
    events_topic = settings.topic(module.events_topic)
    reader.assign([TopicPartition(events_topic, p, OFFSET_BEGINNING) for p in partitions])
    folded: dict[int, dict[str, Aggregate[Any]]] = {p: {} for p in partitions}
    open_partitions = set(partitions)
    try:
        while open_partitions:
            liveness.beat()
            for message in reader.consume(1000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(partition_of(message))
                        continue
                    raise KafkaException(error)
                _fold(module, folded[partition_of(message)], message)
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
