"""(c) A confluent-kafka transactional consume-decide-produce loop inside a Faust worker.

Faust keeps what it is good at: the group membership and the assignment of the table's
partitions (its changelog topic is the only topic its consumer subscribes to: no agent reads
the source), the RocksDB files per partition, their restore from the changelog, the web view.
A thread of this worker's ``mode.Service`` does the hot path with librdkafka:

- it consumes the source partitions whose numbers are the table's actively assigned changelog
  partitions (``app.assignor.assigned_actives()``), by ``assign`` under a group id of its own
  (``<app id>-txloop``: Faust's group has members, and the broker refuses offset commits for
  it from a non-member);
- per batch: decide every message in order against a batch-local copy of the state (read
  through the table's store, ``store._db_for_partition(p)``), produce the outputs and one
  changelog record per touched key (to the input's partition, as Faust does), then
  ``send_offsets_to_transaction`` and ``commit_transaction``: outputs, changelog records and
  input offsets in one Kafka transaction;
- only after the commit: one RocksDB ``WriteBatch`` per partition with the new states and
  the persisted changelog offset (``Store.set_persisted_offset``'s key), set to the offset of
  the transaction's commit marker (last record + 1: this loop is the partition's only writer),
  because Faust restores from persisted offset to highwater - 1 and, outside its own
  exactly_once mode, never skips a trailing marker (``Recovery._slurp_changelogs``:
  ``detect_aborted_tx`` only runs when ``app.in_transaction``).

On a revoke (``app.on_partitions_revoked``, which Faust awaits before it closes the revoked
partitions' databases) the thread finishes its batch, gives up its source partitions and
waits until Faust's recovery has ended (``not app.rebalancing and app.tables.actives_ready``)
before it takes the new assignment.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import mode
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from rocksdict import WriteBatch

from bench.spike.core import decide
from bench.spike.relay_app import make_app
from streams.kafka.recovery import use_marker_safe_restore

BATCH = int(os.environ.get("RELAY_BATCH", "2000"))
# "own": input offsets under <app id>-txloop; "faust": under Faust's own group id (its
# consumer never consumes the inputs, so it commits nothing for them)
LOOP_GROUP = os.environ.get("RELAY_LOOP_GROUP", "own")
LINGER_MS = int(os.environ.get("RELAY_LINGER_MS", "5"))

if os.environ.get("RELAY_RESTORE_PATCH", "on") == "on":
    use_marker_safe_restore()
app, source, sink, settings = make_app()
table: Any = app.Table(
    "relay", key_type=bytes, value_type=bytes, partitions=settings.topic_partitions
)
SOURCE = source.get_topic_name()
SINK = sink.get_topic_name()


class Loop:
    """The thread's state; ``hold`` asks it to let go of its partitions, ``active`` says it
    holds some (a revoke waits only for a thread that does: at the first join it has none)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.hold = threading.Event()
        self.active = threading.Event()
        self.hold.set()  # until Faust's first assignment and recovery are done
        self.batches = 0
        self.messages = 0
        self.seconds: dict[str, float] = defaultdict(float)  # where a batch's time goes

    def owned(self) -> frozenset[int]:
        changelog = table.changelog_topic_name
        return frozenset(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog
        )

    def run(self) -> None:
        app_id = app.conf.id
        consumer = Consumer(
            settings.confluent_config(
                **{
                    "group.id": app_id if LOOP_GROUP == "faust" else f"{app_id}-txloop",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                }
            )
        )
        producer = Producer(
            settings.producer_config(
                **{
                    "transactional.id": f"{app_id}-txloop-{settings.stable_worker_id()}",
                    "linger.ms": LINGER_MS,
                }
            )
        )
        producer.init_transactions(60)
        owned: frozenset[int] = frozenset()
        try:
            while not self.stop.is_set():
                if self.hold.is_set():
                    if owned:
                        consumer.unassign()
                        owned = frozenset()
                    self.active.clear()
                    if app.rebalancing or not app.tables.actives_ready:
                        time.sleep(0.05)
                        continue
                    # hold first: a revoke from here on is seen at the top of the loop
                    self.hold.clear()
                    owned = self.owned()
                    consumer.assign([TopicPartition(SOURCE, p) for p in sorted(owned)])
                    self.active.set()
                    app.log.info(f"txloop: consuming {SOURCE} partitions {sorted(owned)}")
                    continue
                started = time.perf_counter()
                messages = consumer.consume(BATCH, 0.1)
                if messages:
                    self.seconds["consume"] += time.perf_counter() - started
                    self.batch(consumer, producer, owned, messages)
        finally:
            self.active.clear()
            consumer.close()
            producer.flush(30)

    def batch(
        self, consumer: Consumer, producer: Producer, owned: frozenset[int], messages: list[Any]
    ) -> None:
        clock = time.perf_counter
        started = clock()
        store = table.data
        dbs = {p: store._db_for_partition(p) for p in owned}
        states: dict[bytes, bytes] = {}
        where: dict[bytes, int] = {}
        positions: dict[int, int] = {}
        produce = producer.produce
        producer.begin_transaction()
        for message in messages:
            if message.error() is not None:
                raise KafkaException(message.error())
            key, partition = message.key(), message.partition()
            state = states[key] if key in states else dbs[partition].get(key)
            states[key], output = decide(state, message.value())
            where[key] = partition
            produce(SINK, output, key)
            positions[partition] = message.offset() + 1
        last: dict[int, int] = {}
        failed: list[Any] = []

        def delivered(error: Any, record: Any) -> None:
            if error is not None:
                failed.append(error)
            else:
                p = record.partition()
                last[p] = max(last.get(p, -1), record.offset())

        changelog = table.changelog_topic_name
        for key, state in states.items():
            produce(changelog, state, key, partition=where[key], on_delivery=delivered)
        decided = clock()
        offsets = [TopicPartition(SOURCE, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.flush(30)  # serves the delivery reports: the changelog offsets
        if failed:
            producer.abort_transaction(30)
            raise KafkaException(failed[0])
        flushed = clock()
        producer.commit_transaction(30)
        committed = clock()
        batches: dict[int, Any] = defaultdict(lambda: WriteBatch(raw_mode=True))
        for key, state in states.items():
            batches[where[key]].put(key, state)
        for p, batch in batches.items():
            batch.put(store.offset_key, str(last[p] + 1).encode())  # the commit marker's offset
            dbs[p].write(batch)
        self.batches += 1
        self.messages += len(messages)
        self.seconds["decide+produce"] += decided - started
        self.seconds["offsets+flush"] += flushed - decided
        self.seconds["commit"] += committed - flushed
        self.seconds["rocksdb"] += clock() - committed


loop = Loop()
DUMP = os.environ.get("RELAY_DUMP")


@app.timer(interval=1.0)  # type: ignore[untyped-decorator]
async def dump_table() -> None:
    """The restore probe (``RELAY_DUMP``, with ``RELAY_LOOP=off``): once Faust says the actives
    are restored, write the table's counters (RocksDB: the active partitions) as JSON."""
    if DUMP is None or Path(DUMP).exists() or app.rebalancing or not app.tables.actives_ready:
        return
    counts = {key.decode(): json.loads(value)["count"] for key, value in table.items()}
    Path(DUMP + ".tmp").write_text(json.dumps(counts))
    Path(DUMP + ".tmp").rename(DUMP)


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
    loop.hold.set()
    deadline = time.monotonic() + 30
    while loop.active.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


@app.service
class TxnLoop(mode.Service):
    async def on_start(self) -> None:
        if os.environ.get("RELAY_LOOP", "on") == "off":
            return
        self._thread = threading.Thread(target=self._run, name="txloop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            loop.run()
        except Exception as error:  # noqa: BLE001 - the spike logs it and stops the worker
            app.log.exception(f"txloop crashed: {error!r}")
            os._exit(3)

    async def on_stop(self) -> None:
        loop.stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            await asyncio.to_thread(thread.join, 30)
        spent = ", ".join(f"{k} {v:.2f} s" for k, v in loop.seconds.items())
        app.log.info(f"txloop: {loop.messages} messages in {loop.batches} batches ({spent})")
