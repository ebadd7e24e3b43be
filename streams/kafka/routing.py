"""Where a keyed record belongs, and what to do with one that arrived elsewhere.

The contract keys every message by the order id, and every consumer keeps the state of a key
on the partition that key hashes to with murmur2, as the Java clients and Faust partition.
librdkafka's default partitioner (``consistent_random``, CRC32), which kcat and a plain
confluent-kafka producer use, puts the same key on another partition. A consumer that met such
a record would decide it against the state of the wrong partition, so every consumer of an
input topic forwards it to its owning partition on the same topic, with the same key, value
and headers, before deciding anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from aiokafka.partitioner import murmur2

from streams.observability.logs import get_logger

log = get_logger(__name__)

Headers = list[tuple[str, str | bytes | None]]
RawHeaders = Headers | dict[str, str | bytes | None] | None
"""Record headers as confluent-kafka and aiokafka hand them out."""


def as_headers(raw: RawHeaders) -> Headers:
    return list(raw.items()) if isinstance(raw, dict) else list(raw or [])


@lru_cache(maxsize=65536)  # every input of an order asks again (aiokafka's murmur2 is Python)
def owner_of(key: bytes, partitions: int) -> int:
    """The partition ``key`` hashes to: murmur2, as Kafka's Java clients and Faust hash it."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Forward:
    """A record to send again to its owning ``partition`` of ``topic``, unchanged."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None
    headers: Headers


def misrouted(
    topic: str,
    partition: int,
    key: bytes | None,
    value: bytes | None,
    headers: RawHeaders,
    partitions: int,
) -> Forward | None:
    """The forward of a record that is not on its key's partition; ``None`` when it is there,
    or has no key (the codec dead-letters that)."""
    if key is None:
        return None
    owner = owner_of(key, partitions)
    if owner == partition:
        return None
    return Forward(topic, owner, key, value, as_headers(headers))


def log_forward(forward: Forward, arrived_on: int, offset: int | None) -> None:
    log.warning(
        "misrouted record forwarded",
        topic=forward.topic,
        partition=arrived_on,
        offset=offset,
        to_partition=forward.partition,
        order_id=forward.key.decode(errors="replace"),
    )


def unforwardable_reason(forward: Forward, arrived_on: int, error: Exception) -> str:
    return (
        f"misrouted: on partition {arrived_on}, its key hashes to {forward.partition}, "
        f"and forwarding it failed: {error}"
    )
