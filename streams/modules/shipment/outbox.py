"""The outbox relay: publish the outbox rows to Kafka, then mark them published.

One batch is one Postgres transaction: lock up to ``batch_size`` unpublished rows of the
relay's topics (``FOR UPDATE SKIP LOCKED``, so several relays share the work), produce them
with an idempotent producer, flush and check every delivery report, mark the rows and commit.
A crash after the publish and before the commit leaves the rows unpublished, so the next run
publishes them again: delivery is at least once, duplicates carry the same ``message_id``, and
consumers dedupe on it. Nothing is lost: a row is marked only after Kafka acknowledged it.

When idle it polls every ``idle_interval``; a handler in the same process calls ``wake`` after
each commit, so that its rows go out at once rather than at the next poll.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, Producer
from confluent_kafka import Message as KafkaMessage

from streams.faults import RELAY_CRASH_AFTER_PUBLISH, crash_point
from streams.kafka.topics import events_of
from streams.observability import liveness, metrics
from streams.observability.logs import get_logger
from streams.postgres.db import LazyConnection
from streams.settings import Settings

log = get_logger(__name__)


class PublishError(RuntimeError):
    """Kafka did not acknowledge every row of a batch; none of them is marked."""


class OutboxRelay:
    """Publishes the outbox rows whose topic is one of ``topics`` (default: shipment events)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Sequence[str] | None = None,
        batch_size: int = 500,
        idle_interval: float = 0.1,
        retry_backoff: float = 1.0,
        flush_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.topics = list(topics or [settings.topic(events_of("shipments"))])
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.retry_backoff = retry_backoff
        self.flush_timeout = flush_timeout
        self._db = LazyConnection(settings.database_url)
        self._producer: Producer | None = None
        self._woken = threading.Event()
        self.ready = threading.Event()

    def wake(self) -> None:
        """New rows were committed: publish now."""
        self._woken.set()

    def run(self, stop: threading.Event) -> None:
        """Publish batch after batch until ``stop`` is set; wait a little when idle."""
        log.info("outbox relay started", topics=self.topics)
        try:
            while not stop.is_set():
                liveness.beat()
                self._woken.clear()
                try:
                    published = self.publish_batch()
                    self.ready.set()
                except Exception:
                    log.exception("outbox batch failed; it will be retried")
                    self._reset()
                    stop.wait(self.retry_backoff)
                    continue
                if published < self.batch_size:
                    self._idle(stop)
        finally:
            self.close()
            log.info("outbox relay stopped")

    def _idle(self, stop: threading.Event) -> None:
        """Wait ``idle_interval``, or less when woken or stopped."""
        end = time.monotonic() + self.idle_interval
        while not (stop.is_set() or self._woken.is_set()):
            left = end - time.monotonic()
            if left <= 0:
                return
            self._woken.wait(min(left, 0.5))

    def publish_batch(self) -> int:
        """Publish and mark one batch in one transaction; return how many rows it held."""
        conn = self._db.get()
        with conn.transaction():
            rows = conn.execute(
                """
                SELECT id, message_id, topic, key, value FROM outbox
                WHERE published_at IS NULL AND topic = ANY(%s)
                ORDER BY id LIMIT %s
                FOR UPDATE SKIP LOCKED
                """,
                (self.topics, self.batch_size),
            ).fetchall()
            if not rows:
                return 0
            self._publish([(topic, key, value) for _, _, topic, key, value in rows])
            crash_point(RELAY_CRASH_AFTER_PUBLISH)
            conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY(%s)",
                ([row_id for row_id, *_ in rows],),
            )
        metrics.outbox_published(len(rows))
        log.info("outbox published", count=len(rows), last_id=rows[-1][0])
        if log.is_enabled_for(logging.DEBUG):
            for _, _, topic, key, value in rows:
                _log_published(topic, key, bytes(value))
        return len(rows)

    def _publish(self, messages: list[tuple[str, bytes | None, bytes]]) -> None:
        producer = self._kafka()
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: KafkaMessage) -> None:
            if error is not None:
                errors.append(error)

        for topic, key, value in messages:
            producer.produce(topic, key=key, value=value, on_delivery=delivered)
            producer.poll(0)
        remaining = producer.flush(self.flush_timeout)
        if remaining or errors:
            raise PublishError(f"{remaining} not acknowledged, {len(errors)} failed: {errors[:3]}")

    def _kafka(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                self.settings.producer_config(
                    **{
                        "client.id": f"{self.settings.app_id}-shipments-outbox",
                        "enable.idempotence": True,
                        "acks": "all",
                        "linger.ms": 5,
                        "delivery.timeout.ms": int(self.flush_timeout * 1000 / 2),
                    }
                )
            )
        return self._producer

    def _reset(self) -> None:
        # A failed batch leaves the producer possibly holding undelivered messages: start over.
        self._db.close()
        self._producer = None

    def close(self) -> None:
        self._db.close()
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


def _log_published(topic: str, key: bytes | None, value: bytes) -> None:
    envelope = json.loads(value)
    log.debug(
        "outbox message published",
        topic=topic,
        order_id=bytes(key).decode() if key is not None else None,
        correlation_id=envelope["correlation_id"],
        causation_id=envelope["causation_id"],
        message_id=envelope["message_id"],
        message_type=envelope["type"],
    )
