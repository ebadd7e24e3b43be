"""The shipment command handler: ``shipments.commands`` in, Postgres and the outbox out.

Two commands, decided in ``decisions``: ``SendPackage`` reserves the stock of every item or
none and sends the package (``PackageWasSent`` or ``ProductWasOutOfStock``);
``CancelShipment`` decides whether the order is shipped: with a package it answers
``ShipmentCancellationRejected``, without one it records the order as cancelled and answers
``ShipmentCancelled``, and a ``SendPackage`` for a cancelled order is then refused
(``CommandRejected``), never shipped. An order has a package or a cancellation, never both:
every command takes a lock on its order first (``store.lock_orders``), so the two are never
decided by two transactions at once (two handlers can hold the same partition's records for a
moment during a rebalance).

Batching: the consumer takes up to ``batch_size`` records, and the whole batch runs in one
Postgres transaction (inbox, stock, packages, outbox), one commit and so one disk flush per
batch rather than per command, and one statement per table (``ledger``). The stock rows of
every product in the batch are locked first, in sku order, so two workers' batches never
deadlock. Each command still decides on its own (all of its items or none); a database error
undoes the batch, which is then processed again.
Dead letters of the batch are flushed, and then the offsets of the whole batch are committed.
A crash before that commit redelivers the batch, and the inbox turns every redelivered command
into a no-op.

Poison: a batch the database refuses for its data (``poison.is_poison``: a data error, a
constraint or a size limit) is taken apart, one command per transaction, so the others go
through. The command that still fails is tried ``poison_attempts`` times with a doubling
back-off, then given up: it goes to the dead letters with the reason, the order is recorded
as never to be shipped (when the database can still store that), and the module answers
``CommandRejected`` with the same reason, to which the process reacts. Any other error (the
database or Kafka away) retries the batch for ever: it is not the command's fault.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from aggregates.messages import (
    Envelope,
    SendPackage,
    order_id_of,
)
from streams.faults import HANDLER_CRASH_BEFORE_OFFSET_COMMIT, crash_point
from streams.kafka import dead_letters, groups, routing
from streams.kafka.codec import DecodeError, decode, encode
from streams.kafka.consuming import Consumed, next_offsets, take
from streams.kafka.topics import ACCEPTED_TYPES, DEAD_LETTERS, commands_of, events_of
from streams.modules.shipment import poison, store
from streams.modules.shipment.decisions import (
    DECIDED,
    ROUTINE,
    Decide,
    Decisions,
    Outcome,
    answer_to,
    rejection,
)
from streams.modules.shipment.ledger import Ledger
from streams.observability import liveness, metrics
from streams.observability.logs import get_logger
from streams.postgres.db import LazyConnection
from streams.settings import Settings

log = get_logger(__name__)

MODULE = "shipments"
ACCEPTED = ACCEPTED_TYPES[commands_of(MODULE)]


class ShipmentHandler:
    """Consumes ``shipments.commands`` and applies each ``SendPackage`` and ``CancelShipment``
    once."""

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 200,
        poll_timeout: float = 0.5,
        retry_backoff: float = 1.0,
        poison_attempts: int = 3,
        on_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.retry_backoff = retry_backoff
        self.poison_attempts = poison_attempts
        self.on_commit = on_commit  # e.g. the outbox relay's wake
        self.commands_topic = settings.topic(commands_of(MODULE))
        self.events_topic = settings.topic(events_of(MODULE))
        self.dead_letters_topic = settings.topic(DEAD_LETTERS)
        self._db = LazyConnection(settings.database_url)
        self._producer: Producer | None = None
        self._delivery_errors: list[KafkaError] = []
        self._partitions = settings.topic_partitions
        self.ready = threading.Event()
        self.decisions = Decisions(self.events_topic)
        self._decide: dict[str, Decide] = self.decisions.by_type()
        assert set(self._decide) == ACCEPTED, "one decision per accepted command type"

    # Kafka loop

    def run(self, stop: threading.Event) -> None:
        """Consume, process and commit batch after batch until ``stop`` is set."""
        consumer = Consumer(self.settings.member_config(groups.module(self.settings, MODULE)))
        metadata = consumer.list_topics(self.commands_topic, timeout=30).topics[self.commands_topic]
        self._partitions = len(metadata.partitions) or self.settings.topic_partitions
        consumer.subscribe(
            [self.commands_topic],
            on_assign=lambda _, partitions: log.info(
                "partitions assigned", partitions=[p.partition for p in partitions]
            ),
            on_revoke=lambda _, partitions: log.info(
                "partitions revoked", partitions=[p.partition for p in partitions]
            ),
        )
        log.info("shipment handler started", topic=self.commands_topic)
        try:
            while not stop.is_set():
                liveness.beat()
                records = self._poll(consumer)
                self.ready.set()
                if not records:
                    continue
                try:
                    self._process(records, stop)
                except Exception:
                    log.exception("batch failed; it will be retried", records=len(records))
                    self._reset()
                    _rewind(consumer, records)
                    stop.wait(self.retry_backoff)
                    continue
                crash_point(HANDLER_CRASH_BEFORE_OFFSET_COMMIT)
                _commit(consumer, records)
        finally:
            consumer.close()
            self.close()
            log.info("shipment handler stopped")

    def _poll(self, consumer: Consumer) -> list[Consumed]:
        records = []
        for message in take(consumer, self.batch_size, timeout=self.poll_timeout):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", error=str(error))
                continue
            records.append(Consumed.of(message))
        return records

    # One batch

    def _process(self, records: Sequence[Consumed], stop: threading.Event) -> list[Outcome]:
        """``process_batch``, taken apart one command at a time when the database refuses the
        batch's data; raises on any other error (the caller retries the batch)."""
        try:
            return self.process_batch(records)
        except Exception as error:
            if not poison.is_poison(error):
                raise
            log.warning("batch refused by the database; one command at a time", error=str(error))
        return [outcome for record in records for outcome in self._process_one(record, stop)]

    def _process_one(self, record: Consumed, stop: threading.Event) -> list[Outcome]:
        """One record in its own transaction, tried ``poison_attempts`` times, then given up."""
        for attempt in range(1, self.poison_attempts + 1):
            try:
                return self.process_batch([record])
            except Exception as error:
                if not poison.is_poison(error):
                    raise
                if attempt == self.poison_attempts:
                    return [self._give_up(record, poison.reason(error, attempt))]
                log.warning(
                    "command refused by the database; trying again",
                    attempt=attempt,
                    error=str(error),
                    partition=record.partition,
                    offset=record.offset,
                )
                stop.wait(self.retry_backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _give_up(self, record: Consumed, reason: str) -> Outcome:
        """Dead-letter a poison command and answer it with ``CommandRejected``.

        The rejection goes through the outbox, beside the inbox entry and (for a
        ``SendPackage``) a cancellation that keeps the order from ever being shipped. When the
        database refuses even that (the order id itself cannot be stored), the rejection is
        produced directly: the command is not in the inbox then, so a redelivery repeats this,
        with the same deterministic event id.
        """
        command = decode(record.key, record.value, ACCEPTED)
        order_id = order_id_of(command.data)
        log.error(
            "poison command given up",
            reason=reason,
            order_id=order_id,
            message_id=command.message_id,
            message_type=command.type,
        )
        self._dead_letter(record, reason)
        metrics.dead_letter(record.topic)
        outcome = Outcome(record, "rejected", reason=reason)
        conn = self._db.get()
        try:
            with conn.transaction():
                store.lock_orders(conn, [order_id])
                ledger = Ledger.gather(conn, [command], stock=False)
                if ledger.remember(command.message_id):
                    if isinstance(command.data, SendPackage) and not ledger.shipment_of(order_id):
                        ledger.cancel(order_id, reason, command.message_id)
                    outcome = self.decisions.reject(ledger, command, record, reason)
                ledger.apply(conn)
            self.on_commit()
        except Exception as error:
            if not poison.is_poison(error):
                raise
            rejected = answer_to(command, rejection(command, reason))
            self._produce(self.events_topic, record.key, encode(rejected))
            outcome = Outcome(record, "rejected", rejected, reason)
        self._flush_produced()
        metrics.command_decided("shipments", DECIDED[outcome.result])
        return outcome

    def process_batch(self, records: Sequence[Consumed]) -> list[Outcome]:
        """Apply every record in one transaction; dead letters are flushed on return.

        Raises when the database or the dead-letter topic fails: then nothing may be
        committed, and the batch is processed again (the inbox makes that harmless).
        """
        commands: list[Envelope | DecodeError | routing.Forward] = []
        for record in records:
            forward = routing.misrouted(
                record.topic,
                record.partition,
                record.key,
                record.value,
                record.headers,
                self._partitions,
            )
            if forward is not None:
                commands.append(forward)
                continue
            try:
                commands.append(decode(record.key, record.value, ACCEPTED))
            except DecodeError as error:
                commands.append(error)
        envelopes = [c for c in commands if isinstance(c, Envelope)]
        conn = self._db.get()
        with conn.transaction():
            store.lock_orders(conn, (order_id_of(c.data) for c in envelopes))
            ledger = Ledger.gather(conn, envelopes)
            outcomes = [
                self._outcome(ledger, record, c)
                for record, c in zip(records, commands, strict=True)
            ]
            ledger.apply(conn)
        self.on_commit()
        if any(outcome.result in ("dead_letter", "forwarded") for outcome in outcomes):
            self._flush_produced()
        for outcome, command in zip(outcomes, commands, strict=True):
            if isinstance(command, Envelope):
                _report(outcome, command)
            elif isinstance(command, routing.Forward):
                routing.log_forward(command, outcome.record.partition, outcome.record.offset)
                metrics.forwarded(command.topic)
            else:
                metrics.dead_letter(outcome.record.topic)
        return outcomes

    def _outcome(
        self, ledger: Ledger, record: Consumed, command: Envelope | DecodeError | routing.Forward
    ) -> Outcome:
        match command:
            case Envelope():
                return self._decide[command.type](ledger, command, record)
            case routing.Forward():
                # Forwarded unchanged to the partition its key hashes to; its owner decides.
                self._produce(
                    command.topic, command.key, command.value, command.partition, command.headers
                )
                return Outcome(record, "forwarded")
        return self._dead_letter(record, command.reason)

    # Dead letters

    def _dead_letter(self, record: Consumed, reason: str) -> Outcome:
        self._produce(self.dead_letters_topic, record.key, dead_letters.letter(record, reason))
        return Outcome(record, "dead_letter", reason=reason)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        headers: routing.Headers | None = None,
    ) -> None:
        """Produce beside the database transaction; ``_flush_produced`` checks delivery."""
        self._kafka().produce(
            topic,
            key=key,
            value=value,
            partition=partition,
            headers=headers,
            on_delivery=self._delivered,
        )

    def _delivered(self, error: KafkaError | None, _message: KafkaMessage) -> None:
        if error is not None:
            self._delivery_errors.append(error)

    def _flush_produced(self) -> None:
        remaining = self._kafka().flush(30)
        errors, self._delivery_errors = self._delivery_errors, []
        if remaining or errors:
            raise RuntimeError(
                f"dead letters or forwards not delivered: {remaining} pending, errors {errors}"
            )

    def _kafka(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                self.settings.producer_config(
                    **{
                        "client.id": f"{self.settings.app_id}-shipments-handler",
                        "enable.idempotence": True,
                        "acks": "all",
                        "delivery.timeout.ms": 30000,
                    }
                )
            )
        return self._producer

    # Resources

    def _reset(self) -> None:
        self._db.close()

    def close(self) -> None:
        self._reset()
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _report(outcome: Outcome, command: Envelope) -> None:
    """Count and log one decided command (after its transaction committed)."""
    metrics.command_decided("shipments", DECIDED[outcome.result])
    report = log.debug if outcome.result in ROUTINE else log.info
    report(
        "shipment command processed",
        result=outcome.result,
        reason=outcome.reason,
        order_id=order_id_of(command.data),
        correlation_id=command.correlation_id,
        causation_id=command.causation_id,
        message_id=command.message_id,
        message_type=command.type,
        event_id=outcome.event.message_id if outcome.event else None,
    )


def _commit(consumer: Consumer, records: Sequence[Consumed]) -> None:
    try:
        offsets = next_offsets((r.topic, r.partition, r.offset) for r in records)
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as error:
        # A rebalance took the partitions away: their new owner redelivers, the inbox dedupes.
        log.warning("offset commit failed", error=str(error))


def _rewind(consumer: Consumer, records: Sequence[Consumed]) -> None:
    """Seek back to the first record of the failed batch, per partition, to process it again."""
    first: dict[tuple[str, int], int] = {}
    for record in records:
        where = (record.topic, record.partition)
        first[where] = min(first.get(where, record.offset), record.offset)
    for (topic, partition), offset in first.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as error:
            log.warning("rewind failed", topic=topic, partition=partition, error=str(error))
