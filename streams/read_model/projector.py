"""The orders read model's consumer: the events topics into ``orders_view``.

``OrdersProjector`` is the runner component that consumes the events topics and positions
itself from the offsets the store keeps (``store.positions``), never from Kafka's committed
offsets.
"""

from __future__ import annotations

import threading

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka import Message as KafkaRecord

from aggregates.messages import Envelope
from streams.kafka import groups
from streams.kafka.codec import DecodeError, decode_if_reacting, partition_of
from streams.kafka.consuming import take
from streams.kafka.topics import ACCEPTED_TYPES, READ_MODEL_INPUTS
from streams.observability import liveness
from streams.observability.logs import get_logger
from streams.postgres.db import Connection, connect
from streams.postgres.migrate import migrate
from streams.read_model.projection import PROJECTED_TYPES
from streams.read_model.store import Projected, apply_batch, positions
from streams.settings import Settings

log = get_logger(__name__)

GATHER_MS = 200
GATHER_BYTES = 1 << 20


class OrdersProjector:
    """Projects the four events topics into ``orders_view``; `run(stop)` loops until stopped.

    Consumer group ``<app_id>-read-model``, read_committed. Its position comes from
    ``read_model_offsets`` (set on every assignment), so a rebuild that truncates the tables
    makes it start again from the beginning at its next assignment. Kafka offsets are
    committed too, only so that lag tools show where it stands.
    """

    def __init__(self, settings: Settings, batch_size: int = 500) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.group = groups.read_model(settings)
        self.topics = {settings.topic(name): name for name in READ_MODEL_INPUTS}
        self.ready = threading.Event()
        self._conn: Connection | None = None

    def run(self, stop: threading.Event) -> None:
        migrate(self.settings.database_url)
        self._conn = connect(self.settings.database_url)
        try:
            consumer = Consumer(
                self.settings.member_config(
                    self.group,
                    **{
                        # range: partition p of every events topic goes to the same member
                        "partition.assignment.strategy": "range",
                        # The view is read by people, not on an order's path: a fetch gathers
                        # up to GATHER_MS of events, so a batch's statements are paid per
                        # hundreds of events rather than per few.
                        "fetch.min.bytes": GATHER_BYTES,
                        "fetch.wait.max.ms": GATHER_MS,
                    },
                )
            )
            try:
                consumer.subscribe(list(self.topics), on_assign=self._on_assign)
                while not stop.is_set():
                    liveness.beat()
                    self._poll(consumer)
            finally:
                consumer.close()
        finally:
            self._conn.close()
            self._conn = None

    def _poll(self, consumer: Consumer) -> None:
        assert self._conn is not None
        records = take(consumer, self.batch_size, timeout=0.2)
        for record in records:
            if record.error() is not None:
                log.warning("read model consumer error", error=str(record.error()))
        batch = [self._projected(r) for r in records if r.error() is None]
        if batch:
            changed = apply_batch(self._conn, batch)
            consumer.commit(asynchronous=True)
            log.debug("read model batch", records=len(batch), changed=changed)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._conn is not None
        stored = positions(self._conn, [(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        self.ready.set()
        log.info("read model partitions assigned", partitions=len(partitions))

    def _projected(self, record: KafkaRecord) -> Projected:
        topic = record.topic() or ""
        try:
            # a type the view does not show is checked only as far as its envelope
            envelope: Envelope | None = decode_if_reacting(
                record.key(), record.value(), ACCEPTED_TYPES[self.topics[topic]], PROJECTED_TYPES
            )
        except DecodeError as error:
            log.warning("read model skips an undecodable record", topic=topic, reason=error.reason)
            envelope = None
        return Projected(topic, partition_of(record), record.offset() or 0, envelope)
