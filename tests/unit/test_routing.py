"""Which partition a key belongs to, and the forward of a record found elsewhere."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.routing import Forward, misrouted, owner_of

PARTITIONS = 8


def test_a_key_belongs_where_the_java_clients_and_faust_put_it() -> None:
    partitioner = DefaultPartitioner()
    for n in range(500):
        key = f"order-{n:04d}".encode()
        assert owner_of(key, PARTITIONS) == partitioner(key, list(range(PARTITIONS)), [])


def test_a_record_on_its_keys_partition_is_not_forwarded() -> None:
    key = b"order-1"
    assert misrouted("t", owner_of(key, PARTITIONS), key, b"v", None, PARTITIONS) is None


def test_a_record_elsewhere_is_forwarded_unchanged_to_its_keys_partition() -> None:
    # Given a record on another partition than its key's, with headers
    key = b"order-1"
    owner = owner_of(key, PARTITIONS)
    elsewhere = (owner + 1) % PARTITIONS
    headers = [("trace", b"abc")]

    # When it is checked
    forward = misrouted("t", elsewhere, key, b"value", headers, PARTITIONS)

    # Then it goes to the same topic, on its key's partition, with its key, value and headers
    assert forward == Forward("t", owner, key, b"value", headers)


def test_a_record_without_a_key_is_left_to_the_codec() -> None:
    assert misrouted("t", 3, None, b"value", None, PARTITIONS) is None
