"""Producing with confluent-kafka when its local queue may be full."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer


def produce_waiting(producer: Producer, topic: str, poll_s: float = 0.05, **record: Any) -> None:
    """``producer.produce(topic, **record)``, serving deliveries while librdkafka's queue is
    full (``BufferError``) instead of failing."""
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:
            producer.poll(poll_s)
