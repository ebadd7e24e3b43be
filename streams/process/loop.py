"""The process manager's transactional loop (``HOT_PATH=loop``), in a thread of the Faust worker.

Faust keeps what it does well: the group membership and the assignment of the ``processes``
table's partitions (its changelog is the only topic Faust's consumer reads), the RocksDB files,
their restore from the changelog, the standbys and the web views. This loop does the hot path
with confluent-kafka, a batch at a time, on the input partitions numbered like this worker's
active changelog partitions (the inputs are co-partitioned with the table):

1. decide every record in order (``decisions.intake`` and ``decisions.decide``, as the agent
   does) against the batch's own copy of each order's record: the one this loop last
   committed, kept as an object for the most recently used orders (``Records``), else read
   from RocksDB;
2. produce the commands, forwards, dead letters and one changelog record per order the batch
   changed, and commit them with the input offsets in **one Kafka transaction**: none of them
   is seen by a read_committed reader without the others;
3. only after the commit, write RocksDB (one batch per partition), with Faust's persisted
   changelog offset at the commit marker (last record + 1): Faust restores from the persisted
   offset, so a crash between commit and write leaves RocksDB behind the changelog, which the
   restore catches up, and never ahead of it;
4. then count, log and index the deadlines of the batch: an aborted transition is not told.

The input offsets are committed under Faust's own group id (``groups.process_manager``): the
loop's consumer only assigns partitions, and the broker takes a transactional offset commit
from a non-member (generation -1) for a group with members (measured, bench/spike/README.md).
Faust's consumer never reads the inputs, so it commits none of them; the lag metric, the
replay's rebuild and the operator tools keep reading the same group.

A revoke (``on_revoked``, which Faust awaits before it closes the revoked partitions'
databases) makes the loop finish its batch and let go of every partition; it takes the new
assignment once Faust's recovery has ended. Any Kafka error ends the session: the open
transaction is aborted, the batch's records are forgotten (RocksDB was not written), and a new
session starts from the committed offsets.

Not fenced: a worker that stalls past its session timeout (10 s) loses its open transaction
(its timeout is shorter), but could begin a new one for partitions that moved before its Faust
consumer learns of the rebalance (one heartbeat, 3 s). Kills are covered; stalls are not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage
from rocksdict import WriteBatch

from aggregates.messages import Envelope
from process_manager import REACTS_TO, Process, Timeouts
from streams.kafka import dead_letters, groups, routing
from streams.kafka.consuming import Consumed, next_offsets, take
from streams.kafka.producing import Output, produce_waiting
from streams.kafka.topics import DEAD_LETTER_MAX_BYTES, DEAD_LETTERS
from streams.observability import liveness, metrics
from streams.observability.logs import get_logger
from streams.process.decisions import Decision, Refused, decide, decide_on, dump, intake
from streams.settings import Settings

log = get_logger(__name__)

BATCH = 2000
"""Records per transaction at most; fewer when fewer are fetched (``take`` adds no wait)."""
RECORDS_KEPT = 10_000
"""Orders whose committed record the loop keeps as an object: about 140 MiB at 14 KiB per
completed process (measured with tracemalloc); parsing the JSON again cost about 35 µs per
input."""


class Records:
    """The committed records of the most recently used orders, as objects.

    Valid while the loop owns their partitions: nothing else writes them then (operator
    actions and timeouts come in as input records). Cleared whenever the loop lets go.
    """

    def __init__(self, size: int = RECORDS_KEPT) -> None:
        self.size = size
        self._kept: OrderedDict[bytes, Process] = OrderedDict()

    def get(self, key: bytes) -> Process | None:
        process = self._kept.get(key)
        if process is not None:
            self._kept.move_to_end(key)
        return process

    def keep(self, key: bytes, process: Process) -> None:
        self._kept[key] = process
        self._kept.move_to_end(key)
        if len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def clear(self) -> None:
        self._kept.clear()


class ProcessLoop:
    """The hot path as a module component (``run(stop)``, ``ready``)."""

    def __init__(
        self,
        app: Any,
        table: Any,
        settings: Settings,
        inputs: dict[str, frozenset[str]],
        *,
        timeouts: Timeouts,
        handle: Any,
        push_deadlines: Callable[[list[tuple[bytes, datetime | None]]], None],
    ) -> None:
        self.app = app
        self.table = table
        self.settings = settings
        self.inputs = inputs
        self.timeouts = timeouts
        self.handle = handle
        self.push_deadlines = push_deadlines
        self.group = groups.process_manager(settings)
        self.records = Records()
        self.ready = threading.Event()
        self.hold = threading.Event()  # set: let go of the partitions, take the assignment anew
        self.active = threading.Event()  # set while partitions are assigned
        self.hold.set()

    # Rebalancing (on Faust's event loop)

    async def on_revoked(self, *_: Any, **__: Any) -> None:
        """Faust's revoke: wait until the loop has committed its batch and let go."""
        self.hold.set()
        deadline = time.monotonic() + 30
        while self.active.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.active.is_set():
            log.warning("process loop still holds its partitions after 30 s; revoking anyway")

    def _owned(self) -> frozenset[int]:
        changelog = self.table.changelog_topic.get_topic_name()
        actives = self.app.assignor.assigned_actives()
        return frozenset(tp.partition for tp in actives if tp.topic == changelog)

    # The loop (in its thread)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            liveness.beat()
            try:
                self._session(stop)
            except KafkaException as error:
                log.warning(
                    "process loop session ended; its batch is taken in again", error=str(error)
                )
                stop.wait(1.0)
            finally:
                self.active.clear()
                self.hold.set()

    def _session(self, stop: threading.Event) -> None:
        producer = Producer(
            self.settings.producer_config(
                **{
                    "transactional.id": f"{self.group}-loop-{self.settings.stable_worker_id()}",
                    # below the group's session timeout: a worker that stalls long enough to
                    # lose its partitions has lost its open transaction too
                    "transaction.timeout.ms": 8000,
                    "linger.ms": 5,
                    "message.max.bytes": DEAD_LETTER_MAX_BYTES,
                }
            )
        )
        # Aborts whatever this worker left open before a crash, so readers are not held up.
        producer.init_transactions(30)
        liveness.beat()
        # assigns Faust's partitions, so not a member of a subscription
        consumer = Consumer(self.settings.consumer_config(self.group))
        first = next(iter(self.inputs))
        metadata = consumer.list_topics(first, timeout=30).topics[first]
        partitions = len(metadata.partitions) or self.settings.topic_partitions
        owned: frozenset[int] = frozenset()
        try:
            while not stop.is_set():
                liveness.beat()
                if self.hold.is_set():
                    owned = self._reassign(consumer, owned)
                    if self.hold.is_set():
                        stop.wait(0.05)
                    continue
                if not owned:
                    stop.wait(0.1)
                    continue
                records = take(consumer, BATCH, timeout=0.1)
                if records:
                    self._batch(producer, consumer, owned, partitions, records)
        finally:
            consumer.close()

    def _reassign(self, consumer: Consumer, owned: frozenset[int]) -> frozenset[int]:
        """Let go of ``owned``; once Faust's recovery has ended, take its active partitions."""
        if owned:
            consumer.unassign()
        self.records.clear()
        self.active.clear()
        # Cleared before the check: Faust sets `rebalancing` before it sends the revoke, so a
        # revoke is either seen by the check or sets `hold` again before the next batch.
        self.hold.clear()
        if self.app.rebalancing or not self.app.tables.actives_ready:
            self.hold.set()
            return frozenset()
        owned = self._owned()
        if owned:
            # from the group's committed offsets; with read_committed the fetch waits for any
            # transaction of the previous owner to be resolved
            consumer.assign([TopicPartition(t, p) for t in self.inputs for p in sorted(owned)])
            self.active.set()
        self.ready.set()
        log.info("process loop consuming", partitions=sorted(owned))
        return owned

    def _batch(
        self,
        producer: Producer,
        consumer: Consumer,
        owned: frozenset[int],
        partitions: int,
        records: list[KafkaMessage],
    ) -> None:
        batch = Batch(self, owned, partitions)
        taken = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", error=str(error))
                continue
            batch.take(record)
            taken.append(record)
        if not taken:
            return
        changelog = self.table.changelog_topic.get_topic_name()
        last: dict[int, int] = {}
        failed: list[KafkaError] = []

        def delivered(error: KafkaError | None, record: KafkaMessage) -> None:
            if error is not None:
                failed.append(error)
                return
            partition, offset = record.partition(), record.offset()
            assert partition is not None and offset is not None
            last[partition] = max(last.get(partition, -1), offset)

        producer.begin_transaction()
        for output in batch.outputs:
            produce_waiting(
                producer,
                output.topic,
                key=output.key,
                value=output.value,
                partition=-1 if output.partition is None else output.partition,
                headers=output.headers,
            )
        for key, partition in batch.changed.items():
            produce_waiting(
                producer,
                changelog,
                key=key,
                value=batch.serialized(key),
                partition=partition,
                on_delivery=delivered,
            )
        consumed = ((r.topic() or "", r.partition() or 0, r.offset() or 0) for r in taken)
        producer.send_offsets_to_transaction(
            next_offsets(consumed), consumer.consumer_group_metadata(), 30
        )
        liveness.beat()
        if producer.flush(30) > 0:  # serves the changelog records' delivery reports
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "flush before commit"))
        if failed:
            raise KafkaException(failed[0])
        liveness.beat()
        producer.commit_transaction(30)
        batch.write_store(last)
        batch.keep()
        batch.report()


