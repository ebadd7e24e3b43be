"""(b) Faust batches: ``take_events`` + a patched RocksDB store + ``send_soon``.

Inside ``take_events`` there is no current event (the events are buffered by a processor on
another task), and faust 0.15.3's RocksDB store picks the partition database from the current
event: ``Store._set`` asserts one, ``Store._get`` falls back to searching every partition.
With ``Table(use_partitioner=True)`` the changelog record's partition already comes from the
key (``send_changelog`` with ``eager_partitioning``); the patch below makes the store do the
same: the partition of a key is murmur2(key) modulo the table's partitions, as aiokafka's
default partitioner (and librdkafka's ``murmur2_random``) put the inputs.

Per batch: decide every event in order against a batch-local copy of the state, then write
each touched key once (``table[key] = state``: RocksDB put + changelog ``send_soon``), then
``send_soon`` the outputs. ``take_events`` acks the events after the batch; Faust commits
after ``producer.flush()`` as usual.
"""

from __future__ import annotations

import os
from typing import Any

from aiokafka.partitioner import murmur2
from faust.stores import rocksdb as faust_rocksdb
from faust.transport.producer import ProducerBuffer

from bench.spike.core import decide
from bench.spike.relay_app import make_app

BATCH = int(os.environ.get("RELAY_BATCH", "1000"))
WITHIN = float(os.environ.get("RELAY_WITHIN_S", "0.05"))
SEND = os.environ.get("RELAY_SEND", "soon")  # "await": ``await sink.send`` per output
if "RELAY_BUFFER_MAX" in os.environ:  # Faust's 100; faust-streaming #173's workaround
    ProducerBuffer.max_messages = int(os.environ["RELAY_BUFFER_MAX"])

_faust_set = faust_rocksdb.Store._set
_faust_get = faust_rocksdb.Store._get


def _partition_of(store: Any, key: bytes) -> int:
    return int((murmur2(key) & 0x7FFFFFFF) % store.table.partitions)


def _set(store: Any, key: bytes, value: bytes | None) -> None:
    if not store.table.use_partitioner:
        _faust_set(store, key, value)
        return
    partition = _partition_of(store, key)
    store._key_index[key] = partition
    store._db_for_partition(partition).put(key, value)


def _get(store: Any, key: bytes) -> bytes | None:
    if not store.table.use_partitioner or store.table.is_global:
        return _faust_get(store, key)
    return store._db_for_partition(_partition_of(store, key)).get(key)  # type: ignore[no-any-return]


faust_rocksdb.Store._set = _set  # type: ignore[method-assign,assignment]
faust_rocksdb.Store._get = _get  # type: ignore[method-assign,assignment]

app, source, sink, settings = make_app()
table = app.Table(
    "relay",
    key_type=bytes,
    value_type=bytes,
    partitions=settings.topic_partitions,
    use_partitioner=True,
)


@app.agent(source)
async def relay(stream: Any) -> None:
    async for events in stream.take_events(BATCH, WITHIN):
        states: dict[bytes, bytes] = {}
        outputs: list[tuple[bytes, bytes]] = []
        for event in events:
            key = event.key
            state = states[key] if key in states else table.get(key)
            states[key], output = decide(state, event.value)
            outputs.append((key, output))
        for key, state in states.items():
            table[key] = state
        if SEND == "await":
            for key, output in outputs:
                await sink.send(key=key, value=output)
        else:
            for key, output in outputs:
                sink.send_soon(key=key, value=output)
