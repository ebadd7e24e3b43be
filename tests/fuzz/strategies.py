"""Hypothesis strategies for records that must end in dead-letters, whatever topic they hit."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from aggregates.messages import MESSAGE_TYPES
from streams.kafka.topics import ACCEPTED_TYPES

INPUT_TOPICS = sorted(ACCEPTED_TYPES)
ENVELOPE_FIELDS = ["message_id", "type", "occurred_at", "correlation_id", "causation_id", "data"]
HUGE = 300_000  # over the codec's 256 KiB limit, under the broker's 1 MiB


def _with(envelope: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**envelope, **changes}).encode()


@st.composite
def bad_record(
    draw: st.DrawFn, envelope: dict[str, Any], key: bytes
) -> tuple[str, bytes | None, bytes]:
    """(kind, key, value) of one malformed record, built around a valid ``envelope``."""
    kind = draw(
        st.sampled_from(
            [
                "invalid json",
                "wrong type",
                "unknown type",
                "missing field",
                "huge",
                "wrong key",
                "missing key",
            ]
        )
    )
    data = envelope["data"]
    match kind:
        case "invalid json":
            junk = draw(st.binary(max_size=64))
            return kind, key, b"{" + junk
        case "wrong type":
            field = draw(st.sampled_from(sorted(data)))
            return kind, key, _with(envelope, data={**data, field: [1, 2]})
        case "unknown type":
            name = draw(st.text(min_size=1, max_size=20).filter(lambda t: t not in MESSAGE_TYPES))
            return kind, key, _with(envelope, type=name)
        case "missing field":
            field = draw(st.sampled_from(ENVELOPE_FIELDS))
            return kind, key, json.dumps({k: v for k, v in envelope.items() if k != field}).encode()
        case "huge":
            return kind, key, _with(envelope, data={**data, "padding": "x" * HUGE})
        case "wrong key":
            other = draw(st.text(min_size=1, max_size=20)).encode()
            return kind, (other if other != key else other + b"!"), _with(envelope)
        case _:
            return kind, None, _with(envelope)


def wrong_topics(message_type: str) -> list[str]:
    """The input topics that do not carry ``message_type``."""
    return [t for t in INPUT_TOPICS if message_type not in ACCEPTED_TYPES[t]]
