"""The floor every other test stands on: a real Faust worker on the real broker, and Postgres."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.kafka.consuming import take
from streams.settings import Settings
from tests.integration.harness import (
    Service,
    create_topics,
    faust_worker,
    produce,
    read_all,
    unique,
)

pytestmark = pytest.mark.integration


def test_a_faust_worker_counts_in_a_rocksdb_table_and_keeps_the_count_across_a_restart(
    settings: Settings, services: list[Service], tmp_path: Path
) -> None:
    # Given a probe app with its own topics and a real worker
    source, sink = unique("probe-in"), unique("probe-out")
    create_topics(settings, source, sink)
    worker = faust_worker(
        "tests.integration.probe_app",
        env={"PROBE_APP_ID": unique("probe"), "PROBE_SOURCE": source, "PROBE_SINK": sink},
        data_dir=tmp_path / "worker",
        web_port=16066,
    )
    services.append(worker)
    worker.start()

    # When two messages for one key arrive
    produce(settings, source, [(b"order-1", b"a"), (b"order-1", b"b")])

    # Then the worker emitted a running count per message
    emitted = sorted(read_all(settings, sink, expected=2))
    assert emitted == [(b"order-1", b"a:1"), (b"order-1", b"b:2")]
    assert (tmp_path / "worker" / "faust").exists(), "the table should live in RocksDB files"

    # When the worker restarts and a third message arrives
    assert worker.stop() == 0
    worker.start()
    produce(settings, source, [(b"order-1", b"c")])

    # Then the count continued from the table's stored value
    records = read_all(settings, sink, expected=3)
    assert (b"order-1", b"c:3") in records, worker.tail()
    assert len(records) == 3


def test_postgres_round_trip(settings: Settings) -> None:
    # Given the project's database
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        # When a row is written and read back in one transaction
        conn.execute("CREATE TEMP TABLE probe (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO probe VALUES (%s, %s)", (1, "hello"))
        row = conn.execute("SELECT note FROM probe WHERE id = %s", (1,)).fetchone()
    # Then it comes back unchanged
    assert row == ("hello",)


def test_take_returns_a_waiting_record_without_waiting_for_a_full_batch(
    settings: Settings,
) -> None:
    # Given a consumer at the start of a topic that holds one record
    topic = unique("take")
    create_topics(settings, topic)
    produce(settings, topic, [(b"order-1", b"a")])
    consumer = Consumer(settings.confluent_config(**{"group.id": unique("take")}))
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.topic_partitions)]
    )
    try:
        # When up to 500 records are taken with a long timeout
        started = time.monotonic()
        taken = take(consumer, 500, timeout=20.0)
        waited = time.monotonic() - started

        # Then the one record comes back long before the timeout (consume(500) waits it all)
        assert [(r.key(), r.value()) for r in taken] == [(b"order-1", b"a")]
        assert waited < 10.0
    finally:
        consumer.close()