class Batch:
    """One batch's decisions: the records it changed, what it produces, what it reports."""

    def __init__(self, loop: ProcessLoop, owned: frozenset[int], partitions: int) -> None:
        self.loop = loop
        self.partitions = partitions
        store = loop.table.data
        self.offset_key: bytes = store.offset_key
        self.dbs = {p: store._db_for_partition(p) for p in owned}
        self.processes: dict[bytes, Process | None] = {}  # each touched order's record, now
        self.changed: dict[bytes, int] = {}  # the orders whose record changed, by partition
        self.dumped: dict[bytes, bytes] = {}  # the changed records as stored
        self.outputs: list[Output] = []
        self.decisions: list[Decision] = []
        self.ignored: Counter[str] = Counter()
        self.forwards: list[tuple[routing.Forward, int, int | None]] = []
        self.letters: list[str] = []

    def take(self, record: KafkaMessage) -> None:
        topic, partition = record.topic() or "", record.partition() or 0
        key, value = record.key(), record.value()
        taken = intake(
            topic, partition, key, value, record.headers(), self.partitions, self.loop.inputs[topic]
        )
        if isinstance(taken, routing.Forward):
            self.outputs.append(Output.forwarding(taken))
            self.forwards.append((taken, partition, record.offset()))
            return
        if isinstance(taken, Refused):
            self._dead_letter(record, taken.reason)
            return
        assert key is not None  # the codec refuses a record without one
        self._decide(record, key, partition, taken)

    def _decide(self, record: KafkaMessage, key: bytes, partition: int, envelope: Envelope) -> None:
        topic_kind = (record.topic() or "").removeprefix(self.loop.settings.topic_prefix)
        if envelope.type not in REACTS_TO:
            self.ignored[topic_kind] += 1
            return
        loop = self.loop
        current = self.processes[key] if key in self.processes else loop.records.get(key)
        if current is not None or key in self.processes:
            decision = decide_on(
                key, current, envelope, topic_kind, timeouts=loop.timeouts, handle=loop.handle
            )
        else:
            stored = self.dbs[partition].get(key)
            decision = decide(
                key, stored, envelope, topic_kind, timeouts=loop.timeouts, handle=loop.handle
            )
        self.decisions.append(decision)
        if decision.outcome.kind == "failed":
            self._dead_letter(record, f"process failed: {decision.outcome.reason}")
            return
        new = decision.changed
        self.processes[key] = decision.current if new is None else new
        if new is not None:
            self.changed[key] = partition
        settings = self.loop.settings
        for topic, value in decision.commands():
            self.outputs.append(Output(settings.topic(topic), key, value))

    def _dead_letter(self, record: KafkaMessage, reason: str) -> None:
        letter = dead_letters.letter(Consumed.of(record), reason)
        self.outputs.append(Output(self.loop.settings.topic(DEAD_LETTERS), record.key(), letter))
        self.letters.append(record.topic() or "")

    def serialized(self, key: bytes) -> bytes:
        """A changed order's record as the changelog and RocksDB store it (once per batch)."""
        if key not in self.dumped:
            process = self.processes[key]
            assert process is not None, "a changed record is never None"
            self.dumped[key] = dump(process)
        return self.dumped[key]

    def write_store(self, last: dict[int, int]) -> None:
        """The committed records into RocksDB, with the offset of each partition's commit
        marker as Faust's persisted changelog offset."""
        writes: dict[int, Any] = defaultdict(lambda: WriteBatch(raw_mode=True))
        for key, partition in self.changed.items():
            writes[partition].put(key, self.serialized(key))
        for partition, write in writes.items():
            write.put(self.offset_key, str(last[partition] + 1).encode())
            self.dbs[partition].write(write)

    def keep(self) -> None:
        """The committed records into the loop's ``Records``."""
        for key, process in self.processes.items():
            if process is not None:
                self.loop.records.keep(key, process)

    def report(self) -> None:
        deadlines: list[tuple[bytes, datetime | None]] = []

        def push(key: bytes, deadline: datetime | None) -> None:
            deadlines.append((key, deadline))

        for decision in self.decisions:
            decision.report(push)
        if deadlines:
            self.loop.push_deadlines(deadlines)
        for topic_kind, count in self.ignored.items():
            metrics.message(topic_kind, "ignored", count)
        for forward, partition, offset in self.forwards:
            routing.log_forward(forward, partition, offset)
            metrics.forwarded(forward.topic)
        for topic in self.letters:
            metrics.dead_letter(topic)
