"""Where an order's time goes: the delay of each hop, from the records' timestamps.

Every record of the given orders on the scenario's contract topics (not the changelog, not the
dead letters), read_committed, grouped by key and ordered by timestamp (each producer's
CreateTime), up to the order's terminal time: what comes later (the payment's settlement,
which waits ``PAYMENT_SETTLEMENT_DELAY_S`` on purpose) is not part of its latency. A hop is
the step from one message type to the next in an order's records, its delay the difference of
their timestamps. A record is stamped when its producer sends it, inside its transaction, so a
hop's delay includes the sending side's commit as well as the receiving side's wait and work.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from confluent_kafka import TopicPartition

from bench.common import percentile, scenario_topics
from streams.kafka.consuming import read_to_end, reader
from streams.settings import Settings


def hops(settings: Settings, done_ms: dict[bytes, int], slowest: int = 6) -> list[dict[str, Any]]:
    """The ``slowest`` hops by mean delay of the orders in ``done_ms`` (key: the timestamp of
    the changelog record that made its process terminal), each taken by at least a tenth of
    the orders."""
    topics = [
        t
        for t in scenario_topics(settings)
        if t.startswith(settings.topic_prefix) and "changelog" not in t and "dead-letters" not in t
    ]
    return slowest_hops(_records(settings, topics, set(done_ms)), done_ms, slowest)


def slowest_hops(
    records: dict[bytes, list[tuple[int, str]]], done_ms: dict[bytes, int], slowest: int
) -> list[dict[str, Any]]:
    """``hops`` from the records read for each order: (timestamp in ms, message type)."""
    delays: dict[str, list[float]] = defaultdict(list)
    for key, timed in records.items():
        timed = sorted(t for t in timed if t[0] <= done_ms[key])
        for (before, first), (after, then) in zip(timed, timed[1:], strict=False):
            delays[f"{first} -> {then}"].append(after - before)
    common = {hop: d for hop, d in delays.items() if len(d) >= len(records) / 10}
    ranked = sorted(common.items(), key=lambda item: -sum(item[1]) / len(item[1]))
    return [
        {
            "hop": hop,
            "n": len(d),
            "p50_ms": percentile(d, 0.5),
            "p99_ms": percentile(d, 0.99),
            "mean_ms": sum(d) / len(d),
        }
        for hop, d in ranked[:slowest]
    ]


def _records(
    settings: Settings, topics: list[str], keys: set[bytes]
) -> dict[bytes, list[tuple[int, str]]]:
    consumer = reader(settings)
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p, 0) for t in topics for p in metadata[t].partitions]
        found: dict[bytes, list[tuple[int, str]]] = defaultdict(list)
        for records in read_to_end(consumer, partitions, {}):
            for record in records:
                key, value = record.key(), record.value()
                if key in keys and value is not None:
                    found[key].append((record.timestamp()[1], json.loads(value)["type"]))
        return found
    finally:
        consumer.close()
