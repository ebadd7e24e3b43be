"""Baselines on the same broker: a raw relay, a raw hop's latency, a raw read of topics."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.common import log, partitions_of, percentile
from streams.kafka.producing import produce_waiting
from streams.settings import Settings


def _value(order_id: str, n: int, size: int) -> bytes:
    body = {
        "message_id": str(uuid.uuid4()),
        "type": "BenchMessage",
        "schema_version": 1,
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "correlation_id": order_id,
        "causation_id": None,
        "data": {"order_id": order_id, "n": n, "pad": ""},
    }
    raw = json.dumps(body, separators=(",", ":"))
    body["data"]["pad"] = "x" * max(0, size - len(raw))  # type: ignore[index]
    return json.dumps(body, separators=(",", ":")).encode()


def _create(settings: Settings, *names: str) -> None:
    admin = AdminClient(settings.confluent_config())
    partitions = settings.topic_partitions
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    for future in admin.create_topics(new, operation_timeout=30).values():
        future.result()


def _delete(settings: Settings, *names: str) -> None:
    admin = AdminClient(settings.confluent_config())
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result()


def relay(settings: Settings, count: int, size: int = 400, orders: int = 2000) -> dict[str, float]:
    """One Python process, Consumer + Producer: consume ``count`` records and produce each on.

    The records (``size``-byte JSON values keyed by one of ``orders`` order ids) are produced
    to the source topic first; the relay is timed from assigning the source partitions (no
    group join) to the last delivery acknowledged.
    Producer settings as the system's confluent producers: idempotent, acks=all, linger 5 ms.
    """
    tag = uuid.uuid4().hex[:8]
    source, sink = f"bench-relay-{tag}.in", f"bench-relay-{tag}.out"
    _create(settings, source, sink)
    try:
        loader = Producer(settings.producer_config(**{"linger.ms": 20, "enable.idempotence": True}))
        for n in range(count):
            order_id = f"bench-{tag}-{n % orders:06d}"
            produce_waiting(loader, source, key=order_id.encode(), value=_value(order_id, n, size))
            if n % 1000 == 0:
                loader.poll(0)
        assert loader.flush(60) == 0, "relay source not loaded"
        consumer = Consumer(
            settings.confluent_config(
                **{
                    "group.id": f"bench-relay-{tag}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                }
            )
        )
        producer = Producer(
            settings.producer_config(**{"linger.ms": 5, "enable.idempotence": True, "acks": "all"})
        )
        partitions = partitions_of(consumer, source)
        started = time.monotonic()
        consumer.assign([TopicPartition(source, p, 0) for p in partitions])
        relayed = 0
        deadline = time.monotonic() + 300
        while relayed < count and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                produce_waiting(producer, sink, key=message.key(), value=message.value())
                relayed += 1
            producer.poll(0)
        producer.flush(60)
        elapsed = time.monotonic() - started
        consumer.close()
        rate = relayed / elapsed if elapsed > 0 else float("nan")
        log(f"baseline relay: {relayed} records of {size} B in {elapsed:.2f} s = {rate:,.0f}/s")
        return {"messages": relayed, "value_bytes": size, "elapsed_s": elapsed, "msgs_per_s": rate}
    finally:
        _delete(settings, source, sink)


def hop_latency(
    settings: Settings, count: int = 1000, rate: float = 200.0, warmup: int = 200
) -> dict[str, float]:
    """Raw latency of one hop: produce (idempotent, acks=all, linger 5 ms) -> consumed.

    ``warmup`` more records go first and are not counted (the first ~100 wait for the
    producer's id and the consumer's first fetch, up to 0.5 s)."""
    tag = uuid.uuid4().hex[:8]
    topic = f"bench-hop-{tag}"
    _create(settings, topic)
    try:
        consumer = Consumer(
            settings.confluent_config(
                **{
                    "group.id": f"bench-hop-{tag}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 50,
                }
            )
        )
        partitions = partitions_of(consumer, topic)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        consumer.consume(10, timeout=1.0)
        producer = Producer(
            settings.producer_config(**{"linger.ms": 5, "enable.idempotence": True})
        )
        sent: dict[bytes, float] = {}
        total = count + warmup
        latencies: list[float] = []
        started = time.monotonic()
        n = 0
        deadline = started + total / rate + 30
        while len(latencies) < count and time.monotonic() < deadline:
            if n < total and n < (time.monotonic() - started) * rate:
                key = f"hop-{n}".encode()
                sent[key] = time.time()
                producer.produce(topic, key=key, value=_value(key.decode(), n, 400))
                producer.poll(0)
                n += 1
            for message in consumer.consume(100, timeout=0.002):
                got = message.key()
                if message.error() is None and isinstance(got, bytes) and got in sent:
                    if int(got[4:]) < warmup:
                        continue
                    latencies.append((time.time() - sent[got]) * 1000)
        consumer.close()
        producer.flush(10)
        result = {
            "messages": len(latencies),
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "p99_ms": percentile(latencies, 0.99),
        }
        log(f"baseline hop latency: p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms")
        return result
    finally:
        _delete(settings, topic)


def raw_read(settings: Settings, topics: Sequence[str]) -> dict[str, float]:
    """Read ``topics`` from the beginning to their ends (read_committed), without decoding."""
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
    )
    started = time.monotonic()
    assignment = []
    for topic in topics:
        for p in partitions_of(consumer, topic):
            assignment.append(TopicPartition(topic, p, 0))
    consumer.assign(assignment)
    pending = {(tp.topic, tp.partition) for tp in assignment}
    records = 0
    deadline = time.monotonic() + 600
    while pending and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=1.0):
            error = message.error()
            if error is None:
                records += 1
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard((message.topic(), message.partition()))
    elapsed = time.monotonic() - started
    consumer.close()
    return {"records": records, "elapsed_s": elapsed, "records_per_s": records / elapsed}
