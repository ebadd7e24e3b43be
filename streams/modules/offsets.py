"""Committed offsets that the command handler's group takes over from the groups it replaced.

Until the event-sourced modules shared one loop (``streams.modules.processor``), each had its own
group, ``<app_id>-<module>`` (``groups.module``). The shared group starts where those stopped:
on a partition where it has no committed offset, it takes the old group's. Deciding again from
the beginning would be correct too (a handled command is skipped by its message id), but would
read every command ever sent. Stop the old handlers before starting the new ones: two groups
would each decide the same commands.
"""

from __future__ import annotations

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.kafka.consuming import committed, offsets_reader
from streams.observability.logs import get_logger
from streams.settings import Settings

log = get_logger(__name__)


def adopt_offsets(settings: Settings, group: str, previous: dict[str, str]) -> None:
    """Commit for ``group``, on every partition of ``previous``'s topics where it has no
    offset, the offset of that topic's previous group (``previous``: topic -> group).

    Call it before ``group``'s member joins: offsets can only be altered in an empty group.
    """
    admin = AdminClient(settings.confluent_config())
    metadata = admin.list_topics(timeout=30).topics
    partitions = {
        topic: [TopicPartition(topic, p) for p in metadata[topic].partitions]
        for topic in previous
        if topic in metadata
    }
    if not partitions:
        return
    # Its last commit, a pending transaction's aside: a member has that one open, and offsets
    # of a group with members cannot be altered. At worst (a crashed member's transaction
    # outlives its session) older offsets are adopted, and the commands after them are
    # skipped again by their message ids.
    every = [tp for owned in partitions.values() for tp in owned]
    mine = _committed(settings, group, every, stable=False)
    adopted: list[TopicPartition] = []
    for topic, owned in partitions.items():
        missing = [tp for tp in owned if mine[(topic, tp.partition)] < 0]
        if not missing:
            continue
        # A pending transaction's offsets are waited for: they are the old group's last word.
        theirs = _committed(settings, previous[topic], missing, stable=True)
        adopted += [TopicPartition(t, p, at) for (t, p), at in theirs.items() if at >= 0]
    if not adopted:
        return
    request = ConsumerGroupTopicPartitions(group, adopted)
    try:
        admin.alter_consumer_group_offsets([request])[group].result(timeout=30)
    except KafkaException as error:
        if error.args[0].code() != KafkaError.NON_EMPTY_GROUP:
            raise
        # Another member joined first; it adopted them before it did.
        log.info("offsets not adopted: the group has members", group=group)
        return
    log.info(
        "offsets adopted from the previous groups",
        group=group,
        previous=sorted(set(previous.values())),
        partitions=len(adopted),
    )


def _committed(
    settings: Settings, group: str, partitions: list[TopicPartition], *, stable: bool
) -> dict[tuple[str, int], int]:
    reader = offsets_reader(settings, group, stable=stable)
    try:
        return committed(reader, partitions, timeout=30)
    finally:
        reader.close()
