"""Producing with confluent-kafka: the records a transaction produces, and producing when the
local queue may be full."""

from __future__ import annotations

from typing import Any, NamedTuple

from confluent_kafka import Producer

from streams.kafka import routing


def produce_waiting(producer: Producer, topic: str, poll_s: float = 0.05, **record: Any) -> None:
    """``producer.produce(topic, **record)``, serving deliveries while librdkafka's queue is
    full (``BufferError``) instead of failing."""
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:
            producer.poll(poll_s)


class Output(NamedTuple):
    """A record to produce in the open transaction; to the key's partition unless given."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: routing.Headers | None = None

    @classmethod
    def forwarding(cls, forward: routing.Forward) -> Output:
        return cls(forward.topic, forward.key, forward.value, forward.partition, forward.headers)
