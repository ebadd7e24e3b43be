"""Dead letters for operators: read them, and send chosen ones back to where they failed.

    orderflow dead-letters list|show|redrive        (streams.cli.dead_letters)

A dead letter's id is its place on ``dead-letters``, ``PARTITION:OFFSET``: stable, since the
topic keeps everything. ``redrive`` produces the recorded key and value to the letter's source
topic, whose consumer decides the record again (after an operator fixed the cause), with the
headers ``orderflow-redrive-count`` and ``orderflow-redriven-from``; in the same Kafka
transaction it writes an audit record on ``dead-letters.redrives``: both or neither.

It never loops: a letter is redriven once (its audit record says so), a record that fails
again comes back as a new letter that keeps the count (``streams.kafka.dead_letters``), and a
letter whose record was redriven ``max_redrives`` times already is refused. A redrive chosen
by filter reads the letters up to the end as it starts, so it never meets its own failures.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage

from streams.kafka.consuming import read_to_end
from streams.kafka.dead_letters import redrive_headers
from streams.kafka.topics import ACCEPTED_TYPES, DEAD_LETTER_REDRIVES, DEAD_LETTERS
from streams.settings import Settings

MAX_REDRIVES = 3


class RedriveRefused(Exception):
    """A dead letter that may not be sent back (already redriven, too often, no input topic)."""


@dataclass(frozen=True)
class Letter:
    """One dead letter: where it is on ``dead-letters``, and its JSON record."""

    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return letter_id(self.partition, self.offset)

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", ""))

    @property
    def source(self) -> dict[str, Any]:
        source: dict[str, Any] = self.record.get("source") or {}
        return source

    @property
    def source_topic(self) -> str:
        return str(self.source.get("topic", ""))

    @property
    def redrive_count(self) -> int:
        return int(self.record.get("redrive_count") or 0)

    @property
    def key(self) -> bytes | None:
        return _unb64(self.record.get("key_base64"))

    @property
    def value(self) -> bytes | None:
        return _unb64(self.record.get("value_base64"))

    def as_json(self, redrives: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
        return {"id": self.id, **self.record, "redrives": list(redrives)}


def letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


def parse_id(text: str) -> tuple[int, int]:
    partition, colon, offset = text.partition(":")
    if not colon or not partition.isdigit() or not offset.isdigit():
        raise ValueError(f"{text!r} is not a dead letter id (PARTITION:OFFSET, e.g. 3:17)")
    return int(partition), int(offset)


# Reading


def read_letters(settings: Settings) -> list[Letter]:
    """Every dead letter, up to the end of each partition as it is now, in partition order."""
    return [
        Letter(record.partition() or 0, record.offset() or 0, record_of(record))
        for record in _read(settings, settings.topic(DEAD_LETTERS))
    ]


def read_letter(settings: Settings, text: str) -> Letter | None:
    """The dead letter ``text`` (``PARTITION:OFFSET``), or None when there is none there."""
    partition, offset = parse_id(text)
    topic = settings.topic(DEAD_LETTERS)
    for record in _read(settings, topic, [TopicPartition(topic, partition, offset)]):
        if record.offset() == offset:
            return Letter(partition, offset, record_of(record))
        break
    return None


def read_redrives(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every audit record of a redrive, by the id of the dead letter redriven, oldest first."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in _read(settings, settings.topic(DEAD_LETTER_REDRIVES)):
        audit = record_of(record)
        found.setdefault(str(audit.get("dead_letter")), []).append(audit)
    return found


def record_of(record: KafkaMessage) -> dict[str, Any]:
    try:
        value: dict[str, Any] = json.loads(record.value() or b"")
        return value
    except ValueError:
        return {"reason": "(not a dead letter: the record is not JSON)"}


def matches(letter: Letter, settings: Settings, source: str | None, reason: str | None) -> bool:
    """``source``: a topic, by contract name or full name; ``reason``: a part of the reason."""
    if source and letter.source_topic not in (source, settings.topic(source)):
        return False
    return not reason or reason.lower() in letter.reason.lower()


def _read(
    settings: Settings, topic: str, start: list[TopicPartition] | None = None
) -> Iterator[KafkaMessage]:
    consumer = Consumer(
        settings.confluent_config(
            **{
                "group.id": f"orderflow-cli-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": "read_committed",
            }
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise LookupError(f"no topic {topic} (make topics creates it)")
        assigned = start or [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions
        ]
        for records in read_to_end(consumer, assigned, {}):
            yield from records
    finally:
        consumer.close()


# Redriving


def refusal(
    letter: Letter,
    redrives: dict[str, list[dict[str, Any]]],
    settings: Settings,
    max_redrives: int = MAX_REDRIVES,
) -> str | None:
    """Why ``letter`` may not be redriven, or None."""
    inputs = {settings.topic(name) for name in ACCEPTED_TYPES}
    if letter.source_topic not in inputs:
        return f"its source {letter.source_topic!r} is no input topic here (TOPIC_PREFIX?)"
    done = redrives.get(letter.id)
    if done:
        last = done[-1]
        to = last.get("sent_to", {})
        return (
            f"already redriven at {last.get('redriven_at')} by {last.get('requested_by')} "
            f"(to {to.get('topic')} {to.get('partition')}:{to.get('offset')})"
        )
    if letter.redrive_count >= max_redrives:
        return (
            f"its record was redriven {letter.redrive_count} times already and failed each time "
            f"(limit {max_redrives})"
        )
    return None


def redrive(
    settings: Settings, letters: list[Letter], by: str, note: str | None = None
) -> list[dict[str, Any]]:
    """Send ``letters`` back to their source topics, and audit each, in one transaction.

    Returns the audit records. Raises ``RuntimeError`` when Kafka did not take them (nothing
    was sent then: the transaction is aborted).
    """
    producer = Producer(
        settings.producer_config(
            **{"transactional.id": f"{settings.app_id}-redrive-{uuid.uuid4().hex}"}
        )
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    sent: dict[str, dict[str, Any]] = {}
    errors: list[KafkaError] = []

    def delivered(letter: Letter) -> Any:
        def report(error: KafkaError | None, message: KafkaMessage) -> None:
            if error is not None:
                errors.append(error)
                return
            where = {"topic": message.topic(), "partition": message.partition()}
            sent[letter.id] = where | {"offset": message.offset()}

        return report

    try:
        for letter in letters:
            producer.produce(
                letter.source_topic,
                key=letter.key,
                value=letter.value,
                headers=redrive_headers(letter.redrive_count + 1, letter.id),
                on_delivery=delivered(letter),
            )
        if producer.flush(30) or errors:
            raise RuntimeError(f"Kafka did not take the redriven records: {errors}")
        at = datetime.now(UTC).isoformat()
        audits = [_audit(letter, sent[letter.id], by, note, at) for letter in letters]
        for audit in audits:
            producer.produce(
                settings.topic(DEAD_LETTER_REDRIVES),
                key=audit["dead_letter"].encode(),
                value=json.dumps(audit, separators=(",", ":")).encode(),
            )
        producer.commit_transaction(30)
    except BaseException:
        producer.abort_transaction(30)
        raise
    return audits


def _audit(
    letter: Letter, sent_to: dict[str, Any], by: str, note: str | None, at: str
) -> dict[str, Any]:
    return {
        "dead_letter": letter.id,
        "redrive_count": letter.redrive_count + 1,
        "source": letter.source,
        "key": letter.record.get("key"),
        "reason": letter.reason,
        "sent_to": sent_to,
        "requested_by": by,
        "note": note,
        "redriven_at": at,
    }


def _unb64(text: Any) -> bytes | None:
    return None if text is None else base64.b64decode(text)
