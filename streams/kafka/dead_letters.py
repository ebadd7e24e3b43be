"""Dead letters: a record that cannot be processed goes to ``dead-letters``, with the reason.

Every consumer makes its dead letters here: one log line and one wire format (``DeadLetter``),
keyed by the record's own key. Each consumer then sends the letter with the producer its
other outputs go through, so that the letter shares their fate: Faust's producer in the
worker, the open transaction in a command processor, the producer beside the database
transaction in the shipment handler. For the same reason each one counts
``dead_letters_total`` where its send is known to have gone through.

A record an operator sent back to its topic (``orderflow dead-letters redrive``) carries the
redrive headers; a redriven record that fails again keeps their count in its new dead letter
(``redrive_count``, ``redriven_from``), so redrives are counted across generations and stop at
a limit instead of looping.
"""

from __future__ import annotations

from streams.kafka.codec import DeadLetter
from streams.kafka.consuming import Consumed
from streams.kafka.routing import Headers
from streams.observability.logs import get_logger

log = get_logger(__name__)

REDRIVE_COUNT_HEADER = "orderflow-redrive-count"
"""On a redriven record: how many times it was redriven, this time included (ASCII digits)."""
REDRIVEN_FROM_HEADER = "orderflow-redriven-from"
"""On a redriven record: the dead letter it was sent back from (``partition:offset``)."""


def redrive_of(headers: Headers | None) -> tuple[int, str | None]:
    """(redrive count, dead letter id) from a record's headers; (0, None) for one never
    redriven. An unreadable count counts as 0."""
    found = {name: value for name, value in headers or ()}
    raw_count, raw_from = found.get(REDRIVE_COUNT_HEADER), found.get(REDRIVEN_FROM_HEADER)
    try:
        count = max(int(_text(raw_count) or 0), 0)
    except ValueError:
        count = 0
    return count, _text(raw_from) or None


def redrive_headers(count: int, dead_letter_id: str) -> Headers:
    return [
        (REDRIVE_COUNT_HEADER, str(count).encode()),
        (REDRIVEN_FROM_HEADER, dead_letter_id.encode()),
    ]


def letter(record: Consumed, reason: str) -> bytes:
    """The dead letter of ``record`` (its value on ``dead-letters``), logged once here."""
    count, redriven_from = redrive_of(record.headers)
    log.warning(
        "dead letter",
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason,
        redrive_count=count,
    )
    return DeadLetter(
        reason,
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        count,
        redriven_from,
    ).to_bytes()


def _text(raw: str | bytes | None) -> str:
    if raw is None:
        return ""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw
