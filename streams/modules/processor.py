"""Runs the event-sourced modules: commands in, events out, in Kafka transactions.

One loop serves every module it is given (carts, orders and payments) with one consumer and one
transactional producer, so that one fetch and one transaction carry all three (BENCHMARKS.md, "One
loop for the three modules": what that saved). For each batch of commands it decides each against
state folded from its module's own events topic, and appends the events plus the commands' consumer
offsets in one Kafka transaction (confluent-kafka's transactional producer, KIP-447 fencing by
consumer-group generation):

- Never stale: a partition's state is rebuilt from its events partition, read_committed up to
  the last stable offset, after the group's committed offset for it was fetched. With
  read_committed that fetch waits for any pending transactional commit of the previous owner,
  so every event of the previous owner is visible before the first command is decided. A zombie
  previous owner cannot commit after losing the partition: its offsets carry an old generation.
- Once per message id: every handled command leaves at least one event whose causation_id is
  the command's message_id; the state remembers them, so a redelivered command is skipped.
- Order: one writer per partition, events appended in command order.
- Crash between append and offset commit: impossible as a state; both are one transaction. An
  aborted transaction's events are invisible to read_committed readers, and the commands are
  consumed again from the committed offset.

Any error in the transaction ends the session: state is dropped and rebuilt from the log.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka import (
    Message as KafkaMessage,
)

from aggregates.decider import Rejected
from aggregates.messages import CommandRejected, Envelope, Message, deterministic_id, order_id_of
from streams.faults import PROCESSOR_HANG_BEFORE_OFFSETS, hang_point
from streams.kafka import dead_letters, groups, routing
from streams.kafka.codec import DecodeError, answer, decode, encode, partition_of
from streams.kafka.consuming import Consumed, next_offsets, take
from streams.kafka.producing import Output
from streams.kafka.topics import DEAD_LETTER_MAX_BYTES, DEAD_LETTERS
from streams.modules.definitions import AggregateModule
from streams.modules.offsets import adopt_offsets
from streams.modules.rebuild import rebuild
from streams.modules.store import Aggregate, AggregateStore
from streams.observability import liveness, metrics
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)


STATUS_EVERY_S = 10.0


class _Served:
    """One module as the processor serves it: its topics and its aggregates' state."""

    def __init__(self, module: AggregateModule, settings: Settings) -> None:
        self.module = module
        self.commands_topic = settings.topic(module.commands_topic)
        self.events_topic = settings.topic(module.events_topic)
        self.store: AggregateStore[Any] = AggregateStore(module.initial_state)
        # A key's partition is counted over the topic's partitions, as a producer hashes it.
        self.partitions = settings.topic_partitions


class AggregateProcessor:
    """The command handler of ``modules``; `run(stop)` loops until `stop` is set."""

    def __init__(
        self, modules: Sequence[AggregateModule], settings: Settings, batch_size: int = 500
    ) -> None:
        self.settings = settings
        self.batch_size = batch_size
        self.group = groups.aggregates(settings)
        self.names = [module.name for module in modules]
        self.served = {s.commands_topic: s for s in (_Served(m, settings) for m in modules)}
        self.dead_letters = settings.topic(DEAD_LETTERS)
        self._unloaded: set[tuple[str, int]] = set()
        self._due: list[tuple[datetime, str, int, str]] = []
        # Results of the commands in the open transaction, counted once it commits.
        self._decided: Counter[tuple[str, str]] = Counter()
        self._dead: Counter[str] = Counter()
        self._consumed = 0  # records taken in since the last status line
        self._next_status = 0.0
        self.ready = threading.Event()

    @property
    def member_id(self) -> str:
        """This worker's member of the group. It names the modules served, so that runners
        that serve different modules on one host (``--only``) do not fence each other."""
        return self.settings.member_id(f"{self.group}-{'-'.join(self.names)}")

    # Lifecycle

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            liveness.beat()
            try:
                self._session(stop)
            except KafkaException as error:
                log.warning("processor session ended", modules=self.names, error=str(error))
                stop.wait(1.0)

    def _session(self, stop: threading.Event) -> None:
        for served in self.served.values():
            served.store = AggregateStore(served.module.initial_state)
        self._unloaded.clear()
        self._due.clear()
        self._decided.clear()
        self._dead.clear()
        producer = Producer(
            self.settings.producer_config(
                **{
                    "transactional.id": self.member_id,
                    "transaction.timeout.ms": 10000,
                    "linger.ms": 2,
                    "message.max.bytes": DEAD_LETTER_MAX_BYTES,
                }
            )
        )
        # Aborts whatever this worker left open before a crash, so readers are not held up.
        producer.init_transactions(30)
        previous = {
            name: groups.module(self.settings, s.module.name) for name, s in self.served.items()
        }
        adopt_offsets(self.settings, self.group, previous)
        consumer = Consumer(
            self.settings.member_config(self.group, **{"group.instance.id": self.member_id})
        )
        topics = consumer.list_topics(timeout=30).topics
        for name, served in self.served.items():
            found = topics.get(name)
            served.partitions = (
                len(found.partitions) if found else 0
            ) or self.settings.topic_partitions
        consumer.subscribe(
            list(self.served),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        try:
            while not stop.is_set():
                liveness.beat()
                records = take(consumer, self.batch_size, timeout=0.1)
                self._load_assigned(consumer)
                self.ready.set()
                self._consumed += len(records)
                self._report_status(consumer)
                # Never decide for a partition whose state is not loaded (revoked meanwhile):
                # its commands stay uncommitted and go to the new owner.
                for failed in (r for r in records if r.error() is not None):
                    log.warning("consumer error", error=str(failed.error()))
                owned = {name: s.store.owned() for name, s in self.served.items()}
                records = [
                    r
                    for r in records
                    if r.error() is None and partition_of(r) in owned[r.topic() or ""]
                ]
                outputs = self._handle(records) + self._due_commands()
                if not outputs and not records:
                    continue
                self._commit(producer, consumer, records, outputs)
        finally:
            for served in self.served.values():
                served.store.discard()
            consumer.close()

    def _commit(
        self,
        producer: Producer,
        consumer: Consumer,
        records: list[KafkaMessage],
        outputs: list[Output],
    ) -> None:
        producer.begin_transaction()
        for output in outputs:
            producer.produce(
                output.topic,
                key=output.key,
                value=output.value,
                partition=-1 if output.partition is None else output.partition,
                headers=output.headers,
            )
        if records:
            hang_point(PROCESSOR_HANG_BEFORE_OFFSETS)
            consumed = ((r.topic() or "", partition_of(r), r.offset() or 0) for r in records)
            producer.send_offsets_to_transaction(
                next_offsets(consumed),
                consumer.consumer_group_metadata(),
                # the default waits for ever; yet it can still hang (observability/liveness.py)
                30,
            )
            liveness.beat()
        producer.commit_transaction(30)
        for served in self.served.values():
            self._index_due(served, served.store.staged)
            served.store.commit()
        self._count(outputs)

    def _count(self, outputs: list[Output]) -> None:
        for (module, result), count in self._decided.items():
            metrics.command_decided(module, result, count)
        self._decided.clear()
        for topic, count in self._dead.items():
            metrics.dead_letter(topic, count)
        self._dead.clear()
        for output in outputs:
            if output.partition is not None and output.topic != self.dead_letters:
                metrics.forwarded(output.topic)

    def _report_status(self, consumer: Consumer) -> None:
        """Every STATUS_EVERY_S, one line: what this processor owns, took in, and lags by."""
        now = time.monotonic()
        if now < self._next_status:
            return
        self._next_status = now + STATUS_EVERY_S
        owned = {name: sorted(s.store.owned()) for name, s in self.served.items()}
        lag: dict[str, dict[int, int]] = {}
        assigned = [TopicPartition(name, p) for name, ps in owned.items() for p in ps]
        if assigned:
            for tp in consumer.position(assigned):
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    lag.setdefault(tp.topic, {})[tp.partition] = high - tp.offset
        log.info(
            "processor status",
            modules=self.names,
            owned=owned,
            unloaded=sorted(self._unloaded),
            consumed=self._consumed,
            lag=lag,
        )
        self._consumed = 0

    # Rebalancing

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._unloaded.update((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.served[tp.topic].store.drop(tp.partition)
            self._unloaded.discard((tp.topic, tp.partition))

    def _load_assigned(self, consumer: Consumer) -> None:
        if not self._unloaded:
            return
        pending = sorted(self._unloaded)
        # With read_committed this waits until the previous owner's transaction is resolved.
        consumer.committed([TopicPartition(topic, p) for topic, p in pending], timeout=30)
        wanted = [
            (served, [p for topic, p in pending if topic == name])
            for name, served in self.served.items()
        ]
        wanted = [(served, partitions) for served, partitions in wanted if partitions]
        folded = rebuild(self.settings, [(served.module, ps) for served, ps in wanted])
        for served, partitions in wanted:
            for partition, records in folded[served.module.name].items():
                served.store.load(partition, records)
                self._index_due(served, {(partition, a): r for a, r in records.items()})
            log.info("partitions loaded", module=served.module.name, partitions=partitions)
        self._unloaded.difference_update(pending)

    # Deciding

    def _handle(self, records: list[KafkaMessage]) -> list[Output]:
        outputs: list[Output] = []
        for record in records:
            served = self.served[record.topic() or ""]
            forward = routing.misrouted(
                served.commands_topic,
                partition_of(record),
                record.key(),
                record.value(),
                record.headers(),
                served.partitions,
            )
            if forward is not None:
                # Decided on the partition that keeps the aggregate's state, never here.
                routing.log_forward(forward, partition_of(record), record.offset())
                outputs.append(Output.forwarding(forward))
                continue
            try:
                command = decode(record.key(), record.value(), served.module.command_types)
            except DecodeError as error:
                outputs.append(self._dead_letter(record, error.reason))
                self._dead[served.commands_topic] += 1
                continue
            outputs.extend(self._decide(served, partition_of(record), command))
        return outputs

    def _decide(self, served: _Served, partition: int, command: Envelope) -> list[Output]:
        module = served.module
        aggregate_id = order_id_of(command)
        bound = log.bind(
            module=module.name,
            order_id=aggregate_id,
            correlation_id=command.correlation_id,
            causation_id=command.causation_id,
            message_id=command.message_id,
            command=command.type,
        )
        record = served.store.get(partition, aggregate_id)
        if command.message_id in record.handled:
            bound.info("duplicate command skipped")
            self._decided[(module.name, "duplicate")] += 1
            return []
        result = "accepted"
        try:
            events = module.decide(command, record.state)
        except Rejected as rejection:
            bound.info("command rejected", reason=rejection.reason)
            events = [_rejected(command, rejection.reason)]
            result = "rejected"
        except Exception as error:  # a bug must not stop the flow: it becomes a failure event
            bound.exception("command failed")
            events = [_rejected(command, f"internal error: {error!r}")]
            result = "rejected"
        self._decided[(module.name, result)] += 1
        state = record.state
        outputs: list[Output] = []
        now = datetime.now(UTC)
        for index, event in enumerate(events):
            state = module.evolve(state, event)
            envelope = answer(
                event,
                command,
                message_id=deterministic_id(command.message_id, f"{index}:{event.type}"),
                correlation_id=aggregate_id,
                at=now,
            )
            outputs.append(Output(served.events_topic, aggregate_id.encode(), encode(envelope)))
        served.store.stage(partition, aggregate_id, record.after(state, command.message_id))
        bound.debug("command decided", events=[e.type for e in events])
        return outputs

    def _dead_letter(self, record: KafkaMessage, reason: str) -> Output:
        return Output(
            self.dead_letters, record.key(), dead_letters.letter(Consumed.of(record), reason)
        )

    # Commands owed after a delay (payment settlement)

    def _index_due(self, served: _Served, records: dict[tuple[int, str], Aggregate[Any]]) -> None:
        for (partition, aggregate_id), record in records.items():
            due_at = served.module.due_at(record.state)
            if due_at is not None:
                heapq.heappush(self._due, (due_at, served.commands_topic, partition, aggregate_id))

    def _due_commands(self) -> list[Output]:
        now = datetime.now(UTC)
        outputs: list[Output] = []
        while self._due and self._due[0][0] <= now:
            due_at, topic, partition, aggregate_id = heapq.heappop(self._due)
            served = self.served[topic]
            if partition not in served.store.owned():
                continue
            state = served.store.get(partition, aggregate_id).state
            command = served.module.due_command(state)
            if command is None or served.module.due_at(state) != due_at:
                continue
            envelope = Envelope.wrap(
                command,
                message_id=deterministic_id(f"{aggregate_id}:{due_at.isoformat()}", command.type),
                occurred_at=now,
                correlation_id=aggregate_id,
                causation_id=None,
            )
            outputs.append(Output(topic, aggregate_id.encode(), encode(envelope)))
        return outputs


def _rejected(command: Envelope, reason: str) -> Message:
    return CommandRejected(
        command_type=command.type,
        command_message_id=command.message_id,
        reason=reason,
        order_id=order_id_of(command),
    )
