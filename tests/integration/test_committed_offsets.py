"""A group's committed offsets, read by a client that never joins the group
(``streams.kafka.consuming.committed``): the shared command loop's offset adoption and the
lag metric read them this way since the admin client's read crashed a process (SIGSEGV) while
a restarted broker loaded its groups."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from streams.kafka.consuming import committed, offsets_reader
from streams.settings import Settings
from tests.integration.harness import create_topics, unique

pytestmark = pytest.mark.integration


def test_a_stable_read_waits_for_a_pending_transactions_offsets_and_a_plain_read_does_not(
    settings: Settings,
) -> None:
    # Given a group that committed offset 1, and an open transaction that sends it offset 2
    topic, group = unique("committed"), unique("group")
    create_topics(settings, topic)
    member = Consumer(settings.consumer_config(group))
    member.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    producer = Producer(settings.producer_config(**{"transactional.id": unique("txn")}))
    producer.init_transactions(30)
    producer.begin_transaction()
    metadata = member.consumer_group_metadata()
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 2)], metadata, 30)
    plain = offsets_reader(settings, group, stable=False)
    stable = offsets_reader(settings, group, stable=True)
    asked = [TopicPartition(topic, 0)]
    try:
        # When both readers read while the transaction is open
        before = committed(plain, asked, timeout=10)
        with pytest.raises(KafkaException):
            committed(stable, asked, timeout=3)
        # Then the plain read has the last commit, and the stable one has the transaction's
        # once it commits
        producer.commit_transaction(30)
        after = committed(stable, asked, timeout=10)
    finally:
        for client in (plain, stable, member):
            client.close()
    assert before == {(topic, 0): 1}
    assert after == {(topic, 0): 2}


def test_a_partition_the_group_never_committed_reads_as_negative(settings: Settings) -> None:
    # Given a topic that a fresh group never consumed
    topic, group = unique("committed"), unique("group")
    create_topics(settings, topic)
    reader = offsets_reader(settings, group, stable=True)
    # When its offsets are read
    try:
        found = committed(reader, [TopicPartition(topic, 0), TopicPartition(topic, 1)], 10)
    finally:
        reader.close()
    # Then each partition is there, with no offset
    assert set(found) == {(topic, 0), (topic, 1)}
    assert all(offset < 0 for offset in found.values())
