"""Dead letters: a record that cannot be processed goes to ``dead-letters``, with the reason.

Every consumer makes its dead letters here: one log line and one wire format (``DeadLetter``),
keyed by the record's own key. Each consumer then sends the letter with the producer its
other outputs go through, so that the letter shares their fate: Faust's producer in the
worker, the open transaction in a command processor, the producer beside the database
transaction in the shipment handler. For the same reason each one counts
``dead_letters_total`` where its send is known to have gone through.
"""

from __future__ import annotations

from streams.kafka.codec import DeadLetter
from streams.kafka.consuming import Consumed
from streams.observability.logs import get_logger

log = get_logger(__name__)


def letter(record: Consumed, reason: str) -> bytes:
    """The dead letter of ``record`` (its value on ``dead-letters``), logged once here."""
    log.warning(
        "dead letter",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason,
    )
    return DeadLetter(
        reason, record.topic, record.partition, record.offset, record.key, record.value
    ).to_bytes()
